//go:build race

package featurestest

// raceEnabled: the race detector slows SQLite (pure Go) about tenfold, so
// the demo-file case loads the first 3,000 rows instead of all 30,000.
const raceEnabled = true
