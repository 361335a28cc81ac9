package sqlauth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fedrisk/fedrisk/internal/auth"
	"github.com/fedrisk/fedrisk/internal/auth/sqlauth"
	"github.com/fedrisk/fedrisk/internal/sqldb"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
)

func TestTokens(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		toks := auth.NewTokens(sqlauth.New(db))
		secret, st, err := toks.Create(ctx, "alice", auth.RoleOperator)
		if err != nil {
			t.Fatal(err)
		}
		p, err := toks.Authenticate(ctx, secret)
		if err != nil || p.Actor() != "token:alice" || !p.Has(auth.RoleAnalyst) || p.Has(auth.RoleAdmin) {
			t.Fatalf("authenticate: %+v %v", p, err)
		}
		for _, bad := range []string{"", secret + "x", "frk_nope"} {
			if _, err := toks.Authenticate(ctx, bad); err == nil {
				t.Errorf("%q accepted", bad)
			}
		}
		list, err := toks.List(ctx)
		if err != nil || len(list) != 1 || string(list[0].Hash) == secret {
			t.Fatalf("list: %v %v", list, err)
		}
		if err := toks.Revoke(ctx, st.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := toks.Authenticate(ctx, secret); !errors.Is(err, auth.ErrUnknownToken) {
			t.Errorf("revoked token: %v", err)
		}
		if err := toks.Revoke(ctx, st.ID); !errors.Is(err, auth.ErrUnknownToken) {
			t.Errorf("second revoke: %v", err)
		}
	})
}

func TestParseRole(t *testing.T) {
	if r, err := auth.ParseRole(" Admin "); err != nil || r != auth.RoleAdmin {
		t.Errorf("%v %v", r, err)
	}
	if _, err := auth.ParseRole("root"); err == nil {
		t.Error("root accepted")
	}
}
