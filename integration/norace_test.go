//go:build !race

package integration

// raceEnabled reports whether the tests run with -race.
const raceEnabled = false
