package servingapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/serving"
	"github.com/fedrisk/fedrisk/internal/web"
)

// maxAnswer bounds a host's answer (1000 items of a few dozen bytes).
const maxAnswer = 1 << 20

// Client is the guest's serving.HostCaller over the hosts' peer API: one
// POST /score/v1/partial for a single item, one POST
// /score/v1/partial/batch for several. The deadline is the caller's
// context's; connections are kept alive by the HTTP client's transport.
type Client struct {
	HTTP *http.Client
	// URL returns a host's serving base URL; false: not a configured peer.
	URL func(host string) (string, bool)
	// Party is sent in PartyHeader on plain-HTTP calls (a node without
	// TLS); empty on mutual TLS, where the certificate names the caller.
	Party string
}

var _ serving.HostCaller = (*Client)(nil)

// Partial implements serving.HostCaller.
func (c *Client) Partial(ctx context.Context, host string, b serving.PartialBatch) ([]serving.PartialAnswer, error) {
	base, ok := c.URL(host)
	if !ok {
		return nil, &serving.CallError{Code: serving.CodeUnavailable, Cause: fmt.Errorf("host %q is not a configured peer", host)}
	}
	base = strings.TrimRight(base, "/")
	if len(b.Items) == 1 {
		return c.single(ctx, base, b)
	}
	body := PartialBatchBody{Model: b.Model, Version: b.Version, Purpose: b.Purpose, Items: make([]PartialItemBody, len(b.Items))}
	for i, it := range b.Items {
		body.Items[i] = PartialItemBody{Token: it.Token, Href: it.HostRef}
	}
	status, data, err := c.post(ctx, base+"/score/v1/partial/batch", body)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		f := statusFailure(status, data)
		out := make([]serving.PartialAnswer, len(b.Items))
		for i := range out {
			ff := *f.Failure
			out[i] = serving.PartialAnswer{Failure: &ff, Refused: f.Refused}
		}
		if status >= 500 {
			return nil, &serving.CallError{Code: serving.CodeUnavailable, Cause: fmt.Errorf("host answered %d", status)}
		}
		return out, nil
	}
	var ans PartialBatchAnswer
	if err := json.Unmarshal(data, &ans); err != nil || len(ans.Results) != len(b.Items) {
		return nil, &serving.CallError{Code: serving.CodeProtocol, Cause: fmt.Errorf("batch answer: %d results for %d items (%v)", len(ans.Results), len(b.Items), err)}
	}
	out := make([]serving.PartialAnswer, len(b.Items))
	for i, r := range ans.Results {
		out[i] = resultAnswer(r)
	}
	return out, nil
}

func (c *Client) single(ctx context.Context, base string, b serving.PartialBatch) ([]serving.PartialAnswer, error) {
	status, data, err := c.post(ctx, base+"/score/v1/partial", PartialBody{Token: b.Items[0].Token, Href: b.Items[0].HostRef, Model: b.Model, Version: b.Version, Purpose: b.Purpose})
	if err != nil {
		return nil, err
	}
	if status == http.StatusOK {
		var r PartialResult
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, &serving.CallError{Code: serving.CodeProtocol, Cause: err}
		}
		return []serving.PartialAnswer{resultAnswer(r)}, nil
	}
	if status >= 500 && status != http.StatusServiceUnavailable {
		return nil, &serving.CallError{Code: serving.CodeUnavailable, Cause: fmt.Errorf("host answered %d", status)}
	}
	return []serving.PartialAnswer{statusFailure(status, data)}, nil
}

// resultAnswer turns a wire result into an answer.
func resultAnswer(r PartialResult) serving.PartialAnswer {
	switch {
	case r.Error != nil:
		return serving.PartialAnswer{Failure: &serving.HostFailure{Code: knownCode(r.Error.Code), Message: web.Clip(r.Error.Message, 200)}, Refused: r.Refused}
	case r.Value == nil:
		return serving.PartialAnswer{Failure: &serving.HostFailure{Code: serving.CodeProtocol, Message: "the host's answer has no value"}}
	}
	return serving.PartialAnswer{Value: *r.Value, Cached: r.Cached}
}

// statusFailure reads a host's error answer.
func statusFailure(status int, data []byte) serving.PartialAnswer {
	e := web.PeerErrorDetail(status, data)
	code := knownCode(e.Code)
	refused := false
	switch {
	case status == http.StatusTooManyRequests && code == serving.CodeBudgetExhausted:
		refused = true
	case status == http.StatusForbidden && code == serving.CodeConsentRejected:
		refused = true
	case status == http.StatusNotFound:
		code = serving.CodeModelNotFound
	case status >= 500:
		code = serving.CodeUnavailable
	}
	msg := web.Clip(e.Message, 200)
	if msg == "" || e.Code == "http_error" {
		msg = fmt.Sprintf("the host answered %d", status)
	}
	return serving.PartialAnswer{Failure: &serving.HostFailure{Code: code, Message: msg}, Refused: refused}
}

// knownCode keeps metric labels bounded: a host's code outside the known
// set reads as refused.
func knownCode(code string) string {
	switch code {
	case serving.CodeTimeout, serving.CodeUnavailable, serving.CodeNoConsent, serving.CodeBudgetExhausted,
		serving.CodeConsentRejected, serving.CodeModelNotFound, serving.CodeRefused, serving.CodeProtocol:
		return code
	case "model_not_found_host":
		return serving.CodeModelNotFound
	}
	return serving.CodeRefused
}

func (c *Client) post(ctx context.Context, url string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, &serving.CallError{Code: serving.CodeUnavailable, Cause: err}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Party != "" {
		req.Header.Set(authhttp.PartyHeader, c.Party)
	}
	if id := web.RequestID(ctx); id != "" {
		req.Header.Set(web.RequestIDHeader, id)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		code := serving.CodeUnavailable
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			code = serving.CodeTimeout
		}
		return 0, nil, &serving.CallError{Code: code, Cause: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		code := serving.CodeUnavailable
		if ctx.Err() != nil {
			code = serving.CodeTimeout
		}
		return 0, nil, &serving.CallError{Code: code, Cause: err}
	}
	if len(data) > maxAnswer {
		return 0, nil, &serving.CallError{Code: serving.CodeProtocol, Cause: errors.New("answer too large")}
	}
	return resp.StatusCode, data, nil
}
