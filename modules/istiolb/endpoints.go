package istiolb

import "time"

// EndpointInfo is what a selection policy needs to know about an endpoint
// that Caddy's Upstream cannot carry. The istio app gives it to the
// selection policy of each cluster when it provisions the cluster, through
// EndpointInfoSetter, so a request pays no lookup in the request context.
//
// What it says of a dial address must not change: the weighted policies
// (least_request, istio_round_robin, istio_random) keep it by pool
// position until SetEndpointInfo gives them another EndpointInfo.
type EndpointInfo interface {
	// EndpointWeight returns the load-balancing weight of the endpoint with
	// that dial address (ServiceEntry/WorkloadEntry weight, times its
	// locality share); 1 when unknown. Never 0.
	EndpointWeight(dial string) uint32

	// EndpointAddedAt returns when the endpoint joined the cluster (kept
	// across config reloads), for slow start; the zero time when unknown.
	EndpointAddedAt(dial string) time.Time
}

// EndpointInfoSetter is implemented by selection policies that use
// EndpointInfo. The istio app calls SetEndpointInfo once, after the
// policy is provisioned and before it serves a request.
type EndpointInfoSetter interface {
	SetEndpointInfo(EndpointInfo)
}
