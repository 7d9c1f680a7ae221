// Package istiolb holds reverse_proxy selection policies with Envoy's load
// balancing semantics, for the simple and consistent-hash policies of an Istio
// DestinationRule that Caddy's own policies do not reproduce.
package istiolb

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(LeastRequestSelection{})
}

// LeastRequestSelection is Envoy's LEAST_REQUEST load balancer for endpoints
// of equal weight, Istio's default: it samples ChoiceCount available upstreams
// at random (with replacement) and takes the one with the fewest active
// requests, keeping the first sampled on a tie.
//
// Caddy's random_choose looks alike but is not: it returns the first sampled
// upstream that has no active request, and its sample keeps pool order, so
// with idle upstreams it sends every request to the same one.
type LeastRequestSelection struct {
	// ChoiceCount is how many upstreams are sampled per request (Envoy's
	// choice_count). Default: 2.
	ChoiceCount int `json:"choice_count,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (LeastRequestSelection) CaddyModule() caddy.ModuleInfo {
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
	return nil
}

// Validate checks the configuration.
func (s *LeastRequestSelection) Validate() error {
	if s.ChoiceCount < 2 {
		return fmt.Errorf("choice_count must be at least 2")
	}
	return nil
}

// Select returns an available upstream, or nil if there is none.
func (s *LeastRequestSelection) Select(pool reverseproxy.UpstreamPool, _ *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
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
//	lb_policy least_request [<choice_count>]
func (s *LeastRequestSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume policy name
	if d.NextArg() {
		n, err := strconv.Atoi(d.Val())
		if err != nil {
			return d.Errf("invalid choice_count %q: %v", d.Val(), err)
		}
		s.ChoiceCount = n
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ reverseproxy.Selector = (*LeastRequestSelection)(nil)
	_ caddy.Provisioner     = (*LeastRequestSelection)(nil)
	_ caddy.Validator       = (*LeastRequestSelection)(nil)
	_ caddyfile.Unmarshaler = (*LeastRequestSelection)(nil)
)
