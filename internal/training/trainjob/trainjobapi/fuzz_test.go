package trainjobapi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedrisk/fedrisk/internal/training/trainjob"
)

// FuzzCreateBody posts arbitrary bodies to POST /train/v1/jobs: the API
// answers 202 or a 4xx, never a 5xx, and never panics.
func FuzzCreateBody(f *testing.F) {
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "h.csv"), []byte("id,x0\na,1\nb,2\nc,3\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	m := trainjob.NewManager(trainjob.ManagerOptions{Party: "telecom", InputDir: dir, ModelDir: filepath.Join(dir, "models"), Peers: map[string]string{"bank": "http://127.0.0.1:1"}})
	f.Cleanup(func() { _ = m.Close() })
	mux := http.NewServeMux()
	NewAPI(m, APIOptions{}).Mount(mux)
	f.Add([]byte(`{"role":"host","peer":"bank","file":"h.csv"}`))
	f.Add([]byte(`{"peer":"bank","file":"h.csv","algo":"hetero-lr","epochs":3,"l2":0,"patience":0,"class_weights":"none"}`))
	f.Add([]byte(`{"peer":"https://x","file":"h.csv","psi_job":"psi_0123456789abcdef0123","learning_rate":1e308}`))
	f.Add([]byte(`{"role":"host","peer":"bank","file":"h.csv","epochs":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/train/v1/jobs", bytes.NewReader(b))
		req.RemoteAddr = "127.0.0.1:1234"
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted && (w.Code < 400 || w.Code >= 500) {
			t.Fatalf("HTTP %d for %q: %s", w.Code, b, w.Body)
		}
	})
}
