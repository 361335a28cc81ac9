package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedrisk/fedrisk/internal/cache"
	"github.com/fedrisk/fedrisk/internal/serving/registry"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registryapi"
	"github.com/fedrisk/fedrisk/internal/serving/registry/registrytest"
	"github.com/fedrisk/fedrisk/internal/serving/registry/sqlregistry"
	"github.com/fedrisk/fedrisk/internal/sqldb/sqldbtest"
	"github.com/fedrisk/fedrisk/internal/web"
)

// startRegistry serves the registry API in process over loopback HTTP,
// with versions 1..3 of credit-risk's guest half registered.
func startRegistry(t *testing.T) (string, *registry.Registry) {
	t.Helper()
	db := sqldbtest.OpenSQLite(t, true)
	mem := cache.NewMemory(cache.MemoryOptions{})
	t.Cleanup(func() { mem.Close() })
	reg := registry.New(sqlregistry.New(db), mem, registry.Options{Now: registrytest.NewClock(registrytest.T0).Now})
	for _, v := range []string{"1", "2", "3"} {
		if err := reg.Register(context.Background(), registry.RoleGuest, "credit-risk", v,
			registrytest.GuestHalf(t, "credit-risk", v, 0.25), []byte(`{"auc":0.73,"rows":30000}`)); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	registryapi.New(reg, nil, registryapi.Options{}).Mount(mux)
	h := web.Middleware{Service: "serving", Log: slog.New(slog.DiscardHandler), Metrics: web.NewMetrics(prometheus.NewRegistry()), MaxBodyBytes: 1 << 20}.Wrap(mux)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, reg
}

// runModel runs `fedrisk model ...` against server.
func runModel(t *testing.T, server string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	lookup := func(k string) (string, bool) {
		if k == "FEDRISK_SERVING_URL" {
			return server, true
		}
		return "", false
	}
	cmd := newModelCmd(lookup, &out)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestModelCLI(t *testing.T) {
	url, reg := startRegistry(t)
	ok := func(args ...string) string {
		t.Helper()
		out, err := runModel(t, url, args...)
		if err != nil {
			t.Fatalf("model %v: %v\n%s", args, err, out)
		}
		return out
	}

	out := ok("list")
	if !strings.Contains(out, "MODEL") || strings.Count(out, "credit-risk") != 3 {
		t.Errorf("list:\n%s", out)
	}
	out = ok("promote", "credit-risk", "2")
	if want := "credit-risk stable: version none -> 2 (promote by local:loopback)"; !strings.Contains(out, want) {
		t.Errorf("promote: %q, want %q", out, want)
	}
	out = ok("promote", "credit-risk", "2")
	if !strings.Contains(out, "nothing changed") {
		t.Errorf("repeated promote: %q", out)
	}
	ok("promote", "credit-risk", "3", "--label", "canary")
	ok("promote", "credit-risk", "3")
	out = ok("rollback", "credit-risk")
	if want := "credit-risk stable: version 3 -> 2 (rollback by local:loopback)"; !strings.Contains(out, want) {
		t.Errorf("rollback: %q, want %q", out, want)
	}
	e, err := reg.Resolve(context.Background(), "credit-risk", "")
	if err != nil || e.Version != "2" {
		t.Errorf("stable after the CLI's rollback: %v %v", e.Version, err)
	}

	out = ok("list", "credit-risk")
	for _, want := range []string{"stable", "canary", "label history:", "promote", "rollback", "3 -> 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("list credit-risk lacks %q:\n%s", want, out)
		}
	}
	var m registryapi.ModelBody
	if err := json.Unmarshal([]byte(ok("list", "credit-risk", "--json")), &m); err != nil || m.Labels["stable"] != "2" || len(m.History) != 4 {
		t.Errorf("list --json: %+v (%v)", m, err)
	}
	var all registryapi.ModelsResponse
	if err := json.Unmarshal([]byte(ok("list", "--json")), &all); err != nil || len(all.Models) != 1 {
		t.Errorf("list --json: %+v (%v)", all, err)
	}

	out = ok("show", "credit-risk", "stable")
	for _, want := range []string{"version:        2", "labels:         stable", `"auc": 0.73`, "registered by:  training"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	var v registryapi.VersionBody
	if err := json.Unmarshal([]byte(ok("show", "credit-risk", "3", "--json")), &v); err != nil || v.Version != "3" || v.Half != nil {
		t.Errorf("show --json: %+v (%v)", v, err)
	}
	file := filepath.Join(t.TempDir(), "half.json")
	out = ok("show", "credit-risk", "canary", "--export", file)
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := registrytest.GuestHalf(t, "credit-risk", "3", 0.25); !bytes.Equal(got, want) || !strings.Contains(out, "exported to:") {
		t.Errorf("exported half differs from the registered one:\n%s", got)
	}
	out = ok("show", "credit-risk", "1", "--export", "-")
	if !strings.Contains(out, `"version": "1"`) || strings.Contains(out, "registered by") {
		t.Errorf("--export -: %s", out)
	}
}

func TestModelCLIErrors(t *testing.T) {
	url, reg := startRegistry(t)
	if _, err := reg.Promote(context.Background(), "credit-risk", "1", registry.LabelStable, "test"); err != nil {
		t.Fatal(err)
	}
	var ue *usageError
	for _, args := range [][]string{
		{"list", "a", "b"},
		{"show", "credit-risk"},
		{"show", "credit-risk", "v1"},
		{"show", "bad id", "1"},
		{"show", "credit-risk", "1", "--role", "judge"},
		{"promote", "credit-risk"},
		{"promote", "credit-risk", "stable"},
		{"promote", "credit-risk", "2", "--label", "prod"},
		{"rollback"},
		{"rollback", "credit-risk", "--label", "beta"},
		{"rollback", "../x"},
	} {
		if _, err := runModel(t, url, args...); !errors.As(err, &ue) {
			t.Errorf("model %v: %v, want a usage error", args, err)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rollback", "credit-risk"}, "nothing_to_roll_back (HTTP 409)"},
		{[]string{"promote", "credit-risk", "9"}, "not_found (HTTP 404)"},
		{[]string{"show", "credit-risk", "canary"}, "not_found (HTTP 404)"},
		{[]string{"list", "nope"}, "not_found (HTTP 404)"},
		{[]string{"show", "credit-risk", "1", "--role", "host"}, "not_found (HTTP 404)"},
	} {
		_, err := runModel(t, url, c.args...)
		if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("model %v: %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := runModel(t, url, "show", "credit-risk", "1", "--export", filepath.Join(t.TempDir(), "no", "such", "dir.json")); err == nil || !strings.Contains(err.Error(), "--export") {
		t.Errorf("export to a missing directory: %v", err)
	}
	m, err := reg.Model(context.Background(), "credit-risk")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.History) != 1 || m.Labels["stable"] != "1" {
		t.Errorf("failed commands changed the labels: %+v", m.Labels)
	}
}
