package istioapp

// This file exposes what the istio_route handler's telemetry needs to know
// about a cluster's endpoints: which workload answered a request.

// Endpoint returns the workload behind a dial address of the cluster (as
// the placeholder {http.reverse_proxy.upstream.hostport} gives it), or nil
// when the address is not one of the cluster's endpoints (a cluster that
// forwards to the requested host, or an address the registry does not
// know). The workload must not be modified.
func (ch *ClusterHandler) Endpoint(dial string) *Workload {
	if ch == nil || ch.upstreams == nil || dial == "" {
		return nil
	}
	s := ch.upstreams
	// A linear scan: clusters have few endpoints, and this runs once per
	// request, after the response.
	for i, d := range s.dials {
		if d == dial && i < len(s.endpoints) {
			return s.endpoints[i]
		}
	}
	return nil
}
