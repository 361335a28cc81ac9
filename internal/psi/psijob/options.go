package psijob

import (
	"log/slog"
	"time"
)

// Options tune the guest runner, the host sessions and the job service.
// The zero value gives the defaults.
type Options struct {
	BatchSize    int           // elements per message (default 4096, at most MaxBatchSize)
	Window       int           // guest batches in flight at once (default 4)
	CallTimeout  time.Duration // deadline of one peer call (default 30 s)
	PeerDeadline time.Duration // how long a peer may fail to answer before the job fails (default 60 s)
	LeaseTTL     time.Duration // how long a runner owns a job without renewing (default 30 s)
	IdleTimeout  time.Duration // host: a session silent this long expires (default 10 min)
	PollEvery    time.Duration // how often the scheduler looks for jobs to resume (default 5 s)
	MaxJobs      int           // guest jobs run at once by one node (default 2)
	// ResultChunk is how many rows one stored result chunk holds (default 10000).
	ResultChunk int
	Now         func() time.Time
	Log         *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	o.BatchSize = min(o.BatchSize, MaxBatchSize)
	if o.Window <= 0 {
		o.Window = 4
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.PeerDeadline <= 0 {
		o.PeerDeadline = 60 * time.Second
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 30 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.PollEvery <= 0 {
		o.PollEvery = 5 * time.Second
	}
	if o.MaxJobs <= 0 {
		o.MaxJobs = 2
	}
	if o.ResultChunk <= 0 {
		o.ResultChunk = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}
