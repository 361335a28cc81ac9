// Package secureboost trains gradient-boosted decision trees across parties
// that hold different features of the same customers: SecureBoost.
//
// The design follows Cheng et al. 2019: one guest with the labels and its
// features, and one or more hosts with theirs, on the rows PSI found in
// common. The guest encrypts its gradients and hessians under CKKS (lattigo
// v6, coefficient encoding as in the hetero-LR package); each host sums them
// per (feature, bin) over a node's rows without seeing them; the guest
// decrypts the bin sums, finds the best split across parties and keeps the
// tree structure and leaf weights; the owner of a split keeps its threshold.
// Each party ends with its own half of the model ([GuestModel],
// [HostModel]), linked by model id and version, and a score needs one round
// trip per host ([RouteRequest], [RouteResponse]).
//
// [Guest] and [Host] are state machines driven by their Run methods; they
// exchange typed [Message]s (type, tree, level, part, binary payload;
// [Encode] and [Decode] with strict limits) through a two-method
// [Transport], the same shape as hetero's, so the job layer can carry
// both protocols. [Pipe] is an in-memory transport, [Stream] one over a
// TCP/TLS connection, [Recorder] records or counts every message. A
// message of the wrong type, tree, level or part, or with a payload of the
// wrong shape, aborts the run on both sides ([ErrProtocol],
// [ErrMalformed], then an Abort message, [ErrAborted] at the peer).
//
// # The algorithm
//
// Binary log-loss boosting with second-order (XGBoost-style) trees,
// [Config]: trees, depth, bins, learning rate η, L2 λ, min child weight,
// min split gain γ, row subsampling, class weights (lr's modes), early
// stopping on validation AUC, and the first tree on the guest's features
// only. Each party bins its own features on its training rows by
// quantiles ([FitBinning]); a split "bin ≤ b" is the rule x ≤ cut_b on raw
// values. With scores F, p = σ(F), class weight c: g = c·(p − y),
// h = c·p·(1 − p), and their fixed-point forms round(g·2^σ), round(h·2^σ)
// (σ = Config.GradientBits, 20). Trees grow level by level. A node's
// histograms are exact integer sums of the fixed-point g and h per
// (feature, bin); the root and the smaller child of each split are
// computed, the sibling is parent − child. The gain of "bin ≤ b" is
// ½(G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)) − γ from those sums; the
// best positive gain over the guest's features, then host 0's, host
// 1's, ... (first maximum wins) splits the node. Leaf weights are
// −η·Σg/(Σh + λ) from the guest's exact float sums over the node's
// sampled rows.
//
// [Train] is the plaintext oracle: the same engine with every feature
// local. Because the federated histograms are the same exact integers,
// a federated run produces the oracle's model bit for bit (the tests
// compare every node), and [Centralized] — the oracle on the joined
// data — is the accuracy baseline: the default configuration reaches a
// test AUC of 0.7836 on the bundled credit data both ways (guest features
// alone 0.7366, host features alone 0.7683).
//
// # One tree (messages, G→H guest to host)
//
//  1. For each level d with expandable nodes (depth < MaxDepth, ≥ 2
//     sampled rows):
//     a. G→H Gradients(t, d, part…): the partitions (bitmaps over the
//     node's training rows) of the previous level's splits the host
//     did not make itself, for nodes with an expandable child; then
//     [[2^α·(g·2^s + h)]] of the computed nodes' sampled rows, R rows
//     per ciphertext, node by node. Encrypted once, the same
//     ciphertexts go to every host.
//     b. H→G Histograms(t, d, part…): one ciphertext per (computed node,
//     group of N/R of the host's (feature, bin) outputs), holding the
//     node's bin sums G·2^s + H at coefficients 0, R, 2R, …
//     c. G→H Splits(t, d): per expandable node leaf / split elsewhere /
//     split here at (feature, bin).
//     d. H→G SplitReply(t, d): for each split here, its split id and the
//     partition of the node's rows.
//  2. G→H TreeDone(t); H→G Routes(t): the routing bits of the validation
//     rows at the host's splits of tree t.
//  3. The guest evaluates, checkpoints, then G→H TreeEnd(t): keep/stop.
//
// After the last tree: G→H Finish (how many trees the model keeps), H→G
// TestRoutes (routing bits of the test rows at every kept split, once),
// H→G FinishReply (the digest of the host's half). A tree grown on the
// guest's features only (the first, with Config.FirstTreeGuestOnly) is
// TreeDone, an empty Routes and TreeEnd.
//
// # Packing
//
// A gradient ciphertext holds R rows at coefficients 0..R−1 (R = stride,
// a power of two). For a group of up to N/R of its flat (feature, bin)
// outputs, the host builds the 0/1 plaintext P = Σ_i ±X^(o(i)·R − i) (a
// negative exponent wraps with a sign), one term per row and feature of
// the group; in C·P coefficient o·R collects exactly the rows of output
// o, because any other (row, term) pair lands less than R away. The
// products over a node's ciphertexts add up, so one histogram ciphertext
// carries N/R bin sums of the whole node: no rotations, no Galois or
// relinearisation keys (the guest sends only a public key). Each product
// costs one NTT of P (cached across trees for the root when every row is
// sampled); a node costs rows·(Σ bins)/N of them. The guest picks R to
// minimise the bytes of a root level.
//
// # Sizes (defaults; the credit data: 20,974 training rows, one host with
// 10 features in 119 bins, R = 1024, so 8 bin sums per histogram
// ciphertext)
//
//	message        direction  size
//	Hello          G→H        ≈ 1 KB JSON
//	HelloReply     H→G        ≈ 0.3 KB JSON (bins per feature)
//	Setup          G→H        ≈ 0.1 KB JSON
//	PublicKey      G→H        384 KiB
//	Gradients      G→H        192 KiB per R sampled rows of the computed nodes
//	Histograms     H→G        192 KiB + 24 B per N/R bin sums, per computed node
//	Splits         G→H        1–9 B per node
//	SplitReply     H→G        4 B + rows/8 per host split
//	Routes         H→G        4 B + validation rows/8 per host split
//	TreeEnd        G→H        1 B
//
// A tree of depth 3 computes four nodes (the root, one child, two
// grandchildren): about 31 gradient and 60 histogram ciphertexts, 17.9 MB
// per tree on the credit data.
//
// # CKKS parameters and noise
//
// [DefaultParams]: N = 2^13, three 60-bit primes (log Q = 180 ≤ 218:
// 128-bit classical security for a ternary secret and σ = 3.2 by the
// HomomorphicEncryption.org tables), no special primes. The guest
// encrypts with its secret key (seeded: only c0 travels, c1 comes from a
// public 32-byte seed through AES-CTR). The plan ([budget], recomputed
// and compared by every host) bounds a sum's noise E — the guest's
// errors through at most rows·N/R plaintext terms plus the host's
// re-randomisation — and sets the flooding to 2^(⌈log2 E⌉ + FloodBits)
// and the scale α two bits above it, with G, H (bounded by rows ×
// class-weight bound × 2^σ, plus the hosts' noise bound) packed as
// G·2^s + H in what remains of Q/2; the guest rounds away α and
// recovers the exact integers. Credit: α = 64, s = 38, flooding 2^62.
//
// # What each party learns
//
// The model is semi-honest parties over authenticated channels.
//
//   - Hosts learn no label, gradient, hessian, score or guest feature:
//     they see CKKS ciphertexts under the guest's key (RLWE, 128-bit)
//     and public sizes. They learn the instance space of every node they
//     build histograms for or split — the rows of each such node, hence
//     how the guest's and other hosts' splits partition them — which
//     nodes are split (by them or "by another party", not by whom), the
//     row sample of every tree (from the public seed), when training
//     stops, and the number of kept trees. They never learn leaf
//     weights, gains or the guest's features' names.
//   - The guest learns, for every node it asks about, each host
//     feature's per-bin sums Σg and Σh over the node's sampled rows
//     (hence the ordering of the host's candidate splits by gain), the
//     number of bins of each host feature, the partition of each node at
//     the host's splits (training rows), and each host's routing bits at
//     its splits for the validation rows (every tree) and the test rows
//     (once) — what online scoring releases. It does not learn the
//     hosts' thresholds, raw values or the identities of their features
//     (it sees feature indices only); its card shows host importance in
//     aggregate.
//   - Host bin membership beyond the sums: every released sum carries
//     uniform flooding of FloodBits (40) bits over its noise bound, so it
//     reveals nothing about the guest-known encryption noise of the rows
//     in the bin (statistical distance ≤ 2^−40 per sum); a host
//     re-randomises every ciphertext it returns with a fresh public-key
//     encryption of zero and sends c0 only at the sums, so the other
//     coefficients (partial sums across rows) and c1 = Σ C1·P (which
//     would reveal P) stay hidden. Histogram subtraction happens at the
//     guest on the decrypted sums, so a host computes only the smaller
//     child.
//
// Mitigations: Config.FirstTreeGuestOnly grows the first tree — whose
// gradients are a function of the labels alone — without the hosts, who
// then learn nothing about it; HostConfig.HistogramNoise adds exact
// discrete Gaussian noise (crypto/rand) of a chosen σ to every released G
// and H, which makes each released per-feature histogram ρ-zCDP with
// ρ = Δ²/(2σ²) towards the guest for changing one row's host value (Δ² ≤
// 2·c_max²·(1 + 1/16), the row moves between two bins), composing over
// the computed nodes (at most one per level and tree contains the row);
// it does not cover the partitions of host splits, which the guest
// learns exactly, and makes the model differ from the oracle's.
//
// Masks, flooding, re-randomisation and secret keys use crypto/rand
// (directly, or AES-CTR keyed from it, one key per worker); the split, the
// row samples and synthetic data use seeded math/rand, as they are
// public.
//
// # Online scoring and the privacy budget
//
// The guest sends each host a RouteRequest (model id, version; the
// serving layer adds the subject reference, consent token and href as for
// LR). The host answers one bit per split of its half, whether or not the
// subject's path reaches it, so the host learns nothing about the path
// and the guest walks the trees ([GuestModel.Logit], [GuestModel.Explain]
// for reason codes: guest features by name, each host as one aggregate).
// The bits are released data: for each host feature the model splits on,
// they place the subject's value between two consecutive thresholds. A
// host charges them to the subject's budget like a partial score: either
// exactly, as a release of cost ε_route per answer set by policy, or
// through [HostModel.RouteRandomised], k-ary randomised response per
// feature (the interval is reported truthfully with probability
// e^ε/(e^ε + k − 1)), which is ε-differentially private per feature and
// costs [HostModel.RouteCost] = ε × (features used) per answer by basic
// composition. A repeated request for the same (subject, model version,
// feature snapshot) must return the cached answer, as partial scores do,
// so that asking again cannot average the noise away. With routing noise
// off, served scores equal the plaintext model's (tests hold them to
// 1e-9; they are equal).
//
// # Left to the service layer
//
// A Transport over mTLS (the job layer's, or [Stream] over a TLS
// connection), the job around a run (configuration, PSI-aligned rows,
// progress via GuestConfig.Progress, checkpoints via Checkpoint/Resume,
// cancellation via the context), storing the exported halves and the
// host's routing endpoint, metrics, and the bench command (package
// sbbench measures what it reports).
package secureboost
