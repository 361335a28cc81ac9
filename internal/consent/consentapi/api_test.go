package consentapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/audit/sqlaudit"
	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/consent/consentnode"
	"github.com/fedrisk/fedrisk/internal/node/nodetest"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/web"
)

type fixture struct {
	t    testing.TB
	url  string
	svc  *consentnode.Service
	db   *sqldb.DB
	dir  string
	auth string // bearer token sent with every request, if set
}

func start(t testing.TB, authRequired bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	db, err := sqldb.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return startOn(t, db, dir, authRequired)
}

func startOn(t testing.TB, db *sqldb.DB, dir string, authRequired bool) *fixture {
	t.Helper()
	return startWith(t, db, dir, authRequired, 16<<10, slog.New(slog.DiscardHandler))
}

// startWith serves the consent service with a body limit and a logger.
func startWith(t testing.TB, db *sqldb.DB, dir string, authRequired bool, maxBody int64, log *slog.Logger, mods ...func(*config.Config)) *fixture {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir, cfg.AuthRequired = dir, authRequired
	for _, m := range mods {
		m(&cfg)
	}
	mem := cache.NewMemory(cache.MemoryOptions{})
	t.Cleanup(func() { mem.Close() })
	svc, err := nodetest.Consent(t, cfg, nodetest.Options{DB: db, Cache: mem, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	mux := http.NewServeMux()
	svc.Mount(mux)
	h := web.Middleware{Service: "consent", Log: log, Metrics: web.NewMetrics(prometheus.NewRegistry()), MaxBodyBytes: maxBody}.Wrap(mux)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{t: t, url: srv.URL, svc: svc, db: db, dir: dir}
}

func (f *fixture) call(method, path string, body any, hdr ...string) (int, map[string]any, http.Header) {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, f.url+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if f.auth != "" {
		req.Header.Set("Authorization", "Bearer "+f.auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out, resp.Header
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

const subjectID = "ID-110101199003077777"

func grantBody(subject, party string) consentapi.GrantBody {
	return consentapi.GrantBody{
		Subject: subject, Purpose: "credit_risk_assessment", Party: party,
		DataCategories: []string{"telecom.usage", "telecom.billing"}, PolicyVersion: 1,
		Evidence: consentapi.EvidenceBody{Channel: "mobile_app", CollectedAt: time.Now().UTC().Add(-time.Minute).Format(time.RFC3339), Collector: "app-v3"},
	}
}

func (f *fixture) createPurpose() {
	f.t.Helper()
	code, out, _ := f.call("POST", "/consent/v1/purposes", consentapi.PurposeBody{ID: "credit_risk_assessment", Description: "credit risk", PolicyText: "v1 text", RenewOnNewPolicy: true})
	if code != 201 {
		f.t.Fatalf("create purpose: %d %v", code, out)
	}
}

func TestConsentLifecycle(t *testing.T) {
	f := start(t, false)
	f.createPurpose()

	code, c, hdr := f.call("POST", "/consent/v1/consents", grantBody(subjectID, "partner"), "Idempotency-Key", "k1")
	if code != 201 || c["status"] != "active" || c["receipt"] == "" || hdr.Get("Location") == "" {
		t.Fatalf("grant: %d %v", code, c)
	}
	id := c["id"].(string)
	if strings.Contains(c["subject_ref"].(string), "110101") {
		t.Errorf("subject_ref leaks the identifier: %v", c["subject_ref"])
	}
	// A replay changes nothing and returns the same consent.
	code, again, hdr := f.call("POST", "/consent/v1/consents", grantBody(subjectID, "partner"), "Idempotency-Key", "k1")
	if code != 200 || again["id"] != id || hdr.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay: %d %v", code, again)
	}

	bad := []struct {
		name   string
		body   any
		hdr    []string
		status int
		code   string
	}{
		{"same key other request", grantBody(subjectID, "telco"), []string{"Idempotency-Key", "k1"}, 409, "idempotency_key_reused"},
		{"duplicate active", grantBody(subjectID, "partner"), nil, 409, "consent_exists"},
		{"unknown purpose", func() any { b := grantBody("s2", "partner"); b.Purpose = "marketing"; return b }(), nil, 422, "unknown_purpose"},
		{"outdated policy", func() any { b := grantBody("s2", "partner"); b.PolicyVersion = 7; return b }(), nil, 409, "outdated_policy"},
		{"bad party", grantBody("s2", "Partner Inc"), nil, 400, "invalid_field"},
		{"no categories", func() any { b := grantBody("s2", "partner"); b.DataCategories = nil; return b }(), nil, 400, "invalid_field"},
		{"no evidence", func() any { b := grantBody("s2", "partner"); b.Evidence = consentapi.EvidenceBody{}; return b }(), nil, 400, "invalid_field"},
		{"malformed", `{"subject":`, nil, 400, "invalid_json"},
		{"unknown field", `{"subject":"x","color":"red"}`, nil, 400, "unknown_field"},
		{"oversized", `{"subject":"` + strings.Repeat("x", 20<<10) + `"}`, nil, 413, "body_too_large"},
		{"past expiry", func() any { b := grantBody("s2", "partner"); b.ExpiresAt = "2001-01-01T00:00:00Z"; return b }(), nil, 400, "invalid_field"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, out, _ := f.call("POST", "/consent/v1/consents", tt.body, tt.hdr...)
			if code != tt.status || errCode(out) != tt.code {
				t.Errorf("got %d %v, want %d %s", code, out, tt.status, tt.code)
			}
		})
	}
	// None of the bad requests changed anything.
	code, list, _ := f.call("POST", "/consent/v1/subjects/consents", consentapi.SubjectBody{Subject: " id-110101199003077777 "})
	if code != 200 || len(list["consents"].([]any)) != 1 {
		t.Errorf("subject list after bad requests: %d %v", code, list)
	}
	if code, out, _ := f.call("POST", "/consent/v1/subjects/consents", consentapi.SubjectBody{Subject: "s2"}); code != 200 || len(out["consents"].([]any)) != 0 {
		t.Errorf("bad grants created a consent: %v", out)
	}

	// Token, introspection, withdrawal.
	code, tok, _ := f.call("POST", "/consent/v1/consents/"+id+"/tokens", nil)
	if code != 201 {
		t.Fatalf("token: %d %v", code, tok)
	}
	token := tok["token"].(string)
	code, in, _ := f.call("POST", "/consent/v1/tokens/introspect", consentapi.IntrospectBody{Token: token, Audience: "partner", Purpose: "credit_risk_assessment"})
	if code != 200 || in["active"] != true || in["consent_id"] != id {
		t.Fatalf("introspect: %d %v", code, in)
	}
	if _, in, _ := f.call("POST", "/consent/v1/tokens/introspect", consentapi.IntrospectBody{Token: token, Audience: "telco", Purpose: "credit_risk_assessment"}); in["active"] != false || in["reason"] != "wrong_audience" {
		t.Errorf("wrong audience: %v", in)
	}
	if _, in, _ := f.call("POST", "/consent/v1/tokens/introspect", consentapi.IntrospectBody{Token: token, Audience: "partner", Purpose: "marketing"}); in["active"] != false || in["reason"] != "wrong_purpose" {
		t.Errorf("wrong purpose: %v", in)
	}
	code, w, _ := f.call("POST", "/consent/v1/consents/"+id+"/withdraw", nil)
	if code != 200 || w["status"] != "withdrawn" {
		t.Fatalf("withdraw: %d %v", code, w)
	}
	if _, in, _ := f.call("POST", "/consent/v1/tokens/introspect", consentapi.IntrospectBody{Token: token, Audience: "partner", Purpose: "credit_risk_assessment"}); in["active"] != false || in["reason"] != "revoked" {
		t.Errorf("after withdrawal: %v", in)
	}
	if code, out, _ := f.call("POST", "/consent/v1/consents/"+id+"/withdraw", nil); code != 409 || errCode(out) != "consent_not_active" {
		t.Errorf("second withdrawal: %d %v", code, out)
	}
	if code, out, _ := f.call("POST", "/consent/v1/consents/"+id+"/tokens", nil); code != 409 {
		t.Errorf("token for a withdrawn consent: %d %v", code, out)
	}
	if code, _, _ := f.call("GET", "/consent/v1/consents/cns_nope", nil); code != 404 {
		t.Errorf("unknown consent: %d", code)
	}

	// Export, then delete: the identifier is gone for good.
	code, exp, _ := f.call("POST", "/consent/v1/subjects/export", consentapi.SubjectBody{Subject: subjectID})
	if code != 200 || exp["subject"] != strings.ToLower(subjectID) || len(exp["audit"].([]any)) < 3 {
		t.Fatalf("export: %d %v", code, exp)
	}
	code, del, _ := f.call("POST", "/consent/v1/subjects/delete", consentapi.SubjectBody{Subject: subjectID})
	if code != 200 {
		t.Fatalf("delete: %d %v", code, del)
	}
	if code, out, _ := f.call("POST", "/consent/v1/subjects/export", consentapi.SubjectBody{Subject: subjectID}); code != 410 {
		t.Errorf("export after delete: %d %v", code, out)
	}
	f.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	raw, err := os.ReadFile(filepath.Join(f.dir, "fedrisk.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ToLower(raw), []byte("110101199003077777")) {
		t.Error("the raw identifier is in the database file")
	}

	rep, err := f.svc.Audit.Verify(context.Background(), consentnode.CheckpointKeys{M: f.svc.Keys})
	if err != nil || rep.FirstBad != nil || rep.Entries < 6 {
		t.Errorf("audit: %+v %v", rep, err)
	}
}

// TestTokenInterop verifies a fedrisk token with go-jose given only the
// JWKS URL, and a receipt the same way.
func TestTokenInterop(t *testing.T) {
	f := start(t, false)
	f.createPurpose()
	_, c, _ := f.call("POST", "/consent/v1/consents", grantBody("interop-1", "partner"))
	_, tok, _ := f.call("POST", "/consent/v1/consents/"+c["id"].(string)+"/tokens", nil)

	resp, err := http.Get(f.url + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(set.Keys) < 2 {
		t.Fatalf("JWKS should hold current and next keys: %d", len(set.Keys))
	}
	for _, k := range set.Keys {
		tp, _ := k.Thumbprint(crypto256())
		if base64.RawURLEncoding.EncodeToString(tp) != k.KeyID {
			t.Errorf("kid %s is not the RFC 7638 thumbprint", k.KeyID)
		}
	}
	parsed, err := josejwt.ParseSigned(tok["token"].(string), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	hdr := parsed.Headers[0]
	if hdr.ExtraHeaders["typ"] != consent.TokenType {
		t.Errorf("typ %v", hdr.ExtraHeaders["typ"])
	}
	keys := set.Key(hdr.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %s not in JWKS", hdr.KeyID)
	}
	var std josejwt.Claims
	var extra struct {
		Purpose       string `json:"purpose"`
		ConsentID     string `json:"consent_id"`
		PolicyVersion int    `json:"policy_version"`
	}
	if err := parsed.Claims(keys[0].Key, &std, &extra); err != nil {
		t.Fatalf("go-jose rejects the token: %v", err)
	}
	if err := std.Validate(josejwt.Expected{Issuer: "fedrisk:bank", AnyAudience: josejwt.Audience{"partner"}, Time: time.Now()}); err != nil {
		t.Error(err)
	}
	if extra.Purpose != "credit_risk_assessment" || extra.ConsentID != c["id"] || extra.PolicyVersion != 1 || std.ID == "" || std.Subject == "" || std.NotBefore == nil {
		t.Errorf("claims %+v %+v", std, extra)
	}
	if exp := std.Expiry.Time().Sub(std.IssuedAt.Time()); exp != 15*time.Minute {
		t.Errorf("lifetime %v", exp)
	}
	// The receipt verifies offline with the same JWKS.
	r, err := consent.VerifyReceipt(c["receipt"].(string), func(kid string) (*rsaPub, error) {
		ks := set.Key(kid)
		if len(ks) == 0 {
			return nil, io.EOF
		}
		return ks[0].Key.(*rsaPub), nil
	})
	if err != nil || r.ConsentReceiptID != c["id"] || r.Version != "KI-CR-v1.1.0" || r.Services[0].Purposes[0].ThirdPartyName != "partner" {
		t.Errorf("receipt: %+v %v", r, err)
	}
}

// TestForgedTokens feeds the introspection endpoint the classic attacks.
func TestForgedTokens(t *testing.T) {
	f := start(t, false)
	f.createPurpose()
	_, c, _ := f.call("POST", "/consent/v1/consents", grantBody("forge-1", "partner"))
	id := c["id"].(string)
	ctx := context.Background()
	kid, key, err := f.svc.Keys.Signer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(mut func(*consent.Claims)) consent.Claims {
		cl := consent.Claims{Purpose: "credit_risk_assessment", ConsentID: id, PolicyVersion: 1,
			RegisteredClaims: jwt.RegisteredClaims{Issuer: "fedrisk:bank", Subject: "pseudo", Audience: jwt.ClaimStrings{"partner"}, ID: "jti-1",
				IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute))}}
		if mut != nil {
			mut(&cl)
		}
		return cl
	}
	sign := func(cl consent.Claims, hdr map[string]any) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodRS256, cl)
		tk.Header["kid"], tk.Header["typ"] = kid, consent.TokenType
		for k, v := range hdr {
			tk.Header[k] = v
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs256 := func() string { // HS256 keyed with the public key: the algorithm-confusion attack
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"consent+jwt","kid":"` + kid + `"}`))
		p, _ := json.Marshal(claims(nil))
		msg := h + "." + base64.RawURLEncoding.EncodeToString(p)
		m := hmac.New(sha256.New, pubPEM)
		m.Write([]byte(msg))
		return msg + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	none := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"consent+jwt"}`))
		p, _ := json.Marshal(claims(nil))
		return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
	}
	good := sign(claims(nil), nil)
	tests := []struct {
		name, token, reason string
	}{
		{"valid", good, ""},
		{"alg none", none(), "bad_signature"},
		{"hs256 with public key", hs256(), "bad_signature"},
		{"tampered payload", tamper(good, claims(func(c *consent.Claims) { c.PolicyVersion = 9 })), "bad_signature"},
		{"unknown kid", sign(claims(nil), map[string]any{"kid": "nope"}), "unknown_key"},
		{"receipt type", sign(claims(nil), map[string]any{"typ": consent.ReceiptType}), "wrong_type"},
		{"expired", sign(claims(func(c *consent.Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) }), nil), "expired"},
		{"not yet valid", sign(claims(func(c *consent.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }), nil), "not_yet_valid"},
		{"wrong issuer", sign(claims(func(c *consent.Claims) { c.Issuer = "fedrisk:evil" }), nil), "wrong_issuer"},
		{"wrong audience", sign(claims(func(c *consent.Claims) { c.Audience = jwt.ClaimStrings{"telco"} }), nil), "wrong_audience"},
		{"wrong purpose", sign(claims(func(c *consent.Claims) { c.Purpose = "marketing" }), nil), "wrong_purpose"},
		{"garbage", "not.a.jwt", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, in, _ := f.call("POST", "/consent/v1/tokens/introspect", consentapi.IntrospectBody{Token: tt.token, Audience: "partner", Purpose: "credit_risk_assessment"})
			if code != 200 {
				t.Fatalf("status %d %v", code, in)
			}
			if tt.reason == "" {
				if in["active"] != true {
					t.Errorf("valid token rejected: %v", in)
				}
				return
			}
			if in["active"] != false || in["reason"] != tt.reason {
				t.Errorf("got %v, want reason %s", in, tt.reason)
			}
		})
	}
	// Each rejection is in the audit log.
	entries, err := f.svc.Audit.List(ctx, sqlauditFilter("token.verify_failed"))
	if err != nil || len(entries) != len(tests)-1 {
		t.Errorf("audited failures: %d, want %d (%v)", len(entries), len(tests)-1, err)
	}
}

func TestAuthRequired(t *testing.T) {
	f := start(t, true)
	if code, out, hdr := f.call("GET", "/consent/v1/purposes", nil); code != 401 || hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d %v", code, out)
	}
	toks := auth.NewTokens(sqlauth.New(f.db))
	analyst, _, _ := toks.Create(context.Background(), "ana", auth.RoleAnalyst)
	admin, _, _ := toks.Create(context.Background(), "root", auth.RoleAdmin)
	f.auth = "frk_forged"
	if code, _, _ := f.call("GET", "/consent/v1/purposes", nil); code != 401 {
		t.Errorf("forged token: %d", code)
	}
	if failed, err := f.svc.Audit.List(context.Background(), sqlauditFilter("auth.failed")); err != nil || len(failed) != 1 {
		t.Errorf("a refused token must be audited: %d %v", len(failed), err)
	}
	f.auth = analyst
	if code, _, _ := f.call("GET", "/consent/v1/purposes", nil); code != 200 {
		t.Errorf("analyst read: %d", code)
	}
	if code, out, _ := f.call("POST", "/consent/v1/purposes", consentapi.PurposeBody{ID: "credit_risk_assessment", PolicyText: "x"}); code != 403 || errCode(out) != "forbidden" {
		t.Errorf("analyst write: %d %v", code, out)
	}
	f.auth = admin
	f.createPurpose()
	if code, _, _ := f.call("POST", "/consent/v1/consents", grantBody("auth-1", "partner")); code != 201 {
		t.Errorf("admin grant: %d", code)
	}
	// The JWKS and the OpenAPI document are public.
	f.auth = ""
	for _, p := range []string{"/.well-known/jwks.json", "/consent/openapi.json"} {
		if code, _, _ := f.call("GET", p, nil); code != 200 {
			t.Errorf("%s: %d", p, code)
		}
	}
}

func TestPolicyRenewal(t *testing.T) {
	f := start(t, false)
	f.createPurpose()
	_, c, _ := f.call("POST", "/consent/v1/consents", grantBody("renew-1", "partner"))
	if code, out, _ := f.call("POST", "/consent/v1/purposes/credit_risk_assessment/policies", consentapi.PolicyBody{Text: "v2"}); code != 201 || out["version"] != float64(2) {
		t.Fatalf("publish: %d %v", code, out)
	}
	_, got, _ := f.call("GET", "/consent/v1/consents/"+c["id"].(string), nil)
	if got["needs_renewal"] != true {
		t.Errorf("consent under v1 should need renewal: %v", got)
	}
	if code, _, _ := f.call("POST", "/consent/v1/consents/"+c["id"].(string)+"/tokens", nil); code != 409 {
		t.Errorf("token under an outdated policy: %d", code)
	}
	b := grantBody("renew-1", "partner")
	b.PolicyVersion = 2
	code, renewed, _ := f.call("POST", "/consent/v1/consents", b)
	if code != 201 {
		t.Fatalf("renewal: %d %v", code, renewed)
	}
	_, old, _ := f.call("GET", "/consent/v1/consents/"+c["id"].(string), nil)
	if old["status"] != "superseded" {
		t.Errorf("old consent: %v", old["status"])
	}
}

// TestOpenAPICoversRoutes keeps the OpenAPI document and the routes in step.
func TestOpenAPICoversRoutes(t *testing.T) {
	f := start(t, false)
	resp, err := http.Get(f.url + "/consent/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document: %v", err)
	}
	src, err := os.ReadFile("api.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(src), "\n") {
		i := strings.Index(line, `mux.HandleFunc("`)
		if i < 0 {
			continue
		}
		pat := line[i+len(`mux.HandleFunc("`):]
		pat = pat[:strings.IndexByte(pat, '"')]
		if strings.HasSuffix(pat, " ") { // "GET "+p+"/..." form
			rest := line[strings.Index(line, `+p+"`)+len(`+p+"`):]
			pat += "/consent/v1" + rest[:strings.IndexByte(rest, '"')]
		}
		method, path, _ := strings.Cut(pat, " ")
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("route %s %s is not in openapi.json", method, path)
		}
	}
}

type rsaPub = rsa.PublicKey

// tamper swaps a signed token's payload for other claims, keeping the signature.
func tamper(token string, cl consent.Claims) string {
	parts := strings.Split(token, ".")
	p, _ := json.Marshal(cl)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
}

func crypto256() crypto.Hash { return crypto.SHA256 }

func sqlauditFilter(action string) sqlaudit.Filter {
	return sqlaudit.Filter{Action: action, Limit: 1000}
}

// FuzzGrantRequest: whatever the body, a grant answers 2xx or a JSON 4xx,
// never a 5xx.
func FuzzGrantRequest(f *testing.F) {
	b, _ := json.Marshal(grantBody("fuzz-1", "partner"))
	f.Add(string(b))
	f.Add(`{"subject":"x","purpose":"credit_risk_assessment","party":"partner","data_categories":["a"],"policy_version":1,"evidence":{"channel":"c","collector":"d","collected_at":"2020-01-01T00:00:00Z"},"expires_at":"9999-01-01T00:00:00Z"}`)
	f.Add(`{"data_categories":[1,2]}`)
	f.Add(`[]`)
	fx := start(f, false)
	fx.createPurpose()
	f.Fuzz(func(t *testing.T, body string) {
		fx.t = t
		code, out, _ := fx.call("POST", "/consent/v1/consents", body)
		if code >= 500 {
			t.Fatalf("%d for %q: %v", code, body, out)
		}
		if code >= 400 && errCode(out) == "" {
			t.Fatalf("%d without a JSON error for %q", code, body)
		}
	})
}

// TestHostileInput sends what databases choke on, on every backend: each
// gets a 4xx and changes nothing.
func TestHostileInput(t *testing.T) {
	for _, be := range sqldbtest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			f := startOn(t, be.Open(t, true), t.TempDir(), false)
			f.createPurpose()
			withNUL := func(mut func(*consentapi.GrantBody)) consentapi.GrantBody {
				b := grantBody("hostile-1", "partner")
				mut(&b)
				return b
			}
			posts := []struct {
				name, path string
				body       any
				status     int
			}{
				{"NUL in channel", "/consent/v1/consents", withNUL(func(b *consentapi.GrantBody) { b.Evidence.Channel = "web\u0000" }), 400},
				{"NUL in idempotency key", "/consent/v1/consents", withNUL(func(b *consentapi.GrantBody) { b.IdempotencyKey = "k\u0000" }), 400},
				{"huge policy version", "/consent/v1/consents", withNUL(func(b *consentapi.GrantBody) { b.PolicyVersion = 1 << 40 }), 400},
				{"NUL in description", "/consent/v1/purposes", consentapi.PurposeBody{ID: "other_purpose", Description: "a\u0000b", PolicyText: "x"}, 400},
				{"NUL in policy text", "/consent/v1/purposes/credit_risk_assessment/policies", consentapi.PolicyBody{Text: "a\u0000"}, 400},
				{"withdraw garbage id", "/consent/v1/consents/%ff/withdraw", nil, 404},
				{"token for NUL id", "/consent/v1/consents/a%00b/tokens", nil, 404},
			}
			for _, tt := range posts {
				code, out, _ := f.call("POST", tt.path, tt.body)
				if code != tt.status {
					t.Errorf("%s: %d %v, want %d", tt.name, code, out, tt.status)
				}
			}
			for _, path := range []string{"/consent/v1/consents/a%00b", "/consent/v1/consents/%ff", "/consent/v1/purposes/credit_risk_assessment/policies/99999999999", "/consent/v1/purposes/BAD%00"} {
				if code, out, _ := f.call("GET", path, nil); code < 400 || code >= 500 {
					t.Errorf("GET %s: %d %v", path, code, out)
				}
			}
			if code, out, _ := f.call("POST", "/consent/v1/subjects/consents", consentapi.SubjectBody{Subject: "hostile-1"}); code != 200 || len(out["consents"].([]any)) != 0 {
				t.Errorf("hostile requests changed something: %v", out)
			}
		})
	}
}
