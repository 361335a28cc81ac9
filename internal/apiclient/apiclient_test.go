package apiclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fedrisk/fedrisk/internal/apiclient"
	"github.com/fedrisk/fedrisk/internal/web"
)

func TestDo(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]any
		if err := web.DecodeJSON(r, &in); err != nil {
			web.WriteError(w, r, nil, err)
			return
		}
		in["auth"] = r.Header.Get("Authorization")
		in["key"] = r.Header.Get("Idempotency-Key")
		web.WriteJSON(w, http.StatusOK, in)
	})
	mux.HandleFunc("GET /plain", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusTeapot) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := apiclient.New(srv.URL+"/", nil)
	c.Token = "tok"
	var out map[string]any
	if _, err := c.Do(context.Background(), "POST", "/echo", map[string]int{"a": 1}, &out, "Idempotency-Key", "k1", "X-Empty", ""); err != nil {
		t.Fatal(err)
	}
	if out["a"] != 1.0 || out["auth"] != "Bearer tok" || out["key"] != "k1" {
		t.Errorf("answer %v", out)
	}
	_, err := c.Do(context.Background(), "POST", "/echo", "not an object", nil)
	if code := apiclient.CodeOf(err); code == "" || code == "http_error" {
		t.Errorf("JSON error not decoded: %v", err)
	}
	_, err = c.Do(context.Background(), "GET", "/plain", nil, nil)
	var e *apiclient.Error
	if !asError(err, &e) || e.Status != http.StatusTeapot || e.Code != "http_error" || e.Message != "no" {
		t.Errorf("plain error: %v", err)
	}
}

func asError(err error, e **apiclient.Error) bool {
	v, ok := err.(*apiclient.Error)
	*e = v
	return ok
}
