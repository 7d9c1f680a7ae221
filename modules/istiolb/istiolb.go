// Package istiolb holds reverse_proxy selection policies with Envoy's load
// balancing semantics, for the simple and consistent-hash policies of an Istio
// DestinationRule that Caddy's own policies do not reproduce.
package istiolb

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(new(LeastRequestSelection))
}

// LeastRequestSelection is Envoy's LEAST_REQUEST load balancer, Istio's
// default. When the endpoints weigh the same, it samples ChoiceCount
// available upstreams at random (with replacement) and takes the one with the
// fewest active requests, keeping the first sampled on a tie. When their
// weights differ (EndpointInfo weights, or slow start), it schedules by
// weighted round robin with effective weight weight / (active requests + 1),
// Envoy's active_request_bias of 1.
//
// Caddy's random_choose looks alike but is not: it returns the first sampled
// upstream that has no active request, and its sample keeps pool order, so
// with idle upstreams it sends every request to the same one.
type LeastRequestSelection struct {
	// ChoiceCount is how many upstreams are sampled per request (Envoy's
	// choice_count). Default: 2.
	ChoiceCount int `json:"choice_count,omitempty"`

	// Warmup ramps up the weight of new endpoints (Envoy's slow start).
	// Default: off.
	Warmup *Warmup `json:"warmup,omitempty"`

	weighting weighting
	wrr       smoothWRR
}

// CaddyModule returns the Caddy module information.
func (*LeastRequestSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.least_request",
		New: func() caddy.Module { return new(LeastRequestSelection) },
	}
}

// Provision sets the defaults.
func (s *LeastRequestSelection) Provision(caddy.Context) error {
	if s.ChoiceCount == 0 {
		s.ChoiceCount = 2
	}
	if s.Warmup != nil {
		s.Warmup.provision()
	}
	s.weighting.warmup = s.Warmup
	return nil
}

// Validate checks the configuration.
func (s *LeastRequestSelection) Validate() error {
	if s.ChoiceCount < 2 {
		return fmt.Errorf("choice_count must be at least 2")
	}
	if s.Warmup != nil {
		return s.Warmup.validate()
	}
	return nil
}

// SetEndpointInfo gives the policy the endpoint weights and ages.
func (s *LeastRequestSelection) SetEndpointInfo(info EndpointInfo) { s.weighting.setInfo(info) }

// Select returns an available upstream, or nil if there is none.
func (s *LeastRequestSelection) Select(pool reverseproxy.UpstreamPool, _ *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	if !s.weighting.trivial() {
		var now time.Time
		if s.Warmup != nil {
			now = time.Now()
		}
		table := s.weighting.tableFor(pool)
		if !equalWeights(pool, table, s.Warmup, now) {
			return s.wrr.pick(pool, func(i int, u *reverseproxy.Upstream) float64 {
				return table.weight(i, s.Warmup, now) / float64(u.NumRequests()+1)
			})
		}
	}
	return s.powerOfChoices(pool)
}

// equalWeights reports whether the available upstreams of pool weigh the
// same at now.
func equalWeights(pool reverseproxy.UpstreamPool, table *weightTable, warmup *Warmup, now time.Time) bool {
	first := -1.0
	for i, u := range pool {
		if !u.Available() {
			continue
		}
		w := table.weight(i, warmup, now)
		if first < 0 {
			first = w
		} else if w != first {
			return false
		}
	}
	return true
}

// powerOfChoices is Envoy's unweighted least request: the least loaded of
// ChoiceCount random picks.
func (s *LeastRequestSelection) powerOfChoices(pool reverseproxy.UpstreamPool) *reverseproxy.Upstream {
	available := 0
	for _, u := range pool {
		if u.Available() {
			available++
		}
	}
	if available == 0 {
		return nil
	}
	var best *reverseproxy.Upstream
	for range s.ChoiceCount {
		u := nthAvailable(pool, rand.IntN(available))
		if best == nil || u.NumRequests() < best.NumRequests() {
			best = u
		}
	}
	return best
}

// nthAvailable returns the n-th (0-based) available upstream of pool.
func nthAvailable(pool reverseproxy.UpstreamPool, n int) *reverseproxy.Upstream {
	for _, u := range pool {
		if !u.Available() {
			continue
		}
		if n == 0 {
			return u
		}
		n--
	}
	return nil
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens. Syntax:
//
//	lb_policy least_request [<choice_count>] [{
//	    choice_count <n>
//	    warmup <duration> [{
//	        minimum_percent <percent>
//	        aggression      <factor>
//	    }]
//	}]
func (s *LeastRequestSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume policy name
	parseChoiceCount := func() error {
		n, err := strconv.Atoi(d.Val())
		if err != nil {
			return d.Errf("invalid choice_count %q: %v", d.Val(), err)
		}
		s.ChoiceCount = n
		return nil
	}
	if d.NextArg() {
		if err := parseChoiceCount(); err != nil {
			return err
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "choice_count":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if err := parseChoiceCount(); err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "warmup":
			w, err := unmarshalWarmup(d)
			if err != nil {
				return err
			}
			s.Warmup = w
		default:
			return d.Errf("unrecognized least_request option %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ reverseproxy.Selector = (*LeastRequestSelection)(nil)
	_ caddy.Provisioner     = (*LeastRequestSelection)(nil)
	_ caddy.Validator       = (*LeastRequestSelection)(nil)
	_ caddyfile.Unmarshaler = (*LeastRequestSelection)(nil)
	_ EndpointInfoSetter    = (*LeastRequestSelection)(nil)
)
