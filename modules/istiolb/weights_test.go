package istiolb

import (
	"math"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func TestRoundRobinDistribution(t *testing.T) {
	dials := dialsOf(3)
	for _, tc := range []struct {
		name    string
		weights map[string]uint32
		want    []float64
		tol     float64
	}{
		{name: "no endpoint info", want: []float64{1. / 3, 1. / 3, 1. / 3}, tol: 0.02},
		{name: "equal weights", weights: map[string]uint32{dials[0]: 5, dials[1]: 5, dials[2]: 5}, want: []float64{1. / 3, 1. / 3, 1. / 3}, tol: 0.02},
		{name: "weights 1:2:3", weights: map[string]uint32{dials[0]: 1, dials[1]: 2, dials[2]: 3}, want: []float64{1. / 6, 2. / 6, 3. / 6}, tol: 0.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := new(IstioRoundRobinSelection)
			provision(t, s)
			if tc.weights != nil {
				s.SetEndpointInfo(staticInfo{weights: tc.weights})
			}
			picks := map[string]int{}
			const n = 3000
			for range n {
				picks[s.Select(poolOf(dials), nil, nil).Dial]++
			}
			for i, d := range dials {
				if got := shares(picks, n, d); math.Abs(got-tc.want[i]) > tc.tol {
					t.Errorf("%s got %.3f of picks, want %.3f±%.2f", d, got, tc.want[i], tc.tol)
				}
			}
		})
	}
}

// With equal weights the order is a strict rotation, skipping unavailable
// upstreams.
func TestRoundRobinRotationSkipsUnavailable(t *testing.T) {
	dials := dialsOf(3)
	s := new(IstioRoundRobinSelection)
	provision(t, s)
	var got []string
	for range 6 {
		got = append(got, s.Select(poolOf(dials), nil, nil).Dial)
	}
	for i := range got {
		if got[i] != dials[i%3] {
			t.Fatalf("picks %v, want a rotation of %v", got, dials)
		}
	}
	pool := poolOf(dials)
	makeUnavailable(t, pool[1])
	for range 10 {
		if u := s.Select(pool, nil, nil); u == pool[1] {
			t.Fatal("picked an unavailable upstream")
		}
	}
	for _, u := range pool {
		makeUnavailable(t, u)
	}
	if u := s.Select(pool, nil, nil); u != nil {
		t.Fatalf("no upstream available: got %v", u)
	}
}

func TestRandomDistribution(t *testing.T) {
	dials := dialsOf(3)
	for _, tc := range []struct {
		name    string
		weights map[string]uint32
		want    []float64
	}{
		{name: "no endpoint info", want: []float64{1. / 3, 1. / 3, 1. / 3}},
		{name: "weights 1:2:3", weights: map[string]uint32{dials[0]: 1, dials[1]: 2, dials[2]: 3}, want: []float64{1. / 6, 2. / 6, 3. / 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := new(IstioRandomSelection)
			if tc.weights != nil {
				s.SetEndpointInfo(staticInfo{weights: tc.weights})
			}
			picks := map[string]int{}
			const n = 60000
			for range n {
				picks[s.Select(poolOf(dials), nil, nil).Dial]++
			}
			for i, d := range dials {
				// 0.02 is over 10 standard deviations at n=60000.
				if got := shares(picks, n, d); math.Abs(got-tc.want[i]) > 0.02 {
					t.Errorf("%s got %.3f of picks, want %.3f", d, got, tc.want[i])
				}
			}
		})
	}
	s := new(IstioRandomSelection)
	s.SetEndpointInfo(staticInfo{})
	pool := poolOf(dials)
	makeUnavailable(t, pool[0])
	for range 100 {
		if s.Select(pool, nil, nil) == pool[0] {
			t.Fatal("picked an unavailable upstream")
		}
	}
	makeUnavailable(t, pool[1])
	makeUnavailable(t, pool[2])
	if u := s.Select(pool, nil, nil); u != nil {
		t.Fatalf("no upstream available: got %v", u)
	}
}

// A busy upstream gets fewer picks, whether weights are equal (P2C) or not
// (weighted scheduling by weight / (active+1)).
func TestLeastRequestAvoidsBusyUpstream(t *testing.T) {
	dials := dialsOf(3)
	for _, tc := range []struct {
		name    string
		weights map[string]uint32
		maxBusy float64
	}{
		// P2C picks the busy one only when both samples are it: 1/9.
		{name: "equal weights", maxBusy: 0.15},
		// Effective weights 2/21 : 1 : 1 give the busy one 4.5%.
		{name: "weights 2:1:1", weights: map[string]uint32{dials[0]: 2, dials[1]: 1, dials[2]: 1}, maxBusy: 0.07},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := new(LeastRequestSelection)
			provision(t, s)
			if tc.weights != nil {
				s.SetEndpointInfo(staticInfo{weights: tc.weights})
			}
			pool := poolOf(dials)
			setActiveRequests(t, pool[0].Host, 20)
			picks := map[string]int{}
			const n = 3000
			for range n {
				picks[s.Select(pool, nil, nil).Dial]++
			}
			if got := shares(picks, n, dials[0]); got > tc.maxBusy {
				t.Errorf("busy upstream got %.3f of picks, want <= %.2f", got, tc.maxBusy)
			}
			if picks[dials[1]] == 0 || picks[dials[2]] == 0 {
				t.Errorf("idle upstreams not picked: %v", picks)
			}
		})
	}
}

// Idle weighted upstreams share by weight.
func TestLeastRequestWeighted(t *testing.T) {
	dials := dialsOf(3)
	s := new(LeastRequestSelection)
	provision(t, s)
	s.SetEndpointInfo(staticInfo{weights: map[string]uint32{dials[0]: 1, dials[1]: 2, dials[2]: 3}})
	picks := map[string]int{}
	const n = 3000
	for range n {
		picks[s.Select(poolOf(dials), nil, nil).Dial]++
	}
	for i, want := range []float64{1. / 6, 2. / 6, 3. / 6} {
		if got := shares(picks, n, dials[i]); math.Abs(got-want) > 0.01 {
			t.Errorf("%s got %.3f of picks, want %.3f", dials[i], got, want)
		}
	}
}

// The weights kept by pool position follow a change of the endpoints and
// a new EndpointInfo.
func TestWeightTableFollowsPoolAndInfo(t *testing.T) {
	dials := dialsOf(4)
	for name, s := range map[string]interface {
		reverseproxy.Selector
		EndpointInfoSetter
	}{
		"least_request":     &LeastRequestSelection{},
		"istio_round_robin": &IstioRoundRobinSelection{},
		"istio_random":      &IstioRandomSelection{},
	} {
		t.Run(name, func(t *testing.T) {
			if p, ok := s.(interface {
				caddy.Provisioner
				caddy.Validator
			}); ok {
				provision(t, p)
			}
			sharesOf := func(pool []string) map[string]int {
				picks := map[string]int{}
				for range 3000 {
					picks[s.Select(poolOf(pool), nil, nil).Dial]++
				}
				return picks
			}
			check := func(step string, picks map[string]int, want map[string]float64) {
				t.Helper()
				for dial, share := range want {
					if got := shares(picks, 3000, dial); math.Abs(got-share) > 0.03 {
						t.Errorf("%s: %s got %.3f of picks, want %.3f", step, dial, got, share)
					}
				}
			}
			s.SetEndpointInfo(staticInfo{weights: map[string]uint32{dials[0]: 1, dials[1]: 3, dials[2]: 1, dials[3]: 3}})
			check("first pool", sharesOf(dials[:2]), map[string]float64{dials[0]: 0.25, dials[1]: 0.75})
			check("other endpoints", sharesOf(dials[2:]), map[string]float64{dials[2]: 0.25, dials[3]: 0.75})
			check("same dials, reordered", sharesOf([]string{dials[3], dials[2]}), map[string]float64{dials[2]: 0.25, dials[3]: 0.75})
			s.SetEndpointInfo(staticInfo{weights: map[string]uint32{dials[2]: 3, dials[3]: 1}})
			check("new info", sharesOf(dials[2:]), map[string]float64{dials[2]: 0.75, dials[3]: 0.25})
		})
	}
}

func TestWarmupFactor(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		w     Warmup
		added time.Time
		want  float64
	}{
		{name: "unknown age", w: Warmup{Duration: caddy.Duration(30 * time.Second)}, want: 1},
		{name: "warm", w: Warmup{Duration: caddy.Duration(30 * time.Second)}, added: now.Add(-time.Minute), want: 1},
		{name: "just added: minimum", w: Warmup{Duration: caddy.Duration(30 * time.Second)}, added: now, want: 0.1},
		{name: "halfway linear", w: Warmup{Duration: caddy.Duration(30 * time.Second)}, added: now.Add(-15 * time.Second), want: 0.5},
		{name: "halfway aggression 2", w: Warmup{Duration: caddy.Duration(30 * time.Second), Aggression: 2}, added: now.Add(-15 * time.Second), want: math.Sqrt(0.5)},
		{name: "early, minimum 50", w: Warmup{Duration: caddy.Duration(30 * time.Second), MinimumPercent: percent(50)}, added: now.Add(-3 * time.Second), want: 0.5},
		{name: "early, explicit minimum 0", w: Warmup{Duration: caddy.Duration(30 * time.Second), MinimumPercent: percent(0)}, added: now.Add(-3 * time.Second), want: 0.1},
		{name: "just added, explicit minimum 0", w: Warmup{Duration: caddy.Duration(30 * time.Second), MinimumPercent: percent(0)}, added: now, want: 1. / 30000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.w
			w.provision()
			if err := w.validate(); err != nil {
				t.Fatal(err)
			}
			if got := w.factor(tc.added, now); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("factor %v, want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []Warmup{{}, {Duration: caddy.Duration(time.Second), MinimumPercent: percent(101)}, {Duration: caddy.Duration(time.Second), Aggression: -1}} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v: want an error", bad)
		}
	}
}

// A just-added endpoint gets about minimum_percent of its share under both
// policies that support slow start.
func TestWarmupSlowsNewEndpoint(t *testing.T) {
	dials := dialsOf(3)
	info := staticInfo{added: map[string]time.Time{dials[0]: time.Now()}}
	warmup := &Warmup{Duration: caddy.Duration(time.Hour)}
	for _, s := range []interface {
		reverseproxy.Selector
		caddy.Provisioner
		caddy.Validator
		EndpointInfoSetter
	}{&IstioRoundRobinSelection{Warmup: warmup}, &LeastRequestSelection{Warmup: warmup}} {
		provision(t, s)
		s.SetEndpointInfo(info)
		picks := map[string]int{}
		const n = 2100
		for range n {
			picks[s.Select(poolOf(dials), nil, nil).Dial]++
		}
		// Weights 0.1 : 1 : 1.
		if got, want := shares(picks, n, dials[0]), 0.1/2.1; math.Abs(got-want) > 0.01 {
			t.Errorf("%T: new endpoint got %.3f of picks, want %.3f", s, got, want)
		}
	}
}

func BenchmarkWeightedSelect(b *testing.B) {
	dials := dialsOf(20)
	weights := map[string]uint32{}
	for i, d := range dials {
		weights[d] = uint32(i%3 + 1)
	}
	info := staticInfo{weights: weights, added: map[string]time.Time{dials[0]: time.Now()}}
	warmup := &Warmup{Duration: caddy.Duration(time.Hour)}
	for name, s := range map[string]interface {
		reverseproxy.Selector
		caddy.Provisioner
		caddy.Validator
		EndpointInfoSetter
	}{
		"istio_round_robin":        &IstioRoundRobinSelection{},
		"istio_round_robin+warmup": &IstioRoundRobinSelection{Warmup: warmup},
		"least_request":            &LeastRequestSelection{},
		"least_request+warmup":     &LeastRequestSelection{Warmup: warmup},
	} {
		provision(b, s)
		s.SetEndpointInfo(info)
		pool := poolOf(dials)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Select(pool, nil, nil)
			}
		})
	}
	random := new(IstioRandomSelection)
	random.SetEndpointInfo(info)
	pool := poolOf(dials)
	b.Run("istio_random", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			random.Select(pool, nil, nil)
		}
	})
}

func percent(p float64) *float64 { return &p }
