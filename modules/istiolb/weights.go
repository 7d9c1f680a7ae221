package istiolb

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// Warmup is Envoy's slow start (Istio's loadBalancer.warmup): an endpoint
// that joined less than Duration ago has its weight scaled by
// max(MinimumPercent/100, (age/Duration)^(1/Aggression)).
type Warmup struct {
	// Duration of the warmup window. Required.
	Duration caddy.Duration `json:"duration,omitempty"`

	// MinimumPercent is the least share of its weight a new endpoint gets,
	// within [0, 100]. Default (when absent; an explicit 0 is 0): 10.
	MinimumPercent *float64 `json:"minimum_percent,omitempty"`

	// Aggression shapes the ramp: 1 is linear, larger ramps up faster.
	// Default: 1.
	Aggression float64 `json:"aggression,omitempty"`
}

// provision sets the defaults.
func (w *Warmup) provision() {
	if w.MinimumPercent == nil {
		tenPercent := 10.0
		w.MinimumPercent = &tenPercent
	}
	if w.Aggression == 0 {
		w.Aggression = 1
	}
}

// validate checks the configuration.
func (w *Warmup) validate() error {
	if w.Duration <= 0 {
		return fmt.Errorf("warmup: duration must be positive")
	}
	if w.MinimumPercent != nil && (*w.MinimumPercent < 0 || *w.MinimumPercent > 100) {
		return fmt.Errorf("warmup: minimum_percent must be within [0, 100]")
	}
	if w.Aggression <= 0 {
		return fmt.Errorf("warmup: aggression must be positive")
	}
	return nil
}

// factor returns the share of its weight an endpoint added at added gets
// now; 1 once warm or when added is unknown.
func (w *Warmup) factor(added, now time.Time) float64 {
	if added.IsZero() {
		return 1
	}
	window := time.Duration(w.Duration)
	age := now.Sub(added)
	if age >= window {
		return 1
	}
	// Envoy counts at least one millisecond, so a new endpoint's factor
	// is never 0 before minimum_percent applies.
	age = max(age, time.Millisecond)
	return max(*w.MinimumPercent/100, math.Pow(float64(age)/float64(window), 1/w.Aggression))
}

// unmarshalWarmup parses, after the "warmup" token:
//
//	warmup <duration> [{
//	    minimum_percent <percent>
//	    aggression      <factor>
//	}]
func unmarshalWarmup(d *caddyfile.Dispenser) (*Warmup, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	duration, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return nil, d.Errf("invalid warmup duration %q: %v", d.Val(), err)
	}
	w := &Warmup{Duration: caddy.Duration(duration)}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		if !d.NextArg() {
			return nil, d.ArgErr()
		}
		value, err := strconv.ParseFloat(d.Val(), 64)
		if err != nil {
			return nil, d.Errf("invalid warmup %s %q: %v", option, d.Val(), err)
		}
		switch option {
		case "minimum_percent":
			w.MinimumPercent = &value
		case "aggression":
			w.Aggression = value
		default:
			return nil, d.Errf("unrecognized warmup option %q", option)
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	return w, nil
}

// weighting gives the current weight of an endpoint: its EndpointInfo
// weight, scaled down while it warms up.
type weighting struct {
	info   EndpointInfo
	warmup *Warmup

	// table holds the EndpointInfo of the last pool seen, by position, so
	// that a pick looks no endpoint up by its address (two map lookups
	// per endpoint, most of a pick's cost); it is rebuilt when the pool's
	// endpoints change, and dropped with the EndpointInfo.
	table atomic.Pointer[weightTable]
}

// setInfo gives the weighting a new EndpointInfo.
func (wt *weighting) setInfo(info EndpointInfo) {
	wt.info = info
	wt.table.Store(nil)
}

// trivial reports whether every endpoint weighs 1 at all times.
func (wt *weighting) trivial() bool { return wt.info == nil }

// weightTable is what EndpointInfo says of the endpoints of one pool, by
// position. It is not changed once made.
type weightTable struct {
	dials []string
	base  []float64   // EndpointWeight, at least 1
	added []time.Time // EndpointAddedAt; nil without warmup
}

// tableFor returns the weight table of pool, made the first time the pool
// is seen. Without EndpointInfo every endpoint weighs 1.
func (wt *weighting) tableFor(pool reverseproxy.UpstreamPool) *weightTable {
	if t := wt.table.Load(); t != nil && t.holds(pool) {
		return t
	}
	t := &weightTable{dials: make([]string, len(pool)), base: make([]float64, len(pool))}
	if wt.warmup != nil {
		t.added = make([]time.Time, len(pool))
	}
	for i, u := range pool {
		t.dials[i] = u.Dial
		t.base[i] = float64(endpointWeight(wt.info, u.Dial))
		if t.added != nil && wt.info != nil {
			t.added[i] = wt.info.EndpointAddedAt(u.Dial)
		}
	}
	wt.table.Store(t)
	return t
}

// holds reports whether t was made for the endpoints of pool, in order.
func (t *weightTable) holds(pool reverseproxy.UpstreamPool) bool {
	if len(pool) != len(t.dials) {
		return false
	}
	for i, u := range pool {
		if u.Dial != t.dials[i] {
			return false
		}
	}
	return true
}

// weight returns the weight at now of the endpoint at position i.
func (t *weightTable) weight(i int, warmup *Warmup, now time.Time) float64 {
	if t.added == nil || warmup == nil {
		return t.base[i]
	}
	return t.base[i] * warmup.factor(t.added[i], now)
}

// smoothWRR is smooth weighted round robin (nginx's): each pick adds every
// available endpoint's weight to its credit, takes the endpoint with the
// most credit and takes the total weight off its credit. It spreads picks
// in proportion to weights, interleaved, and is a strict rotation when the
// weights are equal; weights may change between picks (slow start, active
// requests), as with Envoy's EDF scheduler.
type smoothWRR struct {
	mu     sync.Mutex
	dials  []string
	credit []float64
}

// pick returns the available upstream of pool chosen by the weights, or nil
// if none is available.
func (s *smoothWRR) pick(pool reverseproxy.UpstreamPool, weight func(i int, u *reverseproxy.Upstream) float64) *reverseproxy.Upstream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.samePool(pool) {
		// A new endpoint set starts afresh: credits of the old one mean
		// nothing for it.
		s.dials = s.dials[:0]
		for _, u := range pool {
			s.dials = append(s.dials, u.Dial)
		}
		s.credit = make([]float64, len(pool))
	}
	var total float64
	best := -1
	for i, u := range pool {
		if !u.Available() {
			continue
		}
		w := weight(i, u)
		s.credit[i] += w
		total += w
		if best < 0 || s.credit[i] > s.credit[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	s.credit[best] -= total
	return pool[best]
}

func (s *smoothWRR) samePool(pool reverseproxy.UpstreamPool) bool {
	if len(pool) != len(s.dials) {
		return false
	}
	for i, u := range pool {
		if u.Dial != s.dials[i] {
			return false
		}
	}
	return true
}
