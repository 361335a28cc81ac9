package featuresapi

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fedrisk/fedrisk/internal/features"
	"github.com/fedrisk/fedrisk/internal/features/featurestest"
	"github.com/fedrisk/fedrisk/internal/features/sqlfeatures"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/web"
)

// FuzzDecodeRequest feeds request bodies through the decoder and the
// request checks: no panic, every refusal a 4xx *web.Error, and every
// accepted request within the limits, with known views and features and
// valid entity keys.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"features":["host_credit:x0","host_credit:x3"],"entities":{"id":[25115,"2346"]}}`,
		`{"features":["typed:score","host_credit:x0"],"entities":{"customer":["c1"],"id":["1"]},"full_feature_names":true}`,
		`{"features":["host_credit:x0","guest_credit:x0"],"entities":{"id":[1]}}`,
		`{"features":["host_credit"],"entities":{"id":[1.5,true,null,{}]}}`,
		`{"features":["nope:x"],"entities":{"id":["1"],"id":["2"]}}`,
		`{"features":[],"entities":[]}`, `{}`, `null`, `[`, ``,
	} {
		f.Add([]byte(seed))
	}
	store, err := features.New(sqlfeatures.New(sqldbtest.OpenSQLite(f, true)), featurestest.Views(f), features.Options{})
	if err != nil {
		f.Fatal(err)
	}
	a := New(store, nil, Options{MaxEntities: 50, MaxFeatures: 20})
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/get-online-features", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req Request
		err := web.DecodeJSON(r, &req)
		var p plan
		if err == nil {
			p, err = a.plan(req)
		}
		if err != nil {
			var we *web.Error
			if !errors.As(err, &we) || we.Status < 400 || we.Status > 499 || we.Message == "" {
				t.Fatalf("refusal is not a 4xx web.Error: %v", err)
			}
			return
		}
		if p.rows < 1 || p.rows > 50 || len(p.refs) < 1 || len(p.refs) > 20 {
			t.Fatalf("accepted %d rows, %d refs", p.rows, len(p.refs))
		}
		for _, g := range p.views {
			v, ok := store.Views().View(g.view)
			if !ok || len(g.keys) != p.rows {
				t.Fatalf("bad plan for view %q", g.view)
			}
			for _, name := range g.features {
				if _, _, ok := v.Feature(name); !ok {
					t.Fatalf("unknown feature %q accepted", name)
				}
			}
			for _, k := range g.keys {
				if features.ValidateEntity(k) != nil {
					t.Fatal("invalid entity key accepted")
				}
			}
		}
	})
}
