package psijob_test

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/keys/sqlkeys"
	"github.com/fedrisk/fedrisk/internal/psi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/sqlpsi"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// localPeer is psijob.Peer calling a host's Sessions in process, as party.
type localPeer struct {
	h     *psijob.Sessions
	party string
	sent  sync.Map // batch → times sent
	// hook, if set, runs before every call (to fail or count).
	hook func(call string, batch int) error
}

func (p *localPeer) before(call string, b int) error {
	if p.hook != nil {
		return p.hook(call, b)
	}
	return nil
}

func (p *localPeer) Open(ctx context.Context, r psijob.OpenRequest) (psijob.OpenResponse, error) {
	if err := p.before("open", -1); err != nil {
		return psijob.OpenResponse{}, err
	}
	return p.h.Open(ctx, p.party, r)
}

func (p *localPeer) SendBatch(ctx context.Context, s string, b int, points []byte) ([]byte, error) {
	if err := p.before("guest", b); err != nil {
		return nil, err
	}
	v, _ := p.sent.LoadOrStore(b, new(atomic.Int32))
	v.(*atomic.Int32).Add(1)
	return p.h.GuestBatch(ctx, p.party, s, b, points)
}

func (p *localPeer) ShuffledTags(ctx context.Context, s string, b int) ([]byte, error) {
	if err := p.before("shuffled", b); err != nil {
		return nil, err
	}
	return p.h.ShuffledTags(ctx, p.party, s, b)
}

func (p *localPeer) HostBatch(ctx context.Context, s string, b int) ([]byte, error) {
	if err := p.before("host", b); err != nil {
		return nil, err
	}
	return p.h.HostBatch(ctx, p.party, s, b)
}

func (p *localPeer) Reveal(ctx context.Context, s string, b int, positions []int) error {
	if err := p.before("reveal", b); err != nil {
		return err
	}
	return p.h.Reveal(ctx, p.party, s, b, positions)
}

func (p *localPeer) Finish(ctx context.Context, s string, f psijob.FinishRequest) error {
	if err := p.before("finish", -1); err != nil {
		return err
	}
	return p.h.Finish(ctx, p.party, s, f)
}

func (p *localPeer) Cancel(ctx context.Context, s, code, reason string) error {
	return p.h.Cancel(ctx, p.party, s, code, reason)
}

// side is one party's PSI domain on its own SQLite database.
type side struct {
	store    *sqlpsi.Store
	keys     *keys.Manager
	runner   *psijob.Runner
	sessions *psijob.Sessions
	jobs     *psijob.Service
	dir      string
}

func newSide(t *testing.T, peer string, dial psijob.PeerDialer, opts psijob.Options) *side {
	t.Helper()
	db := sqldbtest.OpenSQLite(t, true)
	root := make([]byte, 32)
	rand.Read(root)
	km, err := keys.New(context.Background(), sqlkeys.New(db), root, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &side{store: sqlpsi.New(db), keys: km, dir: t.TempDir()}
	inputs := psijob.Inputs{Tables: sqlpsi.NewTables(db), Reserved: sqlpsi.Reserved(), Dir: s.dir}
	s.runner = psijob.NewRunner(psijob.RunnerDeps{Store: s.store, Inputs: inputs, Peers: dial, Sealer: km}, opts)
	s.sessions = psijob.NewSessions(psijob.SessionsDeps{Store: s.store, Inputs: inputs, Sealer: km,
		Allowed: func(p string) bool { return p == peer }}, opts)
	s.jobs = psijob.NewService(psijob.ServiceDeps{Store: s.store, Inputs: inputs, Runner: s.runner, Sessions: s.sessions, Sealer: km,
		Peers: map[string]string{peer: "http://" + peer + ".invalid"}}, opts)
	return s
}

func (s *side) csv(t *testing.T, name string, ids []string) string {
	t.Helper()
	path := filepath.Join(s.dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	w.Write([]string{"name", "id"})
	for i, id := range ids {
		w.Write([]string{fmt.Sprint("n", i), id})
	}
	w.Flush()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// pair is a guest and a host wired in process.
type pair struct {
	guest, host *side
	peer        *localPeer
}

func newPair(t *testing.T, opts psijob.Options) *pair {
	p := &pair{}
	p.host = newSide(t, "bank", nil, opts)
	p.peer = &localPeer{h: p.host.sessions, party: "bank"}
	p.guest = newSide(t, "partner", func(psijob.Job) (psijob.Peer, error) { return p.peer, nil }, opts)
	return p
}

var norm = psi.Normalization{Trim: true}

func (p *pair) jobs(t *testing.T, guestIDs, hostIDs []string, mode psijob.Mode) (guest, host psijob.Job) {
	t.Helper()
	ctx := context.Background()
	h, err := p.host.jobs.Create(ctx, psijob.CreateRequest{Role: psijob.RoleHost, Peer: "bank", Mode: mode, Normalization: norm,
		Input: psijob.Input{Kind: psijob.InputCSV, Path: p.host.csv(t, "host.csv", hostIDs), Column: "id"}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.guest.jobs.Create(ctx, psijob.CreateRequest{Role: psijob.RoleGuest, Peer: "partner", Mode: mode, Normalization: norm,
		Input: psijob.Input{Kind: psijob.InputCSV, Path: p.guest.csv(t, "guest.csv", guestIDs), Column: "id"}})
	if err != nil {
		t.Fatal(err)
	}
	return g, h
}

// reference is the plaintext intersection: guest rows (first occurrence
// of each normalised identifier) whose identifier the host has.
func reference(guest, host []string) (rows []int, ids []string) {
	hs := map[string]bool{}
	for _, h := range host {
		if n, err := norm.Apply(h); err == nil {
			hs[n] = true
		}
	}
	seen := map[string]bool{}
	for i, g := range guest {
		n, err := norm.Apply(g)
		if err != nil || seen[n] {
			continue
		}
		seen[n] = true
		if hs[n] {
			rows = append(rows, i)
			ids = append(ids, n)
		}
	}
	return rows, ids
}

func randomIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		var b [6]byte
		rand.Read(b[:])
		out[i] = fmt.Sprintf("%s-%x", prefix, b)
	}
	return out
}

func exported(t *testing.T, s *side, id string) (rows []int, ids []string) {
	t.Helper()
	err := s.jobs.Export(context.Background(), id, func(r psijob.ResultRow) error {
		rows = append(rows, r.Row)
		ids = append(ids, r.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows, ids
}

func TestIntersectionInProcess(t *testing.T) {
	common := randomIDs("c", 150)
	tests := []struct {
		name        string
		guest, host []string
	}{
		{"overlap", append(randomIDs("g", 100), common...), append(common[:120], randomIDs("h", 90)...)},
		{"duplicates and blanks", append([]string{" x1", "x1", "X1", "", "   ", "x2"}, common[:10]...), append([]string{"x1 ", "x1", "X1"}, common[5:30]...)},
		{"unicode", []string{"张三-110101", "Ölçü", "ß", "😀", "plain"}, []string{"😀", "Ölçü", "张三-110101", "SS"}},
		{"empty guest", nil, common},
		{"empty host", common, nil},
		{"disjoint", randomIDs("a", 70), randomIDs("b", 70)},
		{"identical", common, common},
	}
	for _, mode := range []psijob.Mode{psijob.ModeIntersection, psijob.ModeCardinality} {
		for _, tt := range tests {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				p := newPair(t, psijob.Options{BatchSize: 32, Window: 3})
				g, h := p.jobs(t, tt.guest, tt.host, mode)
				got, err := p.guest.runner.Run(context.Background(), g.ID)
				if err != nil {
					t.Fatal(err)
				}
				wantRows, wantIDs := reference(tt.guest, tt.host)
				if got.Status != psijob.StatusDone || got.IntersectionSize == nil || *got.IntersectionSize != int64(len(wantRows)) {
					t.Fatalf("job %s (%s), size %v, want %d", got.Status, got.Error, got.IntersectionSize, len(wantRows))
				}
				if mode == psijob.ModeIntersection {
					rows, ids := exported(t, p.guest, g.ID)
					if !slices.Equal(rows, wantRows) || !slices.Equal(ids, wantIDs) {
						t.Errorf("rows %v ids %v\nwant %v %v", rows, ids, wantRows, wantIDs)
					}
				} else if err := p.guest.jobs.Export(context.Background(), g.ID, func(psijob.ResultRow) error { return nil }); !errors.Is(err, psijob.ErrNoRows) {
					t.Errorf("cardinality export: %v", err)
				}
				hj, _ := p.host.store.GetJob(context.Background(), h.ID)
				if hj.Status != psijob.StatusDone || hj.IntersectionSize != nil || hj.PeerCount != got.LocalCount || got.PeerCount != hj.LocalCount {
					t.Errorf("host job: %+v", hj)
				}
				if got.DoneItems != got.TotalItems {
					t.Errorf("progress %d/%d at the end", got.DoneItems, got.TotalItems)
				}
			})
		}
	}
}

func TestResumeInProcess(t *testing.T) {
	p := newPair(t, psijob.Options{BatchSize: 16, Window: 1})
	guest := append(randomIDs("g", 100), randomIDs("c", 60)...)
	host := append(slices.Clone(guest[100:]), randomIDs("h", 50)...)
	g, h := p.jobs(t, guest, host, psijob.ModeIntersection)
	ctx, cancel := context.WithCancel(context.Background())
	const k = 4
	var calls atomic.Int32
	p.peer.hook = func(call string, b int) error {
		if call == "guest" && calls.Add(1) > k {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	if _, err := p.guest.runner.Run(ctx, g.ID); !errors.Is(err, psijob.ErrInterrupted) {
		t.Fatalf("killed run: %v", err)
	}
	cps, _ := p.guest.store.Checkpoints(context.Background(), g.ID, psijob.PhaseGuestTags)
	if len(cps) != k {
		t.Fatalf("%d checkpoints after %d batches", len(cps), k)
	}
	first := map[int]time.Time{}
	for _, c := range cps {
		first[c.Batch] = c.CreatedAt
	}
	p.peer.hook = nil
	j, err := p.guest.runner.Run(context.Background(), g.ID)
	if err != nil || j.Status != psijob.StatusDone {
		t.Fatalf("resumed run: %v %+v", err, j)
	}
	wantRows, _ := reference(guest, host)
	if *j.IntersectionSize != int64(len(wantRows)) {
		t.Errorf("size %d, want %d", *j.IntersectionSize, len(wantRows))
	}
	rows, _ := exported(t, p.guest, g.ID)
	if !slices.Equal(rows, wantRows) {
		t.Errorf("rows differ after resume")
	}
	for b := range k {
		v, _ := p.peer.sent.Load(b)
		if n := v.(*atomic.Int32).Load(); n != 1 {
			t.Errorf("batch %d sent %d times", b, n)
		}
	}
	hj, _ := p.host.store.GetJob(context.Background(), h.ID)
	if hj.Status != psijob.StatusDone {
		t.Errorf("host job %s", hj.Status)
	}
}

func TestCancelFromEitherSide(t *testing.T) {
	for _, side := range []string{"guest", "host"} {
		t.Run(side, func(t *testing.T) {
			p := newPair(t, psijob.Options{BatchSize: 8, Window: 1})
			g, h := p.jobs(t, randomIDs("g", 100), randomIDs("h", 100), psijob.ModeIntersection)
			ctx := context.Background()
			var once sync.Once
			p.peer.hook = func(call string, b int) error {
				if call == "guest" && b == 3 {
					once.Do(func() {
						var err error
						if side == "guest" {
							_, err = p.guest.jobs.Cancel(ctx, g.ID, "test")
						} else {
							_, err = p.host.jobs.Cancel(ctx, h.ID, "test")
						}
						if err != nil {
							t.Error(err)
						}
					})
				}
				return nil
			}
			j, _ := p.guest.runner.Run(ctx, g.ID)
			if j.Status != psijob.StatusCancelled {
				t.Fatalf("guest job %s: %s", j.Status, j.Error)
			}
			if side == "host" && !strings.Contains(j.Error, "cancelled by partner") {
				t.Errorf("guest reason: %q", j.Error)
			}
			hj, _ := p.host.store.GetJob(ctx, h.ID)
			if hj.Status != psijob.StatusCancelled {
				t.Errorf("host job %s (%s)", hj.Status, hj.Error)
			}
			sess, err := p.host.store.GetSession(ctx, hj.Session)
			if err != nil || sess.Status != psijob.SessionAborted || sess.Code != "cancelled" || sess.KeyEnc != nil {
				t.Errorf("session after cancel: %+v %v", sess, err)
			}
		})
	}
}

func TestHostRefusals(t *testing.T) {
	p := newPair(t, psijob.Options{BatchSize: 8})
	ctx := context.Background()
	g, _ := p.jobs(t, randomIDs("g", 20), randomIDs("h", 20), psijob.ModeIntersection)
	base := psijob.OpenRequest{Version: psijob.ProtocolVersion, Mode: psijob.ModeIntersection, GuestCount: 20, BatchSize: 8, Normalization: norm.Fingerprint()}
	other := base
	other.Normalization = psi.Normalization{Trim: true, CaseFold: true}.Fingerprint()
	if _, err := p.host.sessions.Open(ctx, "bank", other); !errors.Is(err, psijob.ErrMismatch) {
		t.Errorf("normalisation mismatch: %v", err)
	}
	if _, err := p.host.sessions.Open(ctx, "stranger", base); err == nil {
		t.Error("an unregistered party opened a session")
	}
	resp, err := p.host.sessions.Open(ctx, "bank", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.host.sessions.Open(ctx, "bank", base); !errors.Is(err, psijob.ErrNoHostJob) {
		t.Errorf("second session on one host job: %v", err)
	}
	_ = g
	// Another party may not use the session, nor can anyone guess it.
	if _, err := p.host.sessions.HostBatch(ctx, "telco", resp.Session, 0); !errors.Is(err, psijob.ErrSessionNotFound) {
		t.Errorf("other party: %v", err)
	}
	if _, err := p.host.sessions.HostBatch(ctx, "bank", strings.Repeat("0", 32), 0); !errors.Is(err, psijob.ErrSessionNotFound) {
		t.Errorf("unknown session: %v", err)
	}
	key, _ := psi.NewKey()
	points := make([]byte, 8*32)
	ids := make([][]byte, 8)
	for i := range ids {
		ids[i] = []byte(fmt.Sprint("x", i))
	}
	key.HashAndBlind(psi.DST([]byte(resp.Session)), ids, points)
	if tags, err := p.host.sessions.GuestBatch(ctx, "bank", resp.Session, 0, points); err != nil || len(tags) != 8*resp.TagLen {
		t.Fatalf("batch 0: %d %v", len(tags), err)
	}
	if _, err := p.host.sessions.GuestBatch(ctx, "bank", resp.Session, 0, points); err != nil {
		t.Errorf("an identical replay is answered again: %v", err)
	}
	changed := slices.Clone(points)
	key.HashAndBlind(psi.DST([]byte(resp.Session)), ids[:1], changed[:32])
	changed[0], changed[32] = changed[32], changed[0]
	copy(changed[:32], points[32:64])
	if _, err := p.host.sessions.GuestBatch(ctx, "bank", resp.Session, 0, changed); !errors.Is(err, psijob.ErrProtocol) {
		t.Errorf("replay with other content: %v", err)
	}
	var ce *psijob.ClosedError
	if _, err := p.host.sessions.HostBatch(ctx, "bank", resp.Session, 0); !errors.As(err, &ce) || ce.Code != "aborted" {
		t.Errorf("after the abort: %v", err)
	}
}

func TestInvalidPointsAbort(t *testing.T) {
	identity := make([]byte, 32)
	nonCanonical := make([]byte, 32)
	for i := range nonCanonical {
		nonCanonical[i] = 0xff
	}
	for name, bad := range map[string][]byte{"identity": identity, "non-canonical": nonCanonical} {
		t.Run(name, func(t *testing.T) {
			p := newPair(t, psijob.Options{BatchSize: 4})
			p.jobs(t, randomIDs("g", 4), randomIDs("h", 4), psijob.ModeIntersection)
			ctx := context.Background()
			resp, err := p.host.sessions.Open(ctx, "bank", psijob.OpenRequest{Version: 1, Mode: psijob.ModeIntersection, GuestCount: 4, BatchSize: 4, Normalization: norm.Fingerprint()})
			if err != nil {
				t.Fatal(err)
			}
			key, _ := psi.NewKey()
			points := make([]byte, 4*32)
			key.HashAndBlind(psi.DST([]byte(resp.Session)), [][]byte{{1}, {2}, {3}, {4}}, points)
			copy(points[64:], bad)
			_, err = p.host.sessions.GuestBatch(ctx, "bank", resp.Session, 0, points)
			if !errors.Is(err, psi.ErrInvalidPoint) || !errors.Is(err, psijob.ErrProtocol) {
				t.Fatalf("invalid point: %v", err)
			}
			s, _ := p.host.store.GetSession(ctx, resp.Session)
			if s.Status != psijob.SessionAborted || !strings.Contains(s.Reason, "invalid") {
				t.Errorf("session: %s %q", s.Status, s.Reason)
			}
		})
	}
}

func TestGuestDetectsBadHost(t *testing.T) {
	p := newPair(t, psijob.Options{BatchSize: 8, PeerDeadline: time.Second})
	g, h := p.jobs(t, randomIDs("g", 20), randomIDs("h", 20), psijob.ModeIntersection)
	bad := &corruptPeer{localPeer: p.peer}
	p.guest.runner = psijob.NewRunner(psijob.RunnerDeps{Store: p.guest.store, Inputs: psijob.Inputs{Dir: p.guest.dir}, Peers: func(psijob.Job) (psijob.Peer, error) { return bad, nil }, Sealer: p.guest.keys}, psijob.Options{BatchSize: 8})
	j, err := p.guest.runner.Run(context.Background(), g.ID)
	if err != nil || j.Status != psijob.StatusFailed || !strings.Contains(j.Error, "invalid point") {
		t.Fatalf("guest: %v %s %q", err, j.Status, j.Error)
	}
	hj, _ := p.host.store.GetJob(context.Background(), h.ID)
	if hj.Status != psijob.StatusFailed || !strings.Contains(hj.Error, "aborted by the guest") {
		t.Errorf("host job: %s %q", hj.Status, hj.Error)
	}
}

// corruptPeer replaces the host's first point with the identity.
type corruptPeer struct{ *localPeer }

func (c *corruptPeer) HostBatch(ctx context.Context, s string, b int) ([]byte, error) {
	pts, err := c.localPeer.HostBatch(ctx, s, b)
	if err == nil && len(pts) >= 32 {
		clear(pts[:32])
	}
	return pts, err
}

func TestDeadHostFailsWithinDeadline(t *testing.T) {
	p := newPair(t, psijob.Options{BatchSize: 8, PeerDeadline: 500 * time.Millisecond, CallTimeout: 200 * time.Millisecond})
	g, _ := p.jobs(t, randomIDs("g", 40), randomIDs("h", 40), psijob.ModeIntersection)
	p.peer.hook = func(call string, b int) error {
		if call == "guest" && b >= 2 {
			return &psijob.PeerError{Temporary: true, Err: errors.New("connection refused")}
		}
		return nil
	}
	start := time.Now()
	j, err := p.guest.runner.Run(context.Background(), g.ID)
	if err != nil || j.Status != psijob.StatusFailed || !strings.Contains(j.Error, "did not answer") {
		t.Fatalf("%v %s %q", err, j.Status, j.Error)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestSessionExpiry(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p := newPair(t, psijob.Options{BatchSize: 8, IdleTimeout: time.Minute, Now: clock})
	_, h := p.jobs(t, randomIDs("g", 20), randomIDs("h", 20), psijob.ModeIntersection)
	ctx := context.Background()
	resp, err := p.host.sessions.Open(ctx, "bank", psijob.OpenRequest{Version: 1, Mode: psijob.ModeIntersection, GuestCount: 20, BatchSize: 8, Normalization: norm.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	p.host.sessions.Expire(ctx)
	if _, err := p.host.sessions.HostBatch(ctx, "bank", resp.Session, 0); !errors.Is(err, psijob.ErrSessionNotFound) {
		t.Errorf("expired session answered: %v", err)
	}
	hj, _ := p.host.store.GetJob(ctx, h.ID)
	if hj.Status != psijob.StatusPending || hj.Session != "" {
		t.Errorf("host job after expiry: %s %q", hj.Status, hj.Session)
	}
}

func TestCreateValidation(t *testing.T) {
	p := newPair(t, psijob.Options{})
	ctx := context.Background()
	good := psijob.CreateRequest{Role: psijob.RoleGuest, Peer: "partner", Input: psijob.Input{Kind: psijob.InputCSV, Path: p.guest.csv(t, "ok.csv", []string{"a"}), Column: "id"}, Normalization: norm}
	if _, err := p.guest.jobs.Create(ctx, good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mut  func(r *psijob.CreateRequest)
	}{
		{"unknown peer", func(r *psijob.CreateRequest) { r.Peer = "nobody" }},
		{"bad mode", func(r *psijob.CreateRequest) { r.Mode = "union" }},
		{"relative path", func(r *psijob.CreateRequest) { r.Input.Path = "ids.csv" }},
		{"missing file", func(r *psijob.CreateRequest) { r.Input.Path = "/nonexistent/ids.csv" }},
		{"missing column", func(r *psijob.CreateRequest) { r.Input.Column = "phone" }},
		{"table injection", func(r *psijob.CreateRequest) {
			r.Input = psijob.Input{Kind: psijob.InputTable, Table: "x; DROP TABLE y", Column: "id"}
		}},
		{"reserved table", func(r *psijob.CreateRequest) {
			r.Input = psijob.Input{Kind: psijob.InputTable, Table: "api_tokens", Column: "name"}
		}},
		{"unknown table", func(r *psijob.CreateRequest) {
			r.Input = psijob.Input{Kind: psijob.InputTable, Table: "customers", Column: "id"}
		}},
		{"purpose without consent", func(r *psijob.CreateRequest) { r.Purpose = "credit_risk_assessment" }},
		{"batch size", func(r *psijob.CreateRequest) { r.BatchSize = psijob.MaxBatchSize + 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.mut(&r)
			if _, err := p.guest.jobs.Create(ctx, r); err == nil {
				t.Error("accepted")
			}
		})
	}
	{
		r := good
		r.Peer = "http://nobody.invalid"
		if _, err := p.guest.jobs.Create(ctx, r); err == nil {
			t.Error("a URL no peer has was accepted")
		}
	}
	byURL := good
	byURL.Peer = "http://partner.invalid/"
	j, err := p.guest.jobs.Create(ctx, byURL)
	if err != nil || j.Peer.Party != "partner" {
		t.Errorf("peer named by URL: %+v %v", j.Peer, err)
	}
	jobs, _ := p.guest.jobs.List(ctx, psijob.JobFilter{})
	if len(jobs) != 2 {
		t.Errorf("%d jobs stored", len(jobs))
	}
}

func TestLoadElements(t *testing.T) {
	s := newSide(t, "x", nil, psijob.Options{})
	path := s.csv(t, "in.csv", []string{" a", "a", "B", "", "b", "c", strings.Repeat("z", 2000)})
	el, err := psijob.LoadElements(context.Background(), psijob.Inputs{Dir: s.dir}, psijob.Input{Kind: psijob.InputCSV, Path: path, Column: "id"},
		psi.Normalization{Trim: true, CaseFold: true}, func(ctx context.Context, raw []string) ([]bool, error) {
			out := make([]bool, len(raw))
			for i, r := range raw {
				out[i] = r != "c"
			}
			return out, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(el.IDs) != "[a b]" || fmt.Sprint(el.Rows) != "[0 2]" || el.Duplicates != 2 || el.Invalid != 2 || el.Excluded != 1 || el.RowsRead != 7 {
		t.Errorf("%+v", el)
	}
	ids := append([]string(nil), el.IDs...)
	sort.Strings(ids)
}

// handleCodec stands in for a core that can marshal keys: it keeps the
// keys in memory behind random handles, so the store path (encrypted key,
// permutations, restore) runs as it would with real key bytes.
type handleCodec struct {
	mu   sync.Mutex
	keys map[string]*psi.Key
}

func (c *handleCodec) Marshal(k *psi.Key) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var h [16]byte
	rand.Read(h[:])
	if c.keys == nil {
		c.keys = map[string]*psi.Key{}
	}
	c.keys[string(h[:])] = k
	return h[:], nil
}

func (c *handleCodec) Unmarshal(b []byte) (*psi.Key, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.keys[string(b)]
	if !ok {
		return nil, errors.New("unknown key")
	}
	return k, nil
}

// TestResumeWithPersistedKeys: when keys can be stored, a new runner and a
// new session manager (both processes restarted) continue the same session
// from the checkpoints.
func TestResumeWithPersistedKeys(t *testing.T) {
	codec := &handleCodec{}
	opts := psijob.Options{BatchSize: 16, Window: 1}
	p := newPair(t, opts)
	guest := append(randomIDs("g", 100), randomIDs("c", 60)...)
	host := append(slices.Clone(guest[100:]), randomIDs("h", 50)...)
	for _, mode := range []psijob.Mode{psijob.ModeIntersection, psijob.ModeCardinality, psijob.ModeBoth} {
		t.Run(string(mode), func(t *testing.T) {
			g, h := p.jobs(t, guest, host, mode)
			restart := func() {
				p.host.sessions = psijob.NewSessions(psijob.SessionsDeps{Store: p.host.store, Inputs: psijob.Inputs{Dir: p.host.dir}, Sealer: p.host.keys, Codec: codec,
					Allowed: func(s string) bool { return s == "bank" }}, opts)
				p.peer.h = p.host.sessions
				p.guest.runner = psijob.NewRunner(psijob.RunnerDeps{Store: p.guest.store, Inputs: psijob.Inputs{Dir: p.guest.dir},
					Peers: func(psijob.Job) (psijob.Peer, error) { return p.peer, nil }, Sealer: p.guest.keys, Codec: codec}, opts)
			}
			restart()
			ctx, cancel := context.WithCancel(context.Background())
			var calls atomic.Int32
			p.peer.sent = sync.Map{}
			p.peer.hook = func(call string, b int) error {
				if call == "guest" && calls.Add(1) > 4 {
					cancel()
					return ctx.Err()
				}
				return nil
			}
			if _, err := p.guest.runner.Run(ctx, g.ID); !errors.Is(err, psijob.ErrInterrupted) {
				t.Fatalf("killed run: %v", err)
			}
			before, _ := p.guest.store.GetJob(context.Background(), g.ID)
			if before.KeyEnc == nil {
				t.Fatal("the guest's key was not stored")
			}
			p.peer.hook = nil
			restart() // both sides lose everything in memory
			j, err := p.guest.runner.Run(context.Background(), g.ID)
			if err != nil || j.Status != psijob.StatusDone {
				t.Fatalf("resumed: %v %s %s", err, j.Status, j.Error)
			}
			if j.Session != before.Session {
				t.Errorf("a new session was opened instead of resuming")
			}
			wantRows, _ := reference(guest, host)
			if *j.IntersectionSize != int64(len(wantRows)) {
				t.Errorf("size %d, want %d", *j.IntersectionSize, len(wantRows))
			}
			for b := range 4 {
				v, _ := p.peer.sent.Load(b)
				if n := v.(*atomic.Int32).Load(); n != 1 {
					t.Errorf("batch %d sent %d times", b, n)
				}
			}
			if hj, _ := p.host.store.GetJob(context.Background(), h.ID); hj.Status != psijob.StatusDone {
				t.Errorf("host job %s", hj.Status)
			}
			if mode == psijob.ModeBoth { // the restored host session maps the reveals to its rows
				wantHost, _ := reference(host, guest)
				if rows, _ := exported(t, p.host, h.ID); !slices.Equal(rows, wantHost) {
					t.Errorf("host rows %v, want %v", rows, wantHost)
				}
			}
			if j.KeyEnc != nil {
				t.Error("the finished job kept its session key")
			}
		})
	}
}

// TestBothLearnInProcess: in mode both each party ends with its own rows of
// the intersection, exactly the plaintext ones.
func TestBothLearnInProcess(t *testing.T) {
	common := randomIDs("c", 150)
	tests := []struct {
		name        string
		guest, host []string
	}{
		{"overlap", append(randomIDs("g", 100), common...), append(slices.Clone(common[:120]), randomIDs("h", 90)...)},
		{"duplicates and blanks", append([]string{" x1", "x1", "X1", "", "   ", "x2"}, common[:10]...), append([]string{"q", "x1 ", "x1", "X1", ""}, common[5:30]...)},
		{"unicode", []string{"张三-110101", "Ölçü", "ß", "😀", "plain"}, []string{"😀", "Ölçü", "张三-110101", "SS"}},
		{"empty guest", nil, common},
		{"empty host", common, nil},
		{"disjoint", randomIDs("a", 70), randomIDs("b", 70)},
		{"identical", common, common},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, psijob.Options{BatchSize: 16, Window: 3, ResultChunk: 7})
			g, h := p.jobs(t, tt.guest, tt.host, psijob.ModeBoth)
			got, err := p.guest.runner.Run(context.Background(), g.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantRows, wantIDs := reference(tt.guest, tt.host)
			if got.Status != psijob.StatusDone || got.IntersectionSize == nil || *got.IntersectionSize != int64(len(wantRows)) {
				t.Fatalf("guest job %s (%s), size %v, want %d", got.Status, got.Error, got.IntersectionSize, len(wantRows))
			}
			rows, ids := exported(t, p.guest, g.ID)
			if !slices.Equal(rows, wantRows) || !slices.Equal(ids, wantIDs) {
				t.Errorf("guest rows %v ids %v\nwant %v %v", rows, ids, wantRows, wantIDs)
			}
			hostRows, hostIDs := reference(tt.host, tt.guest)
			hj, _ := p.host.store.GetJob(context.Background(), h.ID)
			if hj.Status != psijob.StatusDone || hj.IntersectionSize == nil || *hj.IntersectionSize != int64(len(hostRows)) {
				t.Fatalf("host job %s (%s), size %v, want %d", hj.Status, hj.Error, hj.IntersectionSize, len(hostRows))
			}
			rows, ids = exported(t, p.host, h.ID)
			if !slices.Equal(rows, hostRows) || !slices.Equal(ids, hostIDs) {
				t.Errorf("host rows %v ids %v\nwant %v %v", rows, ids, hostRows, hostIDs)
			}
			if hr, err := p.host.jobs.Rows(context.Background(), h.ID); err != nil || !slices.Equal(hr, hostRows) {
				t.Errorf("host Rows: %v %v", hr, err)
			}
			sess, _ := p.host.store.GetSession(context.Background(), hj.Session)
			if reveals, _ := p.host.store.SessionReveals(context.Background(), sess.ID); sess.Status != psijob.SessionDone || len(reveals) != 0 {
				t.Errorf("session %s with %d reveals kept", sess.Status, len(reveals))
			}
		})
	}
}

// TestBothLearnResume kills the guest during the reveal: the resumed run
// sends the missing reveal batches and both results are exact.
func TestBothLearnResume(t *testing.T) {
	p := newPair(t, psijob.Options{BatchSize: 8, Window: 1})
	guest := append(randomIDs("g", 40), randomIDs("c", 60)...)
	host := append(slices.Clone(guest[40:]), randomIDs("h", 30)...)
	g, h := p.jobs(t, guest, host, psijob.ModeBoth)
	ctx, cancel := context.WithCancel(context.Background())
	var reveals sync.Map
	p.peer.hook = func(call string, b int) error {
		if call != "reveal" {
			return nil
		}
		v, _ := reveals.LoadOrStore(b, new(atomic.Int32))
		v.(*atomic.Int32).Add(1)
		if b == 3 {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	if _, err := p.guest.runner.Run(ctx, g.ID); !errors.Is(err, psijob.ErrInterrupted) {
		t.Fatalf("killed run: %v", err)
	}
	cps, _ := p.guest.store.Checkpoints(context.Background(), g.ID, psijob.PhaseReveal)
	if len(cps) != 3 {
		t.Fatalf("%d reveal checkpoints, want 3", len(cps))
	}
	p.peer.hook = func(call string, b int) error {
		if call == "reveal" {
			v, _ := reveals.LoadOrStore(b, new(atomic.Int32))
			v.(*atomic.Int32).Add(1)
		}
		return nil
	}
	j, err := p.guest.runner.Run(context.Background(), g.ID)
	if err != nil || j.Status != psijob.StatusDone {
		t.Fatalf("resumed: %v %s %s", err, j.Status, j.Error)
	}
	for b := range 3 {
		v, _ := reveals.Load(b)
		if n := v.(*atomic.Int32).Load(); n != 1 {
			t.Errorf("reveal batch %d sent %d times", b, n)
		}
	}
	wantRows, _ := reference(host, guest)
	rows, _ := exported(t, p.host, h.ID)
	if !slices.Equal(rows, wantRows) {
		t.Errorf("host rows after resume: %v, want %v", rows, wantRows)
	}
}

func TestModeMismatch(t *testing.T) {
	tests := []struct{ host, guest psijob.Mode }{
		{psijob.ModeBoth, psijob.ModeIntersection},
		{psijob.ModeBoth, psijob.ModeCardinality},
		{psijob.ModeIntersection, psijob.ModeBoth},
		{psijob.ModeCardinality, psijob.ModeBoth},
		{psijob.ModeCardinality, psijob.ModeIntersection},
	}
	p := newPair(t, psijob.Options{BatchSize: 8})
	for _, tt := range tests {
		t.Run(string(tt.host)+"/"+string(tt.guest), func(t *testing.T) {
			ctx := context.Background()
			h, err := p.host.jobs.Create(ctx, psijob.CreateRequest{Role: psijob.RoleHost, Peer: "bank", Mode: tt.host, Normalization: norm,
				Input: psijob.Input{Kind: psijob.InputCSV, Path: p.host.csv(t, "host.csv", randomIDs("h", 10)), Column: "id"}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.host.sessions.Open(ctx, "bank", psijob.OpenRequest{Version: 1, Mode: tt.guest, GuestCount: 10, BatchSize: 8, Normalization: norm.Fingerprint()})
			if !errors.Is(err, psijob.ErrMismatch) || !strings.Contains(err.Error(), "mode") {
				t.Fatalf("open: %v", err)
			}
			if hj, _ := p.host.store.GetJob(ctx, h.ID); hj.Status != psijob.StatusPending {
				t.Errorf("the refused host job is %s", hj.Status)
			}
			// Through the runner, the guest's job fails with the reason.
			g, err := p.guest.jobs.Create(ctx, psijob.CreateRequest{Role: psijob.RoleGuest, Peer: "partner", Mode: tt.guest, Normalization: norm,
				Input: psijob.Input{Kind: psijob.InputCSV, Path: p.guest.csv(t, "guest.csv", randomIDs("g", 10)), Column: "id"}})
			if err != nil {
				t.Fatal(err)
			}
			j, _ := p.guest.runner.Run(ctx, g.ID)
			if j.Status != psijob.StatusFailed || !strings.Contains(j.Error, "mode") {
				t.Errorf("guest job %s: %q", j.Status, j.Error)
			}
			if _, err := p.host.jobs.Cancel(ctx, h.ID, "test"); err != nil {
				t.Fatal(err)
			}
		})
	}
	// With one job of each mode pending, the handshake picks the one that fits.
	guest, host := randomIDs("g", 30), randomIDs("h", 20)
	host = append(host, guest[:7]...)
	inter, _ := p.host.jobs.Create(context.Background(), psijob.CreateRequest{Role: psijob.RoleHost, Peer: "bank", Mode: psijob.ModeIntersection, Normalization: norm,
		Input: psijob.Input{Kind: psijob.InputCSV, Path: p.host.csv(t, "i.csv", host), Column: "id"}})
	g, h := p.jobs(t, guest, host, psijob.ModeBoth)
	j, err := p.guest.runner.Run(context.Background(), g.ID)
	if err != nil || j.Status != psijob.StatusDone || *j.IntersectionSize != 7 {
		t.Fatalf("guest: %v %s %q", err, j.Status, j.Error)
	}
	if hj, _ := p.host.store.GetJob(context.Background(), h.ID); hj.Status != psijob.StatusDone || *hj.IntersectionSize != 7 {
		t.Errorf("both host job: %s %v", hj.Status, hj.IntersectionSize)
	}
	if ij, _ := p.host.store.GetJob(context.Background(), inter.ID); ij.Status != psijob.StatusPending {
		t.Errorf("the intersection host job was used: %s", ij.Status)
	}
}

// TestForgedReveals: whatever breaks the reveal rules aborts the session
// and fails the host job.
func TestForgedReveals(t *testing.T) {
	type step func(ctx context.Context, s *psijob.Sessions, id string) error
	reveal := func(b int, pos ...int) step {
		return func(ctx context.Context, s *psijob.Sessions, id string) error {
			return s.Reveal(ctx, "bank", id, b, pos)
		}
	}
	finish := func(batches, revealed int) step {
		return func(ctx context.Context, s *psijob.Sessions, id string) error {
			return s.Finish(ctx, "bank", id, psijob.FinishRequest{RevealBatches: batches, Revealed: revealed})
		}
	}
	tests := []struct {
		name  string
		mode  psijob.Mode
		steps []step // the last one must fail
	}{
		{"position out of range", psijob.ModeBoth, []step{reveal(0, 3, 20)}},
		{"negative position", psijob.ModeBoth, []step{reveal(0, -1)}},
		{"not ascending", psijob.ModeBoth, []step{reveal(0, 5, 2)}},
		{"repeated position", psijob.ModeBoth, []step{reveal(0, 2, 2)}},
		{"empty batch", psijob.ModeBoth, []step{reveal(0)}},
		{"too many positions", psijob.ModeBoth, []step{reveal(0, 0, 1, 2, 3, 4, 5, 6, 7, 8)}},
		{"batch beyond the set", psijob.ModeBoth, []step{reveal(3, 1)}},
		{"replay with other positions", psijob.ModeBoth, []step{reveal(0, 1, 2), reveal(0, 1, 3)}},
		{"repeat across batches", psijob.ModeBoth, []step{reveal(0, 1, 2), reveal(1, 2), finish(2, 3)}},
		{"missing batch", psijob.ModeBoth, []step{reveal(1, 9), finish(2, 1)}},
		{"wrong count", psijob.ModeBoth, []step{reveal(0, 1, 2), finish(1, 3)}},
		{"more than the guest has", psijob.ModeBoth, []step{finish(1, 11)}},
		{"reveal outside both mode", psijob.ModeIntersection, []step{reveal(0, 1)}},
		{"finish with reveals outside both mode", psijob.ModeIntersection, []step{finish(1, 1)}},
	}
	p := newPair(t, psijob.Options{BatchSize: 8}) // each case has its own host job
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			_, h := p.jobs(t, randomIDs("g", 10), randomIDs("h", 20), tt.mode)
			resp, err := p.host.sessions.Open(ctx, "bank", psijob.OpenRequest{Version: 1, Mode: tt.mode, GuestCount: 10, BatchSize: 8, Normalization: norm.Fingerprint()})
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				err := st(ctx, p.host.sessions, resp.Session)
				if i < len(tt.steps)-1 {
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					continue
				}
				if !errors.Is(err, psijob.ErrProtocol) && !errors.Is(err, psijob.ErrBatchTooLarge) {
					t.Fatalf("last step: %v", err)
				}
			}
			s, _ := p.host.store.GetSession(ctx, resp.Session)
			hj, _ := p.host.store.GetJob(ctx, h.ID)
			if s.Status != psijob.SessionAborted || hj.Status != psijob.StatusFailed || hj.IntersectionSize != nil {
				t.Errorf("session %s, host job %s (%q), size %v", s.Status, hj.Status, hj.Error, hj.IntersectionSize)
			}
			if err := p.host.jobs.Export(ctx, h.ID, func(psijob.ResultRow) error { return nil }); !errors.Is(err, psijob.ErrNotDone) && !errors.Is(err, psijob.ErrNoRows) {
				t.Errorf("export of the failed host job: %v", err)
			}
		})
	}
	t.Run("identical replay", func(t *testing.T) {
		ctx := context.Background()
		_, h := p.jobs(t, randomIDs("g", 10), randomIDs("h", 20), psijob.ModeBoth)
		resp, err := p.host.sessions.Open(ctx, "bank", psijob.OpenRequest{Version: 1, Mode: psijob.ModeBoth, GuestCount: 10, BatchSize: 8, Normalization: norm.Fingerprint()})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := p.host.sessions.Reveal(ctx, "bank", resp.Session, 0, []int{4, 19}); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.host.sessions.Reveal(ctx, "telco", resp.Session, 0, []int{4, 19}); !errors.Is(err, psijob.ErrSessionNotFound) {
			t.Errorf("another party's reveal: %v", err)
		}
		for range 2 { // Finish is idempotent too
			if err := p.host.sessions.Finish(ctx, "bank", resp.Session, psijob.FinishRequest{RevealBatches: 1, Revealed: 2}); err != nil {
				t.Fatal(err)
			}
		}
		hj, _ := p.host.store.GetJob(ctx, h.ID)
		if hj.Status != psijob.StatusDone || *hj.IntersectionSize != 2 {
			t.Errorf("host job %s %v", hj.Status, hj.IntersectionSize)
		}
	})
}

// lyingPeer is a malicious guest's transport: it drops every reveal but
// the first and announces only what it sent. The host cannot tell
// (semi-honest model): it learns a subset.
type lyingPeer struct{ *localPeer }

func (l *lyingPeer) Reveal(ctx context.Context, s string, b int, positions []int) error {
	if b > 0 {
		return nil
	}
	return l.localPeer.Reveal(ctx, s, b, positions)
}

func (l *lyingPeer) Finish(ctx context.Context, s string, f psijob.FinishRequest) error {
	if f.RevealBatches > 1 {
		f = psijob.FinishRequest{RevealBatches: 1, Revealed: 8}
	}
	return l.localPeer.Finish(ctx, s, f)
}

func TestBothLearnTrustsTheGuest(t *testing.T) {
	p := newPair(t, psijob.Options{BatchSize: 8})
	common := randomIDs("c", 30)
	g, h := p.jobs(t, common, common, psijob.ModeBoth)
	liar := &lyingPeer{p.peer}
	p.guest.runner = psijob.NewRunner(psijob.RunnerDeps{Store: p.guest.store, Inputs: psijob.Inputs{Dir: p.guest.dir}, Peers: func(psijob.Job) (psijob.Peer, error) { return liar, nil }, Sealer: p.guest.keys}, psijob.Options{BatchSize: 8})
	j, err := p.guest.runner.Run(context.Background(), g.ID)
	if err != nil || j.Status != psijob.StatusDone || *j.IntersectionSize != 30 {
		t.Fatalf("guest: %v %s %q", err, j.Status, j.Error)
	}
	hj, _ := p.host.store.GetJob(context.Background(), h.ID)
	if hj.Status != psijob.StatusDone || *hj.IntersectionSize != 8 {
		t.Errorf("host job %s, size %v: it learns what the guest chose to reveal", hj.Status, hj.IntersectionSize)
	}
}
