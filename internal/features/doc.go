// Package features is a party's online feature store: the values the
// scoring service reads about a subject, in milliseconds, when it scores a
// loan application. Each party (the guest bank, each host partner) keeps
// its own; nothing here crosses parties.
//
// # Views
//
// Features are grouped in feature views defined in YAML ([ParseViews],
// [LoadViews]; examples/views.yaml defines the demo data's host_credit and
// guest_credit): a name, the entity key name (the CSV column and the
// request's entity key), a max age (ttl), a description, and features
// with a type (float64, int64, string or bool), a documented default and
// a description. A [Registry] is immutable; a store is built over one.
//
// # Reads
//
// [Store.Get] and [Store.GetBatch] return typed [Vector] values in the
// requested order (all of the view's features when none are named). A
// feature without a usable value holds the view's default and says why:
// [StatusNotFound] when nothing is stored, [StatusOutsideMaxAge] when the
// stored value is older than the view's ttl (its event time is kept, its
// value is not served). [Vector.Float64s] gives a model its input.
// featuresapi serves the same reads in the shape of Feast's feature server
// (POST /get-online-features).
//
// Each entity's stored values in a view are cached as one entry in the
// node cache (class user_features, 1 h TTL, [CacheKey]), "no values"
// included, so a lookup is one cache round trip. Cache failures fall back
// to the database; the cache never decides what is true.
//
// # Loads and invalidation
//
// [Store.Load] reads a CSV file (entity column, feature columns, optional
// event time column) in two passes: it validates every row first, so a
// bad row — reported with its line and column ([LoadError]) — leaves the
// store untouched; then it writes transactions of BatchSize rows. A value
// replaces the stored one unless the stored one has a later event time,
// so replaying an old file does not undo a newer one, and rerunning a load
// that failed mid-way (a database error) completes it. The chosen
// atomicity is therefore: all or nothing for bad input; per batch for
// infrastructure failures, with idempotent retry. One big transaction
// would hold SQLite's single write lock for the whole file and stall every
// other service of the node.
//
// After each batch commits, the store deletes the cache entries of the
// entities it wrote. A delete cannot reach a cache the loader does not
// share (the CLI loading while a node serves from its in-process memory
// cache), and a reader that read the database just before the commit can
// put the old values back after the delete. Both are closed by the view's
// generation: every write transaction advances it, every cache entry
// records the generation it was read at, and a store drops entries older
// than the generation it last saw, asking the backend at most every
// Options.GenerationCheck (1 s). A stale value therefore outlives a load
// by at most that long, whatever the cache.
//
// # Entity keys are personal data
//
// Entity keys are subject identifiers in the bank's world. The store keeps
// them exactly as given (no normalisation) and never logs them; errors
// name views, features, columns and line numbers, never keys or values;
// cache keys hold a SHA-256 of the key rather than the key. That hash is
// not keyed, so it hides nothing from someone who can enumerate plausible
// identifiers: a production deployment must key the store by the consent
// pseudonym or a blind index of the subject (as the consent service
// stores subjects), never by a raw identifier such as a phone or ID
// number. The demo data's keys are row numbers.
//
// # Metrics
//
// feature_store_reads_total{view,status}: one count per distinct entity
// looked up in a view, status hit (from the cache), miss (from the
// database), not_found (the entity has no values in the view) or error.
// Label values are bounded: views come from the registry (unknown views
// are refused before counting), statuses are fixed.
//
// Storage is an adapter: [Backend], implemented by features/sqlfeatures on
// SQLite and PostgreSQL; features/featurestest is its conformance suite.
package features
