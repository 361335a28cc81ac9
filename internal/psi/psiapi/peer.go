package psiapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/fedrisk/fedrisk/internal/auth/authhttp"
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

// FinishBody ends a session; in both-learn mode it says how many reveal
// batches and positions the guest sent. An empty body means none.
type FinishBody struct {
	RevealBatches int `json:"reveal_batches"`
	Revealed      int `json:"revealed"`
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

// MaxRevealBody is the largest reveal body the peer API reads (the
// session's batch size bounds it further).
const MaxRevealBody = psijob.MaxBatchSize * psijob.PositionBytes

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
	resp, err := a.sessions.Open(r.Context(), authhttp.PartyOf(r.Context()), req)
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
	party := authhttp.PartyOf(r.Context())
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

// ReadRevealBody reads a reveal batch: application/octet-stream, at most
// limit bytes, a non-empty whole number of 4-byte big-endian positions.
// Oversized bodies wrap psijob.ErrBatchTooLarge, others psijob.ErrProtocol.
// The order and range of the positions are the session's to check.
func ReadRevealBody(contentType string, body io.Reader, limit int) ([]int, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != OctetStream {
		return nil, web.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "reveal bodies must be %s", OctetStream)
	}
	b, err := io.ReadAll(io.LimitReader(body, int64(limit)+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: the body exceeds the node's limit of %d bytes", psijob.ErrBatchTooLarge, mbe.Limit)
		}
		return nil, fmt.Errorf("read reveal: %w", err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w: the body exceeds %d bytes", psijob.ErrBatchTooLarge, limit)
	}
	if len(b) == 0 || len(b)%psijob.PositionBytes != 0 {
		return nil, fmt.Errorf("%w: a reveal of %d bytes is not a whole number of %d-byte positions", psijob.ErrProtocol, len(b), psijob.PositionBytes)
	}
	out := make([]int, len(b)/psijob.PositionBytes)
	for i := range out {
		out[i] = int(binary.BigEndian.Uint32(b[i*psijob.PositionBytes:]))
	}
	return out, nil
}

// EncodePositions is the wire form of a reveal batch. Positions must be in
// 0..MaxSetSize.
func EncodePositions(positions []int) ([]byte, error) {
	out := make([]byte, 0, len(positions)*psijob.PositionBytes)
	for _, p := range positions {
		if p < 0 || p >= psijob.MaxSetSize {
			return nil, fmt.Errorf("position %d out of range", p)
		}
		out = binary.BigEndian.AppendUint32(out, uint32(p))
	}
	return out, nil
}

func (a *API) reveal(w http.ResponseWriter, r *http.Request) error {
	session, batch, err := pathBatch(r)
	if err != nil {
		return err
	}
	party := authhttp.PartyOf(r.Context())
	positions, err := ReadRevealBody(r.Header.Get("Content-Type"), r.Body, MaxRevealBody)
	if err != nil {
		if errors.Is(err, psijob.ErrBatchTooLarge) || errors.Is(err, psijob.ErrProtocol) {
			return a.sessions.Abort(r.Context(), party, session, fmt.Errorf("reveal batch %d: %w", batch, err))
		}
		return err
	}
	if err := a.sessions.Reveal(r.Context(), party, session, batch, positions); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
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
	tags, err := a.sessions.ShuffledTags(r.Context(), authhttp.PartyOf(r.Context()), session, batch)
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
	points, err := a.sessions.HostBatch(r.Context(), authhttp.PartyOf(r.Context()), session, batch)
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
	var b FinishBody
	if r.ContentLength != 0 {
		if err := web.DecodeJSON(r, &b); err != nil {
			return err
		}
		if b.RevealBatches < 0 || b.Revealed < 0 || b.RevealBatches > psijob.MaxSetSize || b.Revealed > psijob.MaxSetSize {
			return web.Errorf(http.StatusBadRequest, psijob.CodeProtocol, "reveal_batches and revealed must be 0..%d", psijob.MaxSetSize)
		}
	}
	f := psijob.FinishRequest{RevealBatches: b.RevealBatches, Revealed: b.Revealed}
	if err := a.sessions.Finish(r.Context(), authhttp.PartyOf(r.Context()), session, f); err != nil {
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
	if err := a.sessions.Cancel(r.Context(), authhttp.PartyOf(r.Context()), session, b.Code, b.Reason); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
