package psiapi

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/web"
)

// OpenBody is the guest's handshake (POST /psi/v1/peer/sessions).
type OpenBody struct {
	Version       int    `json:"version"`
	Session       string `json:"session,omitempty"`
	Supersede     string `json:"supersede,omitempty"`
	HostJob       string `json:"host_job,omitempty"`
	Mode          string `json:"mode"`
	Purpose       string `json:"purpose,omitempty"`
	GuestCount    int    `json:"guest_count"`
	BatchSize     int    `json:"batch_size"`
	Normalization string `json:"normalization"`
}

// OpenAnswer is the host's answer.
type OpenAnswer struct {
	Session   string `json:"session"`
	HostCount int    `json:"host_count"`
	TagLen    int    `json:"tag_len"`
	BatchSize int    `json:"batch_size"`
	Resumed   bool   `json:"resumed,omitempty"`
}

// CancelBody ends a session with a reason.
type CancelBody struct {
	Code   string `json:"code"` // "cancelled" or "aborted"
	Reason string `json:"reason"`
}

// OpenRequest converts and validates the handshake.
func (b OpenBody) OpenRequest() (psijob.OpenRequest, error) {
	r := psijob.OpenRequest{Version: b.Version, Session: b.Session, Supersede: b.Supersede, HostJob: b.HostJob, Mode: psijob.Mode(b.Mode),
		Purpose: b.Purpose, GuestCount: b.GuestCount, BatchSize: b.BatchSize, Normalization: b.Normalization}
	return r, r.Validate()
}

func openBody(r psijob.OpenRequest) OpenBody {
	return OpenBody{Version: r.Version, Session: r.Session, Supersede: r.Supersede, HostJob: r.HostJob, Mode: string(r.Mode),
		Purpose: r.Purpose, GuestCount: r.GuestCount, BatchSize: r.BatchSize, Normalization: r.Normalization}
}

// MaxBatchBody is the largest batch body the peer API reads.
const MaxBatchBody = psijob.MaxBatchSize * psijob.PointBytes

// OctetStream is the content type of batch bodies.
const OctetStream = "application/octet-stream"

func (a *API) open(w http.ResponseWriter, r *http.Request) error {
	var b OpenBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	req, err := b.OpenRequest()
	if err != nil {
		return err
	}
	resp, err := a.sessions.Open(r.Context(), peerOf(r.Context()), req)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if resp.Resumed {
		status = http.StatusOK
	}
	web.WriteJSON(w, status, OpenAnswer{Session: resp.Session, HostCount: resp.HostCount, TagLen: resp.TagLen, BatchSize: resp.BatchSize, Resumed: resp.Resumed})
	return nil
}

// pathBatch parses the batch index of the path.
func pathBatch(r *http.Request) (string, int, error) {
	session := r.PathValue("session")
	if !psijob.ValidSessionID(session) {
		return "", 0, web.Errorf(http.StatusNotFound, psijob.CodeSessionNotFound, "no such session")
	}
	b, err := strconv.Atoi(r.PathValue("batch"))
	if err != nil || b < 0 || b > psijob.MaxSetSize {
		return "", 0, web.Errorf(http.StatusBadRequest, psijob.CodeProtocol, "batch must be a non-negative integer")
	}
	return session, b, nil
}

// ReadBatchBody reads a binary batch: application/octet-stream, at most
// limit bytes, a whole number of points. Oversized bodies wrap
// psijob.ErrBatchTooLarge, others psijob.ErrProtocol.
func ReadBatchBody(contentType string, body io.Reader, limit int) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != OctetStream {
		return nil, web.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "batch bodies must be %s", OctetStream)
	}
	b, err := io.ReadAll(io.LimitReader(body, int64(limit)+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: the body exceeds the node's limit of %d bytes", psijob.ErrBatchTooLarge, mbe.Limit)
		}
		return nil, fmt.Errorf("read batch: %w", err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w: the body exceeds %d bytes", psijob.ErrBatchTooLarge, limit)
	}
	if len(b) == 0 || len(b)%psijob.PointBytes != 0 {
		return nil, fmt.Errorf("%w: a batch of %d bytes is not a whole number of %d-byte points", psijob.ErrProtocol, len(b), psijob.PointBytes)
	}
	return b, nil
}

func (a *API) guestBatch(w http.ResponseWriter, r *http.Request) error {
	session, batch, err := pathBatch(r)
	if err != nil {
		return err
	}
	party := peerOf(r.Context())
	points, err := ReadBatchBody(r.Header.Get("Content-Type"), r.Body, MaxBatchBody)
	if err != nil {
		if errors.Is(err, psijob.ErrBatchTooLarge) || errors.Is(err, psijob.ErrProtocol) {
			return a.sessions.Abort(r.Context(), party, session, fmt.Errorf("guest batch %d: %w", batch, err))
		}
		return err
	}
	tags, err := a.sessions.GuestBatch(r.Context(), party, session, batch, points)
	if err != nil {
		return err
	}
	if tags == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeBinary(w, tags)
	return nil
}

func writeBinary(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", OctetStream)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (a *API) shuffled(w http.ResponseWriter, r *http.Request) error {
	session, batch, err := pathBatch(r)
	if err != nil {
		return err
	}
	tags, err := a.sessions.ShuffledTags(r.Context(), peerOf(r.Context()), session, batch)
	if err != nil {
		return err
	}
	writeBinary(w, tags)
	return nil
}

func (a *API) hostBatch(w http.ResponseWriter, r *http.Request) error {
	session, batch, err := pathBatch(r)
	if err != nil {
		return err
	}
	points, err := a.sessions.HostBatch(r.Context(), peerOf(r.Context()), session, batch)
	if err != nil {
		return err
	}
	writeBinary(w, points)
	return nil
}

func (a *API) finish(w http.ResponseWriter, r *http.Request) error {
	session := r.PathValue("session")
	if !psijob.ValidSessionID(session) {
		return web.Errorf(http.StatusNotFound, psijob.CodeSessionNotFound, "no such session")
	}
	if err := a.sessions.Finish(r.Context(), peerOf(r.Context()), session); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) cancelSession(w http.ResponseWriter, r *http.Request) error {
	session := r.PathValue("session")
	if !psijob.ValidSessionID(session) {
		return web.Errorf(http.StatusNotFound, psijob.CodeSessionNotFound, "no such session")
	}
	var b CancelBody
	if err := web.DecodeJSON(r, &b); err != nil {
		return err
	}
	if b.Code != psijob.SessionCodeCancelled && b.Code != psijob.SessionCodeAborted {
		return web.Errorf(http.StatusBadRequest, "invalid_field", "code must be cancelled or aborted")
	}
	if len(b.Reason) > 1000 {
		b.Reason = b.Reason[:1000]
	}
	if err := a.sessions.Cancel(r.Context(), peerOf(r.Context()), session, b.Code, b.Reason); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
