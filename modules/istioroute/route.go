package istioroute

import (
	"fmt"
	weakrand "math/rand/v2"
	"time"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
	"github.com/caddy-istio/caddy-istio/modules/istiofault"
)

// virtualHost is a compiled VirtualHost.
type virtualHost struct {
	name   string
	routes []*route
}

// route is a compiled Route.
type route struct {
	name           string
	virtualService string

	// matches are the alternatives; nil matches every request.
	matches []*match

	// destinations with a share of the traffic (several: weight > 0).
	destinations []*destination
	// cumulative[i] is the sum of the weights of destinations[0..i]; empty
	// when there is a single destination.
	cumulative []uint64

	redirect       *redirect
	directResponse *DirectResponse

	// plain is true when the route has none of the features below, so
	// ServeHTTP takes the short path that does not allocate.
	plain bool

	cors    *corsPolicy
	fault   *istiofault.Fault
	rewrite *rewrite
	// timeout bounds the upstream exchange, retries included; 0 is none.
	timeout time.Duration
	// retry is nil for no retries.
	retry   *retryPolicy
	mirrors []*mirror
	// responseOps are the route's response header operations, for
	// redirects and direct responses (destinations have their own list).
	responseOps headerOpsList
}

// destination is a weighted destination, resolved to its cluster.
type destination struct {
	cluster string
	weight  int32
	// handler is nil when the istio app has no such cluster; the
	// destination then answers 503, as Envoy's "no cluster" (NC).
	handler *istioapp.ClusterHandler
	// notFound is the error reported when handler is nil.
	notFound error

	// requestOps and responseOps are the route's header operations
	// followed by the destination's, which so win on set conflicts.
	requestOps, responseOps headerOpsList

	// telemetry holds the metrics labels of the cluster's service.
	telemetry *destinationTelemetry
}

// match returns the first route of vh whose match holds, and the
// alternative that held (nil for a route without match), or nil.
func (vh *virtualHost) match(ri *requestInfo) (*route, *match) {
	for _, rt := range vh.routes {
		if rt.matches == nil {
			return rt, nil
		}
		for _, m := range rt.matches {
			if m.matches(ri) {
				return rt, m
			}
		}
	}
	return nil, nil
}

// setDestinations keeps the destinations that get traffic and precomputes
// their cumulative weights. A single destination gets every request
// whatever its weight; among several, weight 0 gets none.
func (rt *route) setDestinations(dests []*destination) error {
	if len(dests) == 1 {
		rt.destinations = dests
		return nil
	}
	var total uint64
	for _, d := range dests {
		if d.weight < 0 {
			return fmt.Errorf("destination %q: negative weight %d", d.cluster, d.weight)
		}
		if d.weight == 0 {
			continue
		}
		total += uint64(d.weight)
		rt.destinations = append(rt.destinations, d)
		rt.cumulative = append(rt.cumulative, total)
	}
	if total == 0 {
		return fmt.Errorf("total destination weight is 0")
	}
	return nil
}

// pick chooses a destination at random in proportion to its weight.
func (rt *route) pick() *destination {
	if len(rt.cumulative) == 0 {
		return rt.destinations[0]
	}
	n := weakrand.Uint64N(rt.cumulative[len(rt.cumulative)-1])
	for i, c := range rt.cumulative {
		if n < c {
			return rt.destinations[i]
		}
	}
	return rt.destinations[len(rt.destinations)-1] // unreachable: n < total
}
