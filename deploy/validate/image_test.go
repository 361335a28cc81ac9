package validate

import (
	"archive/tar"
	"bufio"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// maxImageBytes is the size limit for the image (uncompressed
// layers, as `podman images` shows it).
const maxImageBytes = 40_000_000

// imageConfig is the part of a Docker image configuration the checks read.
type imageConfig struct {
	Config struct {
		User         string
		Env          []string
		Entrypoint   []string
		Cmd          []string
		WorkingDir   string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
		Labels       map[string]string
		Healthcheck  *struct {
			Test     []string
			Interval time.Duration
			Timeout  time.Duration
			Retries  int
		}
	} `json:"config"`
}

// TestImage checks the image `make image` built, by its contents: podman
// run is not available on the build machines, so `make image-check` saves
// the image (podman save) and this test reads the archive, checks the
// configuration, unpacks the layers and runs the entrypoint from them.
func TestImage(t *testing.T) {
	archive := os.Getenv("FEDRISK_TEST_IMAGE_ARCHIVE")
	if archive == "" {
		t.Skip("FEDRISK_TEST_IMAGE_ARCHIVE is not set: run `make image image-check`")
	}
	wantVersion := os.Getenv("FEDRISK_TEST_IMAGE_VERSION")
	if wantVersion == "" {
		t.Fatal("FEDRISK_TEST_IMAGE_VERSION is not set: the version the image was built with")
	}
	cfg, layers := readDockerArchive(t, archive)
	root := t.TempDir()
	var size int64
	headers := map[string]*tar.Header{}
	for _, l := range layers {
		size += int64(len(l))
		extractLayer(t, l, root, headers)
	}
	t.Logf("image: %d layers, %.1f MB", len(layers), float64(size)/1e6)
	if size > maxImageBytes {
		t.Errorf("image is %d bytes, more than %d", size, maxImageBytes)
	}

	c := cfg.Config
	t.Run("config", func(t *testing.T) {
		uid, _, _ := strings.Cut(c.User, ":")
		if uid == "" || uid == "0" || uid == "root" {
			t.Errorf("user %q: the image must not run as root", c.User)
		}
		if !slices.Equal(c.Entrypoint, []string{"/fedrisk"}) || !slices.Equal(c.Cmd, []string{"serve"}) {
			t.Errorf("entrypoint %q cmd %q, want [/fedrisk] [serve]", c.Entrypoint, c.Cmd)
		}
		for _, p := range []string{"7000/tcp", "7001/tcp", "7002/tcp", "7003/tcp", "8080/tcp"} {
			if _, ok := c.ExposedPorts[p]; !ok {
				t.Errorf("port %s not exposed (have %v)", p, c.ExposedPorts)
			}
		}
		if _, ok := c.Volumes["/data"]; !ok {
			t.Errorf("no /data volume: %v", c.Volumes)
		}
		for _, l := range []string{"title", "description", "version", "revision", "created"} {
			if c.Labels["org.opencontainers.image."+l] == "" {
				t.Errorf("label org.opencontainers.image.%s missing", l)
			}
		}
		if v := c.Labels["org.opencontainers.image.version"]; v != wantVersion {
			t.Errorf("version label %q, want %q", v, wantVersion)
		}
		if c.Healthcheck == nil || len(c.Healthcheck.Test) < 3 || c.Healthcheck.Test[0] != "CMD" || c.Healthcheck.Test[1] != "/fedrisk" || c.Healthcheck.Test[2] != "health" {
			t.Errorf("healthcheck %+v: want CMD /fedrisk health ... (podman build --format docker keeps it)", c.Healthcheck)
		}
		if env := envMap(c.Env); env["FEDRISK_OPS_ADDR"] != ":7000" || env["FEDRISK_DATA_DIR"] != "/data" {
			t.Errorf("env %v: want FEDRISK_OPS_ADDR=:7000 and FEDRISK_DATA_DIR=/data", c.Env)
		}
	})
	t.Run("filesystem", func(t *testing.T) {
		uid, gid := imageIDs(t, c.User)
		for _, dir := range []string{"data", "tmp"} {
			h := headers[dir]
			if h == nil || h.Typeflag != tar.TypeDir {
				t.Errorf("/%s is not a directory in the image", dir)
				continue
			}
			if h.Uid != uid || h.Gid != gid || h.Mode&0o700 != 0o700 {
				t.Errorf("/%s is %d:%d mode %o; the user %s must own and write it", dir, h.Uid, h.Gid, h.Mode, c.User)
			}
		}
		if h := headers["fedrisk"]; h == nil || h.Mode&0o111 == 0 || h.Uid != 0 {
			t.Errorf("/fedrisk: %+v, want a root-owned executable the user cannot replace", h)
		}
		if _, ok := headers["etc/ssl/certs/ca-certificates.crt"]; !ok {
			t.Error("no CA bundle at /etc/ssl/certs/ca-certificates.crt")
		}
		f, err := elf.Open(filepath.Join(root, "fedrisk"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("/fedrisk is dynamically linked: a scratch image has no loader")
			}
		}
	})
	bin := filepath.Join(root, "fedrisk")
	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "fedrisk "+wantVersion) {
			t.Errorf("version: %v %q, want fedrisk %s", err, out, wantVersion)
		}
	})
	t.Run("serve", func(t *testing.T) { serveFromImage(t, bin, root, c.Env, c.Healthcheck.Test[1:]) })
}

// serveFromImage runs the image's entrypoint with `serve`, the image's
// environment and free loopback ports, checks every service's /health and
// the image's healthcheck command, then stops it with SIGTERM.
func serveFromImage(t *testing.T, bin, root string, imageEnv, healthcheck []string) {
	env := envMap(imageEnv)
	env["FEDRISK_DATA_DIR"] = filepath.Join(root, "data") // the image's own data directory
	for _, k := range []string{"FEDRISK_CONSENT_ADDR", "FEDRISK_PSI_ADDR", "FEDRISK_SERVING_ADDR", "FEDRISK_OPS_ADDR"} {
		env[k] = "127.0.0.1:0"
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = envList(env)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	announced := listeningAddrs(t, cmd, stderr, 3)
	addrs := announced()
	for _, svc := range []string{"consent", "psi", "serving"} {
		resp, err := http.Get("http://" + addrs[svc] + "/health")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("%s /health: %v %v", svc, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	if ops := announced()["ops"]; ops == "" {
		t.Log("the node serves no ops listener yet (issue 14 item 6): healthcheck run against it skipped")
	} else {
		hc := exec.Command(filepath.Join(root, strings.TrimPrefix(healthcheck[0], "/")), healthcheck[1:]...)
		env["FEDRISK_OPS_ADDR"] = ops
		hc.Env = envList(env)
		if out, err := hc.CombinedOutput(); err != nil {
			t.Errorf("healthcheck %q: %v\n%s", healthcheck, err, out)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
}

// listeningAddrs follows the node's JSON log in the background and returns
// once want service listeners are announced; the returned function gives
// every listener announced so far (Serve logs them all in one loop, so an
// ops listener is announced right beside the services).
func listeningAddrs(t *testing.T, cmd *exec.Cmd, r io.Reader, want int) func() map[string]string {
	t.Helper()
	var mu sync.Mutex
	addrs := map[string]string{}
	services := make(chan string, 16)
	go func() {
		lines := bufio.NewScanner(r)
		for lines.Scan() {
			var rec struct{ Msg, Service, Addr string }
			if json.Unmarshal(lines.Bytes(), &rec) != nil || rec.Msg != "listening" {
				continue
			}
			mu.Lock()
			addrs[rec.Service] = rec.Addr
			mu.Unlock()
			services <- rec.Service
		}
		close(services)
	}()
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	n := 0
	for svc := range services {
		if svc != "ops" {
			n++
		}
		if n == want {
			break
		}
	}
	if n < want {
		t.Fatalf("only %d of %d listeners announced before the node ended", n, want)
	}
	go func() {
		for range services {
		}
	}()
	return func() map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(addrs)
	}
}

func readDockerArchive(t *testing.T, archive string) (imageConfig, [][]byte) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[path.Clean(h.Name)] = b
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json of %s: %v (%d images): save it with podman save --format docker-archive", archive, err, len(manifest))
	}
	var cfg imageConfig
	if err := json.Unmarshal(files[manifest[0].Config], &cfg); err != nil {
		t.Fatalf("image config: %v", err)
	}
	var layers [][]byte
	for _, l := range manifest[0].Layers {
		b, ok := files[path.Clean(l)]
		if !ok {
			t.Fatalf("layer %s missing from the archive", l)
		}
		layers = append(layers, b)
	}
	return cfg, layers
}

// extractLayer unpacks one uncompressed layer under root and records each
// entry's header by its clean path.
func extractLayer(t *testing.T, layer []byte, root string, headers map[string]*tar.Header) {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(string(layer)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if name == "" || strings.HasPrefix(path.Base(name), ".wh.") {
			continue
		}
		headers[name] = h
		dst := filepath.Join(root, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, mustRead(t, tr), os.FileMode(h.Mode)&0o777); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, dst); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func mustRead(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func imageIDs(t *testing.T, user string) (int, int) {
	t.Helper()
	var uid, gid int
	if _, err := fmt.Sscanf(strings.Replace(user, ":", " ", 1), "%d %d", &uid, &gid); err != nil {
		t.Fatalf("user %q is not numeric UID:GID (a scratch image resolves no names at run time)", user)
	}
	return uid, gid
}

func envMap(list []string) map[string]string {
	m := map[string]string{}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func envList(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}
