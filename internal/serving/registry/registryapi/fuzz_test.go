package registryapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/serving/registry"
)

// fuzzBody posts body to path through the whole handler stack and checks
// that the answer is JSON, never a server error, and that a refused
// request left the labels as they were.
func fuzzBody(f *testing.F, path string, seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
	fx := newFixture(f, false)
	ctx := context.Background()
	if _, err := fx.reg.Promote(ctx, model, "1", registry.LabelStable, "seed"); err != nil {
		f.Fatal(err)
	}
	if _, err := fx.reg.Promote(ctx, model, "2", registry.LabelStable, "seed"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		before, err := fx.reg.Model(ctx, model)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/score/v1/models/"+model+path, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		fx.handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: %d %s", body, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%q: answer is not JSON: %s", body, rec.Body)
		}
		if rec.Code == http.StatusOK {
			return
		}
		after, err := fx.reg.Model(ctx, model)
		if err != nil {
			t.Fatal(err)
		}
		if len(after.History) != len(before.History) || after.Labels["stable"] != before.Labels["stable"] ||
			after.Labels["canary"] != before.Labels["canary"] {
			t.Fatalf("%q was refused (%d) but changed the labels: %v -> %v", body, rec.Code, before.Labels, after.Labels)
		}
	})
}

func FuzzPromoteBody(f *testing.F) {
	fuzzBody(f, "/promote", `{"version":"2"}`, `{"version":"3","label":"canary"}`, `{"version":"01"}`,
		`{"version":"2","label":"prod"}`, `{"version":"99999999999999999999"}`, `{}`, `[]`, `{"version":null}`)
}

func FuzzRollbackBody(f *testing.F) {
	fuzzBody(f, "/rollback", `{}`, `{"label":"stable"}`, `{"label":"canary"}`, `{"label":"x"}`, `{"label":1}`, ``)
}
