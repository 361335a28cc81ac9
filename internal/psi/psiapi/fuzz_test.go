package psiapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/psi/psiapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/web"
)

// FuzzOpenBody: the handshake decoder either refuses a body with a 4xx or
// yields a request within every protocol limit.
func FuzzOpenBody(f *testing.F) {
	f.Add([]byte(`{"version":1,"mode":"intersection","guest_count":10,"batch_size":4096,"normalization":"fedrisk-psi-norm-v1;trim=1;casefold=0;phone="}`))
	f.Add([]byte(`{"version":1,"session":"0123456789abcdef0123456789abcdef","mode":"cardinality","purpose":"credit_risk_assessment","guest_count":0,"batch_size":1,"normalization":"x"}`))
	f.Add([]byte(`{"version":1,"mode":"both","guest_count":3,"batch_size":8,"normalization":"x"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"guest_count":-1}`))
	f.Add([]byte(`{"version":1,"mode":"intersection","guest_count":1e99}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/psi/v1/peer/sessions", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var b psiapi.OpenBody
		if err := web.DecodeJSON(r, &b); err != nil {
			var we *web.Error
			if !errors.As(err, &we) || we.Status < 400 || we.Status >= 500 {
				t.Fatalf("decode error is not a 4xx: %v", err)
			}
			return
		}
		req, err := b.OpenRequest()
		if err != nil {
			if !errors.Is(err, psijob.ErrProtocol) {
				t.Fatalf("validation error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if req.Version != psijob.ProtocolVersion || req.GuestCount < 0 || req.GuestCount > psijob.MaxSetSize ||
			req.BatchSize < 1 || req.BatchSize > psijob.MaxBatchSize || req.Normalization == "" ||
			(req.Mode != psijob.ModeIntersection && req.Mode != psijob.ModeCardinality && req.Mode != psijob.ModeBoth) ||
			(req.Session != "" && !psijob.ValidSessionID(req.Session)) {
			t.Fatalf("accepted an out-of-range handshake: %+v", req)
		}
	})
}

// FuzzBatchBody: a batch body is refused or is a whole number of points
// within the limit.
func FuzzBatchBody(f *testing.F) {
	f.Add("application/octet-stream", make([]byte, 64), 128)
	f.Add("application/octet-stream; charset=x", make([]byte, 33), 1024)
	f.Add("application/json", make([]byte, 32), 64)
	f.Add("application/octet-stream", []byte{}, 64)
	f.Add("", make([]byte, 96), 64)
	f.Fuzz(func(t *testing.T, ct string, body []byte, limit int) {
		if limit < 0 || limit > 1<<20 {
			return
		}
		got, err := psiapi.ReadBatchBody(ct, bytes.NewReader(body), limit)
		if err != nil {
			return
		}
		if len(got) == 0 || len(got)%psijob.PointBytes != 0 || len(got) > limit || !bytes.Equal(got, body) {
			t.Fatalf("accepted %d bytes (limit %d)", len(got), limit)
		}
	})
}

// FuzzRevealBody: a reveal body is refused or decodes to a non-empty list
// of positions that encodes back to the same bytes.
func FuzzRevealBody(f *testing.F) {
	f.Add("application/octet-stream", []byte{0, 0, 0, 1, 0, 0, 0, 7}, 64)
	f.Add("application/octet-stream", []byte{0xff, 0xff, 0xff, 0xff}, 64)
	f.Add("application/octet-stream", make([]byte, 5), 64)
	f.Add("application/octet-stream", []byte{}, 64)
	f.Add("text/plain", make([]byte, 8), 64)
	f.Add("application/octet-stream", make([]byte, 68), 64)
	f.Fuzz(func(t *testing.T, ct string, body []byte, limit int) {
		if limit < 0 || limit > 1<<20 {
			return
		}
		pos, err := psiapi.ReadRevealBody(ct, bytes.NewReader(body), limit)
		if err != nil {
			var we *web.Error
			if !errors.Is(err, psijob.ErrProtocol) && !errors.Is(err, psijob.ErrBatchTooLarge) && !errors.As(err, &we) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if len(pos) == 0 || len(body) > limit || len(pos)*psijob.PositionBytes != len(body) {
			t.Fatalf("accepted %d positions from %d bytes (limit %d)", len(pos), len(body), limit)
		}
		for _, p := range pos {
			if p < 0 || p > 1<<32-1 {
				t.Fatalf("position %d", p)
			}
		}
		if enc, err := psiapi.EncodePositions(pos); err == nil && !bytes.Equal(enc, body) {
			t.Fatalf("round trip %x -> %v -> %x", body, pos, enc)
		}
	})
}

// FuzzDecodeOpenAnswer: the guest accepts only an in-range handshake answer.
func FuzzDecodeOpenAnswer(f *testing.F) {
	f.Add([]byte(`{"session":"0123456789abcdef0123456789abcdef","host_count":5,"tag_len":9,"batch_size":4096}`))
	f.Add([]byte(`{"session":"x","host_count":5,"tag_len":9,"batch_size":4096}`))
	f.Add([]byte(`{"session":"0123456789abcdef0123456789abcdef","host_count":5,"tag_len":99,"batch_size":4096,"extra":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := psiapi.DecodeOpenAnswer(body)
		if err != nil {
			var pe *psijob.PeerError
			if !errors.As(err, &pe) || pe.Temporary {
				t.Fatalf("error %v is not a permanent PeerError", err)
			}
			return
		}
		if !psijob.ValidSessionID(a.Session) || a.TagLen < 1 || a.TagLen > 32 || a.BatchSize < 1 || a.BatchSize > psijob.MaxBatchSize || a.HostCount < 0 {
			t.Fatalf("accepted %+v", a)
		}
	})
}

// FuzzDecodeError: any error answer becomes a bounded, classified error.
func FuzzDecodeError(f *testing.F) {
	f.Add(410, []byte(`{"error":{"code":"session_cancelled","message":"cancelled by the host's operator"}}`))
	f.Add(404, []byte(`{"error":{"code":"not_found","message":"x"}}`))
	f.Add(503, []byte(`<html>`))
	f.Add(409, []byte(`{"error":{"code":"not_ready","message":"3 of 4"}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 400 || status > 599 {
			return
		}
		err := psiapi.DecodeError(status, body)
		var (
			ce *psijob.ClosedError
			pe *psijob.PeerError
		)
		switch {
		case errors.As(err, &ce):
			if status != http.StatusGone || len(ce.Reason) > 1000 {
				t.Fatalf("closed error from %d: %+v", status, ce)
			}
		case errors.As(err, &pe):
			if len(pe.Message) > 1000 || len(pe.Code) > 64 || pe.Code == "" {
				t.Fatalf("unbounded error: %+v", pe)
			}
			if status >= 500 && !pe.Temporary {
				t.Fatalf("a %d must be retried", status)
			}
		default:
			t.Fatalf("unclassified: %v", err)
		}
	})
}

func TestCreateRequestDefaults(t *testing.T) {
	var b psiapi.CreateJobBody
	if err := json.NewDecoder(strings.NewReader(`{"peer":"partner","input":{"kind":"csv","path":"/x.csv","column":"id"}}`)).Decode(&b); err != nil {
		t.Fatal(err)
	}
	r, err := b.CreateRequest("local:loopback")
	if err != nil || !r.Normalization.Trim || r.Normalization.CaseFold || r.Actor != "local:loopback" {
		t.Errorf("%+v %v", r, err)
	}
	b.Normalization = &psiapi.NormalizationBody{Phone: "0086"}
	if _, err := b.CreateRequest("x"); !errors.Is(err, psijob.ErrInvalid) {
		t.Errorf("bad phone code: %v", err)
	}
}
