// Package serving is federated scoring: a guest's score combined from its
// own and each host's noised partial score, under consent and privacy
// budgets.
//
// The guest combines its own partial score with each host's clipped, noised
// partial score into a probability of default, a scorecard score and reason
// codes; a host answers partial-score requests only for subjects with a
// valid consent token, under its privacy budget. The package holds the
// domain (no net/http): serving/servingapi is the HTTP transport,
// serving/servingnode wires it into a node, and serving/registry (another
// package) stores the models.
//
// # The guest (Guest)
//
// A request names a subject by its raw identifier (only ever in the request
// body), one consent token per host (or the consent ids the guest's consent
// service issues them from), optional request-time features, and a model
// reference: a version, "stable" or "canary" (default: the node's release
// track, config VERSION, so a canary deployment scores with the canary
// model). The guest
//
//  1. normalises the identifier (consent.NormalizeIdentifier),
//  2. verifies every token itself — signature, audience = a host of the
//     model, purpose, not withdrawn (a withdrawal is refused at once) — and
//     checks that the token's per-host subject reference (href) is the one
//     it computes for this subject: HostRef(key, host, id), an HMAC under the
//     federation's subject_ref_key, so a token of one subject never scores
//     another,
//  3. reads its features from its feature store (view scoring.guest_view,
//     entity key = the normalised identifier, or with
//     scoring.guest_entity=ref its own HostRef(key, guest party, id)),
//     replaced by request-time values where given,
//  4. asks every host of the model in parallel for its partial score of the
//     href, under the deadline scoring.host_deadline (one request per host,
//     a batch carries all items for that host),
//  5. combines: logit = guest partial (bias included) + Σ host partials;
//     probability of default = 1/(1+e^−logit).
//
// A host that is down, slow, failing or without a token for the subject
// contributes 0 — the value of its partial at its training means — and the
// score is marked degraded with each failed host and a reason code; with
// scoring.fallback=fail the request fails with 503 instead. A host that
// refuses because the subject's privacy budget is exhausted makes the
// request fail (429 budget_exhausted) when the host's policy is refuse, and
// degrades it when the host's policy is degrade. A host that rejects the
// consent token fails the request (403).
//
// # Feature mapping
//
// Each feature name of a model half ("x0", "x3", ...) is read as the feature
// of the same name in the party's configured view (scoring.guest_view,
// scoring.host_view; default guest_credit and host_credit, the views of
// internal/features/examples/views.yaml). A value the store does not have
// (or only too old) is the view's documented default and is listed in the
// answer's missing_features (guest) — never its value.
//
// # Scorecard
//
// The score is the usual points-to-double-the-odds scale on the odds of
// being good, (1−p)/p = e^−logit:
//
//	factor = PDO / ln 2
//	offset = base_score − factor·ln(base_odds)
//	score  = clamp(round(offset − factor·logit), min, max)
//
// With the defaults (base_score 600 at base_odds 50:1, PDO 20, clamped to
// 300..850) a probability of default of 1/51 scores 600, and every halving of
// the odds of being good costs 20 points.
//
// # Reason codes
//
// The guest's reasons are its top-k features by |w_j·z_j| (z_j the
// standardised value, w_j its weight): the feature's contribution to the
// logit, positive when it raises the risk. Each host contributes one
// aggregate reason (its released partial score), never its features.
//
// # The host (Host)
//
// A host's partial-score request carries the token and the href. The host
// verifies the token against the guest's JWKS (audience = itself, purpose,
// not withdrawn, through consentclient), compares the token's href claim
// with the request's in constant time, and only then reads its features,
// keyed by href: a host's feature store is loaded with entity = the href of
// each subject (HostRef(key, this host, normalised id)), so the host never
// needs nor sees the raw identifier at scoring time. The partial score is
// released through privacy.Releaser: clipped to [−B, B], discrete Laplace
// or Gaussian noise (exact, crypto/rand), charged to the ledger under
// (requesting party, subject pseudonym from the token, purpose) before the
// noise is drawn, the same value returned free for the same (subject, model
// version, feature snapshot) within the release window. The feature
// snapshot is a digest of the feature values and their event times the
// score was computed from; the guest cannot choose it.
package serving
