package servingapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fedrisk/fedrisk/internal/serving"
	"github.com/fedrisk/fedrisk/internal/web"
)

// fuzzDecoder feeds a decoder arbitrary bodies: it never panics, and every
// refusal is a 4xx *web.Error.
func fuzzDecoder(f *testing.F, seeds []string, decode func(r *http.Request) error) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/x", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 1<<16)
		err := decode(r)
		if err == nil {
			return
		}
		var we *web.Error
		if !errors.As(err, &we) || we.Status < 400 || we.Status >= 500 {
			t.Fatalf("decode error %v is not a 4xx *web.Error", err)
		}
	})
}

func FuzzDecodeScore(f *testing.F) {
	fuzzDecoder(f, []string{
		`{"subject":"25115","consent_token":"a.b.c"}`,
		`{"subject":"25115","consent_id":"cns_1","features":{"x0":1.5},"model":"credit-risk","version":"2"}`,
		`{"subject":"1","consent_tokens":["a","b"],"label":"canary"}`,
		`{"subject":"1","label":"beta"}`, `{"subject":1}`, `[]`, ``, `{"subject":"1"}{}`,
	}, func(r *http.Request) error {
		b, err := DecodeScore(r)
		if err == nil && b.Label != "" && b.Label != "stable" && b.Label != "canary" {
			return errors.New("label not checked")
		}
		return err
	})
}

func FuzzDecodeBatch(f *testing.F) {
	fuzzDecoder(f, []string{
		`{"items":[{"subject":"1","consent_token":"t"}]}`,
		`{"model":"m","version":"1","items":[{"subject":"1","consent_ids":["c"],"features":{"x1":-2}}]}`,
		`{"items":[]}`, `{"items":null}`, `{"items":[{"x":1}]}`,
	}, func(r *http.Request) error {
		b, err := DecodeBatch(r)
		if err == nil && (len(b.Items) == 0 || len(b.Items) > serving.MaxBatch) {
			return errors.New("batch size not checked")
		}
		return err
	})
}

func FuzzDecodePartial(f *testing.F) {
	fuzzDecoder(f, []string{
		`{"token":"a.b.c","href":"abc","model":"credit-risk","version":"1"}`,
		`{"token":"a.b.c","href":"abc","model":"credit-risk","version":"1","purpose":"p"}`,
		`{"token":"","href":"abc","model":"m","version":"1"}`, `{"snapshot":"x"}`,
	}, func(r *http.Request) error {
		b, err := DecodePartial(r)
		if err == nil && (b.Token == "" || b.Href == "" || b.Model == "" || b.Version == "") {
			return errors.New("required fields not checked")
		}
		return err
	})
}

func FuzzDecodePartialBatch(f *testing.F) {
	fuzzDecoder(f, []string{
		`{"model":"m","version":"1","items":[{"token":"t","href":"h"}]}`,
		`{"model":"m","version":"1","items":[]}`, `{"items":[{"token":"t"}]}`,
	}, func(r *http.Request) error {
		b, err := DecodePartialBatch(r)
		if err == nil && (len(b.Items) == 0 || b.Model == "") {
			return errors.New("batch not checked")
		}
		return err
	})
}

func FuzzDecodePolicy(f *testing.F) {
	fuzzDecoder(f, []string{
		`{"window":"24h","total_epsilon":10}`, `{"window":"1s","total_epsilon":0,"on_exhausted":"degrade"}`,
		`{"window":"0s","total_epsilon":1}`, `{"window":"24h","total_epsilon":1e300}`, `{"window":"24h","total_epsilon":-1}`,
	}, func(r *http.Request) error {
		p, err := DecodePolicy(r)
		if err == nil {
			if verr := p.Validate(); verr != nil {
				return verr
			}
		}
		return err
	})
}
