package consentapi_test

import (
	"context"
	"encoding/hex"
	"log/slog"
	"testing"

	"github.com/fedrisk/fedrisk/internal/config"
	"github.com/fedrisk/fedrisk/internal/consent"
	"github.com/fedrisk/fedrisk/internal/sqldb"
)

// TestHostRefClaim checks that with a subject reference key, a token names
// its subject to its host by HostRef, and that without one it carries none.
func TestHostRefClaim(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	for _, tt := range []struct {
		name string
		key  string
	}{{"with key", hex.EncodeToString(key)}, {"without key", ""}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := sqldb.Open(context.Background(), "", dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if _, err := db.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			f := startWith(t, db, dir, false, 16<<10, slog.New(slog.DiscardHandler), func(c *config.Config) { c.SubjectRefKey = tt.key })
			f.createPurpose()
			_, c, _ := f.call("POST", "/consent/v1/consents", grantBody(" Ref-Subject-1 ", "partner"))
			_, tok, _ := f.call("POST", "/consent/v1/consents/"+c["id"].(string)+"/tokens", nil)
			claims, err := f.svc.Domain.Verify(context.Background(), tok["token"].(string), consent.Expect{Audience: "partner", Purpose: "credit_risk_assessment"}, "test")
			if err != nil {
				t.Fatal(err)
			}
			id, err := consent.NormalizeIdentifier(" Ref-Subject-1 ")
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if tt.key != "" {
				want = consent.HostRef(key, "partner", id)
			}
			if claims.HostRef != want {
				t.Errorf("href = %q, want %q", claims.HostRef, want)
			}
			if tt.key != "" && (consent.EqualHostRef(claims.HostRef, consent.HostRef(key, "telco", id)) || !consent.EqualHostRef(claims.HostRef, want)) {
				t.Error("host references must differ per host and compare equal to themselves")
			}
		})
	}
}

// TestTokenSubjectPerHost: two hosts get different subs for one subject,
// one host the same sub every time.
func TestTokenSubjectPerHost(t *testing.T) {
	f := start(t, false)
	f.createPurpose()
	grant := func(party string) string {
		_, c, _ := f.call("POST", "/consent/v1/consents", grantBody("sub-subject-1", party))
		return c["id"].(string)
	}
	sub := func(id, party string) string {
		_, tok, _ := f.call("POST", "/consent/v1/consents/"+id+"/tokens", nil)
		claims, err := f.svc.Domain.Verify(context.Background(), tok["token"].(string), consent.Expect{Audience: party, Purpose: "credit_risk_assessment"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		return claims.Subject
	}
	p, q := grant("partner"), grant("telco")
	a, b, a2 := sub(p, "partner"), sub(q, "telco"), sub(p, "partner")
	if a == "" || a == b || a != a2 {
		t.Errorf("subs: partner %q, telco %q, partner again %q", a, b, a2)
	}
}
