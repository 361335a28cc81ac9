//go:build !race

package featurestest

const raceEnabled = false
