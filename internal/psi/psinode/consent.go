package psinode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/consent/consentapi"
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Limits of the remote consent filter.
const (
	// ConsentFilterBatch is how many identifiers one call to the consent
	// service carries at most (the endpoint's limit).
	ConsentFilterBatch = consentapi.MaxFilterSubjects
	// ConsentFilterBodyBytes bounds one request body, so that a batch of
	// long identifiers is split rather than refused by the consent node's
	// body limit (http.max_body_bytes, 1 MiB by default).
	ConsentFilterBodyBytes = 512 << 10
	// maxFilterAnswer bounds the answer the filter reads.
	maxFilterAnswer = 1 << 20
)

// RemoteConsent is psijob.ConsentFilter over the consent service at a URL
// (consent_service_url): POST /consent/v1/subjects/filter, in batches of at
// most ConsentFilterBatch identifiers and ConsentFilterBodyBytes bytes,
// each call under its own deadline. The endpoint requires the analyst
// role: the node's client reaches it as a loopback caller (consent service
// without AUTH_REQUIRED) or with Token. The first failed call fails the
// whole filter (and so the job); identifiers never appear in its errors.
type RemoteConsent struct {
	URL     string       // base URL of the consent service
	Client  *http.Client // the node's peer client (mutual TLS when configured)
	Token   string       // bearer token with the analyst role; empty: none
	Timeout time.Duration
}

var _ psijob.ConsentFilter = (*RemoteConsent)(nil)

// Filter implements psijob.ConsentFilter.
func (c *RemoteConsent) Filter(ctx context.Context, party, purpose string, ids []string) ([]bool, error) {
	out := make([]bool, 0, len(ids))
	for start := 0; start < len(ids); start += ConsentFilterBatch {
		usable, err := c.filter(ctx, party, purpose, ids[start:min(start+ConsentFilterBatch, len(ids))])
		if err != nil {
			return nil, err
		}
		out = append(out, usable...)
	}
	return out, nil
}

// filter asks about one batch, halving it while its body is too large.
func (c *RemoteConsent) filter(ctx context.Context, party, purpose string, ids []string) ([]bool, error) {
	body, err := json.Marshal(consentapi.FilterBody{Party: party, Purpose: purpose, Subjects: ids})
	if err != nil {
		return nil, err
	}
	if len(body) > ConsentFilterBodyBytes && len(ids) > 1 {
		half := len(ids) / 2
		first, err := c.filter(ctx, party, purpose, ids[:half])
		if err != nil {
			return nil, err
		}
		second, err := c.filter(ctx, party, purpose, ids[half:])
		if err != nil {
			return nil, err
		}
		return append(first, second...), nil
	}
	usable, err := c.call(ctx, body, len(ids))
	clear(body)
	return usable, err
}

func (c *RemoteConsent) call(ctx context.Context, body []byte, n int) ([]bool, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	endpoint := strings.TrimRight(c.URL, "/") + "/consent/v1/subjects/filter"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("consent service %s: %w", c.URL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if id := web.RequestID(ctx); id != "" {
		req.Header.Set(web.RequestIDHeader, id)
	}
	hc := c.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return nil, fmt.Errorf("the consent service at %s did not answer within %s", c.URL, timeout)
		}
		return nil, fmt.Errorf("the consent service at %s cannot be reached: %w", c.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFilterAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("the consent service at %s: read answer: %w", c.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the consent service at %s refused the filter: %s", c.URL, describeError(resp.StatusCode, data))
	}
	usable, err := DecodeFilterAnswer(data, n)
	if err != nil {
		return nil, fmt.Errorf("the consent service at %s: %w", c.URL, err)
	}
	return usable, nil
}

// DecodeFilterAnswer parses the consent service's answer for n subjects
// strictly.
func DecodeFilterAnswer(data []byte, n int) ([]bool, error) {
	if len(data) > maxFilterAnswer {
		return nil, errors.New("the answer is too large")
	}
	var a consentapi.FilterAnswer
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil || dec.More() || a.Usable == nil {
		return nil, errors.New("malformed answer")
	}
	if len(a.Usable) != n {
		return nil, fmt.Errorf("%d answers for %d identifiers", len(a.Usable), n)
	}
	return a.Usable, nil
}

// describeError turns an error answer into a bounded, printable reason.
func describeError(status int, data []byte) string {
	e := web.PeerErrorDetail(status, data)
	if e.Code == "http_error" {
		return e.Message
	}
	return fmt.Sprintf("HTTP %d %s: %s", status, e.Code, e.Message)
}

// plainRemote reports whether u is a plain-HTTP URL to another machine:
// identifiers would cross the network unencrypted.
func plainRemote(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "http" {
		return false
	}
	host := p.Hostname()
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
