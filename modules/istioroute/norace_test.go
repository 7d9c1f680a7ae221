//go:build !race

package istioroute

const raceEnabled = false
