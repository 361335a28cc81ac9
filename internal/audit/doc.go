// Package audit is the domain of fedrisk's tamper-evident audit log: the
// events the consent service records, their canonical hashing into a chain,
// signed checkpoints of that chain, and the verification an auditor runs.
// It holds no SQL; the log itself is stored by audit/sqlaudit.
//
// # The hash chain
//
// Every [Event] becomes an [Entry] with a sequence number assigned by the log
// (1, 2, 3, ... with no gaps) and two hashes. PrevHash is the Hash of the
// entry before it (32 zero bytes for seq 1), and Hash is SHA-256 over a
// canonical encoding of the entry's seq, time, actor, action, subject,
// object, details and PrevHash (see [Entry.ComputeHash]). The encoding
// starts with the domain string "fedrisk-audit-v1" and a record type, and
// prefixes every string and byte field with its length, and the details with
// their count (sorted by key), so that no two different entries encode the
// same way: moving characters from one field into the next, or from a
// details key into its value, changes the hash. Times enter as Unix
// microseconds, the precision the log stores.
//
// Because each hash covers the previous one, altering, removing, inserting
// or reordering any entry breaks the chain at that entry, and [Verify] names
// the first entry where it breaks.
//
// # Checkpoints
//
// A chain alone cannot reveal that its newest entries were cut off, nor that
// someone rewrote the chain from some entry onwards and recomputed every
// later hash. A [Checkpoint] is a signed statement "entry seq has hash h,
// as of time t", made with a key the database does not hold (a [Signer], for
// example the keys service). Checkpoints add:
//
//   - truncation detection: a checkpoint beyond the last entry means entries
//     were removed from the end;
//   - rewrite detection: a chain recomputed over an entry at or before a
//     checkpoint no longer reaches the signed hash;
//   - a statement an auditor can keep: a checkpoint copied out of the system
//     (by a regulator, say) can be checked later against the live log, so
//     even deleting checkpoints from the database does not hide a rewrite of
//     the entries they cover.
//
// The signed bytes ([Checkpoint.SignedBytes]) cover seq, hash and time, with
// their own record type so an entry encoding can never pass for a
// checkpoint. The key id is not signed: it only tells the verifier which key
// to try, so changing it makes verification fail.
//
// # What an attacker with write access to the database can do
//
// Cannot, undetected: change, remove, insert or reorder any entry at or
// before the newest checkpoint they cannot re-sign (the chain or the
// checkpoint's hash breaks), remove entries up to such a checkpoint
// (truncation), or forge or alter a checkpoint (the signature fails).
//
// Can, undetected by the log alone: rewrite, append to, or remove entries
// after the last checkpoint and recompute their hashes, because nothing
// signed covers them yet; and delete the newest checkpoints together with
// the entries they cover, unless an auditor kept a copy of one of them.
// Checkpointing often (see sqlaudit.Log.RunCheckpoints) keeps that window
// short, and checkpoints kept outside the database close it for the past.
// The log is evidence of tampering, not prevention: it does not stop writes,
// and an attacker who also holds the signing key can forge anything.
//
// # Contents
//
// Events carry pseudonyms and ids, never raw identifiers or personal data:
// the log is append-only by design, so nothing written into it can later be
// erased for a data subject. [Event.Validate] limits the size of events and
// rejects strings that would not survive storage unchanged (invalid UTF-8,
// NUL bytes).
package audit
