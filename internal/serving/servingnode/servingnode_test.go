package servingnode_test

import (
	"context"
	"math"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/serving"
	"github.com/fedrisk/fedrisk/internal/serving/servingapi"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// TestFederatedEqualsPlaintext: with noise off, the federated probability
// over mutual TLS equals the plaintext model on the joined rows to 1e-6,
// by token, by consent id and in a batch.
func TestFederatedEqualsPlaintext(t *testing.T) {
	f := newFederation(t)
	g, h := f.pair(t, options{}, options{})
	m := f.model
	tokens := map[string]string{}
	ids := map[string]string{}
	for _, id := range f.ids {
		c := g.grant(t, id)
		ids[id] = c.ID
		tokens[id] = g.token(t, c.ID)
	}
	want := func(id string) float64 {
		xg, xh := m.row(t, id)
		u, err := m.guest.PartialScore(xg)
		if err != nil {
			t.Fatal(err)
		}
		v, err := m.host.PartialScore(xh)
		if err != nil {
			t.Fatal(err)
		}
		return lr.Logistic(u + v)
	}
	for i, id := range f.ids {
		body := servingapi.ScoreBody{Subject: id, ConsentToken: tokens[id]}
		if i%2 == 1 {
			body = servingapi.ScoreBody{Subject: " " + id + " ", ConsentID: ids[id], Version: "1"}
		}
		var a servingapi.ScoreAnswer
		if st, code := g.call(t, "POST", g.url+"/score", body, &a); st != http.StatusOK {
			t.Fatalf("score: %d %s", st, code)
		}
		if d := math.Abs(a.ProbabilityOfDefault - want(id)); d > 1e-6 || a.Degraded {
			t.Fatalf("subject %d: federated %.9f, plaintext %.9f (degraded %v %v)", i, a.ProbabilityOfDefault, want(id), a.Degraded, a.HostFailures)
		}
		if a.Model != modelID || a.Version != "1" || a.Release != "stable" || a.RequestID == "" || a.Score.Score < 300 || a.Score.Score > 850 {
			t.Fatalf("answer fields: %+v", a)
		}
		if i%2 == 0 && a.Label != "stable" {
			t.Fatalf("label %q", a.Label)
		}
		if len(a.Reasons) == 0 || a.Reasons[len(a.Reasons)-1].Source != "partner" {
			t.Fatalf("reasons %+v", a.Reasons)
		}
	}

	// A batch: one partial-batch call to the host, per-item results.
	var batch servingapi.BatchBody
	for _, id := range f.ids[:20] {
		batch.Items = append(batch.Items, servingapi.ItemBody{Subject: id, ConsentToken: tokens[id]})
	}
	batch.Items = append(batch.Items, servingapi.ItemBody{Subject: f.ids[0]}) // no consent
	var ba servingapi.BatchAnswer
	if st, code := g.call(t, "POST", g.url+"/score/v1/batch", batch, &ba); st != http.StatusOK {
		t.Fatalf("batch: %d %s", st, code)
	}
	if ba.Scored != 20 || ba.Failed != 1 || len(ba.Results) != 21 || ba.Results[20].Error == nil || ba.Results[20].Error.Code != "consent_required" {
		t.Fatalf("batch answer: scored %d failed %d %+v", ba.Scored, ba.Failed, ba.Results[20])
	}
	for i, r := range ba.Results[:20] {
		if d := math.Abs(r.ProbabilityOfDefault - want(f.ids[i])); d > 1e-6 || r.Degraded {
			t.Fatalf("batch item %d: %v vs %v", i, r.ProbabilityOfDefault, want(f.ids[i]))
		}
	}

	if v, _ := metric(t, h.reg, "http_requests_total", map[string]string{"route": "/score/v1/partial/batch", "status": "200"}); v != 1 {
		t.Errorf("the batch made %v partial-batch calls to the host, want 1", v)
	}

	// Metrics of the contract.
	if n, ok := metric(t, g.reg, "model_inference_duration_seconds", map[string]string{"model": modelID, "version": "1"}); !ok || n < float64(len(f.ids)) {
		t.Errorf("guest model_inference_duration_seconds count %v %v", n, ok)
	}
	if _, ok := metric(t, g.reg, "request_queue_length", map[string]string{"service": "serving"}); !ok {
		t.Error("no request_queue_length")
	}
	if v, ok := metric(t, g.reg, "model_serving_info", map[string]string{"version": "stable"}); !ok || v != 1 {
		t.Error("no model_serving_info")
	}
	if v, ok := metric(t, h.reg, "scoring_partials_total", map[string]string{"outcome": "released"}); !ok || v < float64(len(f.ids)) {
		t.Errorf("host released %v", v)
	}
}

// TestRequestErrors: bad input is a 4xx JSON error.
func TestRequestErrors(t *testing.T) {
	f := newFederation(t)
	g, _ := f.pair(t, options{}, options{})
	c := g.grant(t, f.ids[0])
	tok := g.token(t, c.ID)
	other := g.token(t, g.grant(t, f.ids[1]).ID)
	tests := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"no consent", servingapi.ScoreBody{Subject: f.ids[0]}, 400, "consent_required"},
		{"empty subject", servingapi.ScoreBody{Subject: " ", ConsentToken: tok}, 400, "invalid_subject"},
		{"garbage token", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: "x.y.z"}, 403, "consent_rejected"},
		{"another subject's token", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: other}, 403, "subject_mismatch"},
		{"unknown model", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok, Model: "nope"}, 404, "model_not_found"},
		{"unknown version", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok, Version: "7"}, 404, "model_not_found"},
		{"bad label", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok, Label: "beta"}, 400, "invalid_field"},
		{"unknown feature", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok, Features: map[string]float64{"nope": 1}}, 400, "unknown_feature"},
		{"unknown consent", servingapi.ScoreBody{Subject: f.ids[0], ConsentID: "cns_nope"}, 404, "consent_not_found"},
		{"unknown field", map[string]any{"subject": f.ids[0], "consent_token": tok, "x": 1}, 400, "unknown_field"},
		{"empty batch", servingapi.BatchBody{}, 400, "invalid_batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := g.url + "/score"
			if _, ok := tt.body.(servingapi.BatchBody); ok {
				url = g.url + "/score/v1/batch"
			}
			if st, code := g.call(t, "POST", url, tt.body, nil); st != tt.status || code != tt.code {
				t.Errorf("got %d %s, want %d %s", st, code, tt.status, tt.code)
			}
		})
	}
	// Request-time features replace the store's.
	var a, b servingapi.ScoreAnswer
	g.call(t, "POST", g.url+"/score", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok}, &a)
	g.call(t, "POST", g.url+"/score", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok, Features: map[string]float64{"x0": 5}}, &b)
	if a.ProbabilityOfDefault == b.ProbabilityOfDefault {
		t.Error("a request-time feature did not change the score")
	}
	// An unknown subject scores on the views' defaults, flagged.
	c2 := g.grant(t, "not-in-the-store")
	var u servingapi.ScoreAnswer
	if st, code := g.call(t, "POST", g.url+"/score", servingapi.ScoreBody{Subject: "not-in-the-store", ConsentToken: g.token(t, c2.ID)}, &u); st != 200 || len(u.MissingFeatures) != len(f.model.guest.Features) {
		t.Errorf("unknown subject: %d %s %v", st, code, u.MissingFeatures)
	}
}

// TestWithdrawal: after a withdrawal the guest refuses at once, and the
// host refuses the token within a second, reading no feature.
func TestWithdrawal(t *testing.T) {
	f := newFederation(t)
	g, h := f.pair(t, options{}, options{})
	c := g.grant(t, f.ids[0])
	tok := g.token(t, c.ID)
	body := servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok}
	// Until the host's revocation stream is up, it asks the guest on every
	// verification; wait for it so the test checks the stream path.
	waitStreaming(t, h)
	if st, code := g.call(t, "POST", g.url+"/score", body, nil); st != 200 {
		t.Fatalf("score: %d %s", st, code)
	}
	key := hrefOf(t, f, f.ids[0])
	partial := servingapi.PartialBody{Token: tok, Href: key, Model: modelID, Version: "1"}
	if st, code := g.call(t, "POST", h.url+"/score/v1/partial", partial, nil); st != 200 {
		t.Fatalf("partial before withdrawal: %d %s", st, code)
	}
	if _, err := g.node.Resources().Consent.Withdraw(context.Background(), c.ID, "test"); err != nil {
		t.Fatal(err)
	}
	withdrawn := time.Now()
	if st, code := g.call(t, "POST", g.url+"/score", body, nil); st != http.StatusForbidden || code != "consent_rejected" {
		t.Errorf("guest after withdrawal: %d %s", st, code)
	}
	reads, _ := metric(t, h.reg, "feature_store_reads_total", nil)
	for {
		st, code := g.call(t, "POST", h.url+"/score/v1/partial", partial, nil)
		if st == http.StatusForbidden && code == serving.CodeConsentRejected {
			break
		}
		if time.Since(withdrawn) > time.Second {
			t.Fatalf("the host still answers %d %s %v after the withdrawal", st, code, time.Since(withdrawn))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("host refused %v after the withdrawal", time.Since(withdrawn).Round(time.Millisecond))
	if st, code := g.call(t, "POST", h.url+"/score/v1/partial", partial, nil); st != http.StatusForbidden {
		t.Errorf("partial after withdrawal: %d %s", st, code)
	}
	if after, _ := metric(t, h.reg, "feature_store_reads_total", nil); after > reads+1 {
		t.Errorf("the host read features for a withdrawn consent: %v -> %v", reads, after)
	}
}

func waitStreaming(t *testing.T, h *party) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !h.svc.Streaming("bank") {
		if time.Now().After(deadline) {
			t.Fatal("the host's revocation stream did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHostRefusesWithoutToken: no valid token (garbage, another subject's,
// another guest's certificate), no feature read.
func TestHostRefusesWithoutToken(t *testing.T) {
	f := newFederation(t)
	g, h := f.pair(t, options{}, options{})
	tok0 := g.token(t, g.grant(t, f.ids[0]).ID)
	href0, href1 := hrefOf(t, f, f.ids[0]), hrefOf(t, f, f.ids[1])
	before, _ := metric(t, h.reg, "feature_store_reads_total", nil)
	tests := []struct {
		name   string
		client *party
		body   any
		url    string
		status int
		code   string
	}{
		{"garbage token", g, servingapi.PartialBody{Token: "x.y.z", Href: href0, Model: modelID, Version: "1"}, "/score/v1/partial", 403, "consent_rejected"},
		{"token of another subject", g, servingapi.PartialBody{Token: tok0, Href: href1, Model: modelID, Version: "1"}, "/score/v1/partial", 403, "consent_rejected"},
		{"no token", g, servingapi.PartialBody{Href: href0, Model: modelID, Version: "1"}, "/score/v1/partial", 400, "missing_field"},
		{"wrong purpose", g, servingapi.PartialBody{Token: tok0, Href: href0, Model: modelID, Version: "1", Purpose: "marketing"}, "/score/v1/partial", 403, "purpose_not_served"},
		{"unknown version", g, servingapi.PartialBody{Token: tok0, Href: href0, Model: modelID, Version: "9"}, "/score/v1/partial", 404, "model_not_found"},
		{"the host itself is no guest", h, servingapi.PartialBody{Token: tok0, Href: href0, Model: modelID, Version: "1"}, "/score/v1/partial", 403, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if st, code := tt.client.call(t, "POST", h.url+tt.url, tt.body, nil); st != tt.status || code != tt.code {
				t.Errorf("got %d %s, want %d %s", st, code, tt.status, tt.code)
			}
		})
	}
	var ba servingapi.PartialBatchAnswer
	if st, _ := g.call(t, "POST", h.url+"/score/v1/partial/batch", servingapi.PartialBatchBody{Model: modelID, Version: "1",
		Items: []servingapi.PartialItemBody{{Token: "x.y.z", Href: href0}, {Token: tok0, Href: href1}}}, &ba); st != 200 ||
		len(ba.Results) != 2 || !ba.Results[0].Refused || !ba.Results[1].Refused {
		t.Errorf("batch of bad tokens: %d %+v", st, ba)
	}
	if after, _ := metric(t, h.reg, "feature_store_reads_total", nil); after != before {
		t.Errorf("the host read features without a valid token: %v -> %v", before, after)
	}
}

func hrefOf(t *testing.T, f *federation, id string) string {
	t.Helper()
	key, _ := config.DecodeKey(f.key)
	return consentHostRef(key, id)
}

// TestHostDownDegrades: a host that is down or too slow degrades the
// score within the deadline (or fails it, by policy).
func TestHostDownDegrades(t *testing.T) {
	f := newFederation(t)
	// A host that accepts connections and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	g, h := f.pair(t, options{hostURL: "https://" + l.Addr().String(), scoring: func(s *config.Scoring) { s.HostDeadline = 150 * time.Millisecond }}, options{})
	_ = h
	tok := g.token(t, g.grant(t, f.ids[0]).ID)
	var a servingapi.ScoreAnswer
	if st, code := g.call(t, "POST", g.url+"/score", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok}, &a); st != 200 {
		t.Fatalf("score: %d %s", st, code)
	}
	if !a.Degraded || len(a.HostFailures) != 1 || a.HostFailures[0].Code != serving.CodeTimeout || a.HostFailures[0].Host != "partner" {
		t.Fatalf("slow host: %+v", a)
	}
	xg, _ := f.model.row(t, f.ids[0])
	u, _ := f.model.guest.PartialScore(xg)
	if math.Abs(a.ProbabilityOfDefault-lr.Logistic(u)) > 1e-12 {
		t.Errorf("degraded probability %v, guest-only %v", a.ProbabilityOfDefault, lr.Logistic(u))
	}

	// A host that is down; fallback fail answers 503.
	down := freeAddr(t)
	g2, _ := f.pair(t, options{hostURL: "https://" + down, scoring: func(s *config.Scoring) { s.Fallback = "fail" }}, options{})
	tok2 := g2.token(t, g2.grant(t, f.ids[0]).ID)
	if st, code := g2.call(t, "POST", g2.url+"/score", servingapi.ScoreBody{Subject: f.ids[0], ConsentToken: tok2}, nil); st != http.StatusServiceUnavailable || code != "host_unavailable" {
		t.Errorf("down host with fallback fail: %d %s", st, code)
	}
	if v, _ := metric(t, g2.reg, "scoring_host_failures_total", map[string]string{"host": "partner", "code": "unavailable"}); v != 1 {
		t.Errorf("host failures %v", v)
	}
}
