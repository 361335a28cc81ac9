package keys_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fedrisk/fedrisk/internal/keys"
	"github.com/fedrisk/fedrisk/internal/keys/sqlkeys"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

// independentThumbprint computes RFC 7638 from a JWK's members with
// encoding/json (which sorts map keys and adds no white space).
func independentThumbprint(t *testing.T, n, e string) string {
	t.Helper()
	canon, err := json.Marshal(map[string]string{"kty": "RSA", "n": n, "e": e})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(canon)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestThumbprintRFC7638Example(t *testing.T) {
	// RFC 7638 section 3.1.
	const (
		n    = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
		e    = "AQAB"
		want = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	)
	nb, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537}
	if got := keys.Thumbprint(pub); got != want {
		t.Errorf("Thumbprint = %s, want %s", got, want)
	}
	if got := independentThumbprint(t, n, e); got != want {
		t.Errorf("the test's own thumbprint = %s, want %s", got, want)
	}
}

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func jwkStates(set keys.JWKS) []string {
	var s []string
	for _, k := range set.Keys {
		s = append(s, k.Status)
	}
	return s
}

func TestSigningKeys(t *testing.T) {
	ctx := context.Background()
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		root := newRoot(t)
		m, err := keys.New(ctx, sqlkeys.New(db), root, keys.Options{Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		set, err := m.JWKS(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := jwkStates(set); len(got) != 2 || got[0] != "current" || got[1] != "next" {
			t.Fatalf("fresh JWKS statuses %v, want [current next]", got)
		}
		for _, k := range set.Keys {
			if k.Kty != "RSA" || k.Use != "sig" || k.Alg != "RS256" || k.E != "AQAB" {
				t.Errorf("JWK %+v", k)
			}
			if want := independentThumbprint(t, k.N, k.E); k.Kid != want {
				t.Errorf("kid %s, want RFC 7638 thumbprint %s", k.Kid, want)
			}
			pub, err := m.PublicKey(ctx, k.Kid)
			if err != nil || pub.N.BitLen() != 2048 || base64.RawURLEncoding.EncodeToString(pub.N.Bytes()) != k.N {
				t.Errorf("PublicKey(%s) = %v, %v", k.Kid, pub, err)
			}
		}
		cur, next := set.Keys[0].Kid, set.Keys[1].Kid
		kid, priv, err := m.Signer(ctx)
		if err != nil || kid != cur || keys.Thumbprint(&priv.PublicKey) != cur {
			t.Fatalf("Signer = %s, %v; want %s", kid, err, cur)
		}
		digest := sha256.Sum256([]byte("receipt signed before the rotation"))
		sig, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}

		replica, err := keys.New(ctx, sqlkeys.New(db), root, keys.Options{Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		if kid, _, _ := replica.Signer(ctx); kid != cur {
			t.Fatalf("replica's Signer = %s, want %s", kid, cur)
		}
		newCur, err := m.RotateSigning(ctx)
		if err != nil || newCur != next {
			t.Fatalf("RotateSigning = %s, %v; want %s", newCur, err, next)
		}
		set, _ = m.JWKS(ctx)
		if got := jwkStates(set); len(got) != 3 || got[0] != "current" || got[1] != "next" || got[2] != "retired" ||
			set.Keys[0].Kid != next || set.Keys[2].Kid != cur {
			t.Fatalf("JWKS after rotation: %+v", set)
		}
		if kid, _, _ := m.Signer(ctx); kid != next {
			t.Errorf("Signer after rotation = %s, want %s", kid, next)
		}
		// The other node learns of the rotation within a few seconds.
		if kid, _, _ := replica.Signer(ctx); kid != cur {
			t.Errorf("replica's Signer right after the rotation = %s, want cached %s", kid, cur)
		}
		clk.Advance(10 * time.Second)
		if kid, _, _ := replica.Signer(ctx); kid != next {
			t.Errorf("replica's Signer 10 s later = %s, want %s", kid, next)
		}
		newNext := set.Keys[1].Kid
		if _, err := replica.PublicKey(ctx, newNext); err != nil {
			t.Errorf("replica does not know the new next key: %v", err)
		}

		old, err := m.PublicKey(ctx, cur)
		if err != nil {
			t.Fatal(err)
		}
		if err := rsa.VerifyPKCS1v15(old, crypto.SHA256, digest[:], sig); err != nil {
			t.Errorf("a signature of the retired key no longer verifies: %v", err)
		}
		if _, err := m.PublicKey(ctx, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"); !errors.Is(err, keys.ErrUnknownKey) {
			t.Errorf("unknown kid: %v, want ErrUnknownKey", err)
		}
		var private []byte
		if err := db.QueryRow(db.Rebind(`SELECT private_key FROM keys_signing WHERE kid = ?`), cur).Scan(&private); err != nil || private != nil {
			t.Errorf("retired key's private half: %x, %v; want erased", private, err)
		}
		var stored []byte
		db.QueryRow(db.Rebind(`SELECT private_key FROM keys_signing WHERE kid = ?`), next).Scan(&stored)
		_, nowPriv, _ := m.Signer(ctx)
		if der, _ := x509.MarshalPKCS8PrivateKey(nowPriv); len(stored) == 0 || bytes.Contains(stored, der) {
			t.Error("a private key is stored in the clear")
		}
	})
}

// TestConcurrentNew starts several nodes at once on one empty database.
func TestConcurrentNew(t *testing.T) {
	ctx := context.Background()
	opens := map[string]func(t *testing.T) func() *sqldb.DB{
		"sqlite": func(t *testing.T) func() *sqldb.DB {
			url := "sqlite:" + filepath.Join(t.TempDir(), "shared.db")
			return func() *sqldb.DB { return openURL(t, url) }
		},
		"postgres": func(t *testing.T) func() *sqldb.DB {
			url := sqldbtest.PostgresURL(t)
			return func() *sqldb.DB { return openURL(t, url) }
		},
	}
	for name, open := range opens {
		t.Run(name, func(t *testing.T) {
			opener := open(t)
			first := opener()
			if _, err := first.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			root := newRoot(t)
			const nodes = 4
			ms := make([]*keys.Manager, nodes)
			errs := make([]error, nodes)
			dbs := make([]*sqldb.DB, nodes)
			for i := range dbs {
				dbs[i] = opener() // each node its own connection pool
			}
			var wg sync.WaitGroup
			for i := range nodes {
				wg.Go(func() { ms[i], errs[i] = keys.New(ctx, sqlkeys.New(dbs[i]), root, keys.Options{}) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			var states []string
			rows, err := first.Query(`SELECT state FROM keys_signing ORDER BY state`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var s string
				rows.Scan(&s)
				states = append(states, s)
			}
			rows.Close()
			if len(states) != 2 || states[0] != "current" || states[1] != "next" {
				t.Errorf("signing keys after %d concurrent starts: %v, want one current and one next", nodes, states)
			}
			var keks int
			first.QueryRow(`SELECT COUNT(*) FROM keys_kek`).Scan(&keks)
			if keks != 1 {
				t.Errorf("%d KEK versions, want 1", keks)
			}
			kid0, _, _ := ms[0].Signer(ctx)
			id, err := ms[0].NewDataKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ct := mustEncrypt(t, ms[0], id, []byte("x"), nil)
			for i, m := range ms {
				if kid, _, err := m.Signer(ctx); err != nil || kid != kid0 {
					t.Errorf("node %d signs with %s (%v), node 0 with %s", i, kid, err, kid0)
				}
				if got, err := m.Decrypt(ctx, id, ct, nil); err != nil || string(got) != "x" {
					t.Errorf("node %d cannot decrypt node 0's data: %v", i, err)
				}
			}
		})
	}
}

func openURL(t *testing.T, url string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), url, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
