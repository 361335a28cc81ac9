// Package demo runs the whole federation on one machine, as `fedrisk demo`
// and the end-to-end test do.
//
// A guest ("bank") and a host ("partner") node run on 127.0.0.1 with
// development certificates and mutual TLS, with the bundled default-credit
// data split between them with a partial overlap: consents (some missing,
// some withdrawn), PSI, federated training, model registration, scoring, and
// the privacy budget drained for one subject to show the refusal.
//
// Every stage goes through the services' own APIs, as a user would, except
// feature loading, which — like `fedrisk features load` — writes to each
// party's own database. Stages are idempotent: a second run on the same
// directory reuses what the first one left (certificates, keys, consents,
// the PSI and training results, the registered model).
package demo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/data"
	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/node"
	"github.com/fedrisk/fedrisk/internal/pki"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
)

// The demo's parties.
const (
	guestParty = "bank"
	hostParty  = "partner"
	// Purpose is the consent purpose the demo records and scores under.
	Purpose = "credit_risk_assessment"
	// ModelID is the id the demo trains and serves.
	ModelID = "credit-risk"
)

// Options configure a demo run.
type Options struct {
	// Dir holds everything the demo writes (default ./fedrisk-demo).
	Dir string
	// BasePort: the guest listens on BasePort+1 (psi), +2 (consent), +3
	// (serving), +4 (console); the host on BasePort+11, +12, +13, +14. 0
	// picks free ports.
	BasePort int
	// PostgresURL and RedisURL run the nodes on real servers (each party
	// gets its own schema and key prefix); empty: SQLite files and
	// in-memory caches under Dir.
	PostgresURL, RedisURL string
	// Schema prefixes the parties' PostgreSQL schemas (default
	// fedrisk_demo: fedrisk_demo_bank and fedrisk_demo_partner).
	Schema string
	// Customers is how many rows of the bundled data are used (0: all
	// 30,000).
	Customers int
	// Missing and Withdrawn are the shares of the bank's customers that
	// never consented and that withdrew after consenting (the command's
	// defaults are 5% and 3%).
	Missing, Withdrawn float64
	// Epochs of training (0: the trainer's default).
	Epochs int
	// Noise is the host's noise mechanism: laplace (default), gaussian or
	// none (scores then equal the plaintext model's).
	Noise string
	// Samples is how many applicants the scoring stage scores.
	Samples int
	// Out receives the stage lines and the summary; nil discards them.
	Out io.Writer
	// Logs receives both nodes' JSON logs; nil writes Dir/<party>.log.
	Logs io.Writer
}

// Normalize fills in defaults and checks the options; Start calls it too.
func (o *Options) Normalize() error {
	if o.Dir == "" {
		o.Dir = "fedrisk-demo"
	}
	// The nodes are handed paths below Dir (PSI inputs, training files),
	// and a node takes only absolute paths: resolve Dir once, here.
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("demo directory %s: %w", o.Dir, err)
	}
	o.Dir = abs
	if o.Missing < 0 || o.Withdrawn < 0 || o.Missing+o.Withdrawn >= 1 {
		return fmt.Errorf("the missing and withdrawn consent shares must be ≥ 0 and sum to less than 1")
	}
	if o.Customers < 0 || o.Customers > 1_000_000 {
		return fmt.Errorf("customers must be in 0..1000000")
	}
	if o.Schema == "" {
		o.Schema = "fedrisk_demo"
	}
	if !validSchema(o.Schema) {
		return fmt.Errorf("schema prefix must be 1..40 lowercase letters, digits and '_'")
	}
	if o.Noise == "" {
		o.Noise = "laplace"
	}
	if o.Noise != "laplace" && o.Noise != "gaussian" && o.Noise != "none" {
		return fmt.Errorf("noise must be laplace, gaussian or none")
	}
	if o.Samples <= 0 {
		o.Samples = 200
	}
	if o.BasePort < 0 || o.BasePort > 65535-14 {
		return fmt.Errorf("base port must be in 0..%d", 65535-14)
	}
	return nil
}

// Party is one running node of the demo.
type Party struct {
	Name string
	Node *node.Node
	Dir  string
	// URLs of its services by service name (config.ServicePSI, ...).
	URLs map[string]string
	// Clients of its services' client APIs (TLS, no client certificate:
	// loopback callers act as the local administrator).
	Clients map[string]*apiclient.Client
	Input   string // its customers' CSV
	IDs     []string
	stopped chan error

	// ConsoleURL is its web console (plain HTTP on loopback) and
	// ConsoleToken an admin API token to log in with.
	ConsoleURL, ConsoleToken string
}

// Demo is a running demo.
type Demo struct {
	opts       Options
	Guest      *Party
	Host       *Party
	Certs      *pki.DevPKI
	Result     Result
	state      *state
	consentRec consentRecord
	firstScore servingapi.ScoreAnswer
	prog       *progress
	cancel     context.CancelFunc
	logs       []io.Closer
}

// Result is what the demo's stages found.
type Result struct {
	GuestCustomers, HostCustomers int
	Consented, MissingConsent     int
	Withdrawn                     int
	PSIJob, HostPSIJob            string
	Intersection                  int64
	TrainJob                      string
	ModelVersion                  string
	AUCFederated, AUCCentralized  float64
	EpochSeconds                  float64
	Epochs                        int
	Scored                        int
	Degraded                      int
	LatencyMs                     Percentiles
	RefusedWithdrawn              string // error code of scoring a withdrawn subject
	BudgetReleases                int    // fresh releases the drained subject got
	BudgetRefusal                 string // error code once the budget was exhausted
	BudgetRemaining               float64
}

// Percentiles of a latency sample, in milliseconds.
type Percentiles struct{ P50, P95, P99, Max float64 }

const stages = 8

// Start brings both nodes up and runs every stage; the nodes keep serving
// until ctx ends or Close is called.
func Start(ctx context.Context, opts Options) (*Demo, error) {
	if err := opts.Normalize(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	st, err := loadState(filepath.Join(opts.Dir, "demo-state.json"))
	if err != nil {
		return nil, err
	}
	if err := st.checkSetup(opts); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(opts.Dir, "demo-endpoints.env")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	nctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d := &Demo{opts: opts, state: st, prog: newProgress(opts.Out, stages), cancel: cancel}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	if err := d.startNodes(ctx, nctx); err != nil {
		return nil, err
	}
	for _, s := range []func(context.Context) error{d.consents, d.psi, d.features, d.train, d.register, d.score, d.drainBudget} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s(ctx); err != nil {
			return nil, err
		}
	}
	if err := d.writeEndpoints(); err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// Close stops both nodes and waits for them.
func (d *Demo) Close() error {
	d.cancel()
	var errs []error
	for _, p := range []*Party{d.Guest, d.Host} {
		if p != nil && p.stopped != nil {
			if err := <-p.stopped; err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
			}
			p.stopped = nil
		}
	}
	for _, c := range d.logs {
		c.Close()
	}
	d.logs = nil
	return errors.Join(errs...)
}

// startNodes is stage 1: certificates, keys, data, and both nodes.
func (d *Demo) startNodes(ctx, nctx context.Context) error {
	d.prog.stage("Start the bank (guest) and the partner (host) with mutual TLS")
	certs, err := devCerts(filepath.Join(d.opts.Dir, "certs"))
	if err != nil {
		return err
	}
	d.Certs = certs
	refKey, err := secretFile(filepath.Join(d.opts.Dir, "subject_ref.key"))
	if err != nil {
		return err
	}
	ports, err := d.ports()
	if err != nil {
		return err
	}
	pool, err := pki.LoadCertPool(certs.CACert)
	if err != nil {
		return err
	}
	clientTLS := pki.ClientConfig(nil, pool)
	mk := func(name, role string, base int) (*Party, error) {
		p := &Party{Name: name, Dir: filepath.Join(d.opts.Dir, name), URLs: map[string]string{}, Clients: map[string]*apiclient.Client{},
			ConsoleURL: "http://127.0.0.1:" + strconv.Itoa(ports[base+3])}
		for i, svc := range []string{config.ServicePSI, config.ServiceConsent, config.ServiceServing} {
			p.URLs[svc] = "https://127.0.0.1:" + strconv.Itoa(ports[base+i])
			p.Clients[svc] = apiclient.New(p.URLs[svc], clientTLS.Clone())
			p.Clients[svc].HTTP.Timeout = 2 * time.Minute
		}
		return p, os.MkdirAll(p.Dir, 0o700)
	}
	if d.Guest, err = mk(guestParty, "guest", 0); err != nil {
		return err
	}
	if d.Host, err = mk(hostParty, "host", 4); err != nil {
		return err
	}
	limit := d.opts.Customers
	d.Guest.Input = filepath.Join(d.Guest.Dir, "input", "customers.csv")
	if d.Guest.IDs, err = splitFile(data.FS(), data.GuestFile, guestParty, d.Guest.Input, limit); err != nil {
		return err
	}
	d.Host.Input = filepath.Join(d.Host.Dir, "input", "customers.csv")
	if d.Host.IDs, err = splitFile(data.FS(), data.HostFile, hostParty, d.Host.Input, limit); err != nil {
		return err
	}
	d.Result.GuestCustomers, d.Result.HostCustomers = len(d.Guest.IDs), len(d.Host.IDs)
	for _, pair := range [][2]*Party{{d.Guest, d.Host}, {d.Host, d.Guest}} {
		if err := d.startNode(ctx, nctx, pair[0], pair[1], refKey); err != nil {
			return err
		}
	}
	for _, p := range []*Party{d.Guest, d.Host} {
		for _, svc := range []string{config.ServicePSI, config.ServiceConsent, config.ServiceServing} {
			if err := waitReady(ctx, p.Clients[svc]); err != nil {
				return fmt.Errorf("%s %s service did not become ready (see %s): %w", p.Name, svc, d.logPath(p.Name), err)
			}
		}
		if err := d.startConsole(ctx, p); err != nil {
			return err
		}
	}
	d.prog.done("bank %d customers at %s; partner %d customers at %s",
		len(d.Guest.IDs), d.Guest.URLs[config.ServiceServing], len(d.Host.IDs), d.Host.URLs[config.ServiceServing])
	return nil
}

func (d *Demo) logPath(party string) string { return filepath.Join(d.opts.Dir, party+".log") }

func (d *Demo) startNode(ctx, nctx context.Context, p, peer *Party, refKey string) error {
	files := d.Certs.Parties[p.Name]
	cfg := config.Default()
	cfg.Party, cfg.DataDir = p.Name, p.Dir
	cfg.Role = "host"
	if p.Name == guestParty {
		cfg.Role = "guest"
	}
	cfg.Services = append(config.AllServices(), config.ServiceConsole)
	for svc, u := range p.URLs {
		cfg.Addrs[svc] = strings.TrimPrefix(u, "https://")
	}
	cfg.Addrs[config.ServiceConsole] = strings.TrimPrefix(p.ConsoleURL, "http://")
	cfg.TLS = config.TLS{CertFile: files.ServerCert, KeyFile: files.ServerKey, CAFile: d.Certs.CACert,
		ClientCertFile: files.ClientCert, ClientKeyFile: files.ClientKey}
	cfg.Peers = []config.Peer{{Name: peer.Name, ServiceURLs: peer.URLs}}
	cfg.SubjectRefKey = refKey
	cfg.MigrateOnStart = true
	cfg.LogLevel = "info"
	if d.opts.PostgresURL != "" {
		u, err := postgresSchemaURL(ctx, d.opts.PostgresURL, d.opts.Schema+"_"+p.Name)
		if err != nil {
			return err
		}
		cfg.DatabaseURL = u
	}
	cfg.RedisURL = d.opts.RedisURL
	if err := applyServingSettings(&cfg, d.opts); err != nil {
		return err
	}
	logw := d.opts.Logs
	if logw == nil {
		f, err := os.OpenFile(d.logPath(p.Name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		d.logs = append(d.logs, f)
		logw = f
	}
	log := slog.New(slog.NewJSONHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n, err := node.New(ctx, node.Options{Config: cfg, Logger: log, Registry: prometheus.NewRegistry(), Build: "demo"})
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.Node = n
	p.stopped = make(chan error, 1)
	go func() { p.stopped <- n.Serve(nctx) }()
	return nil
}

// ports returns the eight listen ports: guest psi, consent, serving,
// console, then the host's.
func (d *Demo) ports() ([]int, error) {
	if d.opts.BasePort > 0 {
		b := d.opts.BasePort
		return []int{b + 1, b + 2, b + 3, b + 4, b + 11, b + 12, b + 13, b + 14}, nil
	}
	var out []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 8 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// devCerts makes the development PKI, or reuses the one an earlier run made.
func devCerts(dir string) (*pki.DevPKI, error) {
	c, err := pki.GenerateDev(dir, []string{guestParty, hostParty, "operator"}, pki.DevOptions{})
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return c, err
	}
	c = &pki.DevPKI{Dir: dir, CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"), Parties: map[string]pki.PartyFiles{}}
	for _, p := range []string{guestParty, hostParty, "operator"} {
		pd := filepath.Join(dir, p)
		c.Parties[p] = pki.PartyFiles{ServerCert: filepath.Join(pd, "server.crt"), ServerKey: filepath.Join(pd, "server.key"),
			ClientCert: filepath.Join(pd, "client.crt"), ClientKey: filepath.Join(pd, "client.key")}
		if _, err := pki.LoadKeyPair(c.Parties[p].ServerCert, c.Parties[p].ServerKey); err != nil {
			return nil, fmt.Errorf("certificates of an earlier run in %s are incomplete (remove the directory): %w", dir, err)
		}
	}
	return c, nil
}

// secretFile returns the hex key in path, creating it (32 random bytes)
// on the first run.
func secretFile(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", err
	}
	v := hex.EncodeToString(k[:])
	return v, os.WriteFile(path, []byte(v+"\n"), 0o600)
}

// waitReady polls GET /ready until it answers 200.
func waitReady(ctx context.Context, c *apiclient.Client) error { return waitFor(ctx, c, "/ready") }

// waitFor polls GET path until it answers 200.
func waitFor(ctx context.Context, c *apiclient.Client, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		if _, last = c.Do(ctx, "GET", path, nil, nil); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// forEach runs f on items with n workers, reporting progress; the first
// error stops it.
func forEach[T any](ctx context.Context, items []T, n int, prog *progress, f func(context.Context, T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan T)
	var (
		mu    sync.Mutex
		first error
		done  int64
		wg    sync.WaitGroup
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				err := f(ctx, it)
				mu.Lock()
				if err != nil && first == nil {
					first = err
					cancel()
				}
				done++
				v := done
				mu.Unlock()
				prog.update(v, int64(len(items)))
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// state is what earlier runs finished, kept in Dir/demo-state.json.
type state struct {
	path string
	mu   sync.Mutex
	// Done maps a stage to its recorded outcome.
	Done map[string]json.RawMessage `json:"done"`
}

func loadState(path string) (*state, error) {
	s := &state{path: path, Done: map[string]json.RawMessage{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("demo state %s is damaged (remove it to start over): %w", path, err)
	}
	if s.Done == nil {
		s.Done = map[string]json.RawMessage{}
	}
	return s, nil
}

// get decodes a stage's recorded outcome into v; false if none.
func (s *state) get(stage string, v any) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.Done[stage]
	return ok && json.Unmarshal(b, v) == nil
}

// put records a stage's outcome.
func (s *state) put(stage string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Done[stage] = b
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

// postgresSchemaURL creates schema in the database of base (if missing)
// and returns base with search_path set to it.
func postgresSchemaURL(ctx context.Context, base, schema string) (string, error) {
	if err := createSchema(ctx, base, schema); err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func validSchema(s string) bool {
	if len(s) == 0 || len(s) > 40 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// setup is what a directory's data depends on: a later run must use the
// same, or the recorded stages would describe other data.
type setup struct {
	Customers          int
	Missing, Withdrawn float64
	Storage            string // digest of the PostgreSQL URL and schema prefix ("" for SQLite)
}

func setupOf(o Options) setup {
	st := setup{Customers: o.Customers, Missing: o.Missing, Withdrawn: o.Withdrawn}
	if o.PostgresURL != "" {
		h := sha256.Sum256([]byte(o.PostgresURL + "\x00" + o.Schema))
		st.Storage = hex.EncodeToString(h[:8])
	}
	return st
}

// checkSetup records the options a directory is set up with, or refuses
// options that differ from those recorded.
func (s *state) checkSetup(o Options) error {
	want := setupOf(o)
	var got setup
	if !s.get("setup", &got) {
		return s.put("setup", want)
	}
	if got != want {
		return fmt.Errorf("%s was set up with other options (customers %d, consent shares %.2f/%.2f, database %s): use another --dir, or remove it to start over",
			o.Dir, got.Customers, got.Missing, got.Withdrawn, storageName(got.Storage))
	}
	return nil
}

func storageName(digest string) string {
	if digest == "" {
		return "SQLite"
	}
	return "a PostgreSQL URL and schema prefix other than these"
}
