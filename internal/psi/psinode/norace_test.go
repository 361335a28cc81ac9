//go:build !race

package psinode_test

// raceEnabled is true in race-detector builds.
const raceEnabled = false
