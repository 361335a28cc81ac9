// Package deployinit prepares a directory for the Docker Compose deployment
// (deploy/compose/compose.yaml), as the operations runbook's
// deploy_docker.sh does before `docker compose up`: the directories, a .env
// file with random secrets, and the TLS certificates of the node.
//
// It never overwrites: an existing .env keeps every line it has and only
// gets the keys it lacks appended; existing certificates are kept. The .env
// file is always left with mode 0600. Secrets come from crypto/rand and are
// URL-safe (they go into DATABASE_URL and REDIS_URL unescaped).
//
// The runbook's JWT_SECRET and JWT_ALGORITHM have no counterpart: consent
// tokens are signed RS256 with keys that live in the database, wrapped by
// ENCRYPTION_KEY, and rotate with `fedrisk keys rotate jwt`. The .env says
// so where the runbook's operators look for them.
package deployinit

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/pki"
)

// Environments accepted by Options.Env.
const (
	EnvDev        = "dev"
	EnvProduction = "production"
)

// ContainerUID is the user the fedrisk image runs as (see the Dockerfile).
const ContainerUID = 65532

// ErrBadOptions wraps every invalid option.
var ErrBadOptions = errors.New("invalid deploy init options")

// Hosts every server certificate covers: the compose service names, so
// nginx and the services verify each other by name, and loopback.
var composeHosts = []string{"consent-service", "psi-service", "model-serving", "console", "nginx"}

// Options says what to prepare.
type Options struct {
	Dir   string // the directory of compose.yaml (deploy/compose)
	Env   string // dev or production
	Party string // this party's name, as in its certificates
	Role  string // guest or host
	Image string // the image compose runs
	// KeyType of the certificates: pki.RSA (the runbook's RSA 4096, the
	// default here) or pki.ECDSAP256.
	KeyType pki.KeyType
	Days    int      // certificate validity; 0 means the runbook's 365
	Hosts   []string // extra DNS names or IPs of the server certificate
	// UID and GID of the operator running init. As root, the node's files
	// are handed to the container user; otherwise the containers run as
	// the operator (FEDRISK_UID/FEDRISK_GID in .env) so they can read the
	// 0600 keys.
	UID, GID int
	Now      time.Time
	Rand     io.Reader // nil: crypto/rand
}

// Result lists what Init did, with paths relative to Options.Dir.
type Result struct {
	Created []string // directories and files created
	Kept    []string // files that existed and were left as they were
	Added   []string // .env keys appended to an existing .env
}

// Init prepares opts.Dir.
func Init(opts Options) (Result, error) {
	var res Result
	if err := opts.normalize(); err != nil {
		return res, err
	}
	r := opts.Rand
	if r == nil {
		r = rand.Reader
	}
	for _, d := range []string{"certs", "certs/partners", "data/fedrisk", "inputs", "reports"} {
		created, err := mkdir(filepath.Join(opts.Dir, d), 0o750)
		if err != nil {
			return res, err
		}
		if created {
			res.Created = append(res.Created, d+"/")
		}
	}
	if err := writeEnv(opts, r, &res); err != nil {
		return res, err
	}
	if err := writeCerts(opts, &res); err != nil {
		return res, err
	}
	if opts.UID == 0 {
		// Root prepared the files: hand the node's to the container user.
		for _, p := range []string{"data/fedrisk", "certs/" + opts.Party} {
			if err := chownTree(filepath.Join(opts.Dir, p), ContainerUID, ContainerUID); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

func (o *Options) normalize() error {
	if o.Dir == "" {
		o.Dir = "."
	}
	switch o.Env {
	case "":
		o.Env = EnvDev
	case EnvDev, EnvProduction:
	default:
		return fmt.Errorf("%w: environment %q: want dev or production", ErrBadOptions, o.Env)
	}
	if o.Party == "" {
		o.Party = "bank"
	}
	if err := pki.CheckPartyName(o.Party); err != nil {
		return fmt.Errorf("%w: party: %v", ErrBadOptions, err)
	}
	switch o.Role {
	case "":
		o.Role = "guest"
	case "guest", "host":
	default:
		return fmt.Errorf("%w: role %q: want guest or host", ErrBadOptions, o.Role)
	}
	if o.Image == "" {
		o.Image = "localhost/fedrisk:latest"
	}
	if o.KeyType == "" {
		o.KeyType = pki.RSA
	}
	if o.Days == 0 {
		o.Days = 365
	}
	if o.Days < 0 {
		return fmt.Errorf("%w: certificate validity %d days", ErrBadOptions, o.Days)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	return nil
}

// entry is one line of the .env file.
type entry struct {
	key, comment string
	value        func(r io.Reader) (string, error)
}

func fixed(v string) func(io.Reader) (string, error) {
	return func(io.Reader) (string, error) { return v, nil }
}

// token returns n random bytes, base64url without padding: URL-safe for
// DATABASE_URL and REDIS_URL.
func token(n int) func(io.Reader) (string, error) {
	return func(r io.Reader) (string, error) {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("random secret: %w", err)
		}
		return base64.RawURLEncoding.EncodeToString(b), nil
	}
}

// hexKey returns a 32-byte key, hex encoded (ENCRYPTION_KEY and
// FEDRISK_SUBJECT_REF_KEY accept hex or base64).
func hexKey(r io.Reader) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("random key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func envEntries(o Options) []entry {
	level, format := "info", "json"
	if o.Env == EnvDev {
		level, format = "debug", "text"
	}
	uid, gid := o.UID, o.GID
	if uid == 0 {
		uid, gid = ContainerUID, ContainerUID
	}
	return []entry{
		{"ENVIRONMENT", "dev or production (fedrisk deploy init --env)", fixed(o.Env)},
		{"FEDRISK_IMAGE", "the fedrisk image every service runs (make image tags localhost/fedrisk:latest)", fixed(o.Image)},
		{"FEDRISK_UID", "user the fedrisk containers run as: it must read certs/" + o.Party + "/*.key and write data/fedrisk", fixed(fmt.Sprint(uid))},
		{"FEDRISK_GID", "", fixed(fmt.Sprint(gid))},
		{"PORT", "published port of the web console (the runbook's frontend)", fixed("8080")},
		{"FEDRISK_PARTY", "this party's name, as in its certificates (certs/" + o.Party + "/)", fixed(o.Party)},
		{"FEDRISK_ROLE", "guest (label holder) or host (feature provider)", fixed(o.Role)},
		{"FEDRISK_PEERS", "partner nodes, name=https://host:port,... (their CA certificates go into certs/partners/)", fixed("")},
		{"POSTGRES_DB", "", fixed("federated_risk")},
		{"POSTGRES_USER", "", fixed("fedrisk")},
		{"POSTGRES_PASSWORD", "", token(32)},
		{"REDIS_PASSWORD", "", token(32)},
		{"ENCRYPTION_KEY", "key-encryption key of personal data at rest: losing it loses the data; keep a copy offline", hexKey},
		{"FEDRISK_SUBJECT_REF_KEY", "shared by the whole federation: every party must use the same value (agree on it out of band and replace this one where you are not the first)", hexKey},
		{"AUTH_REQUIRED", "client APIs need bearer tokens (fedrisk tokens create NAME ROLE); through nginx no caller is on loopback", fixed("true")},
		{"FEDRISK_LOG_LEVEL", "", fixed(level)},
		{"FEDRISK_LOG_FORMAT", "", fixed(format)},
		{"PROMETHEUS_RETENTION", "", fixed("30d")},
		{"GRAFANA_ADMIN_PASSWORD", "", token(16)},
	}
}

const jwtNote = `# JWT_SECRET / JWT_ALGORITHM (runbook): not used. Consent tokens are signed RS256
# with keys kept in the database (wrapped by ENCRYPTION_KEY) and published at
# /.well-known/jwks.json; rotate them with: fedrisk keys rotate jwt
`

// writeEnv creates .env (0600) or appends the keys an existing one lacks.
func writeEnv(o Options, r io.Reader, res *Result) error {
	path := filepath.Join(o.Dir, ".env")
	existing, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf(".env: %w", err)
	}
	have := envKeys(existing)
	for k, v := range EnvFile(existing) {
		if strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">") {
			return fmt.Errorf(".env: %s is still the placeholder %s of .env.example: delete that line so deploy init generates a secret, or set a value of your own", k, v)
		}
	}
	var b bytes.Buffer
	if !exists {
		fmt.Fprintf(&b, "# fedrisk Docker Compose deployment, written by `fedrisk deploy init --env %s`\n", o.Env)
		fmt.Fprintf(&b, "# on %s. It holds secrets: keep it 0600, never commit it, back it up offline.\n", o.Now.UTC().Format(time.RFC3339))
		b.WriteString(jwtNote)
	} else {
		if len(existing) > 0 && existing[len(existing)-1] != '\n' {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "# added by `fedrisk deploy init` on %s\n", o.Now.UTC().Format(time.RFC3339))
	}
	added := 0
	for _, e := range envEntries(o) {
		if have[e.key] {
			continue
		}
		v, err := e.value(r)
		if err != nil {
			return err
		}
		if e.comment != "" {
			fmt.Fprintf(&b, "# %s\n", e.comment)
		}
		fmt.Fprintf(&b, "%s=%s\n", e.key, v)
		added++
		if exists {
			res.Added = append(res.Added, e.key)
		}
	}
	if !exists {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf(".env: %w", err)
		}
		if _, err := f.Write(b.Bytes()); err != nil {
			f.Close()
			return fmt.Errorf(".env: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf(".env: %w", err)
		}
		res.Created = append(res.Created, ".env")
		return nil
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf(".env: %w", err)
	}
	if added == 0 {
		res.Kept = append(res.Kept, ".env")
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf(".env: %w", err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf(".env: %w", err)
	}
	return f.Close()
}

// envKeys returns the keys an env file sets (KEY=..., export KEY=...).
func envKeys(data []byte) map[string]bool {
	keys := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		if k, _, ok := strings.Cut(line, "="); ok {
			keys[strings.TrimSpace(k)] = true
		}
	}
	return keys
}

// EnvFile parses a .env file as Docker Compose reads the ones Init writes
// (KEY=value lines, comments); for tests and tools.
func EnvFile(data []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
			m[strings.TrimSpace(k)] = v
		}
	}
	return m
}

// writeCerts generates the development PKI under certs/ unless its CA
// exists: a CA, and for the party a server certificate for the compose
// service names (plus Hosts) and a client certificate naming the party.
func writeCerts(o Options, res *Result) error {
	dir := filepath.Join(o.Dir, "certs")
	files := []string{"ca.crt", "ca.key", o.Party + "/server.crt", o.Party + "/server.key", o.Party + "/client.crt", o.Party + "/client.key"}
	var present, missing []string
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			present = append(present, "certs/"+f)
		} else if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, "certs/"+f)
		} else {
			return err
		}
	}
	switch {
	case len(missing) == 0:
		res.Kept = append(res.Kept, present...)
		return nil
	case len(present) > 0:
		return fmt.Errorf("certs/ is incomplete (%s exist, %s missing): nothing was overwritten; complete it or move it away: %w",
			strings.Join(present, ", "), strings.Join(missing, ", "), fs.ErrExist)
	}
	hosts := append(slices.Clone(composeHosts), o.Hosts...)
	if _, err := pki.GenerateDev(dir, []string{o.Party}, pki.DevOptions{
		Validity: time.Duration(o.Days) * 24 * time.Hour, Hosts: hosts, KeyType: o.KeyType,
	}); err != nil {
		return err
	}
	res.Created = append(res.Created, missing...)
	return nil
}

func mkdir(path string, perm fs.FileMode) (bool, error) {
	if fi, err := os.Stat(path); err == nil {
		if !fi.IsDir() {
			return false, fmt.Errorf("%s exists and is not a directory", path)
		}
		return false, nil
	}
	if err := os.MkdirAll(path, perm); err != nil {
		return false, err
	}
	return true, nil
}

func chownTree(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
