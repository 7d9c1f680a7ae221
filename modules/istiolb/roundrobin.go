package istiolb

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(new(IstioRoundRobinSelection))
}

// IstioRoundRobinSelection is Envoy's ROUND_ROBIN load balancer: weighted
// round robin over the available endpoints, by their EndpointInfo weights
// (a strict rotation when they are equal), with optional slow start.
//
// Caddy's round_robin ignores weights and its weighted_round_robin takes
// fixed weights from the config, not from the endpoints.
type IstioRoundRobinSelection struct {
	// Warmup ramps up the weight of new endpoints (Envoy's slow start).
	// Default: off.
	Warmup *Warmup `json:"warmup,omitempty"`

	weighting weighting
	wrr       smoothWRR
}

// CaddyModule returns the Caddy module information.
func (*IstioRoundRobinSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.istio_round_robin",
		New: func() caddy.Module { return new(IstioRoundRobinSelection) },
	}
}

// Provision sets the defaults.
func (s *IstioRoundRobinSelection) Provision(caddy.Context) error {
	if s.Warmup != nil {
		s.Warmup.provision()
	}
	s.weighting.warmup = s.Warmup
	return nil
}

// Validate checks the configuration.
func (s *IstioRoundRobinSelection) Validate() error {
	if s.Warmup != nil {
		return s.Warmup.validate()
	}
	return nil
}

// SetEndpointInfo gives the policy the endpoint weights and ages.
func (s *IstioRoundRobinSelection) SetEndpointInfo(info EndpointInfo) { s.weighting.setInfo(info) }

// Select returns the next available upstream, or nil if there is none.
func (s *IstioRoundRobinSelection) Select(pool reverseproxy.UpstreamPool, _ *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	var now time.Time
	if s.Warmup != nil {
		now = time.Now()
	}
	if s.weighting.trivial() {
		return s.wrr.pick(pool, func(int, *reverseproxy.Upstream) float64 { return 1 })
	}
	table := s.weighting.tableFor(pool)
	return s.wrr.pick(pool, func(i int, _ *reverseproxy.Upstream) float64 {
		return table.weight(i, s.Warmup, now)
	})
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens. Syntax:
//
//	lb_policy istio_round_robin [{
//	    warmup <duration> [{
//	        minimum_percent <percent>
//	        aggression      <factor>
//	    }]
//	}]
func (s *IstioRoundRobinSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "warmup":
			w, err := unmarshalWarmup(d)
			if err != nil {
				return err
			}
			s.Warmup = w
		default:
			return d.Errf("unrecognized istio_round_robin option %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ reverseproxy.Selector = (*IstioRoundRobinSelection)(nil)
	_ caddy.Provisioner     = (*IstioRoundRobinSelection)(nil)
	_ caddy.Validator       = (*IstioRoundRobinSelection)(nil)
	_ caddyfile.Unmarshaler = (*IstioRoundRobinSelection)(nil)
	_ EndpointInfoSetter    = (*IstioRoundRobinSelection)(nil)
)
