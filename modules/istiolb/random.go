package istiolb

import (
	"math/rand/v2"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(new(IstioRandomSelection))
}

// IstioRandomSelection is Istio's RANDOM load balancer: a random available
// endpoint, with probability proportional to its EndpointInfo weight.
//
// The weight includes the endpoint's locality share, which Envoy's random
// balancer honours (it first picks a locality by weight); within a
// locality Envoy picks uniformly, where this policy still weights by
// ServiceEntry/WorkloadEntry weight.
type IstioRandomSelection struct {
	weighting weighting
}

// CaddyModule returns the Caddy module information.
func (*IstioRandomSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.istio_random",
		New: func() caddy.Module { return new(IstioRandomSelection) },
	}
}

// SetEndpointInfo gives the policy the endpoint weights.
func (s *IstioRandomSelection) SetEndpointInfo(info EndpointInfo) { s.weighting.setInfo(info) }

// Select returns a random available upstream, or nil if there is none.
func (s *IstioRandomSelection) Select(pool reverseproxy.UpstreamPool, _ *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	if s.weighting.trivial() {
		available := 0
		for _, u := range pool {
			if u.Available() {
				available++
			}
		}
		if available == 0 {
			return nil
		}
		return nthAvailable(pool, rand.IntN(available))
	}
	return weightedRandom(pool, &s.weighting)
}

// weightedRandom returns an available upstream of pool with probability
// proportional to its weight, or nil if none is available.
func weightedRandom(pool reverseproxy.UpstreamPool, wt *weighting) *reverseproxy.Upstream {
	table := wt.tableFor(pool)
	var total float64
	for i, u := range pool {
		if u.Available() {
			total += table.base[i]
		}
	}
	if total == 0 {
		return nil
	}
	point := rand.Float64() * total
	var last *reverseproxy.Upstream
	for i, u := range pool {
		if !u.Available() {
			continue
		}
		last = u
		if point -= table.base[i]; point < 0 {
			return u
		}
	}
	// Rounding, or an upstream that became unavailable meanwhile.
	return last
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens. Syntax:
//
//	lb_policy istio_random
func (s *IstioRandomSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("istio_random takes no options")
	}
	return nil
}

// Interface guards
var (
	_ reverseproxy.Selector = (*IstioRandomSelection)(nil)
	_ caddyfile.Unmarshaler = (*IstioRandomSelection)(nil)
	_ EndpointInfoSetter    = (*IstioRandomSelection)(nil)
)
