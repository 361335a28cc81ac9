// Package psi is the cryptographic core of fedrisk's private set
// intersection: a guest (the bank) and a host (a data partner) find their
// common customers without either revealing anything else about its list.
// It holds the group arithmetic, the protocol state machines, the message
// codec and the identifier normalisation. It does no I/O (a service layer
// carries the messages) and keeps no mutable package state.
//
// # Protocol
//
// Semi-honest ECDH-PSI, i.e. a Diffie–Hellman OPRF, over the prime-order
// group ristretto255 (RFC 9496). Per session each party draws a fresh
// secret scalar from crypto/rand ([NewKey]: the guest a, the host b) and
// hashes identifiers to the group with hash_to_ristretto255 (RFC 9380,
// suite ristretto255_XMD:SHA-512_R255MAP_RO_) under the session's
// domain-separation tag [DST] = "fedrisk-psi-v1-" || session id:
//
//  1. guest → host, in batches: A_i = a·H(x_i) (32 bytes each).
//  2. host → guest, per batch, same order: T(b·A_i).
//  3. host → guest, in batches: B_j = b·H(y_π(j)), where π is the host's
//     secret uniformly random permutation ([Shuffle]: Fisher–Yates over
//     crypto/rand, unbiased), so the order reveals nothing of its rows.
//  4. guest: T(a·B_j) for each j, looked up among the tags of step 2
//     ([Matcher]); a·b·H(x) = b·a·H(y) exactly when x = y.
//
// T(P) is the first [TagBytes](n, m) bytes of SHA-256("fedrisk-psi-v1-tag"
// || encode(P)): 40 + ⌈log2(n·m)⌉ bits rounded up to bytes, so a false
// match among all n·m pairs has probability below 2^-40 (10 bytes at
// n = m = 2^20). Hashing before truncating gives every tag bit full
// entropy. Steps 1–2 and 3–4 run interleaved.
//
// Modes ([Mode]): [ModeIntersection] (the guest learns which of its rows
// the host has); [ModeCardinality] (the host holds back the step-2 tags
// until every guest batch is in and sends them shuffled, so the guest can
// only count matches); [ModeBothLearn] (after step 4 the guest sends the
// matched host positions j back and the host maps them through π to its
// rows: this deliberately reveals the intersection to the host, and in the
// semi-honest model the host believes the guest's list).
//
// What leaks besides the output: both set sizes, always. Equal identifiers
// within one party's list give equal values, so the other party sees how
// many duplicates it has; callers normalise and [Dedup] first. Rows with
// duplicate identifiers are each reported (the guest's result counts rows).
//
// Every received element is validated before use (Key.Reblind): it must
// decode as a canonical ristretto255 encoding, re-encode to the same 32
// bytes, and not be the identity; anything else is a [*PointError] wrapping
// [ErrInvalidPoint] with its index, and aborts the session.
//
// Security is semi-honest: each party follows the protocol. Against a
// malicious peer the host still enforces the announced batch counts, so a
// guest obtains at most n evaluations b·P of points of its choosing (n =
// its announced set size) and learns nothing beyond what n chosen inputs
// would reveal; but a malicious host can answer with tags of another set,
// and in both-learn mode a guest can report any positions. Keys are used
// for one session only and destroyed at its end ([Key.Destroy]). Scalar
// multiplication is constant-time in the library; tag lookups are not and
// need not be (tags are the protocol's public output to the guest).
//
// # Sessions as messages
//
// [Protocol] makes the two [Role]s of a session; [ECDH] is this protocol.
// A Role is a transport-free state machine: Start, then Handle for every
// message from the peer, each returning messages to send. The guest
// speaks first and every host message answers a guest message, so the
// protocol fits a request–response transport (the guest as client) as well
// as a stream. Message flow:
//
//	guest                                   host
//	hello(mode, n, batch, norm) ──────────▶
//	                            ◀────────── hello-reply(m), host-points 0..W-1
//	guest-points k ───────────────────────▶ (W in flight, one more per answer)
//	                            ◀────────── host-tags k (cardinality: ack k,
//	                                        then all tags shuffled at the end)
//	ack j (per host-points j) ────────────▶ → next host-points
//	[reveal (both-learn)], done ──────────▶
//
// Both sides must agree on mode and normalisation (the hellos carry a
// digest of [Normalization.Fingerprint]) or the session fails with
// [ErrMismatch]; messages of another session fail with [ErrWrongSession];
// unexpected, repeated or wrongly sized batches with [ErrProtocol]. Any
// error aborts the Role for good. An OT-extension protocol (KKRT, RR22)
// can implement Protocol with its own message types behind the same Role
// contract; psitest.Run is the conformance suite it must also pass.
//
// The wire format ([Encode], [Decode]) is a 28-byte header (version, type,
// 16-byte session tag, batch index, count, element length) and the
// payload, at most [MaxBatchElems] elements and [MaxPayloadBytes] bytes;
// Decode rejects truncated, oversized, trailing and unknown input and never
// panics (fuzzed).
//
// # Normalisation
//
// [Normalization] is agreed in the session handshake and applied by each
// side to its identifiers before the protocol: trimming, Unicode simple
// case folding (equal exactly when strings.EqualFold is), and E.164 phone
// numbers with a default country code. Errors never quote the identifier.
//
// # Library choice and costs
//
// The group is github.com/gtank/ristretto255 v0.1.2 (its own radix-2^51
// field arithmetic with amd64 assembly; the newer revision built on
// filippo.io/edwards25519 is not published as a module version). It was
// measured against github.com/cloudflare/circl v1.6.5 group.Ristretto255
// (built on bwesterb/go-ristretto) on this project's 2-core Xeon machine,
// Go 1.26, one core, median of 5 runs, in a scratch module outside this
// repository (only one of the two may be a dependency):
//
//	                                        gtank     circl
//	hash to group of "+8613800138000"      12.6 µs   13.3 µs
//	variable-base scalar multiplication     41.5 µs   51.7 µs
//	decode + multiply + encode             49.2 µs   64.3 µs
//
// gtank is 5% faster at hashing and 24% faster on the multiplication path,
// which dominates, so it was chosen. It lacks expand_message_xmd, which is
// therefore written here (xmd.go) and tested against the RFC 9380 K.3
// vectors; hash-to-group and blinding are checked against the RFC 9497
// ristretto255-SHA512 OPRF vectors and against circl. gtank v0.1.2 cites
// the pre-RFC draft, whose group, encoding and map are those of RFC 9496:
// the tests check RFC 9496's generator multiples and invalid encodings.
//
// Measured here (go test -bench ., 2 cores, medians): hash to group
// 12.4 µs; multiplication 42 µs; everything Reblind does to one received
// point (decode 4 µs, canonical re-encode check about 4 µs, identity check,
// multiply, tag) 54 µs on one core; HashAndBlind of 4096 identifiers 27–30
// µs per element and Reblind of 4096 points 28 µs per element on both
// cores; a Matcher of 2^20 ten-byte tags holds 53 MiB and fills at 0.45 µs
// per tag. A whole session at n = m = 2^16 (both roles in one process
// sharing the 2 cores, 30% overlap) takes 7.2–7.3 s on a quiet machine and
// moves 4,784,708 bytes (2,097,460 up, 2,687,248 down). Each party performs
// n + m hash-and-blind or reblind operations; at n = m = 2^20 that is
// 2·2^20 × ~28 µs ≈ 60 s per 2-core party when the two run on separate
// machines (about 2 minutes with both in one 2-core process), and
// 32·n + 10·n + 32·m = 77,594,624 bytes of payload plus about 7 KB of
// headers: within the 78 MB target.
package psi
