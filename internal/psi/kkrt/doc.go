// Package kkrt is private set intersection at OT-extension speed: the
// batched oblivious PRF of Kolesnikov, Kumaresan, Rosulek and Trieu
// ("Efficient Batched Oblivious PRF with Applications to Private Set
// Intersection", CCS 2016, "KKRT") beside the ECDH protocol of package psi.
// The guest (the bank) learns which of its rows the host (a data partner)
// also has; the host learns only the guest's set size, unless the session
// is in both-learn mode. Like package psi it is a domain package: no I/O,
// no package state; a job runner or a transport carries its messages.
//
// # Protocol
//
// Notation: k = CodeBits = 440; the guest has n rows, the host m; N =
// Bins(n) cuckoo bins; H is SHA-256 truncated; ⊕ is XOR and ∧ bitwise AND
// on k-bit rows.
//
//  0. Both sides digest each identifier once: d(x) = first 16 bytes of
//     SHA-256("fedrisk-kkrt-v1-id" || session tag || x). The guest
//     deduplicates its digests (each row of a duplicated identifier is
//     reported) and places every distinct one in one of its three bins
//     h_0(x), h_1(x), h_2(x) (AES under the cuckoo seed, see Bins): bin j
//     then holds r_j = (x, i), i the hash function that placed it, or is
//     empty.
//  1. Hellos and base OTs (one round trip). Guest → host: its settings,
//     n, the cuckoo seed and A = a·G of k random 1-out-of-2 OTs by Chou
//     and Orlandi ("The Simplest Protocol for Oblivious Transfer",
//     Latincrypt 2015) over ristretto255, in which the guest is the OT
//     sender. Host → guest: m, a fresh AES key for the code, and B_1..B_k
//     for its k random choice bits s. The guest ends with both seeds
//     k_c^0, k_c^1 of every column c, the host with k_c^{s_c} only.
//  2. OT extension (IKNP, Crypto 2003, with KKRT's code), in batches of
//     bins. Each seed expands by AES-128-CTR into a column of N bits:
//     t^c = G(k_c^0), t'^c = G(k_c^1). The guest sends, for every bin j,
//     the row u_j = t_j ⊕ t'_j ⊕ C(r_j) (RowBytes = 55 bytes), where C is
//     the pseudorandom code C(x, i) = the first k bits of AES_key(d(x) ⊕
//     4i+b), b = 0..3, and an empty bin uses the all-zero word. The host
//     forms q_j = G(k^{s})_j ⊕ (u_j ∧ s) = t_j ⊕ (C(r_j) ∧ s). The guest's
//     OPRF value of its element in bin j is H(t_j); the host can evaluate
//     the same function at any (y, i) as H(q_j ⊕ (C(y, i) ∧ s)), equal to
//     H(t_j) exactly when (y, i) = r_j.
//  3. Host values. For every host row y (in the order of a secret uniform
//     permutation) and every i, the host sends H(q_{h_i(y)} ⊕ (C(y, i) ∧
//     s)), TagBytes(n, m) bytes each, three per row. It computes them as
//     the extension batches arrive (its rows are bucketed by the batch of
//     each of their bins), so this phase only copies.
//  4. The guest looks each value up among its own values of the same hash
//     index: a hit is a row of the intersection. In both-learn mode it
//     then sends the matched host positions and the host maps them back
//     through its permutation.
//
// Rows are handled column-wise for the PRG and row-wise for codes and
// hashes; a 64×64 bit-matrix transpose connects the two. Every batch of
// bins starts at a multiple of 128, so each batch is its own range of CTR
// counters: batches can be computed in any order, concurrently, and again
// bit for bit after a restart.
//
// # Parameters
//
// Code width k = 440. KKRT's bound on what the guest can learn beyond its
// own values sums 2^-d over every pair (guest input, other input) it sees
// evaluated, d the distance of their codewords, whose expectation for a
// pseudorandom code is (3/4)^k per pair; keeping the sum below 2^-128
// needs k ≥ (128 + log2 pairs)/log2(4/3). KKRT's k = 424 covers 2^48
// pairs; k = 440 covers 2^54.6, which holds even counting every guest bin
// against every host value (N·3m) up to n = m = MaxSetSize = 2^26, and its
// 55-byte rows fit one SHA-256 block with padding, so each OPRF value costs
// one compression. (448 would not fit; 512, libOTe's choice, costs 16%
// more traffic.)
//
// Cuckoo hashing: 3 hash functions, no stash. Bins(n) is max(8192, 1.6n)
// up to n = 2^14, where an exact union bound over Hall violations (s+1
// elements whose hashes all fall in s bins) is below 2^-40
// (TestBinsUnionBound), and above that e·n with e = (40 + 256 +
// ⌈log2 n⌉)/240, the fit λ = 240e − 256 − log2 n of Pinkas, Schneider,
// Weinert and Wieder's experiments ("Efficient Circuit-based PSI via
// Cuckoo Hashing", Eurocrypt 2018) as used by cryptoTools' and
// SecretFlow's KKRT: e = 1.317 at 2^20 and 1.333 at 2^24 for a failure
// probability of 2^-40. Those measurements include failures of a bounded
// random walk; insertion here falls back to an exact search for an
// augmenting path, so it fails only when no placement exists at all,
// which is rarer. A later cryptoTools refit of the same experiments is
// more conservative (e ≈ 1.54 at 2^20); the asymptotic count of the
// smallest Hall violations (two elements whose six hashes coincide,
// ≈ n²/2N^5 · N) is far below 2^-40 at these sizes. If a table fails, the
// guest draws another seed (up to 4): correctness never depends on the
// bound, only privacy does, since the seed the host sees is the first one
// under which the guest's set fits (a statistical leak of at most the
// failure probability).
//
// Value length: TagBytes(n, m) = 40 + ⌈log2(n·m)⌉ bits in whole bytes (10
// at 2^20 × 2^20). A host value is compared only with guest values of the
// same hash index, at most n·m comparisons, so a false match has
// probability below 2^-40.
//
// Primitives: AES-128 (crypto/aes, AES-NI) for the code, the cuckoo
// positions and, in CTR mode, the column PRG; SHA-256 (SHA-NI where
// present) for digests, OPRF values and base-OT key derivation;
// ristretto255 (github.com/gtank/ristretto255, as package psi) for the
// base OTs. SHA-256 was measured against BLAKE2b and BLAKE2s on the 55-byte
// rows and is 2.5–4 times faster here (BenchmarkPrimitives). The protocol
// itself is written here from the papers: the job machinery needs every
// step addressable by batch, repeatable after a restart and shaped like
// package psi's, which no maintained Go module offers as a library.
//
// # Modes
//
// psi.ModeIntersection and psi.ModeBothLearn as in package psi.
// psi.ModeCardinality is refused with ErrUnsupportedMode: the guest holds
// its own OPRF value for each of its elements and compares the host's
// values with them, so any match names the guest element it matched;
// shuffling the host's values hides the host's rows, not the guest's.
// Cardinality-only needs a different construction (e.g. circuit PSI or
// DH-based PSI-CA, which package psi provides).
//
// # Security
//
// Semi-honest: both parties follow the protocol. Then the guest learns
// the host's set size m, which of its rows the host has, and how the
// host's rows repeat (equal identifiers give equal value triples, as in
// ECDH; callers deduplicate first). The host learns the guest's row count
// n, from which it derives N, and nothing else: the extension rows are
// masked by PRG columns whose seeds it does not hold, and the base OTs
// hide s from the guest. In both-learn mode the guest reveals the matched
// host positions by design and the host believes them. Each base OT key,
// code key, choice vector and permutation is fresh per session from
// crypto/rand; the permutation is derived from a 16-byte seed by
// AES-CTR Fisher–Yates so that the host's stored state stays small.
//
// Against a malicious peer KKRT gives no guarantee: a guest can send
// extension rows that are not of the form above and learn more than one
// value per bin; a host can send values of another set. Received points
// and messages are nevertheless validated strictly (canonical, non-identity
// points; exact message shapes, ranges and phase order), and nothing a peer
// announces makes a party allocate more than its own data requires. The
// AES, SHA-256 and masking code is constant-time; lookups of values are
// not and need not be (values are the guest's output). Errors never quote
// identifiers.
//
// # Using it
//
// Guest and Host are the protocol's state, with a method per step that a
// job runner can call batch by batch, concurrently, with a checkpoint per
// batch; MarshalBinary and RestoreGuest/RestoreHost keep the secrets across
// a restart (a restored host needs the extension batches again, which the
// guest recomputes bit for bit). Role wraps them as message-driven state
// machines with the contract of psi.Role, for stream transports and tests;
// Encode and Decode are the wire format (the header of package psi's with
// a version byte of its own, FormatVersion).
//
// # Costs
//
// Traffic: N·55 bytes of rows from the guest and 3·m·TagBytes from the
// host, plus 14 KB of hellos and 28 bytes per message (TestWireBytes):
// 107,414,330 bytes at n = m = 2^20 (75,938,734 up, 31,475,596 down;
// 4-byte frames on a stream add 1,204), 1.78 GB at 2^24. Work: n + m digests and
// cuckoo positions, n + 3m codewords (4 AES blocks) and SHA-256 values,
// AES-CTR over 3·440 bits per bin and two transposes at the guest, one at
// the host. Floor measures the AES and hashing part in the running
// process; BenchmarkTwoProcesses_2_20 runs a whole session between two
// processes over loopback TCP and reports wall time, traffic and each
// party's peak RSS.
package kkrt
