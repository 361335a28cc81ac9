// Package trainjob runs federated training jobs between a guest and its
// host: the job manager and its store. The client and peer HTTP APIs and
// the session transport between the parties live in trainjobapi, the
// SQL store in sqltrainjob, the wiring in trainjobnode.
//
// # Jobs
//
// A guest job names the host (a configured peer, by name or URL), the
// guest's CSV below the node's data directory, the algorithm (only
// hetero-lr) and hyper-parameters, and optionally a PSI job of this node.
// With a PSI job, which must have run in mode both (so the host learned the
// intersection too) with that peer and be done, each party keeps the rows
// of its file whose identifier — normalised as the PSI job normalised it —
// is in the intersection, ordered by normalised identifier, which also
// becomes the row id: both parties hold the same rows in the same order
// and compute the same train/validation/test split. Without a PSI job the
// files must be aligned already and the host's operator creates a host
// job first; the guest's session starts the oldest one waiting for it.
//
// With a PSI job the guest's session names the host's side of the PSI run
// (the host's PSI job id when the guest's job recorded it, and the PSI
// session id both parties' jobs record). The host then uses a host job
// waiting for that PSI job, or creates one. Its file is the one the guest
// names (host_file) or else the host PSI job's CSV input; either must be a
// relative path below the host's data directory. So a guest can make a
// host train only on the rows of a finished both-mode PSI run the host
// took part in with that guest, read from its own data directory; the
// host's features and weights never leave it.
//
// Jobs live in a Store (sqltrainjob on the node's database; MemStore
// without one): status, hyper-parameters, per-epoch validation loss, AUC,
// KS and seconds, bytes on the wire, errors, the model id and version and
// the test metrics. After every epoch each party saves its own checkpoint
// (hetero.GuestCheckpoint, hetero.HostCheckpoint) in its own store; the
// guest saves before it tells the host the epoch ended, so the host never
// holds an epoch the guest lacks. When the guest's node starts again,
// Manager.Resume re-opens a session for every guest job that was running,
// naming the host job and its last checkpointed epoch; the host answers
// with the latest epoch at most that one it holds a checkpoint of, and
// both continue after it in a new session (new keys and masks). A host job
// the guest cannot resume (it ended, belongs to another guest job) is
// refused with its reason, and a checkpoint either side cannot use aborts
// the run on both sides (hetero.ErrMismatch). A guest whose host lost the
// session (a host restart) resumes the same way. A node shutdown does not
// abort the peer's side: an interrupted host job stays running until its
// guest resumes or an operator cancels it.
//
// When a job succeeds each party writes its half to <data dir>/models and
// registers it through Registrar (the node's model registry) under the
// model id (default credit-risk) and the version the guest reserved at
// job start.
//
// Metrics: training_jobs_total{role,status}, training_jobs_running{role},
// training_epoch_duration_seconds{role}, training_bytes_total{direction}.
package trainjob
