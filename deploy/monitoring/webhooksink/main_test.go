package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A webhook message as Alertmanager 0.25 sends it (trimmed to what matters
// and one field the sink ignores).
const pagerMessage = `{"receiver":"pager","status":"firing","alerts":[
 {"status":"firing","labels":{"alertname":"PrivacyBudgetLow","host":"partner","instance":"127.0.0.1:7003","job":"model-serving","party":"host","purpose":"credit_scoring","severity":"critical"},"annotations":{"summary":"s"}},
 {"status":"resolved","labels":{"alertname":"ServiceDown","instance":"127.0.0.1:7002","job":"consent-service","severity":"critical"}}],
 "groupLabels":{"alertname":"PrivacyBudgetLow"},"version":"4"}`

func TestSinkLogsOneLinePerAlert(t *testing.T) {
	var out bytes.Buffer
	s := &sink{out: &out}
	for _, tc := range []struct {
		path, body string
		handler    http.HandlerFunc
	}{
		{"/pager", pagerMessage, s.pager},
		{"/chat", `{"channel":"","attachments":[{"title":"[FIRING:1] HighLatency (warning)","text":"..."}]}`, s.chat},
	} {
		rec := httptest.NewRecorder()
		tc.handler(rec, httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body)))
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.path, rec.Code, rec.Body)
		}
	}
	want := "pager firing PrivacyBudgetLow host=partner,party=host,purpose=credit_scoring,severity=critical job=model-serving instance=127.0.0.1:7003\n" +
		"pager resolved ServiceDown severity=critical job=consent-service instance=127.0.0.1:7002\n" +
		"chat [FIRING:1] HighLatency (warning)\n"
	if out.String() != want {
		t.Errorf("logged\n%s\nwant\n%s", out.String(), want)
	}
}

// FuzzSink: any body gets a 200 or a 400, never a panic.
func FuzzSink(f *testing.F) {
	f.Add(pagerMessage)
	f.Add(`{"attachments":[{"title":"x"}]}`)
	f.Add(`{"alerts":[{"labels":null}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		s := &sink{out: &bytes.Buffer{}}
		for _, h := range []http.HandlerFunc{s.pager, s.chat} {
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)))
			if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d", rec.Code)
			}
		}
	})
}
