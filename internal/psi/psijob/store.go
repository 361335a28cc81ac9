package psijob

import (
	"context"
	"errors"
	"time"
)

// Checkpoint phases of a guest job.
const (
	PhaseGuestTags    = 1 // Data: the host's tags for one guest batch
	PhaseShuffledTags = 2 // Data: one batch of shuffled guest tags (cardinality mode)
	PhaseHostMatches  = 3 // Data: guest indices matched by one host batch (uvarints)
	// PhaseHostPositions (both-learn mode): Data: the positions of one host
	// batch that matched, in the host's shuffled order (uvarints). It is
	// saved before the batch's PhaseHostMatches checkpoint.
	PhaseHostPositions = 4
	PhaseReveal        = 5 // both-learn mode: the host acknowledged reveal batch Batch (no data)
)

// Checkpoint is one finished batch of a guest job.
type Checkpoint struct {
	JobID     string
	Phase     int
	Batch     int
	Session   string
	Data      []byte
	CreatedAt time.Time
}

// ResultChunk is part of a job's result (the guest's, or in both-learn
// mode also the host's): row indices into its input and the matching
// normalised identifiers, encrypted (nil in cardinality mode).
type ResultChunk struct {
	JobID  string
	Chunk  int
	Rows   []byte // uvarint row indices
	IDsEnc []byte
}

// SessionStatus is the state of a host session.
type SessionStatus string

// Session statuses; all but open are final.
const (
	SessionOpen    SessionStatus = "open"
	SessionDone    SessionStatus = "done"
	SessionAborted SessionStatus = "aborted"
	SessionExpired SessionStatus = "expired"
)

// Session is a host's side of one protocol run with a guest.
type Session struct {
	ID          string
	JobID       string // the host job it serves
	Peer        string // the guest party it is bound to
	Status      SessionStatus
	Mode        Mode
	GuestCount  int
	HostCount   int
	BatchSize   int
	TagLen      int
	Fingerprint string
	InputDigest []byte
	KeyID       string
	KeyEnc      []byte // host key, encrypted
	PermEnc     []byte // permutations, encrypted
	Reason      string // why it was aborted or expired
	Code        string // machine-readable reason: cancelled, protocol_error, invalid_point, ...
	CreatedAt   time.Time
	LastSeen    time.Time
	FinishedAt  time.Time
}

// SessionBatch is one guest batch a host session received.
type SessionBatch struct {
	Session  string
	Batch    int
	Digest   []byte
	Receipts int
	Tags     []byte // kept in cardinality mode only
}

// SessionReveal is one batch of host positions the guest revealed in
// both-learn mode: positions in the host's shuffled order, ascending.
type SessionReveal struct {
	Session   string
	Batch     int
	Positions []int
	Receipts  int
}

// JobFilter selects jobs to list.
type JobFilter struct {
	Role   Role
	Status []Status
	Limit  int
}

// Store persists jobs, checkpoints, results and host sessions.
type Store interface {
	CreateJob(ctx context.Context, j Job) error
	GetJob(ctx context.Context, id string) (Job, error) // ErrNotFound
	// ListJobs returns jobs newest first.
	ListJobs(ctx context.Context, f JobFilter) ([]Job, error)
	// UpdateJob reads the job, calls fn and writes the job fn left, in one
	// transaction. An error of fn aborts the update and is returned.
	UpdateJob(ctx context.Context, id string, fn func(*Job) error) (Job, error)
	// ClaimJob gives the lease of a pending job, or of a running one whose
	// lease expired or belongs to owner, to owner until until and marks it
	// running; ErrNotClaimable otherwise.
	ClaimJob(ctx context.Context, id, owner string, now, until time.Time) (Job, error)

	SaveCheckpoint(ctx context.Context, c Checkpoint) error // replaces
	Checkpoints(ctx context.Context, jobID string, phase int) ([]Checkpoint, error)
	DeleteCheckpoints(ctx context.Context, jobID string) error

	// SaveResult replaces the job's result.
	SaveResult(ctx context.Context, jobID string, chunks []ResultChunk) error
	// ResultChunks calls fn with every chunk in order.
	ResultChunks(ctx context.Context, jobID string, fn func(ResultChunk) error) error

	CreateSession(ctx context.Context, s Session) error
	GetSession(ctx context.Context, id string) (Session, error) // ErrSessionNotFound
	UpdateSession(ctx context.Context, id string, fn func(*Session) error) (Session, error)
	// OpenSessions lists open sessions last seen before idleBefore.
	IdleSessions(ctx context.Context, idleBefore time.Time) ([]Session, error)
	// RecordBatch stores the digest (and tags) of a received guest batch.
	// When the batch was received before it increments its receipts and
	// returns the stored one with existed == true; nothing else changes.
	RecordBatch(ctx context.Context, b SessionBatch) (stored SessionBatch, existed bool, err error)
	SessionBatches(ctx context.Context, sessionID string) ([]SessionBatch, error)
	// RecordReveal stores a reveal batch (both-learn mode). When the batch
	// was received before it increments its receipts and returns the stored
	// one with existed == true; nothing else changes.
	RecordReveal(ctx context.Context, r SessionReveal) (stored SessionReveal, existed bool, err error)
	// SessionReveals returns the reveal batches of a session by batch.
	SessionReveals(ctx context.Context, sessionID string) ([]SessionReveal, error)
	// DeleteSessionBatches drops the guest batches and reveal batches of a
	// finished session.
	DeleteSessionBatches(ctx context.Context, sessionID string) error
}

// Sealer is the envelope encryption the service keeps keys and results
// under (keys.Manager).
type Sealer interface {
	NewDataKey(ctx context.Context) (string, error)
	Encrypt(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	Decrypt(ctx context.Context, keyID string, ciphertext, aad []byte) ([]byte, error)
	DestroyDataKey(ctx context.Context, keyID string) error
}

// ConsentFilter tells which identifiers have an active consent for data
// from party under purpose.
type ConsentFilter interface {
	Filter(ctx context.Context, party, purpose string, ids []string) ([]bool, error)
}

// ResultCache keeps finished results close (cache.PSIResults).
type ResultCache interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, val []byte) error
}

// errNoChange lets UpdateJob callbacks stop without writing.
var errNoChange = errors.New("no change")
