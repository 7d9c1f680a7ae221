package istio

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

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
			}, svc, resolvePolicy(drPolicy, nil, port.Number))
			for _, s := range subsets {
				t.addCluster(&istioapp.Cluster{
					Name:    clusterName(port.Number, s.GetName(), svc.Hostname),
					Service: svc.Hostname,
					Port:    port.Number,
					Subset:  s.GetName(),
					Labels:  maps.Clone(s.GetLabels()),
				}, svc, resolvePolicy(drPolicy, s, port.Number))
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

// addCluster adds c, a cluster of svc, proxied by a reverse_proxy and
// with the Cluster settings that follow the resolved traffic policy (nil:
// Istio's defaults).
func (t *translator) addCluster(c *istioapp.Cluster, svc *service, policy *networking.TrafficPolicy) {
	if t.clusterByName[c.Name] != nil {
		return // a port number listed twice
	}
	var w []caddyconfig.Warning
	// Envoy forwards Accept-Encoding as the client sent it; Go's transport
	// would otherwise ask for gzip and decompress behind the client's back.
	noCompression := false
	transport := reverseproxy.HTTPTransport{Compression: &noCompression}
	tlsConfig, upstreamTLS := t.upstreamTLS(policy.GetTls(), svc)
	transport.TLS = tlsConfig
	http2 := false
	if port := svc.port(c.Port); port != nil {
		switch port.Protocol {
		case "HTTP2", "GRPC", "GRPC-WEB":
			http2 = true
		}
	}
	applyConnectionPool(&transport, policy.GetConnectionPool(), tlsConfig != nil, http2)
	switch pp := policy.GetProxyProtocol(); {
	case pp == nil:
	case pp.GetVersion() == networking.TrafficPolicy_ProxyProtocol_V2:
		transport.ProxyProtocol = "v2"
	default:
		transport.ProxyProtocol = "v1"
	}
	proxy := reverseproxy.Handler{
		TransportRaw: jsonModuleObject(transport, "protocol", "http", &w),
		LoadBalancing: &reverseproxy.LoadBalancing{
			SelectionPolicyRaw: selectionPolicy(policy.GetLoadBalancer()),
		},
	}
	// The istio app keeps the request's Host over TLS, as Envoy does
	// (Caddy's transport would send the endpoint address).
	c.Proxy = caddyconfig.JSON(proxy, &w)
	c.ConnectionPool = connectionPoolOf(policy.GetConnectionPool())
	c.OutlierDetection = outlierDetectionOf(policy.GetOutlierDetection())
	c.TLS = upstreamTLS
	c.Locality = localityOf(policy)
	c.Warmup = clusterWarmup(policy.GetLoadBalancer())
	if tn := policy.GetTunnel(); tn != nil && (tn.GetProtocol() == "" || strings.EqualFold(tn.GetProtocol(), "CONNECT")) {
		c.Tunnel = &istioapp.Tunnel{TargetHost: tn.GetTargetHost(), TargetPort: tn.GetTargetPort()}
	}
	c.RetryBudget = retryBudgetOf(policy.GetRetryBudget())
	// PASSTHROUGH is Envoy's ORIGINAL_DST cluster: the request's host, not
	// the endpoints
	c.OriginalDestination = policy.GetLoadBalancer().GetSimple() == networking.LoadBalancerSettings_PASSTHROUGH
	t.clusters = append(t.clusters, c)
	t.clusterByName[c.Name] = c
}

// Envoy's retry budget defaults, which Istio keeps.
const (
	defaultRetryBudgetPercent        = 20
	defaultRetryBudgetMinConcurrency = 3
)

// retryBudgetOf is the Cluster.RetryBudget of rb with the defaults
// written, or nil.
func retryBudgetOf(rb *networking.TrafficPolicy_RetryBudget) *istioapp.RetryBudget {
	if rb == nil {
		return nil
	}
	out := &istioapp.RetryBudget{Percent: ptr(float64(defaultRetryBudgetPercent)), MinRetryConcurrency: defaultRetryBudgetMinConcurrency}
	if p := rb.GetPercent(); p != nil {
		out.Percent = ptr(p.GetValue())
	}
	if n := rb.GetMinRetryConcurrency(); n > 0 {
		out.MinRetryConcurrency = n
	}
	return out
}

// ptr returns a pointer to v, for optional configuration fields whose zero
// value is meaningful.
func ptr[T any](v T) *T { return &v }
