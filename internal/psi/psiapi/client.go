package psiapi

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
	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/web"
)

// Client is psijob.Peer over the peer API of the host at BaseURL.
type Client struct {
	base  string
	http  *http.Client
	party string // sent in PartyHeader, which only a plain-HTTP loopback host reads
}

var _ psijob.Peer = (*Client)(nil)

// NewClient returns a Client for the host at baseURL (its psi service or
// ingress), calling it with hc (the node's peer client: mutual TLS when
// configured). party is this node's party.
func NewClient(baseURL string, hc *http.Client, party string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/") + "/psi/v1/peer/sessions", http: hc, party: party}
}

// maxAnswer bounds the body of any answer the client reads.
const maxAnswer = MaxBatchBody + 1

func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, &psijob.PeerError{Err: err}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set(authhttp.PartyHeader, c.party)
	if id := web.RequestID(ctx); id != "" {
		req.Header.Set(web.RequestIDHeader, id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, &psijob.PeerError{Temporary: true, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, &psijob.PeerError{Temporary: true, Err: fmt.Errorf("read answer: %w", err)}
	}
	if len(data) >= maxAnswer {
		return 0, nil, &psijob.PeerError{Status: resp.StatusCode, Code: psijob.CodeProtocol, Message: "the answer exceeds the largest batch"}
	}
	if resp.StatusCode >= 400 {
		return resp.StatusCode, nil, DecodeError(resp.StatusCode, data)
	}
	return resp.StatusCode, data, nil
}

// DecodeError turns an error answer of the peer API into the error the
// runner acts on: ClosedError for a closed session, a PeerError otherwise
// (Temporary for 5xx, 429 and not_ready).
func DecodeError(status int, body []byte) error {
	e := web.PeerErrorDetail(status, body)
	code, msg := e.Code, e.Message
	if status == http.StatusGone && strings.HasPrefix(code, "session_") {
		return &psijob.ClosedError{Code: strings.TrimPrefix(code, "session_"), Reason: msg}
	}
	pe := &psijob.PeerError{Status: status, Code: code, Message: msg}
	switch {
	case status >= 500, status == http.StatusTooManyRequests, code == psijob.CodeNotReady:
		pe.Temporary = true
	case status == http.StatusNotFound && code == "not_found":
		pe.Message = "the peer's URL does not serve the PSI peer API (peers[].url must reach the peer's psi service or ingress)"
	}
	return pe
}

// Open implements psijob.Peer.
func (c *Client) Open(ctx context.Context, r psijob.OpenRequest) (psijob.OpenResponse, error) {
	body, err := json.Marshal(openBody(r))
	if err != nil {
		return psijob.OpenResponse{}, err
	}
	_, data, err := c.do(ctx, http.MethodPost, "", "application/json", body)
	if err != nil {
		return psijob.OpenResponse{}, err
	}
	return DecodeOpenAnswer(data)
}

// DecodeOpenAnswer parses the host's handshake answer strictly.
func DecodeOpenAnswer(data []byte) (psijob.OpenResponse, error) {
	var a OpenAnswer
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil || dec.More() {
		return psijob.OpenResponse{}, &psijob.PeerError{Code: psijob.CodeProtocol, Message: "malformed handshake answer"}
	}
	if !psijob.ValidSessionID(a.Session) || a.HostCount < 0 || a.HostCount > psijob.MaxSetSize || a.TagLen < 1 || a.TagLen > 32 ||
		a.BatchSize < 1 || a.BatchSize > psijob.MaxBatchSize {
		return psijob.OpenResponse{}, &psijob.PeerError{Code: psijob.CodeProtocol, Message: "handshake answer out of range"}
	}
	return psijob.OpenResponse{Session: a.Session, HostCount: a.HostCount, TagLen: a.TagLen, BatchSize: a.BatchSize, Resumed: a.Resumed}, nil
}

func sessionPath(session string, rest string) (string, error) {
	if !psijob.ValidSessionID(session) {
		return "", errors.New("malformed session id")
	}
	return "/" + session + rest, nil
}

// SendBatch implements psijob.Peer.
func (c *Client) SendBatch(ctx context.Context, session string, batch int, points []byte) ([]byte, error) {
	p, err := sessionPath(session, fmt.Sprintf("/guest/%d", batch))
	if err != nil {
		return nil, err
	}
	status, data, err := c.do(ctx, http.MethodPut, p, OctetStream, points)
	if err != nil {
		return nil, err
	}
	if status == http.StatusNoContent {
		return nil, nil
	}
	return data, nil
}

// ShuffledTags implements psijob.Peer.
func (c *Client) ShuffledTags(ctx context.Context, session string, batch int) ([]byte, error) {
	p, err := sessionPath(session, fmt.Sprintf("/shuffled/%d", batch))
	if err != nil {
		return nil, err
	}
	_, data, err := c.do(ctx, http.MethodGet, p, "", nil)
	return data, err
}

// HostBatch implements psijob.Peer.
func (c *Client) HostBatch(ctx context.Context, session string, batch int) ([]byte, error) {
	p, err := sessionPath(session, fmt.Sprintf("/host/%d", batch))
	if err != nil {
		return nil, err
	}
	_, data, err := c.do(ctx, http.MethodGet, p, "", nil)
	return data, err
}

// Reveal implements psijob.Peer.
func (c *Client) Reveal(ctx context.Context, session string, batch int, positions []int) error {
	p, err := sessionPath(session, fmt.Sprintf("/reveal/%d", batch))
	if err != nil {
		return err
	}
	body, err := EncodePositions(positions)
	if err != nil {
		return err
	}
	_, _, err = c.do(ctx, http.MethodPut, p, OctetStream, body)
	return err
}

// Finish implements psijob.Peer.
func (c *Client) Finish(ctx context.Context, session string, f psijob.FinishRequest) error {
	p, err := sessionPath(session, "/finish")
	if err != nil {
		return err
	}
	body, err := json.Marshal(FinishBody{RevealBatches: f.RevealBatches, Revealed: f.Revealed})
	if err != nil {
		return err
	}
	_, _, err = c.do(ctx, http.MethodPost, p, "application/json", body)
	return err
}

// Cancel implements psijob.Peer.
func (c *Client) Cancel(ctx context.Context, session, code, reason string) error {
	p, err := sessionPath(session, "/cancel")
	if err != nil {
		return err
	}
	body, err := json.Marshal(CancelBody{Code: code, Reason: web.Clip(reason, 1000)})
	if err != nil {
		return err
	}
	_, _, err = c.do(ctx, http.MethodPost, p, "application/json", body)
	return err
}
