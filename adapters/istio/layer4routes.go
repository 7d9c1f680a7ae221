package istio

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/mholt/caddy-l4/layer4"
	"github.com/mholt/caddy-l4/modules/l4proxy"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// sniChain is one of Envoy's SNI filter chains: the server name it
// matches and the proxy handler of its destinations.
type sniChain struct {
	sni     string
	handler json.RawMessage
}

// sniChains collects the filter chains of a TLS listener; the first chain
// of a server name wins, as Istio skips duplicate SNI hosts.
type sniChains struct {
	chains []sniChain
	seen   map[string]bool
}

// add adds a chain for sni (lower-cased) unless one exists; it reports
// whether it did.
func (c *sniChains) add(sni string, handler json.RawMessage) bool {
	sni = strings.ToLower(sni)
	if c.seen == nil {
		c.seen = make(map[string]bool)
	}
	if c.seen[sni] {
		return false
	}
	c.seen[sni] = true
	if handler != nil {
		c.chains = append(c.chains, sniChain{sni: sni, handler: handler})
	}
	return true
}

// taken returns the first of snis that has a chain already, "" if none.
func (c *sniChains) taken(snis []string) string {
	for _, sni := range snis {
		if c.seen[strings.ToLower(sni)] {
			return sni
		}
	}
	return ""
}

// routes are the layer4 routes of the chains, most specific server name
// first as Envoy picks a filter chain (exact names, then the longest
// wildcard suffix, then "*"), whatever the order they were written in.
func (c *sniChains) routes() layer4.RouteList {
	chains := slices.Clone(c.chains)
	rank := func(sni string) int {
		switch {
		case sni == "*":
			return 0
		case strings.HasPrefix(sni, "*"):
			return len(sni)
		}
		return 1 << 20
	}
	sort.SliceStable(chains, func(i, j int) bool { return rank(chains[i].sni) > rank(chains[j].sni) })
	var w []caddyconfig.Warning
	var out layer4.RouteList
	for _, ch := range chains {
		var match caddy.ModuleMap
		switch {
		case ch.sni == "*":
			match = caddy.ModuleMap{"tls": json.RawMessage(`{}`)}
		case strings.HasPrefix(ch.sni, "*."):
			// Envoy's wildcard server names match any number of labels;
			// Caddy's sni matcher matches one.
			pattern := "(?i)^.+" + regexp.QuoteMeta(ch.sni[1:]) + "$"
			match = caddy.ModuleMap{"tls": caddyconfig.JSON(map[string]any{"sni_regexp": map[string]string{"pattern": pattern}}, &w)}
		default:
			match = caddy.ModuleMap{"tls": caddyconfig.JSON(map[string]any{"sni": []string{ch.sni}}, &w)}
		}
		out = append(out, &layer4.Route{
			MatcherSetsRaw: []caddy.ModuleMap{match},
			HandlersRaw:    []json.RawMessage{ch.handler},
		})
	}
	return out
}

// catchAllRoute is a route without matcher: every connection takes it.
func catchAllRoute(handler json.RawMessage) layer4.RouteList {
	if handler == nil {
		return nil
	}
	return layer4.RouteList{{HandlersRaw: []json.RawMessage{handler}}}
}

// l4Applies evaluates the configuration-time part of a tls or tcp match
// on a Gateway as Istio's l4SingleMatch: match.port must be the server
// port and match.gateways (resolved in namespace) must name the gateway,
// each when set. sourceLabels and sourceNamespace are not looked at on a
// gateway.
func l4Applies(port uint32, gateways []string, namespace string, serverPort uint32, gatewayRef string) bool {
	if port != 0 && port != serverPort {
		return false
	}
	if len(gateways) == 0 {
		return true
	}
	for _, g := range gateways {
		if resolveGatewayRef(g, namespace) == gatewayRef {
			return true
		}
	}
	return false
}

// l4AppliesToMesh evaluates a tls or tcp match for a Sidecar's listener
// as Istio does for a sidecar: match.port must be the listener port; then,
// for one proxy, match.gateways must contain "mesh" when set, and
// otherwise sourceLabels must be a subset of its labels and
// sourceNamespace (when set) its namespace.
func l4AppliesToMesh(port uint32, gateways []string, sourceLabels map[string]string, sourceNamespace string, listenerPort uint32, proxies []proxyIdentity) bool {
	if port != 0 && port != listenerPort {
		return false
	}
	if len(gateways) > 0 {
		return slices.Contains(gateways, meshGateway)
	}
	for _, p := range proxies {
		if labelsSubset(sourceLabels, p.labels) && (sourceNamespace == "" || sourceNamespace == p.namespace) {
			return true
		}
	}
	return false
}

// serverHostsFor are the dnsNames of server s of gw that admit
// VirtualServices of namespace ns.
func serverHostsFor(gw *gateway, s *networking.Server, ns string) []string {
	var out []string
	for _, h := range s.GetHosts() {
		hostNS, name := splitNamespacedHost(h)
		if namespaceSelected(hostNS, gw.obj.Namespace, ns) {
			out = append(out, name)
		}
	}
	return out
}

// vsMatchesHosts reports whether a host of vs intersects one of hosts.
func vsMatchesHosts(vs *virtualService, hosts []string) bool {
	for _, sh := range hosts {
		for _, h := range vs.spec.GetHosts() {
			if _, ok := intersectHosts(sh, expandHost(h, vs.obj.Namespace)); ok {
				return true
			}
		}
	}
	return false
}

// gatewayLayer4Routes are the routes of a Gateway layer4 listener.
//
// TLS: per server, AUTO_PASSTHROUGH's cluster SNIs, and the tls routes of
// the VirtualServices bound to the server's Gateway, exported to its
// namespace and sharing a host with it, in document order: each match
// that applies (l4Applies) adds a chain per sniHost, as Istio's
// buildGatewayNetworkFiltersFromTLSRoutes.
//
// TCP: the first tcp route, in document order, of those VirtualServices
// whose match applies (or which has none), as Istio's
// buildGatewayNetworkFiltersFromTCPRoutes.
func (t *translator) gatewayLayer4Routes(l *layer4Listener) layer4.RouteList {
	if l.kind == layer4TCP {
		return t.gatewayTCPRoutes(l)
	}
	var chains sniChains
	for si, gs := range l.servers {
		if l.auto[si] {
			t.autoPassthroughChains(&chains, gs)
		}
	}
	for _, vs := range t.virtualServices {
		if len(vs.spec.GetTls()) == 0 || len(vs.spec.GetHosts()) == 0 {
			continue
		}
		bound := vsGateways(vs)
		var servers []gatewayServer
		for si, gs := range l.servers {
			if !l.auto[si] && bound[gs.gw.ref()] && exportedTo(vs, gs.gw.obj.Namespace) && vsMatchesHosts(vs, serverHostsFor(gs.gw, gs.server, vs.obj.Namespace)) {
				servers = append(servers, gs)
			}
		}
		if len(servers) == 0 {
			continue
		}
		for i, tr := range vs.spec.GetTls() {
			var handler json.RawMessage
			built := false
			for k, m := range tr.GetMatch() {
				applies := false
				for _, gs := range servers {
					if l4Applies(m.GetPort(), m.GetGateways(), vs.obj.Namespace, l.port, gs.gw.ref()) {
						applies = true
						break
					}
				}
				if !applies {
					continue
				}
				// As Istio, a match with an SNI host that an earlier
				// match already routes on this port is skipped whole.
				if dup := chains.taken(m.GetSniHosts()); dup != "" {
					t.warn(vs.obj, fmt.Sprintf("spec.tls[%d].match[%d].sniHosts", i, k), fmt.Sprintf("%s is already routed on port %d: this match is skipped, as Istio does", dup, l.port))
					continue
				}
				if !built {
					handler = t.layer4Proxy(fieldRef{obj: vs.obj, path: fmt.Sprintf("spec.tls[%d]", i)}, tr.GetRoute(), l.port, true)
					built = true
					t.l4().markUsed(vs, fmt.Sprintf("tls[%d]", i))
				}
				// Istio's filter chains take the sniHosts as written, not
				// narrowed to the server's hosts.
				for _, sni := range m.GetSniHosts() {
					chains.add(sni, handler)
				}
			}
		}
	}
	return chains.routes()
}

// gatewayTCPRoutes is the route of a Gateway TCP listener (see
// gatewayLayer4Routes).
func (t *translator) gatewayTCPRoutes(l *layer4Listener) layer4.RouteList {
	gs := l.servers[0]
	for _, vs := range t.virtualServices {
		if len(vs.spec.GetTcp()) == 0 || len(vs.spec.GetHosts()) == 0 {
			continue
		}
		if !vsGateways(vs)[gs.gw.ref()] || !exportedTo(vs, gs.gw.obj.Namespace) || !vsMatchesHosts(vs, serverHostsFor(gs.gw, gs.server, vs.obj.Namespace)) {
			continue
		}
		for i, tr := range vs.spec.GetTcp() {
			applies := len(tr.GetMatch()) == 0
			for k, m := range tr.GetMatch() {
				if l4Applies(m.GetPort(), m.GetGateways(), vs.obj.Namespace, l.port, gs.gw.ref()) {
					applies = true
					t.warnGatewayL4Match(vs, fmt.Sprintf("spec.tcp[%d].match[%d]", i, k), m)
				}
			}
			if !applies {
				continue
			}
			t.l4().markUsed(vs, fmt.Sprintf("tcp[%d]", i))
			return catchAllRoute(t.layer4Proxy(fieldRef{obj: vs.obj, path: fmt.Sprintf("spec.tcp[%d]", i)}, tr.GetRoute(), l.port, false))
		}
	}
	return nil
}

// warnGatewayL4Match warns about the parts of a tcp match that Istio does
// not evaluate on a gateway.
func (t *translator) warnGatewayL4Match(vs *virtualService, path string, m *networking.L4MatchAttributes) {
	if len(m.GetDestinationSubnets()) > 0 {
		t.warn(vs.obj, path+".destinationSubnets", "ignored on a gateway, as Istio does")
	}
	if m.GetSourceSubnet() != "" {
		t.warn(vs.obj, path+".sourceSubnet", "ignored on a gateway, as Istio does")
	}
}

// autoPassthroughChains adds, for AUTO_PASSTHROUGH server gs, a chain per
// cluster of a service that a server host covers: SNI
// outbound_.PORT_.SUBSET_.HOST to that cluster, as Istio's
// sni-dnat clusters.
func (t *translator) autoPassthroughChains(chains *sniChains, gs gatewayServer) {
	for _, c := range t.clusters {
		svc := t.serviceByHost[c.Service]
		if svc == nil || svc.Location != "MESH_INTERNAL" {
			// Istio leaves MESH_EXTERNAL services (the ServiceEntry
			// default) out of AUTO_PASSTHROUGH.
			continue
		}
		covered := false
		for _, h := range serverHostsFor(gs.gw, gs.server, svc.Namespace) {
			if hostCovers(h, svc.Hostname) {
				covered = true
				break
			}
		}
		if !covered {
			continue
		}
		sni := "outbound_." + strconv.FormatUint(uint64(c.Port), 10) + "_." + c.Subset + "_." + c.Service
		chains.add(sni, t.clusterProxy([]weightedCluster{{name: c.Name, weight: 1}}, false))
	}
}

// sidecarLayer4Routes are the routes of a Sidecar TLS or TCP egress
// listener: the tls (tcp) routes of the VirtualServices bound to the
// mesh, exported to the namespace of one of its Sidecars, with a host the
// listener selects, in document order; then, for TLS, each selected
// service with the listener's port by its hostname as SNI, and for TCP,
// when no tcp route applies, the only selected service with that port.
func (t *translator) sidecarLayer4Routes(l *layer4Listener) layer4.RouteList {
	sel := &meshListener{port: l.port}
	for _, sl := range l.sidecars {
		sel.hosts = append(sel.hosts, sl.hosts...)
	}
	selected := func(vs *virtualService) bool {
		for _, h := range vs.spec.GetHosts() {
			if sel.selects(vs.obj.Namespace, expandHost(h, vs.obj.Namespace)) {
				return true
			}
		}
		return false
	}
	var chains sniChains
	for _, vs := range t.virtualServices {
		if len(vs.spec.GetHosts()) == 0 || !vsGateways(vs)[meshGateway] || len(exportedProxies(vs, l.proxies)) == 0 || !selected(vs) {
			continue
		}
		proxies := exportedProxies(vs, l.proxies)
		if l.kind == layer4TCP {
			for i, tr := range vs.spec.GetTcp() {
				applies := len(tr.GetMatch()) == 0
				for k, m := range tr.GetMatch() {
					if l4AppliesToMesh(m.GetPort(), m.GetGateways(), m.GetSourceLabels(), m.GetSourceNamespace(), l.port, proxies) {
						applies = true
						if len(m.GetDestinationSubnets()) > 0 {
							t.warn(vs.obj, fmt.Sprintf("spec.tcp[%d].match[%d].destinationSubnets", i, k), "not implemented yet: a mesh listener has no original destination address; ignored")
						}
					}
				}
				if applies {
					t.l4().markUsed(vs, fmt.Sprintf("tcp[%d]", i))
					return catchAllRoute(t.layer4Proxy(fieldRef{obj: vs.obj, path: fmt.Sprintf("spec.tcp[%d]", i)}, tr.GetRoute(), l.port, false))
				}
			}
			continue
		}
		for i, tr := range vs.spec.GetTls() {
			var handler json.RawMessage
			built := false
			for k, m := range tr.GetMatch() {
				if !l4AppliesToMesh(m.GetPort(), m.GetGateways(), m.GetSourceLabels(), m.GetSourceNamespace(), l.port, proxies) {
					continue
				}
				if len(m.GetDestinationSubnets()) > 0 {
					t.warn(vs.obj, fmt.Sprintf("spec.tls[%d].match[%d].destinationSubnets", i, k), "not implemented yet: a mesh listener has no original destination address; ignored")
				}
				if !built {
					handler = t.layer4Proxy(fieldRef{obj: vs.obj, path: fmt.Sprintf("spec.tls[%d]", i)}, tr.GetRoute(), l.port, true)
					built = true
					t.l4().markUsed(vs, fmt.Sprintf("tls[%d]", i))
				}
				for _, sni := range m.GetSniHosts() {
					chains.add(sni, handler)
				}
			}
		}
	}
	var services []*service
	for _, svc := range t.services {
		if svc.port(l.port) != nil && svc.port(l.port).Protocol != "UDP" && sel.selects(svc.Namespace, svc.Hostname) {
			services = append(services, svc)
		}
	}
	if l.kind == layer4TLS {
		for _, svc := range services {
			chains.add(svc.Hostname, t.clusterProxy([]weightedCluster{{name: clusterName(l.port, "", svc.Hostname), weight: 1}}, true))
		}
		return chains.routes()
	}
	if len(services) == 0 {
		return nil
	}
	if len(services) > 1 {
		obj, field := l.owner()
		t.warn(obj, field, fmt.Sprintf("several services have port %d (%s first): without a tcp route, connections go to %s (Istio tells them apart by destination address)", l.port, services[0].Hostname, services[0].Hostname))
	}
	return catchAllRoute(t.clusterProxy([]weightedCluster{{name: clusterName(l.port, "", services[0].Hostname), weight: 1}}, false))
}

// weightedCluster is a route destination: its cluster and weight.
type weightedCluster struct {
	name   string
	weight int
	ref    *fieldRef // where it is written, for warnings; nil for defaults
}

// layer4Proxy is the proxy handler of a tls or tcp route (written at ref)
// with destinations dests on a listener of listenerPort. With more than
// one destination, 0-weight ones are left out (Istio drops them).
func (t *translator) layer4Proxy(ref fieldRef, dests []*networking.RouteDestination, listenerPort uint32, tls bool) json.RawMessage {
	var clusters []weightedCluster
	for j, d := range dests {
		if len(dests) > 1 && d.GetWeight() == 0 {
			continue
		}
		at := fieldRef{obj: ref.obj, path: fmt.Sprintf("%s.route[%d].destination", ref.path, j)}
		clusters = append(clusters, weightedCluster{
			name:   t.destinationCluster(at, d.GetDestination(), listenerPort),
			weight: max(int(d.GetWeight()), 1),
			ref:    &at,
		})
	}
	return t.clusterProxy(clusters, tls)
}

// clusterProxy is the layer4 proxy handler that splits connections among
// clusters by weight: one upstream per endpoint, each endpoint of a
// cluster with an equal share of its cluster's weight, chosen by smooth
// weighted round robin. One cluster is balanced by its DestinationRule's
// loadBalancer.simple (see layer4Selection). Clusters without endpoints
// are left out with a warning; nil when none is left.
func (t *translator) clusterProxy(clusters []weightedCluster, tls bool) json.RawMessage {
	type split struct {
		cluster weightedCluster
		dials   []string
	}
	var splits []split
	for _, c := range clusters {
		dials := t.clusterDials(c.name, tls)
		if len(dials) == 0 {
			if c.ref != nil && t.clusterByName[c.name] != nil {
				t.warn(c.ref.obj, c.ref.path, fmt.Sprintf("cluster %s has no endpoint to dial: connections to it are not served", c.name))
			}
			continue
		}
		splits = append(splits, split{c, dials})
	}
	if len(splits) == 0 {
		return nil
	}
	// One cluster: its loadBalancer.simple picks the endpoint.
	policy := "weighted_round_robin"
	if len(splits) == 1 {
		policy = layer4Selection(t.layer4Policy(splits[0].cluster.name).GetLoadBalancer().GetSimple())
	}
	for _, s := range splits {
		if s.cluster.ref != nil {
			t.warnLayer4Policy(*s.cluster.ref, s.cluster.name, len(splits) == 1)
		}
	}
	// Share each cluster's weight evenly among its endpoints: scale by
	// the least common multiple of the endpoint counts.
	lcm := 1
	for _, s := range splits {
		lcm = lcm / gcd(lcm, len(s.dials)) * len(s.dials)
	}
	var w []caddyconfig.Warning
	h := l4proxy.Handler{
		LoadBalancing: &l4proxy.LoadBalancing{
			SelectionPolicyRaw: jsonModuleObject(struct{}{}, "policy", policy, &w),
		},
	}
	for _, s := range splits {
		for _, d := range s.dials {
			u := &l4proxy.Upstream{Dial: []string{d}}
			if len(splits) > 1 {
				u.Weight = s.cluster.weight * lcm / len(s.dials)
			}
			h.Upstreams = append(h.Upstreams, u)
		}
	}
	return jsonModuleObject(h, "handler", "proxy", &w)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// clusterDials are the dial addresses of the endpoints of cluster name, as
// the istio app computes a cluster's upstreams: the service's inline
// endpoints and the WorkloadEntries its selector picks, narrowed to the
// subset labels, on the port each endpoint has for the service port. A
// service without endpoints dials its hostname (resolution DNS,
// DNS_ROUND_ROBIN) or, on a TLS listener, the SNI the client sent
// (resolution NONE, DYNAMIC_DNS, or a PASSTHROUGH load balancer: the
// original destination). Nil: nothing to dial.
func (t *translator) clusterDials(name string, tls bool) []string {
	c := t.clusterByName[name]
	if c == nil {
		return nil
	}
	if t.dialRegistry == nil && t.dialRegistryErr == nil {
		// The istio app's own registry: the same endpoints its clusters
		// proxy to. If it refuses the services, so will the app at start.
		t.dialRegistry, t.dialRegistryErr = istioapp.NewRegistry(t.registryServices(), t.workloads)
	}
	if t.dialRegistry == nil {
		return nil
	}
	dials, forwardPort := t.dialRegistry.ClusterDials(c)
	if forwardPort != "" {
		// the client's own destination: for TLS, the SNI it asked for
		if tls {
			return []string{"{l4.tls.server_name}:" + forwardPort}
		}
		return nil
	}
	return dials
}

// layer4Policy is the resolved DestinationRule traffic policy of cluster
// name, nil for none.
func (t *translator) layer4Policy(name string) *networking.TrafficPolicy {
	c := t.clusterByName[name]
	if c == nil {
		return nil
	}
	hp := policyFor(t.policies, c.Service)
	if hp == nil {
		return nil
	}
	var subset *networking.Subset
	if c.Subset != "" {
		subset = hp.subset(c.Subset)
	}
	return resolvePolicy(hp.trafficPolicy, subset, c.Port)
}

// layer4Selection is the layer4 proxy selection policy of a
// loadBalancer.simple: Envoy's LEAST_REQUEST (the default) counts active
// connections for TCP, as least_conn does.
func layer4Selection(simple networking.LoadBalancerSettings_SimpleLB) string {
	switch simple {
	case networking.LoadBalancerSettings_ROUND_ROBIN:
		return "round_robin"
	case networking.LoadBalancerSettings_RANDOM:
		return "random"
	}
	return "least_conn"
}

// warnLayer4Policy warns, at the destination written at ref, when the
// DestinationRule traffic policy of cluster name sets what the layer4
// proxy does not apply. alone: the cluster is the route's only
// destination, whose loadBalancer.simple is applied (see clusterProxy).
func (t *translator) warnLayer4Policy(ref fieldRef, name string, alone bool) {
	p := t.layer4Policy(name)
	if p == nil {
		return
	}
	var fields []string
	if lb := p.GetLoadBalancer(); lb != nil {
		simpleOnly := lb.GetConsistentHash() == nil && lb.GetLocalityLbSetting() == nil && lb.GetWarmup() == nil && lb.GetWarmupDurationSecs() == nil
		if !alone || !simpleOnly {
			fields = append(fields, "loadBalancer")
		}
	}
	if p.GetConnectionPool() != nil {
		fields = append(fields, "connectionPool")
	}
	if p.GetOutlierDetection() != nil {
		fields = append(fields, "outlierDetection")
	}
	if p.GetTls() != nil {
		fields = append(fields, "tls")
	}
	if p.GetProxyProtocol() != nil {
		fields = append(fields, "proxyProtocol")
	}
	if p.GetTunnel() != nil {
		fields = append(fields, "tunnel")
	}
	if len(fields) == 0 {
		return
	}
	msg := fmt.Sprintf("not implemented yet for tls and tcp routes: the trafficPolicy %s of cluster %s is not applied", strings.Join(fields, ", "), name)
	if p.GetTls() != nil {
		msg += " (connections go out without TLS origination)"
	}
	t.warn(ref.obj, ref.path, msg)
}
