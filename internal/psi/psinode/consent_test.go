package psinode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/node/nodetest"
	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/psi/psinode"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/web"
)

const purpose = "credit_risk_assessment"

// consentServer is the bank's consent service on its own database, served
// over plain HTTP on loopback by an httptest server (as consent_service_url
// would name it), counting the filter calls it answers.
type consentServer struct {
	url     string
	svc     *consentnode.Service
	db      *sqldb.DB
	filters atomic.Int64 // filter calls answered
	mu      sync.Mutex
	sizes   []int // subjects per filter call
}

func startConsent(t *testing.T, authRequired bool) *consentServer {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Party, cfg.DataDir, cfg.AuthRequired = "bank", dir, authRequired
	mem := cache.NewMemory(cache.MemoryOptions{})
	t.Cleanup(func() { mem.Close() })
	log := slog.New(slog.DiscardHandler)
	svc, err := nodetest.Consent(t, cfg, nodetest.Options{DB: db, Cache: mem, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	cs := &consentServer{svc: svc, db: db}
	mux := http.NewServeMux()
	svc.Mount(mux)
	h := web.Middleware{Service: "consent", Log: log, Metrics: web.NewMetrics(prometheus.NewRegistry()), MaxBodyBytes: cfg.HTTP.MaxBodyBytes}.Wrap(mux)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/consent/v1/subjects/filter" {
			body, _ := io.ReadAll(r.Body)
			var b struct{ Subjects []string }
			json.Unmarshal(body, &b)
			cs.mu.Lock()
			cs.sizes = append(cs.sizes, len(b.Subjects))
			cs.mu.Unlock()
			cs.filters.Add(1)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cs.url = srv.URL
	_, err = svc.Domain.CreatePurpose(ctx, consent.PurposeRequest{ID: purpose, Description: "credit risk", PolicyText: "v1", Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// grant records an active consent of subject for data from party.
func (cs *consentServer) grant(t *testing.T, party string, subjects ...string) {
	t.Helper()
	for _, s := range subjects {
		_, _, err := cs.svc.Domain.Grant(context.Background(), consent.GrantRequest{Subject: s, Purpose: purpose, Party: party,
			Categories: []string{"telecom.usage"}, PolicyVersion: 1, Actor: "test",
			Evidence: consent.Evidence{Channel: "web", CollectedAt: time.Now().Add(-time.Minute), Collector: "test"}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestRemoteConsentFilter: a guest node without the consent service in
// its process filters its identifiers through the one at
// consent_service_url; identifiers without consent are excluded and
// counted, and the intersection is that of the consented ones.
func TestRemoteConsentFilter(t *testing.T) {
	cs := startConsent(t, false)
	consentedCommon, otherCommon := randomIDs("cc", 60), randomIDs("nc", 40)
	consentedOnly, otherOnly := randomIDs("cg", 50), randomIDs("ng", 30)
	cs.grant(t, "partner", consentedCommon...)
	cs.grant(t, "partner", consentedOnly...)
	cs.grant(t, "telco", otherCommon[:10]...) // consent for another party does not count

	f := newFederation(t, "bank", "partner")
	g, h := f.pair(t, nodeOptions{consentURL: cs.url, opts: psijob.Options{BatchSize: 32}}, nodeOptions{})
	var guest []string
	for i := range 60 { // interleaved, so the rows of the result are not contiguous
		guest = append(guest, consentedCommon[i], otherCommon[i%40])
		if i < 50 {
			guest = append(guest, consentedOnly[i])
		}
		if i < 30 {
			guest = append(guest, otherOnly[i])
		}
	}
	host := slices.Concat(randomIDs("h", 70), otherCommon, consentedCommon)
	h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Purpose: purpose, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", host), Column: "id"}})
	gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Purpose: purpose, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", guest), Column: "id"}})
	end := g.wait(t, gj.ID, time.Minute)
	if end.Status != "done" {
		t.Fatalf("guest job %s: %s", end.Status, end.Error)
	}
	if end.Excluded != 70 || end.LocalCount != 110 || end.RowsRead != int64(len(guest)) {
		t.Errorf("excluded %d (want 70), local %d (want 110), rows %d", end.Excluded, end.LocalCount, end.RowsRead)
	}
	var wantRows, wantIDs []string
	consented := map[string]bool{}
	for _, id := range slices.Concat(consentedCommon, consentedOnly) {
		consented[id] = true
	}
	allRows, allIDs := reference(trim, guest, host)
	for i, id := range allIDs {
		if consented[id] {
			wantRows, wantIDs = append(wantRows, allRows[i]), append(wantIDs, id)
		}
	}
	if end.IntersectionSize == nil || *end.IntersectionSize != 60 || len(wantRows) != 60 {
		t.Fatalf("intersection %v, want 60", end.IntersectionSize)
	}
	rows, ids := g.resultCSV(t, gj.ID)
	if !slices.Equal(rows, wantRows) || !slices.Equal(ids, wantIDs) {
		t.Errorf("result.csv\n got %v %v\nwant %v %v", rows, ids, wantRows, wantIDs)
	}
	if n := cs.filters.Load(); n != 1 {
		t.Errorf("%d filter calls for %d identifiers", n, len(guest))
	}
}

// TestRemoteConsentFailures: when the consent service cannot answer, the
// job fails with the reason and no session is opened.
func TestRemoteConsentFailures(t *testing.T) {
	strict := startConsent(t, true)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"usable":[true]}`)
	}))
	t.Cleanup(garbage.Close)
	tests := []struct {
		name, url, want string
	}{
		{"nothing listens", deadURL, "cannot be reached"},
		{"auth required without a token", strict.url, "HTTP 401 unauthorized"},
		{"too slow", slow.URL, "did not answer within"},
		{"wrong answer", garbage.URL, "1 answers for 3 identifiers"},
	}
	f := newFederation(t, "bank", "partner")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, h := f.pair(t, nodeOptions{consentURL: tt.url, opts: psijob.Options{CallTimeout: 500 * time.Millisecond}}, nodeOptions{})
			hj := h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", randomIDs("h", 3)), Column: "id"}})
			gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Purpose: purpose, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", []string{"SECRET-1", "SECRET-2", "SECRET-3"}), Column: "id"}})
			end := g.wait(t, gj.ID, 30*time.Second)
			if end.Status != "failed" || !strings.Contains(end.Error, "consent") || !strings.Contains(end.Error, tt.want) {
				t.Errorf("guest job %s: %q (want %q)", end.Status, end.Error, tt.want)
			}
			if strings.Contains(end.Error, "SECRET") {
				t.Errorf("the reason quotes an identifier: %q", end.Error)
			}
			var j psiapi.JobBody
			h.api(t, "GET", "/psi/v1/jobs/"+hj.ID, nil, &j)
			if j.Status != "pending" {
				t.Errorf("host job %s: the guest opened a session", j.Status)
			}
			t.Logf("reason: %s", end.Error)
		})
	}

	t.Run("with an analyst token", func(t *testing.T) {
		tok, _, err := auth.NewTokens(sqlauth.New(strict.db)).Create(context.Background(), "psi-node", auth.RoleAnalyst)
		if err != nil {
			t.Fatal(err)
		}
		strict.grant(t, "partner", "tok-1", "tok-3")
		g, h := f.pair(t, nodeOptions{consentURL: strict.url, consentToken: tok}, nodeOptions{})
		h.createJob(t, psiapi.CreateJobBody{Peer: "bank", Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, h.dir, "h.csv", []string{"tok-1", "tok-2", "tok-3"}), Column: "id"}})
		gj := g.createJob(t, psiapi.CreateJobBody{Peer: "partner", Purpose: purpose, Input: psiapi.InputBody{Kind: "csv", Path: idCSV(t, g.dir, "g.csv", []string{"tok-1", "tok-2", "tok-3", "tok-4"}), Column: "id"}})
		end := g.wait(t, gj.ID, 30*time.Second)
		if end.Status != "done" || end.Excluded != 2 || end.IntersectionSize == nil || *end.IntersectionSize != 2 {
			t.Errorf("%s (%s): excluded %d, size %v", end.Status, end.Error, end.Excluded, end.IntersectionSize)
		}
	})
}

// TestRemoteConsentBatches: the filter splits its identifiers into calls
// of at most 10,000, and splits further when long identifiers would make a
// body too large; the answers come back in order.
func TestRemoteConsentBatches(t *testing.T) {
	cs := startConsent(t, false)
	short := make([]string, 25_001)
	for i := range short {
		short[i] = fmt.Sprintf("s-%d", i)
	}
	cs.grant(t, "partner", short[0], short[9_999], short[10_000], short[25_000])
	long := make([]string, 5_000) // 250 bytes each (the consent service's limit is 256)
	for i := range long {
		long[i] = fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 245))
	}
	cs.grant(t, "partner", long[1], long[4_999])
	rc := &psinode.RemoteConsent{URL: cs.url + "/", Client: &http.Client{}, Timeout: 10 * time.Second}
	ctx := context.Background()
	for _, tt := range []struct {
		name      string
		ids       []string
		usable    []int
		maxPerReq int
		calls     int
	}{
		{"count", short, []int{0, 9_999, 10_000, 25_000}, psinode.ConsentFilterBatch, 3},
		{"bytes", long, []int{1, 4_999}, psinode.ConsentFilterBodyBytes / 250, 4},
		{"none", nil, nil, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cs.mu.Lock()
			cs.sizes = nil
			cs.mu.Unlock()
			got, err := rc.Filter(ctx, "partner", purpose, tt.ids)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.ids) {
				t.Fatalf("%d answers for %d identifiers", len(got), len(tt.ids))
			}
			var usable []int
			for i, ok := range got {
				if ok {
					usable = append(usable, i)
				}
			}
			if !slices.Equal(usable, tt.usable) {
				t.Errorf("usable %v, want %v", usable, tt.usable)
			}
			cs.mu.Lock()
			sizes := slices.Clone(cs.sizes)
			cs.mu.Unlock()
			total := 0
			for _, n := range sizes {
				total += n
				if n > tt.maxPerReq {
					t.Errorf("a call of %d identifiers (limit %d)", n, tt.maxPerReq)
				}
			}
			if total != len(tt.ids) || (tt.calls > 0 && len(sizes) != tt.calls) {
				t.Errorf("calls %v", sizes)
			}
			t.Logf("calls: %v", sizes)
		})
	}
}

// FuzzDecodeFilterAnswer: the filter accepts only an answer with exactly
// one boolean per identifier.
func FuzzDecodeFilterAnswer(f *testing.F) {
	f.Add([]byte(`{"usable":[true,false]}`), 2)
	f.Add([]byte(`{"usable":[true]}`), 2)
	f.Add([]byte(`{"usable":null}`), 0)
	f.Add([]byte(`{"usable":[],"extra":1}`), 0)
	f.Add([]byte(`{"usable":[1]}`), 1)
	f.Add([]byte(`{"usable":[true]} {}`), 1)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		got, err := psinode.DecodeFilterAnswer(data, n)
		if err != nil {
			return
		}
		if len(got) != n {
			t.Fatalf("%d answers accepted for %d", len(got), n)
		}
	})
}
