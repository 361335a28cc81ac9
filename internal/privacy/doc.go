// Package privacy is the differential-privacy core of a host party: it
// turns a partial score into a clipped, noised release, charges every
// release to a privacy budget, and returns the same noisy value for a
// repeated request instead of a fresh one.
//
// # Fixed point
//
// A real partial score s is released as the integer round(s·2^FracBits)
// (FracBits = 16, so one unit is 2^-16 ≈ 1.5e-5 score units; round is
// half away from zero). Clipping, sensitivity and noise are all in these
// integer units; [FromFixed] turns a release back into a score.
//
// # Mechanisms
//
// A [Mechanism] clips the score to [−B, B] (B is the clip bound in score
// units; B_q = round(B·2^16) in fixed-point units), so two partial scores
// differ by at most the sensitivity Δ = 2·B_q, and adds integer noise:
//
//   - Laplace(B, ε): discrete Laplace noise, P[Z = z] ∝ exp(−|z|/t), with
//     t = Δ/ε exactly (ε is an integer number of micro-ε, so t is the
//     rational Δ·10^6/ε_µ). The release is ε-DP: moving the input by at
//     most Δ changes the log-probability of any output by at most Δ/t = ε.
//   - Gaussian(B, ε, δ): discrete Gaussian noise, P[Z = z] ∝ exp(−z²/2σ²),
//     which is ρ-zCDP with ρ = Δ²/(2σ²) (Canonne–Kamath–Steinke 2020: the
//     same ρ as the continuous Gaussian), hence (ρ + 2·sqrt(ρ·ln(1/δ)),
//     δ)-DP (Bun–Steinke 2016, Proposition 1.3). Given (ε, δ), ρ is the
//     largest value with ρ + 2·sqrt(ρ·L) ≤ ε for L = ln(1/δ), i.e.
//     ρ = (ε / (sqrt(ε+L) + sqrt(L)))², and σ² = Δ²/(2ρ), rounded up (never
//     down) to a rational with denominator 10^6 so that the sampler is exact.
//   - NoNoise(B): clipping only, for evaluation and the serving layer's
//     equality test against the plaintext model. It has no privacy at all,
//     is never charged and returns the clipped float64 score exactly (not
//     rounded to fixed point).
//
// # Exact sampling
//
// [Sampler] implements Canonne, Kamath and Steinke, "The Discrete Gaussian
// for Differential Privacy" (NeurIPS 2020), Algorithms 1–3, with exact
// integer arithmetic (math/big) and no floating point: Bernoulli(exp(−γ))
// for rational γ (Algorithm 1), discrete Laplace with rational scale t/s by
// a uniform and a geometric part (Algorithm 2), and discrete Gaussian with
// rational σ² by rejection from discrete Laplace with scale floor(σ)+1
// (Algorithm 3). Every random choice is a uniform integer in [0, n), drawn
// by rejection from the fewest whole bytes of crypto/rand (or rand.Int for
// n ≥ 2^64), so there is no modulo bias. There is no well-kept Go library
// for exact discrete samplers (the Go differential-privacy libraries sample
// through floating point), which is why this is written by hand.
//
// # Accounting
//
// The budget currency is ε, stored as integer micro-ε ([Amount]) so that
// sums are exact. Releases compose by basic composition: each release is
// charged its ε, and a budget window admits releases while the sum of
// their ε stays within the purpose's [Policy].Total. A Gaussian release
// spends its δ too; a window that admits k = floor(Total/ε) Gaussian
// releases therefore gives (Total, k·δ)-DP for that subject, which the
// operator bounds by choosing δ (e.g. 1e-9).
//
// A [Ledger] holds one budget per (requesting party, subject pseudonym,
// purpose, window). Windows are aligned to the Unix epoch: the window of
// time t under a window length L is [floor(t/L)·L, (floor(t/L)+1)·L).
// A policy change never frees spent budget: under a new window length,
// what was spent in the window current at the change, and anything
// charged since the new window began, counts in the new current window.
// Charge runs before the noise is drawn, atomically in the database, and
// fails with [ErrBudgetExhausted] when the cost exceeds what remains; the
// error is an [*ExhaustedError] that carries the purpose's
// [Policy].OnExhausted ("refuse" or "degrade") for the service to act on.
// A charge is refunded only when no noisy value was drawn; once a value
// exists its cost is never returned, even if the caller never delivers it,
// so a crash between charge and release can only over-count.
//
// # Idempotent release
//
// [Releaser] caches each noisy value under (requesting party, purpose,
// mechanism, [ReleaseKey](subject, model version, feature snapshot)) for a
// cache window. A repeated request within the window gets the stored value
// and is not charged, so asking again cannot average the noise away.
// Concurrent identical requests in one process wait for each other; across
// replicas they may each draw (and pay for) a value, which keeps the
// accounting sound. The ledger's SQL implementation is in
// privacy/sqlprivacy, its conformance suite in privacy/privacytest.
package privacy
