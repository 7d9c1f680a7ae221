package istio

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// meshGateway is the reserved gateway name of every sidecar.
const meshGateway = "mesh"

// resolveGatewayRef turns a VirtualService gateway reference into
// "namespace/name": "ns/name", "./name" and "name" (the VirtualService's
// namespace), and the legacy "name.ns[.svc.cluster.local]". "mesh" stays.
func resolveGatewayRef(ref, namespace string) string {
	if ref == meshGateway {
		return ref
	}
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		ns := ref[:i]
		if ns == "." {
			ns = namespace
		}
		return ns + "/" + ref[i+1:]
	}
	if name, rest, ok := strings.Cut(ref, "."); ok {
		ns, _, _ := strings.Cut(rest, ".")
		return ns + "/" + name
	}
	return namespace + "/" + ref
}

// vsGateways is the set of gateways vs is bound to; no gateways means mesh.
func vsGateways(vs *virtualService) map[string]bool {
	refs := vs.spec.GetGateways()
	if len(refs) == 0 {
		return map[string]bool{meshGateway: true}
	}
	out := make(map[string]bool, len(refs))
	for _, r := range refs {
		out[resolveGatewayRef(r, vs.obj.Namespace)] = true
	}
	return out
}

// checkVirtualServices warns about VirtualService fields that are not
// translated, about gateways that do not exist and about VirtualServices
// that no listener sees: not exported to the namespace of a gateway they
// are bound to, or of any mesh listener.
func (t *translator) checkVirtualServices(mesh []*meshListener) {
	meshNamespaces := make(map[string]bool)
	for _, l := range mesh {
		for _, p := range l.proxies {
			meshNamespaces[p.namespace] = true
		}
	}
	known := make(map[string]*gateway)
	for _, gw := range t.gateways {
		known[gw.ref()] = gw
	}
	for _, vs := range t.virtualServices {
		if len(vs.spec.GetHosts()) == 0 {
			// A delegate: its exportTo decides which roots may use it
			// (see delegatedRoutes); it has no hosts of its own.
			continue
		}
		// spec.tcp and spec.tls: see layer4routes.go.
		if len(vs.spec.GetHttp()) > 0 && vsGateways(vs)[meshGateway] && len(meshNamespaces) > 0 && !exportedToAny(vs, meshNamespaces) {
			t.warn(vs.obj, "spec.exportTo", fmt.Sprintf("not exported to the namespace of a mesh listener (%s): not served on the mesh", strings.Join(slices.Sorted(maps.Keys(meshNamespaces)), ", ")))
		}
		for i, r := range vs.spec.GetGateways() {
			ref := resolveGatewayRef(r, vs.obj.Namespace)
			if ref == meshGateway {
				continue
			}
			field := fmt.Sprintf("spec.gateways[%d]", i)
			switch gw := known[ref]; {
			case gw == nil:
				t.warn(vs.obj, field, fmt.Sprintf("gateway %s is not defined: the VirtualService is not served on it", ref))
			case !exportedTo(vs, gw.obj.Namespace):
				t.warn(vs.obj, field, fmt.Sprintf("the VirtualService is not exported to namespace %s of gateway %s: it is not served there", gw.obj.Namespace, ref))
			case !sharesHost(vs, gw):
				t.warn(vs.obj, field, fmt.Sprintf("no host of the VirtualService matches a host of gateway %s: it is not served there", ref))
			}
		}
	}
}

// sharesHost reports whether a host of vs matches a host of a server of
// gw that admits vs's namespace.
func sharesHost(vs *virtualService, gw *gateway) bool {
	for _, s := range gw.spec.GetServers() {
		for _, sh := range s.GetHosts() {
			ns, dnsName := splitNamespacedHost(sh)
			if !namespaceSelected(ns, gw.obj.Namespace, vs.obj.Namespace) {
				continue
			}
			for _, h := range vs.spec.GetHosts() {
				if _, ok := intersectHosts(dnsName, expandHost(h, vs.obj.Namespace)); ok {
					return true
				}
			}
		}
	}
	return false
}

// exportedToAny reports whether vs is exported to one of namespaces.
func exportedToAny(vs *virtualService, namespaces map[string]bool) bool {
	for ns := range namespaces {
		if exportedTo(vs, ns) {
			return true
		}
	}
	return false
}

// exportedProxies are the identities among proxies that vs is exported
// to: a listener shared by Sidecars of several namespaces builds the
// routes of vs for those that see it.
func exportedProxies(vs *virtualService, proxies []proxyIdentity) []proxyIdentity {
	var out []proxyIdentity
	for _, p := range proxies {
		if exportedTo(vs, p.namespace) {
			out = append(out, p)
		}
	}
	return out
}

// byExportRank sorts vss, stably, by their rank (see exportRank), as
// Istio lists a proxy's VirtualServices: this order decides which one
// wins a host on the mesh and the merge order on a gateway.
func byExportRank(vss []*virtualService, rank map[*virtualService]int) {
	sort.SliceStable(vss, func(i, j int) bool { return rank[vss[i]] < rank[vss[j]] })
}

// meshVirtualServices are the VirtualServices with http routes bound to
// the mesh and exported to the namespace of one of l's proxies, by export
// rank then in document order.
func (t *translator) meshVirtualServices(l *meshListener) []*virtualService {
	var out []*virtualService
	rank := make(map[*virtualService]int)
	for _, vs := range t.virtualServices {
		if len(vs.spec.GetHttp()) == 0 || !vsGateways(vs)[meshGateway] {
			continue
		}
		best := notExported
		for _, p := range l.proxies {
			best = min(best, exportRank(vs, p.namespace))
		}
		if best != notExported {
			rank[vs] = best
			out = append(out, vs)
		}
	}
	byExportRank(out, rank)
	return out
}

// gatewayVirtualServices are the VirtualServices with http routes bound to
// a Gateway of l and exported to that Gateway's namespace (Istio: only
// the VirtualServices exported to the gateway proxy's namespace count),
// by export rank then in document order.
func (t *translator) gatewayVirtualServices(l *gatewayListener) []*virtualService {
	var out []*virtualService
	rank := make(map[*virtualService]int)
	for _, vs := range t.virtualServices {
		if len(vs.spec.GetHttp()) == 0 {
			continue
		}
		bound := vsGateways(vs)
		best := notExported
		for _, s := range l.servers {
			if bound[s.gw.ref()] {
				best = min(best, exportRank(vs, s.gw.obj.Namespace))
			}
		}
		if best != notExported {
			rank[vs] = best
			out = append(out, vs)
		}
	}
	byExportRank(out, rank)
	return out
}

// vhostEntry is a virtual host with the object and field it comes from,
// for warnings.
type vhostEntry struct {
	vhost *istioroute.VirtualHost
	obj   *istioyaml.Object
	field string
}

// meshVirtualHosts builds the virtual hosts of a mesh listener: one per
// HTTP port of every service the listener serves, routed by the first mesh
// VirtualService for the service's host (or straight to the service), then
// one per mesh VirtualService for its hosts that are not services. Only
// the VirtualServices exported to the listener's namespace count.
func (t *translator) meshVirtualHosts(l *meshListener) []*istioroute.VirtualHost {
	meshVSs := t.meshVirtualServices(l)
	index := newMeshVSIndex(meshVSs)

	services := append([]*service(nil), t.services...)
	sort.SliceStable(services, func(i, j int) bool { return services[i].Hostname < services[j].Hostname })

	var entries []vhostEntry
	for _, svc := range services {
		if !l.selects(svc.Namespace, svc.Hostname) {
			continue
		}
		vs := t.meshVirtualServiceFor(index, svc.Hostname)
		for _, port := range svc.Ports {
			if !isHTTPProtocol(port.Protocol) || (l.port != 0 && port.Number != l.port) {
				continue
			}
			// Istio has one route table per port, so it also matches a Host
			// without port. The default listener serves every port: there
			// the port-less names go to port 80 or, as a convenience, to
			// the only HTTP port of a service.
			plain := l.port != 0 || port.Number == 80 || httpPorts(svc) == 1
			vh := &istioroute.VirtualHost{
				Name:    hostPort(svc.Hostname, port.Number),
				Domains: serviceDomains(svc, port.Number, plain),
			}
			if vs != nil {
				vh.Routes = routesOf(t.httpRoutes(vs, routeScope{port: port.Number, proxies: exportedProxies(vs, l.proxies)}))
			} else {
				// Istio's default route, with its default retry policy.
				vh.Routes = []*istioroute.Route{{
					Route:   []*istioroute.Destination{{Cluster: clusterName(port.Number, "", svc.Hostname)}},
					Retries: retryPolicyOf(nil, false),
				}}
			}
			entries = append(entries, vhostEntry{vhost: vh, obj: svc.obj, field: svc.field})
		}
	}

	// Hosts of mesh VirtualServices that are not services. Istio only
	// serves them on port 80 (there is no service port to serve them on);
	// the default listener serves them by their plain names.
	claimed := make(map[string]*virtualService)
	for _, vs := range meshVSs {
		var domains []string
		var first string
		field := "spec.hosts"
		for i, h := range vs.spec.GetHosts() {
			host := expandHost(h, vs.obj.Namespace)
			if t.serviceByHost[host] != nil || (isWildcard(host) && t.coversService(host)) {
				continue
			}
			if prev := claimed[host]; prev != nil && prev != vs {
				t.warn(vs.obj, fmt.Sprintf("spec.hosts[%d]", i), fmt.Sprintf("host %s is already routed by %s: sidecars do not merge VirtualServices, the first one wins", host, prev.obj.Ref()))
				continue
			}
			claimed[host] = vs
			if !l.selects(vs.obj.Namespace, host) {
				continue
			}
			if first == "" {
				first, field = host, fmt.Sprintf("spec.hosts[%d]", i)
			}
			names := append([]string{host}, kubeShortForms(host)...)
			for _, n := range names {
				if l.port != 0 {
					domains = append(domains, hostPort(n, l.port))
				}
			}
			domains = append(domains, names...)
		}
		if len(domains) == 0 {
			continue
		}
		port := l.port
		if port == 0 {
			port = 80
		}
		vh := &istioroute.VirtualHost{Name: first, Domains: domains}
		if l.port != 0 {
			vh.Name = hostPort(first, l.port)
		}
		vh.Routes = routesOf(t.httpRoutes(vs, routeScope{port: port, proxies: exportedProxies(vs, l.proxies)}))
		entries = append(entries, vhostEntry{vhost: vh, obj: vs.obj, field: field})
	}
	return t.dedupeDomains(entries)
}

// meshVSIndex finds the mesh VirtualServices whose hosts cover a service
// host without scanning them all: a map of their exact hosts (expanded,
// lower-cased), and the list of their wildcard hosts.
type meshVSIndex struct {
	exact    map[string][]vsHostRef
	wildcard []vsHostRef
}

// vsHostRef is host i of the VirtualService at position order of the
// listener's list.
type vsHostRef struct {
	vs       *virtualService
	order, i int
	host     string // expanded, lower-cased
}

func newMeshVSIndex(meshVSs []*virtualService) *meshVSIndex {
	idx := &meshVSIndex{exact: make(map[string][]vsHostRef)}
	for order, vs := range meshVSs {
		for i, h := range vs.spec.GetHosts() {
			ref := vsHostRef{vs: vs, order: order, i: i, host: strings.ToLower(expandHost(h, vs.obj.Namespace))}
			if strings.HasPrefix(ref.host, "*") {
				idx.wildcard = append(idx.wildcard, ref)
			} else {
				idx.exact[ref.host] = append(idx.exact[ref.host], ref)
			}
		}
	}
	return idx
}

// meshVirtualServiceFor returns the first mesh VirtualService with a host
// covering hostname; the others that also cover it are ignored for it, as a
// sidecar does not merge VirtualServices (each gets a warning naming its
// first covering host).
func (t *translator) meshVirtualServiceFor(idx *meshVSIndex, hostname string) *virtualService {
	// first covering host of each VirtualService, by list position
	first := make(map[int]vsHostRef)
	consider := func(ref vsHostRef) {
		if prev, ok := first[ref.order]; !ok || ref.i < prev.i {
			first[ref.order] = ref
		}
	}
	for _, ref := range idx.exact[strings.ToLower(hostname)] {
		consider(ref)
	}
	for _, ref := range idx.wildcard {
		if hostCovers(ref.host, hostname) {
			consider(ref)
		}
	}
	if len(first) == 0 {
		return nil
	}
	orders := slices.Sorted(maps.Keys(first))
	winner := first[orders[0]].vs
	for _, o := range orders[1:] {
		ref := first[o]
		t.warn(ref.vs.obj, fmt.Sprintf("spec.hosts[%d]", ref.i), fmt.Sprintf("host %s is already routed by %s: sidecars do not merge VirtualServices, the first one wins", hostname, winner.obj.Ref()))
	}
	return winner
}

// httpPorts counts the ports of svc that the mesh listener serves.
func httpPorts(svc *service) int {
	n := 0
	for _, p := range svc.Ports {
		if isHTTPProtocol(p.Protocol) {
			n++
		}
	}
	return n
}

// coversService reports whether the wildcard host covers a service.
func (t *translator) coversService(host string) bool {
	for _, svc := range t.services {
		if hostCovers(host, svc.Hostname) {
			return true
		}
	}
	return false
}

// serviceDomains are the Host values of a service port: HOST:PORT, the
// Kubernetes short forms NAME:PORT, NAME.NS:PORT and NAME.NS.svc:PORT, and
// the service's IP addresses with the port; and the same without port when
// plain is set.
func serviceDomains(svc *service, port uint32, plain bool) []string {
	names := append([]string{svc.Hostname}, kubeShortForms(svc.Hostname)...)
	for _, a := range svc.Addresses {
		if net.ParseIP(a) != nil {
			names = append(names, a)
		}
	}
	out := make([]string, 0, 2*len(names))
	for _, n := range names {
		out = append(out, hostPort(n, port))
	}
	if plain {
		for _, n := range names {
			if strings.Contains(n, ":") {
				n = "[" + n + "]" // an IPv6 address
			}
			out = append(out, n)
		}
	}
	return out
}

// dedupeDomains gives each domain to the first virtual host that has it,
// warning about the others, and drops virtual hosts left without domains.
func (t *translator) dedupeDomains(entries []vhostEntry) []*istioroute.VirtualHost {
	owner := make(map[string]string)
	var out []*istioroute.VirtualHost
	for _, e := range entries {
		kept := e.vhost.Domains[:0]
		for _, d := range e.vhost.Domains {
			key := strings.ToLower(d)
			if prev, dup := owner[key]; dup {
				t.warn(e.obj, e.field, fmt.Sprintf("domain %s is already served by virtual host %s: not served for %s", d, prev, e.vhost.Name))
				continue
			}
			owner[key] = e.vhost.Name
			kept = append(kept, d)
		}
		e.vhost.Domains = kept
		if len(kept) > 0 {
			out = append(out, e.vhost)
		}
	}
	return out
}

// gatewayVirtualHosts builds the virtual hosts of a gateway listener: for
// each host that a bound VirtualService and a server of the listener have
// in common (the more specific of the two), the routes of every such
// VirtualService exported to the Gateway's namespace, by export rank then
// in document order, catch-all routes last, as Istio merges
// VirtualServices on a gateway. Domains have no port: a gateway matches
// the Host whatever its port.
func (t *translator) gatewayVirtualHosts(l *gatewayListener) []*istioroute.VirtualHost {
	type binding struct {
		vs      *virtualService
		proxies []proxyIdentity
	}
	var domains []string
	bindings := make(map[string][]*binding)
	bind := func(domain string, vs *virtualService, gw *gateway) {
		list := bindings[domain]
		if len(list) == 0 {
			domains = append(domains, domain)
		}
		id := proxyIdentity{gateway: gw.ref(), labels: gw.spec.GetSelector(), namespace: gw.obj.Namespace}
		for _, b := range list {
			if b.vs == vs {
				for _, p := range b.proxies {
					if p.gateway == id.gateway {
						return
					}
				}
				b.proxies = append(b.proxies, id)
				return
			}
		}
		bindings[domain] = append(list, &binding{vs: vs, proxies: []proxyIdentity{id}})
	}
	for _, vs := range t.gatewayVirtualServices(l) {
		bound := vsGateways(vs)
		for _, s := range l.servers {
			if !bound[s.gw.ref()] || !exportedTo(vs, s.gw.obj.Namespace) {
				continue
			}
			for _, h := range vs.spec.GetHosts() {
				host := expandHost(h, vs.obj.Namespace)
				for _, sh := range s.server.GetHosts() {
					ns, dnsName := splitNamespacedHost(sh)
					if !namespaceSelected(ns, s.gw.obj.Namespace, vs.obj.Namespace) {
						continue
					}
					if d, ok := intersectHosts(dnsName, host); ok {
						bind(strings.ToLower(d), vs, s.gw)
					}
				}
			}
		}
	}
	out := make([]*istioroute.VirtualHost, 0, len(domains))
	for _, d := range domains {
		var routes []builtRoute
		for _, b := range bindings[d] {
			routes = append(routes, t.httpRoutes(b.vs, routeScope{port: l.port, proxies: b.proxies})...)
		}
		sortCatchAllLast(routes)
		out = append(out, &istioroute.VirtualHost{Name: d, Domains: []string{d}, Routes: routesOf(routes)})
	}
	return out
}

func routesOf(built []builtRoute) []*istioroute.Route {
	if len(built) == 0 {
		return nil
	}
	out := make([]*istioroute.Route, len(built))
	for i, b := range built {
		out[i] = b.route
	}
	return out
}
