package istio

import (
	"fmt"
	"maps"
	"strconv"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// clusterName is Istio's cluster name: outbound|PORT|SUBSET|HOST.
func clusterName(port uint32, subset, host string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host
}

// buildClusters creates, for every registry service port, the cluster of
// the whole service (outbound|PORT||HOST) and one per subset of the
// DestinationRules that apply to the service (outbound|PORT|SUBSET|HOST),
// each with the traffic policy Istio would resolve for it.
func (t *translator) buildClusters() {
	policies := t.hostPolicies()
	t.policies = policies
	used := make(map[*hostPolicy]bool)
	for _, svc := range t.services {
		hp := policyFor(policies, svc.Hostname)
		if hp != nil {
			used[hp] = true
		}
		var drPolicy *networking.TrafficPolicy
		var subsets []*networking.Subset
		if hp != nil {
			drPolicy, subsets = hp.trafficPolicy, hp.subsets
		}
		for _, port := range svc.Ports {
			if port.Protocol == "UDP" {
				continue
			}
			t.addCluster(&istioapp.Cluster{
				Name:    clusterName(port.Number, "", svc.Hostname),
				Service: svc.Hostname,
				Port:    port.Number,
			}, resolvePolicy(drPolicy, nil, port.Number))
			for _, s := range subsets {
				t.addCluster(&istioapp.Cluster{
					Name:    clusterName(port.Number, s.GetName(), svc.Hostname),
					Service: svc.Hostname,
					Port:    port.Number,
					Subset:  s.GetName(),
					Labels:  maps.Clone(s.GetLabels()),
				}, resolvePolicy(drPolicy, s, port.Number))
			}
		}
	}
	for _, hp := range policies {
		if used[hp] {
			continue
		}
		for _, dr := range hp.rules {
			t.warn(dr.obj, "spec.host", fmt.Sprintf("host %s matches no known service (no ServiceEntry or Service): the DestinationRule has no effect", hp.host))
		}
	}
}

// addCluster adds c, proxied by a reverse_proxy whose load balancing
// follows policy. The reverse_proxy's other settings keep Caddy's defaults.
func (t *translator) addCluster(c *istioapp.Cluster, policy *networking.TrafficPolicy) {
	if t.clusterByName[c.Name] != nil {
		return // a port number listed twice
	}
	var w []caddyconfig.Warning
	// Envoy forwards Accept-Encoding as the client sent it; Go's transport
	// would otherwise ask for gzip and decompress behind the client's back.
	noCompression := false
	proxy := reverseproxy.Handler{
		TransportRaw: caddyconfig.JSONModuleObject(reverseproxy.HTTPTransport{Compression: &noCompression}, "protocol", "http", &w),
		LoadBalancing: &reverseproxy.LoadBalancing{
			SelectionPolicyRaw: selectionPolicy(policy.GetLoadBalancer()),
		},
	}
	c.Proxy = caddyconfig.JSON(proxy, &w)
	t.clusters = append(t.clusters, c)
	t.clusterByName[c.Name] = c
}
