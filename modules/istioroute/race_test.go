//go:build race

package istioroute

// raceEnabled is true under the race detector, which drops sync.Pool items
// at random and so makes allocation counts meaningless.
const raceEnabled = true
