// Package registry is the model registry of a party: the halves of trained
// models this party holds, by model id ("credit-risk") and version ("1",
// "2", ...), with the "stable" and "canary" labels that scoring resolves.
//
// # Versions
//
// Training asks NextVersion for the next version of a model id (the next
// integer, atomic under concurrency on every backend) and then Registers
// its half: the JSON document exported by hetero.GuestModel.Export or
// hetero.HostModel.Export, role "guest" or "host", and an optional JSON
// model card. Register parses the half (hetero.ParseGuestModel or
// ParseHostModel), checks that it names the same model id and version, and
// stores it with its SHA-256 digest. Registering the same (id, version,
// role) again with the same digest is a no-op; with another digest it is
// ErrConflict. A registered version is never changed or deleted.
//
// # Labels
//
// Promote points a label at a version in one transaction and appends the
// change to the label's history; Rollback moves the label back to where it
// pointed before the latest promotion not yet rolled back, so successive
// rollbacks walk back through the promotions like a stack (RollbackTarget),
// and a rollback with nothing before it is ErrNoRollback. Promoting the
// version a label already points at changes and records nothing.
//
// # Loading
//
// Resolve turns a reference — a version, "stable", "canary" or "" (stable)
// — into an Entry. GuestModel and HostModel also return the parsed half.
// Labels are read from the store on every call, so a promotion or rollback
// takes effect at once on every replica. Registered versions are
// immutable, so their metadata is kept in memory, their documents in the
// node cache (class model_cache, 2 h) under a key that includes the
// digest, and the parsed halves in memory under the same key. A document
// read from the node cache is used only when its SHA-256 matches the
// digest in the store.
//
// Parsed models and Entry.Half are shared between callers: read them,
// never modify them.
package registry
