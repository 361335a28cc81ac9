// Package hetero trains a logistic-regression model across parties that
// hold different features of the same customers ("hetero", vertical
// federated LR): one guest with the labels y and features X_A, and one or
// more hosts with features X_h, on the rows PSI found in common. No party
// sees another's raw features, labels or weights; what crosses the wire is
// a CKKS ciphertext under the guest's key, a masked value, or one of the
// disclosures listed below. Each party ends with its own half of the model
// ([GuestModel], [HostModel]), linked by one model id and version.
//
// [Guest] and [Host] are state machines driven by their Run methods; they
// exchange typed [Message]s (type, epoch, batch, binary payload; [Encode]
// and [Decode] with strict size limits) through a two-method [Transport],
// so the service layer can put mTLS HTTP under them. [Pipe] is an
// in-memory transport, [Recorder] records every message. A message of the
// wrong type, epoch or batch, or with a payload of the wrong shape, aborts
// the run on both sides ([ErrProtocol], [ErrMalformed], then an Abort
// message, [ErrAborted] at the peer).
//
// The training algorithm is [lr.Train]'s, step for step: the same batch
// plan, learning-rate schedule, L2, class weights and early stopping, with
// the Taylor sigmoid s(u) = 0.5 + u/4 (linear, so it can be evaluated on
// masked and encrypted scores). The tests hold the federated model to the
// plaintext oracle: on the bundled credit data both reach the same test
// AUC (0.7225 with the default split, 0.7259 with the exact sigmoid: the
// Taylor approximation costs about 0.003–0.007 AUC there) and the same
// weights to 1e-4.
//
// # One batch
//
// For batch B (b rows) with u_A = X_A·w_A + bias (guest), u_h = X_h·w_h
// (host h), class weights c_i and U = Σ_h u_h, the residual is
// d_i = c_i·(0.5 + (u_A,i + U_i)/4 − y_i), the host gradient X_hᵀ·d/b + λw_h
// and the guest's X_Aᵀ·d/b + λw_A. In fixed point (scores ·2^σ, class
// weights ·2^γ, features ·2^σx):
//
//  1. host h → guest (Scores): masked scores. With one host,
//     s_i = (u_i·2^σ + m_i) mod T, m_i uniform modulo T = 2^(σ+B_u+1) = 2^31,
//     and M_i = s_i − u_i·2^σ (known to the host). With several hosts,
//     s_h,i = u_h,i·2^σ + m_h,i, masks uniform on [0, 2^μ),
//     μ = σ + B_u + MaskBits = 70, and M = Σ_h m_h (every host can compute
//     it, see below). Host 0 → guest (GuestTerm): [[Σ_i (c_i·x_A,ij)·M_i]]
//     for the guest's columns, computed on ciphertexts of c⊙X_A the guest
//     sent once (Constants).
//  2. guest → hosts (Residual): [[d']] with d'_i = c_i·(t_i + Σ_h s_h,i),
//     t_i = (2 + u_A,i − 4y_i)·2^σ, i.e. the residual plus c_i·M_i.
//     The residual is formed under this mask and this encryption; the guest
//     never sees U, the hosts never see y, c or u_A.
//  3. host h → guest (Gradient): [[X_hᵀ·d' − (X_h⊙M)ᵀ·c + R]] = [[X_hᵀ·d + R]]
//     (masks cancel exactly modulo Q; [[c]] came once per batch in
//     Constants), switched down to two primes, re-randomised, with R uniform
//     over Z_Q_out per result.
//  4. guest → host h (Decrypted): the decrypted X_hᵀ·d + R plus flooding
//     noise; the host removes R and updates w_h. The guest removes
//     Σ(c⊙X_A)ᵀM (step 1) from its clear X_Aᵀ·d' and updates w_A and bias.
//
// After each epoch the hosts send their partial scores of the validation
// rows (EvalScores), the guest computes loss, AUC and KS and tells the
// hosts whether to keep these weights and whether to stop (EpochEnd). After
// training the hosts send partial scores of the test rows once (with the
// kept weights) for the card, then Finish / FinishReply exchange the model
// id and the host halves' digests.
//
// # Packing
//
// CKKS in its coefficient encoding, with plaintexts built as exact
// fixed-point integers in RNS form (lattigo's own coefficient encoder takes
// floats and cannot express the modular mask cancellation). The guest puts
// the b ≤ stride rows of a batch at coefficients 0..b−1; a host lays
// feature j of a chunk at exponents stride·j − i (negacyclic), so one
// plaintext–ciphertext product yields N/stride inner products Σ_i x_ij·d_i at
// coefficients 0, stride, 2·stride, ... — no rotations, hence no Galois or
// relinearisation keys at all (the guest sends only a public key, at the
// output level). With N = 2^13 and batches of 512 that is 16 features per
// ciphertext. Measured on the development machine (2 cores, shared;
// BenchmarkPacking*): one such ciphertext of results costs the host about
// as much as a single rotation of the slot-packed alternative (rows in
// slots, X_hᵀ·[[d]] by diagonals and rotate-and-sum), which needs about a
// dozen rotations for the credit host's 10×512 product and fifty for a
// 300×8192 one; the coefficient packing is therefore ~10× cheaper on the
// credit data and on par on wide hosts, where it costs bandwidth instead
// (16 bytes per row and feature per epoch).
//
// # Sizes (default parameters, one host, b = 512)
//
//	message      direction        size
//	Hello        G→H              ≈ 1.5 KB JSON
//	PublicKey    G→H              256 KiB (pk at the two output primes)
//	Constants    G→H, per batch   192 KiB [[c]] (+ 192 KiB per 16 guest columns, host 0)
//	Scores       H→G, per batch   16·b bytes
//	GuestTerm    H0→G, per batch  128 KiB + 16 B per 16 guest columns
//	Residual     G→H, per batch   192 KiB (seeded: c0 and a 32-byte seed)
//	Gradient     H→G, per batch   128 KiB + 16 B per 16 host features
//	Decrypted    G→H, per batch   16 B per host feature
//	EvalScores   H→G, per epoch   16 B per validation row
//
// (With several hosts the guest's ciphertexts have four primes: 256 KiB.)
// Credit (21,000 training rows, 42 batches): ≈ 19 MB per epoch. Synthetic
// 70,000 × (30 + 300): ≈ 407 MB per epoch.
//
// # CKKS parameters
//
// [DefaultParams]: ring degree N = 2^13; with one host Q is three 60-bit
// NTT primes (log Q = 180), with several four 54-bit primes (log Q = 216,
// room for the larger additive masks). log QP = log Q ≤ 218 gives 128-bit
// classical security for a uniform ternary secret and σ = 3.2 (the
// HomomorphicEncryption.org tables); there are no special primes since
// nothing is key-switched. Results come back on two primes. Fixed point:
// σ = 24, σx = 20, γ = 20 fractional bits, partial scores bounded by 2^6
// and standardised features by 2^8 (violations stop the run with
// [ErrBound]). The guest derives the extra ciphertext scale α (84 with one
// host, 120 with two) and the flooding width (2^59) from these and the
// public sizes (rows per batch, hosts, features per ciphertext); each host
// recomputes both and refuses a proposal that differs or that is below its
// minimums (log Q over the security bound, MaskBits < 40, FloodBits < 30).
// The worst-case error of a decrypted batch sum Σ_i x·d is 2^−31 with one
// host and 2^−19 with two (recorded in the card).
//
// # What is hidden, and how well
//
//   - Labels, guest features and weights (from hosts): hosts only see
//     ciphertexts under the guest's key (RLWE, 128-bit), masked values and
//     public sizes. Seeded symmetric encryption keeps the guest's noise
//     secret; the seeds are public by design.
//   - Host partial scores (from the guest): with one host the masked score
//     is uniform modulo T whatever u is: perfect hiding. With several
//     hosts, masks uniform on [0, 2^μ) with |u·2^σ| < 2^(μ−40): 40 bits of
//     statistical hiding (statistical distance ≤ 2^−40 per value).
//   - Host gradients (from the guest): R is uniform over Z_Q_out and all
//     arithmetic is modulo Q_out, so what the guest decrypts is uniform
//     whatever the gradient: perfect hiding (an additive mask over the
//     integers would need a range of 2^40 × the gradient bound for 40 bits;
//     a modular one needs none). The host re-randomises every ciphertext it
//     returns with a fresh public-key encryption of zero and sends c0 only at
//     the result coefficients; without that, c1 = Σ pt·a would let the key
//     holder solve for the host's plaintexts (features, masks).
//   - The guest's secret key (from hosts): a host gets back decryptions of
//     ciphertexts it built, the setting of the Li–Micciancio key-recovery
//     attack. The guest adds uniform noise of 2^(FloodBits + ⌈log2 noise
//     bound⌉) (2^59 by default) to every such value: 40 bits of flooding,
//     statistical distance ≤ 2^−40 per released value from a release that
//     depends on no secret-key noise. Only 16 bytes per host feature per
//     batch are released this way.
//
// Disclosed by design, in the card too: the guest learns its own gradient
// every batch (as in every hetero-LR), which is a function of Σ_h u_h on
// the batch; the guest learns Σ_h u_h on the validation rows every epoch
// and on the test rows once — with one host, that host's partial scores,
// exactly what online scoring reveals (several hosts' contributions are
// summed under zero-sum masks first); hosts learn row counts, the batch
// plan, which epochs improved the validation loss and when training
// stops. With several hosts, host 0 draws the mask
// seed and seals it to each other host (X25519 + HKDF + AES-GCM, relayed by
// the guest), so all hosts can remove the total mask: a host colluding
// with the guest could unmask another host's scores. The model is
// semi-honest parties over authenticated channels.
//
// Masks, flooding noise and all secret keys come from crypto/rand (score
// masks through AES-256-CTR keyed by a 256-bit crypto/rand seed, drawn by
// host 0 and, with several hosts, shared with the others;
// re-randomisation noise from an AES-CTR stream keyed from crypto/rand,
// per worker). The split, batch plan and synthetic data are not secret and
// use seeded math/rand.
//
// # Left to the service layer
//
// A Transport over mTLS (map the peer certificate to the host, refuse
// frames over [MaxMessageBytes], deadlines per message), the job around a
// run (its configuration, PSI result as the aligned identifiers, progress
// via GuestConfig.Progress, cancellation via the context), storing and
// serving the exported halves, metrics, and the bench command.
package hetero
