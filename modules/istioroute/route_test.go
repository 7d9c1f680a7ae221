package istioroute

import (
	"math"
	"strings"
	"testing"
)

func TestWeightedPick(t *testing.T) {
	const picks = 5000
	for _, tc := range []struct {
		name    string
		weights []int32
		want    []float64 // expected share of each destination
	}{
		{"90/10", []int32{90, 10}, []float64{0.9, 0.1}},
		{"relative weights need not sum to 100", []int32{1, 3}, []float64{0.25, 0.75}},
		{"three ways", []int32{50, 30, 20}, []float64{0.5, 0.3, 0.2}},
		{"zero weight among several gets nothing", []int32{0, 70, 30}, []float64{0, 0.7, 0.3}},
		{"single destination of weight 0 gets everything", []int32{0}, []float64{1}},
		{"single destination of any weight gets everything", []int32{25}, []float64{1}},
		{"only one non-zero", []int32{0, 5, 0}, []float64{0, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dests []*destination
			for i, w := range tc.weights {
				dests = append(dests, &destination{cluster: string(rune('a' + i)), weight: w})
			}
			rt := new(route)
			if err := rt.setDestinations(dests); err != nil {
				t.Fatal(err)
			}
			counts := map[*destination]int{}
			for range picks {
				counts[rt.pick()]++
			}
			for i, d := range dests {
				share := float64(counts[d]) / picks
				if tc.want[i] == 0 || tc.want[i] == 1 {
					if share != tc.want[i] {
						t.Errorf("destination %d (weight %d): share %.4f, want exactly %.0f", i, d.weight, share, tc.want[i])
					}
					continue
				}
				if math.Abs(share-tc.want[i]) > 0.03 {
					t.Errorf("destination %d (weight %d): share %.4f, want %.2f ± 0.03", i, d.weight, share, tc.want[i])
				}
			}
		})
	}
}

func TestSetDestinationsErrors(t *testing.T) {
	for _, tc := range []struct {
		weights []int32
		want    string
	}{
		{[]int32{0, 0}, "total destination weight is 0"},
		{[]int32{50, -1}, "negative weight"},
	} {
		var dests []*destination
		for _, w := range tc.weights {
			dests = append(dests, &destination{cluster: "c", weight: w})
		}
		err := new(route).setDestinations(dests)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("weights %v: error = %v, want %q", tc.weights, err, tc.want)
		}
	}
}
