package trainjob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/fedrisk/fedrisk/internal/psi/psijob"
	"github.com/fedrisk/fedrisk/internal/training/hetero"
	"github.com/fedrisk/fedrisk/internal/training/lr"
)

// Session is the guest's end of a training session at a host: a run's
// messages flow over it (trainjobapi.Client over HTTP between nodes).
type Session interface {
	hetero.Transport
	// ID names the session at the host.
	ID() string
	// Close ends the session at the host (best effort).
	Close(ctx context.Context) error
}

// Dialer opens a session at the named peer's training service.
type Dialer func(ctx context.Context, peer string, req OpenRequest) (Session, OpenAnswer, error)

// Errors a session's transport wraps, so the manager can tell a lost
// session (resume it) and a refusal (give up) from a passing failure
// (retry).
var (
	// ErrSessionLost: the host no longer has the session (it restarted,
	// or its service stopped).
	ErrSessionLost = errors.New("trainjob: the host lost the session")
	// ErrRefused: the host refused the call; retrying will not help.
	ErrRefused = errors.New("trainjob: refused by the host")
)

// OpenRequest is the body of POST /train/v1/peer/sessions: what the guest
// asks the host to train on.
type OpenRequest struct {
	// GuestJob is the guest's training job.
	GuestJob string `json:"guest_job,omitempty"`
	// Algo is the algorithm (empty: hetero-lr).
	Algo string `json:"algo,omitempty"`
	// HostJob names the host's job the guest trains with (known after the
	// first session, or from the host's operator).
	HostJob string `json:"host_job,omitempty"`
	// PSIJob and PSISession name the PSI run whose intersection both
	// parties align to: the host's PSI job (when the guest's job recorded
	// it) and the PSI session both parties' jobs recorded.
	PSIJob     string `json:"psi_job,omitempty"`
	PSISession string `json:"psi_session,omitempty"`
	// HostFile is the host's CSV, relative to its data directory, for a
	// host job created by this session (empty: the PSI job's input).
	HostFile string `json:"host_file,omitempty"`
	// Resume asks to continue HostJob after epoch ResumeEpoch, the
	// guest's last checkpoint (−1: none, start again).
	Resume      bool `json:"resume,omitempty"`
	ResumeEpoch int  `json:"resume_epoch,omitempty"`
}

// MaxOpenBytes bounds the body of an open request.
const MaxOpenBytes = 4096

// DecodeOpenRequest decodes and checks an open request body.
func DecodeOpenRequest(b []byte) (OpenRequest, error) {
	var r OpenRequest
	if len(b) > MaxOpenBytes {
		return r, fmt.Errorf("open request of %d bytes, limit %d", len(b), MaxOpenBytes)
	}
	if len(b) == 0 {
		return r, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return OpenRequest{}, fmt.Errorf("open request: %v", err)
	}
	if dec.More() {
		return OpenRequest{}, errors.New("open request: data after the JSON object")
	}
	return r, r.Validate()
}

// Validate checks the shapes of the request's fields.
func (r OpenRequest) Validate() error {
	switch {
	case r.GuestJob != "" && !ValidJobID(r.GuestJob):
		return errors.New("open request: malformed guest job id")
	case r.HostJob != "" && !ValidJobID(r.HostJob):
		return errors.New("open request: malformed host job id")
	case r.Algo != "" && r.Algo != AlgoHeteroLR:
		return fmt.Errorf("open request: algorithm %.40q is not supported (only %s)", r.Algo, AlgoHeteroLR)
	case r.PSIJob != "" && !psijob.ValidJobID(r.PSIJob):
		return errors.New("open request: malformed PSI job id")
	case r.PSISession != "" && !psijob.ValidSessionID(r.PSISession):
		return errors.New("open request: malformed PSI session id")
	case r.HostFile != "" && (len(r.HostFile) > 255 || !filepath.IsLocal(r.HostFile)):
		return errors.New("open request: host_file must be a relative path below the host's data directory")
	case r.Resume && r.HostJob == "":
		return errors.New("open request: a resume names the host job")
	case r.ResumeEpoch < -1 || r.ResumeEpoch >= lr.MaxEpochs || (!r.Resume && r.ResumeEpoch != 0):
		return errors.New("open request: resume epoch out of range")
	}
	return nil
}

// OpenAnswer is the host's answer to a new session.
type OpenAnswer struct {
	Session string `json:"session"`
	// HostJob is the host's training job serving the session.
	HostJob string `json:"host_job,omitempty"`
	// ResumeEpoch is the epoch both parties resume after (−1: from the
	// start); meaningful when the request asked to resume.
	ResumeEpoch int `json:"resume_epoch"`
}
