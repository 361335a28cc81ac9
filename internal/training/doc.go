// Package training is the home of fedrisk's model training. The code lives
// in its subpackages:
//
//   - [github.com/fedrisk/fedrisk/internal/training/dataset]: the parties'
//     CSV tables, alignment on the PSI result, the seeded 80/20 split both
//     parties compute without talking, local standardisation and a synthetic
//     generator with a planted logistic model.
//   - [github.com/fedrisk/fedrisk/internal/training/lr]: the plaintext
//     logistic-regression trainer and the metrics (AUC, KS, log-loss). It is
//     the test oracle and the centralized baseline, never part of the
//     federated path; it also owns the hyper-parameters, the batch plan and
//     the early-stopping rule the federated path shares with it, so the two
//     compute the same thing.
//   - [github.com/fedrisk/fedrisk/internal/training/hetero]: vertical
//     ("hetero") federated logistic regression between one guest and one or
//     more hosts, with CKKS (lattigo v6) and masks, as message-driven state
//     machines over a small Transport interface.
package training
