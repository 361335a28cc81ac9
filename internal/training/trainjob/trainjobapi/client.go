package trainjobapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/lr"
	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/web"
)

// ClientOptions configure the guest's end.
type ClientOptions struct {
	// Party is this node's party, sent on plain-HTTP loopback calls
	// (under mutual TLS the client certificate names it).
	Party string
	// MessageTimeout bounds one Send or Recv, retries included (0:
	// DefaultMessageTimeout).
	MessageTimeout time.Duration
}

// Client is the guest's end of a session at one host: a hetero.Transport.
type Client struct {
	http    *http.Client
	base    string
	opts    ClientOptions
	session string
	sendSeq int64
	recvSeq int64
}

// PeerError is an error answer from the host's peer API.
type PeerError struct {
	Status  int
	Code    string
	Message string
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("training peer: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// Is tells the job manager what the answer means: the host lost the
// session (trainjob.ErrSessionLost), or refused in a way a retry will not
// change (trainjob.ErrRefused).
func (e *PeerError) Is(target error) bool {
	switch target {
	case trainjob.ErrSessionLost:
		return (e.Status == http.StatusNotFound && e.Code == "session_not_found") || e.Status == http.StatusGone
	case trainjob.ErrRefused:
		return e.Status < 500 && e.Status != http.StatusTooManyRequests
	}
	return false
}

// temporary reports whether a retry can succeed: network errors and
// answers the host may give otherwise next time.
func temporary(err error) bool { return !errors.Is(err, trainjob.ErrRefused) }

// Open opens a session at the host whose peer API is at baseURL, asking
// for nothing in particular (the host picks its oldest waiting job).
func Open(ctx context.Context, hc *http.Client, baseURL string, opts ClientOptions) (*Client, error) {
	c, _, err := OpenSession(ctx, hc, baseURL, opts, trainjob.OpenRequest{})
	return c, err
}

// OpenSession opens a session at the host with req and returns the host's
// answer.
func OpenSession(ctx context.Context, hc *http.Client, baseURL string, opts ClientOptions, req trainjob.OpenRequest) (*Client, trainjob.OpenAnswer, error) {
	if opts.MessageTimeout <= 0 {
		opts.MessageTimeout = DefaultMessageTimeout
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, trainjob.OpenAnswer{}, err
	}
	c := &Client{http: hc, base: strings.TrimRight(baseURL, "/"), opts: opts}
	status, data, err := c.do(ctx, http.MethodPost, "/train/v1/peer/sessions", "application/json", body)
	if err != nil {
		return nil, trainjob.OpenAnswer{}, err
	}
	var a trainjob.OpenAnswer
	if status != http.StatusCreated || json.Unmarshal(data, &a) != nil || a.Session == "" || len(a.Session) > 64 ||
		(a.HostJob != "" && !trainjob.ValidJobID(a.HostJob)) || a.ResumeEpoch < -1 || a.ResumeEpoch >= lr.MaxEpochs {
		return nil, trainjob.OpenAnswer{}, fmt.Errorf("training peer: unexpected answer to open (HTTP %d)", status)
	}
	c.session = a.Session
	return c, a, nil
}

// ID returns the session id.
func (c *Client) ID() string { return c.session }

func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.opts.Party != "" {
		req.Header.Set(authhttp.PartyHeader, c.opts.Party)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > hetero.MaxMessageBytes {
		return 0, nil, fmt.Errorf("training peer: %w: answer of %d bytes", hetero.ErrOversized, resp.ContentLength)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, hetero.MaxMessageBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("read answer: %w", err)
	}
	if len(data) > hetero.MaxMessageBytes {
		return 0, nil, fmt.Errorf("training peer: %w: answer over %d bytes", hetero.ErrOversized, hetero.MaxMessageBytes)
	}
	if resp.StatusCode >= 400 {
		e := web.PeerErrorDetail(resp.StatusCode, data)
		return 0, nil, &PeerError{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
	}
	return resp.StatusCode, data, nil
}

// retry runs f until it succeeds, fails permanently or ctx ends.
func retry(ctx context.Context, f func() (done bool, err error)) error {
	backoff := 50 * time.Millisecond
	for {
		done, err := f()
		if err == nil && done {
			return nil
		}
		if err != nil && !temporary(err) {
			return err
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Send implements hetero.Transport.
func (c *Client) Send(ctx context.Context, m hetero.Message) error {
	b, err := hetero.Encode(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.MessageTimeout)
	defer cancel()
	path := fmt.Sprintf("/train/v1/peer/sessions/%s/messages/%d", c.session, c.sendSeq)
	err = retry(ctx, func() (bool, error) {
		_, _, err := c.do(ctx, http.MethodPost, path, ContentType, b)
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	c.sendSeq++
	return nil
}

// Recv implements hetero.Transport.
func (c *Client) Recv(ctx context.Context) (hetero.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.MessageTimeout)
	defer cancel()
	path := fmt.Sprintf("/train/v1/peer/sessions/%s/messages/%d", c.session, c.recvSeq)
	var msg hetero.Message
	err := retry(ctx, func() (bool, error) {
		status, data, err := c.do(ctx, http.MethodGet, path, "", nil)
		if err != nil || status == http.StatusNoContent {
			return false, err
		}
		m, err := hetero.Decode(data)
		if err != nil {
			return false, &PeerError{Status: http.StatusBadGateway, Code: "malformed", Message: err.Error()}
		}
		msg = m
		return true, nil
	})
	if err != nil {
		var pe *PeerError
		if errors.As(err, &pe) && pe.Status == http.StatusGone {
			return hetero.Message{}, hetero.ErrClosed
		}
		return hetero.Message{}, fmt.Errorf("receive: %w", err)
	}
	c.recvSeq++
	return msg, nil
}

// Close ends the session at the host (best effort).
func (c *Client) Close(ctx context.Context) error {
	_, _, err := c.do(ctx, http.MethodDelete, "/train/v1/peer/sessions/"+c.session, "", nil)
	return err
}

var _ trainjob.Session = (*Client)(nil)
