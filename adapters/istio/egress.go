package istio

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istioegress"
	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// addEgress puts the egress policy of the mesh listener l in front of its
// routes (srv, serving vhosts): the istio_egress handler, first, with the
// mode of Sidecar.outboundTrafficPolicy.
//
// Every mesh listener gets it, with or without Sidecar: Istio's sidecar
// forwards requests for hosts it has no route for to where the
// application sent them (ALLOW_ANY, the MeshConfig default) or answers
// 502 (REGISTRY_ONLY), and applications use the mesh listener as their
// HTTP_PROXY. Requests for the listener's virtual hosts and for registry
// hosts on their declared ports still go to istio_route. Under ALLOW_ANY,
// outboundTrafficPolicy.egressProxy sends plain HTTP for other hosts to
// the egress proxy's cluster instead (see egressProxyHost).
func (t *translator) addEgress(l *meshListener, srv *caddyhttp.Server, vhosts []*istioroute.VirtualHost) {
	sidecars := t.sidecarsOf(l)
	cfg := istioegress.Config{
		Mode:       t.egressMode(l, sidecars),
		RouteHosts: t.egressRouteHosts(vhosts),
	}
	if cfg.Mode == istioegress.ModeAllowAny {
		// the handler's default
		cfg.Mode = ""
	}
	t.warnOpenProxy(l, sidecars)
	if cfg.Mode == "" {
		if vh := t.egressProxyHost(sidecars); vh != nil {
			// every plain HTTP request goes to istio_route, whose catch-all
			// virtual host sends the unknown ones to the egress proxy
			cfg.RouteHosts = []string{"*"}
			srv.Routes = caddyhttp.RouteList{istioRoute(append(slices.Clone(vhosts), vh))}
		}
	}
	var w []caddyconfig.Warning
	egress := jsonModuleObject(cfg, "handler", "istio_egress", &w)
	for _, msg := range w {
		t.problems = append(t.problems, istioyaml.Problem{Message: "encoding: " + msg.Message})
	}
	// In the listener's one route, before istio_route: Caddy builds a
	// route's handler chain per request, so a route of its own would cost
	// every request a second chain.
	route := &srv.Routes[0]
	route.HandlersRaw = append([]json.RawMessage{egress}, route.HandlersRaw...)
}

// listenerSidecar is a Sidecar that defines a mesh listener, with the
// path of the field that binds it there ("" when it uses the default
// mesh listener address).
type listenerSidecar struct {
	*sidecar
	bindPath string
}

// sidecarsOf returns the Sidecars that define the mesh listener l, as
// meshListeners assigned them.
func (t *translator) sidecarsOf(l *meshListener) []listenerSidecar {
	var out []listenerSidecar
	for _, sc := range t.sidecars {
		egress := sc.spec.GetEgress()
		if len(egress) == 0 && l.listen == t.meshListen() {
			out = append(out, listenerSidecar{sidecar: sc})
			continue
		}
		for i, e := range egress {
			port := e.GetPort().GetNumber()
			if port == 0 {
				if l.listen == t.meshListen() {
					out = append(out, listenerSidecar{sidecar: sc})
					break
				}
				continue
			}
			bind := e.GetBind()
			if bind == "" {
				bind = "127.0.0.1"
			}
			if listenAddress(bind, port) == l.listen {
				path := fmt.Sprintf("spec.egress[%d].bind", i)
				if e.GetBind() == "" {
					path = fmt.Sprintf("spec.egress[%d].port", i)
				}
				out = append(out, listenerSidecar{sidecar: sc, bindPath: path})
				break
			}
		}
	}
	return out
}

// egressMode is the outbound traffic policy of the listener: ALLOW_ANY
// (Istio's MeshConfig default) unless a Sidecar that defines it says
// otherwise. An outboundTrafficPolicy without mode, `{}` included, is
// REGISTRY_ONLY: the enum's zero value, as Istio reads it. When the
// Sidecars sharing the listener disagree, the stricter REGISTRY_ONLY
// applies to all.
func (t *translator) egressMode(l *meshListener, sidecars []listenerSidecar) string {
	var modes []string
	for _, sc := range sidecars {
		otp := sc.spec.GetOutboundTrafficPolicy()
		mode := istioegress.ModeAllowAny
		if otp != nil && otp.GetMode() == networking.OutboundTrafficPolicy_REGISTRY_ONLY {
			mode = istioegress.ModeRegistryOnly
		}
		modes = append(modes, mode)
	}
	slices.Sort(modes)
	modes = slices.Compact(modes)
	if len(modes) == 0 {
		return istioegress.ModeAllowAny
	}
	if len(modes) > 1 {
		for _, sc := range sidecars {
			t.warn(sc.obj, "spec.outboundTrafficPolicy", fmt.Sprintf("the Sidecars of the mesh listener %s disagree on the mode: REGISTRY_ONLY applies to all of them (one proxy serves them)", strings.TrimPrefix(l.listen, "tcp/")))
		}
		return istioegress.ModeRegistryOnly
	}
	return modes[0]
}

// egressProxyHost is the catch-all virtual host that sends plain HTTP
// requests for hosts without a virtual host of their own to the cluster of
// outboundTrafficPolicy.egressProxy (Istio sends what would go to its
// PassthroughCluster there), or nil when no Sidecar of the listener sets
// one. The first Sidecar that does wins. Like Envoy's passthrough route,
// it has no retries and no timeout.
func (t *translator) egressProxyHost(sidecars []listenerSidecar) *istioroute.VirtualHost {
	for _, sc := range sidecars {
		dest := sc.spec.GetOutboundTrafficPolicy().GetEgressProxy()
		if dest == nil {
			continue
		}
		const field = "spec.outboundTrafficPolicy.egressProxy"
		cluster := t.destinationCluster(fieldRef{obj: sc.obj, path: field}, dest, 0)
		t.warn(sc.obj, field, "applies to plain HTTP requests only: CONNECT tunnels to hosts outside the registry still go directly to the host the application asked for")
		return &istioroute.VirtualHost{
			Name:    "egress-proxy",
			Domains: []string{"*"},
			Routes: []*istioroute.Route{{
				Name:  "egress-proxy",
				Route: []*istioroute.Destination{{Cluster: cluster}},
			}},
		}
	}
	return nil
}

// egressRouteHosts are the domains of vhosts that istio_route serves and
// the egress handler would not recognise by itself: every domain whose host
// is not a registry host ("reviews", "reviews.default", a VirtualService
// host without ServiceEntry). A registry host with a port is left out so
// that the handler checks the port against the service (an undeclared port
// goes through the egress policy, as in Istio). A registry host without
// port (a single-port service answering a Host without port) is listed
// with port 80, the port the handler gives such a Host. "*" is never
// listed: it would hand every host to istio_route and bypass the policy.
func (t *translator) egressRouteHosts(vhosts []*istioroute.VirtualHost) []string {
	var out []string
	seen := make(map[string]bool)
	for _, vh := range vhosts {
		for _, d := range vh.Domains {
			if d == "*" {
				continue
			}
			if svc := t.registryServiceOf(d); svc != nil {
				if _, _, err := net.SplitHostPort(d); err == nil || svc.port(80) != nil {
					continue
				}
				d = net.JoinHostPort(strings.Trim(d, "[]"), "80")
			}
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	slices.Sort(out)
	return out
}

// registryServiceOf returns the registry service of the host of domain (a
// vhost domain, "host" or "host:port") as the runtime looks it up: the
// service with that exact hostname, else the one with the longest
// wildcard hostname that covers it; nil when there is none.
func (t *translator) registryServiceOf(domain string) *service {
	host := domain
	if h, _, err := net.SplitHostPort(domain); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if svc := t.serviceByHost[host]; svc != nil {
		return svc
	}
	var best *service
	for _, svc := range t.wildcardServices {
		suffix := svc.Hostname[1:]
		if len(host) <= len(suffix) || !strings.HasSuffix(host, suffix) {
			continue
		}
		if best == nil || len(svc.Hostname) > len(best.Hostname) {
			best = svc
		}
	}
	return best
}

// warnOpenProxy warns when the egress proxy of l listens on an address
// other hosts can reach: Istio has no field for proxy authentication, so
// the translated listener is an open forward proxy there.
func (t *translator) warnOpenProxy(l *meshListener, sidecars []listenerSidecar) {
	addr, ok := strings.CutPrefix(l.listen, "tcp/")
	if !ok && strings.HasPrefix(l.listen, "unix/") {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() || strings.EqualFold(host, "localhost") {
		return
	}
	msg := fmt.Sprintf("the mesh listener %s is reachable from other hosts and its egress proxy (istio_egress) requires no authentication: an open proxy for everyone who can reach it; bind it to a loopback address, or add auth or client_identities to the istio_egress handler", addr)
	if len(sidecars) == 0 {
		t.problems = append(t.problems, istioyaml.Problem{Message: msg + " (the mesh listener address is an adapter option)"})
	}
	for _, sc := range sidecars {
		if sc.bindPath != "" {
			t.warn(sc.obj, sc.bindPath, msg)
		} else {
			t.warn(sc.obj, "spec.egress", msg+" (served on the mesh listener address, an adapter option)")
		}
	}
}
