package istio

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mholt/caddy-l4/layer4"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
)

// Layer-4 servers: Gateway servers that pass TLS through (PASSTHROUGH,
// AUTO_PASSTHROUGH) or proxy opaque TCP, and Sidecar egress listeners of
// protocol TLS or TCP, are served by the layer4 app of
// github.com/mholt/caddy-l4 rather than by an http server:
//
//   - a TLS listener reads the ClientHello and routes on its SNI (Envoy's
//     filter chains by server_names): VirtualService tls routes
//     (match.sniHosts) or, with AUTO_PASSTHROUGH, the SNI
//     outbound_.PORT_.SUBSET_.HOST of a cluster; the TLS bytes are proxied
//     unchanged, so the backend terminates TLS. A ClientHello whose SNI no
//     route claims is refused (the connection is closed);
//   - a TCP listener sends every connection to the first VirtualService
//     tcp route that applies to it.
//
// Destinations are proxied by the layer4 proxy handler, whose upstreams
// are the registry endpoints of the destination's cluster, written at
// translation time (see clusterDials); a weighted split across
// destinations is caddy-l4's weighted_round_robin over those endpoints
// (each destination's weight shared among its endpoints), so connections
// are split in exact proportion rather than at random as Envoy does.

// layer4Kind is what a layer4 listener routes on.
type layer4Kind int

const (
	layer4TLS layer4Kind = iota // SNI of the ClientHello, TLS passed through
	layer4TCP                   // nothing: opaque TCP
)

func (k layer4Kind) String() string {
	if k == layer4TCP {
		return "TCP"
	}
	return "TLS passthrough"
}

// layer4Listener is one layer4 server: the Gateway servers, or the
// Sidecar egress listeners, that share a listen address.
type layer4Listener struct {
	name   string
	listen string
	port   uint32
	kind   layer4Kind

	// servers are the Gateway servers of the listener; auto marks those
	// with AUTO_PASSTHROUGH.
	servers []gatewayServer
	auto    map[int]bool

	// sidecars are the Sidecar egress listeners of the listener, with the
	// proxy identities they define.
	sidecars []sidecarListener
	proxies  []proxyIdentity
}

// sidecarListener is one Sidecar egress listener served by layer4.
type sidecarListener struct {
	sc    *sidecar
	index int
	hosts []egressHost
}

// layer4State collects the layer4 listeners while the servers are built.
type layer4State struct {
	listeners []*layer4Listener
	byListen  map[string]*layer4Listener
	// usedRoutes marks the tls and tcp routes some listener serves, by
	// VirtualService and "tls[i]"/"tcp[i]".
	usedRoutes map[*virtualService]map[string]bool
}

// l4 returns the translator's layer4 state, creating it on first use.
func (t *translator) l4() *layer4State {
	if t.layer4 == nil {
		t.layer4 = &layer4State{byListen: make(map[string]*layer4Listener), usedRoutes: make(map[*virtualService]map[string]bool)}
	}
	return t.layer4
}

// markUsed records that route key ("tls[i]", "tcp[i]") of vs is served.
func (s *layer4State) markUsed(vs *virtualService, key string) {
	if s.usedRoutes[vs] == nil {
		s.usedRoutes[vs] = make(map[string]bool)
	}
	s.usedRoutes[vs][key] = true
}

// listener returns the layer4 listener on listen, creating it with kind.
// ok is false when a listener of another kind has it already.
func (s *layer4State) listener(name, listen string, port uint32, kind layer4Kind) (l *layer4Listener, ok bool) {
	if l := s.byListen[listen]; l != nil {
		return l, l.kind == kind
	}
	l = &layer4Listener{name: name, listen: listen, port: port, kind: kind, auto: make(map[int]bool)}
	s.byListen[listen] = l
	s.listeners = append(s.listeners, l)
	return l, true
}

// overlapping returns the listener whose address cannot be bound next to
// listen (the same address, or the same port where one of them binds
// every address), or nil.
func (s *layer4State) overlapping(listen string) *layer4Listener {
	for _, l := range s.listeners {
		if _, conflict := conflictingHTTPServer(map[string]*caddyhttp.Server{"": {Listen: []string{l.listen}}}, listen); conflict {
			return l
		}
	}
	return nil
}

// isTCPProtocol reports whether a port protocol is opaque TCP for Istio:
// TCP and the protocols Istio proxies as TCP (MONGO, MYSQL, REDIS,
// unknown names).
func isTCPProtocol(proto string) bool {
	switch strings.ToUpper(proto) {
	case "HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TLS", "UDP":
		return false
	}
	return true
}

// layer4GatewayServer reports whether server i of gw (a server an HTTP
// server cannot serve) is served by the layer4 app: TLS or HTTPS with
// tls.mode PASSTHROUGH or AUTO_PASSTHROUGH, and TCP-like protocols. When
// it warns about the server itself, it reports true too.
func (t *translator) layer4GatewayServer(gw *gateway, i int, s *networking.Server) bool {
	path := fmt.Sprintf("spec.servers[%d]", i)
	proto := strings.ToUpper(s.GetPort().GetProtocol())
	mode := s.GetTls().GetMode()
	var kind layer4Kind
	switch {
	case (proto == "TLS" || proto == "HTTPS") && (mode == networking.ServerTLSSettings_PASSTHROUGH || mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH):
		kind = layer4TLS
	case proto == "TLS":
		t.warn(gw.obj, path+".tls.mode", fmt.Sprintf("not implemented yet: a TLS server with tls.mode %s (termination, then tcp routes) is not served", mode))
		return true
	case isTCPProtocol(proto):
		kind = layer4TCP
	default:
		return false
	}
	if s.GetDefaultEndpoint() != "" {
		t.warn(gw.obj, path+".defaultEndpoint", notImplemented)
	}
	port := s.GetPort().GetNumber()
	name := "gateway-" + strconv.FormatUint(uint64(port), 10)
	if b := s.GetBind(); b != "" {
		name = "gateway-" + strings.TrimPrefix(b, "unix://") + "-" + strconv.FormatUint(uint64(port), 10)
	}
	listen := listenAddress(s.GetBind(), port)
	if other := t.l4().overlapping(listen); other != nil && len(other.sidecars) > 0 {
		t.warn(gw.obj, path+".port.number", fmt.Sprintf("not served: the mesh listener %s uses this port", strings.TrimPrefix(other.listen, "tcp/")))
		return true
	} else if other != nil && other.listen != listen {
		t.warn(gw.obj, path+".bind", fmt.Sprintf("not served: the gateway listener %s uses this port", strings.TrimPrefix(other.listen, "tcp/")))
		return true
	}
	l, ok := t.l4().listener(name, listen, port, kind)
	switch {
	case !ok:
		t.warn(gw.obj, path+".port.protocol", fmt.Sprintf("not served: this port is already a %s listener", l.kind))
		return true
	case kind == layer4TCP && len(l.servers) > 0:
		first := l.servers[0]
		t.warn(gw.obj, path+".port.number", fmt.Sprintf("not served: TCP server %s spec.servers[%d] uses this port (a TCP listener has one route)", first.gw.ref(), first.index))
		return true
	}
	if mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH && kind == layer4TLS {
		l.auto[len(l.servers)] = true
	}
	l.servers = append(l.servers, gatewayServer{gw: gw, index: i, server: s})
	return true
}

// layer4SidecarListener reports whether egress listener i of sc (a TLS,
// HTTPS or TCP port) is served by the layer4 app: TLS and HTTPS ports
// route on SNI, TCP-like ports proxy every connection. Like the HTTP mesh listeners, it listens
// on loopback unless bind says otherwise.
func (t *translator) layer4SidecarListener(sc *sidecar, i int, e *networking.IstioEgressListener) bool {
	proto := strings.ToUpper(e.GetPort().GetProtocol())
	kind := layer4TCP
	switch {
	case proto == "TLS" || proto == "HTTPS":
		// A sidecar passes HTTPS through as TLS, routed on SNI.
		kind = layer4TLS
	case !isTCPProtocol(proto):
		return false
	}
	port := e.GetPort().GetNumber()
	bind := e.GetBind()
	if bind == "" {
		bind = "127.0.0.1"
	}
	name := "mesh-" + strings.TrimPrefix(bind, "unix://") + "-" + strconv.FormatUint(uint64(port), 10)
	listen := listenAddress(bind, port)
	if other := t.l4().overlapping(listen); other != nil && other.listen != listen {
		t.warn(sc.obj, fmt.Sprintf("spec.egress[%d].bind", i), fmt.Sprintf("not served: the mesh listener %s uses this port", strings.TrimPrefix(other.listen, "tcp/")))
		return true
	}
	l, ok := t.l4().listener(name, listen, port, kind)
	if !ok {
		t.warn(sc.obj, fmt.Sprintf("spec.egress[%d].port.protocol", i), fmt.Sprintf("not served: this port is already a %s listener", l.kind))
		return true
	}
	sl := sidecarListener{sc: sc, index: i}
	for _, h := range e.GetHosts() {
		ns, name := splitNamespacedHost(h)
		sl.hosts = append(sl.hosts, egressHost{namespace: ns, dnsName: name, own: sc.obj.Namespace})
	}
	l.sidecars = append(l.sidecars, sl)
	id := proxyIdentity{gateway: meshGateway, labels: sc.spec.GetWorkloadSelector().GetLabels(), namespace: sc.obj.Namespace}
	mesh := meshListener{proxies: l.proxies}
	mesh.addProxy(id)
	l.proxies = mesh.proxies
	return true
}

// layer4App builds the layer4 app from the collected listeners, or nil
// when there is none. httpServers are the http app's servers: a layer4
// listener on an address one of them listens on is not served (one
// socket cannot be both).
func (t *translator) layer4App(httpServers map[string]*caddyhttp.Server) json.RawMessage {
	st := t.layer4
	if st == nil {
		t.warnUnusedLayer4Routes()
		return nil
	}
	app := layer4.App{Servers: make(map[string]*layer4.Server)}
	for _, l := range st.listeners {
		if name, conflict := conflictingHTTPServer(httpServers, l.listen); conflict {
			// Envoy tells passthrough and terminating filter chains of one
			// port apart by SNI. caddy-l4 v0.1.2's listener wrapper could
			// do it in front of Caddy's TLS termination, but it returns
			// the buffer of a connection it hands over to a pool while the
			// HTTP server still reads from it: concurrent handshakes get
			// corrupted (seen in testing). So one port is one or the other.
			obj, field := l.owner()
			t.warn(obj, field, fmt.Sprintf("not served: the http server %s listens on %s (HTTP and %s on one port is not implemented yet)", name, strings.TrimPrefix(l.listen, "tcp/"), l.kind))
			continue
		}
		var routes layer4.RouteList
		if len(l.sidecars) > 0 {
			routes = t.sidecarLayer4Routes(l)
		} else {
			routes = t.gatewayLayer4Routes(l)
		}
		if len(routes) == 0 {
			obj, field := l.owner()
			t.warn(obj, field, fmt.Sprintf("no route: every connection to %s is closed", strings.TrimPrefix(l.listen, "tcp/")))
		}
		app.Servers[l.name] = &layer4.Server{Listen: []string{l.listen}, Routes: routes}
	}
	t.warnUnusedLayer4Routes()
	if len(app.Servers) == 0 {
		return nil
	}
	var w []caddyconfig.Warning
	raw := caddyconfig.JSON(app, &w)
	for _, x := range w {
		t.problems = append(t.problems, istioyaml.Problem{Message: "encoding: " + x.Message})
	}
	return raw
}

// owner is the object and field that define the listener, for warnings.
func (l *layer4Listener) owner() (*istioyaml.Object, string) {
	if len(l.servers) > 0 {
		return l.servers[0].gw.obj, fmt.Sprintf("spec.servers[%d].port.number", l.servers[0].index)
	}
	sl := l.sidecars[0]
	return sl.sc.obj, fmt.Sprintf("spec.egress[%d].port.number", sl.index)
}

// conflictingHTTPServer returns the name of the http server that listens
// on the same port as listen, on an overlapping address.
func conflictingHTTPServer(servers map[string]*caddyhttp.Server, listen string) (string, bool) {
	want, err := caddy.ParseNetworkAddress(listen)
	if err != nil {
		return "", false
	}
	for _, name := range slices.Sorted(maps.Keys(servers)) {
		for _, addr := range servers[name].Listen {
			have, err := caddy.ParseNetworkAddress(addr)
			if err != nil || have.IsUnixNetwork() != want.IsUnixNetwork() {
				continue
			}
			if want.IsUnixNetwork() {
				if have.Host == want.Host {
					return name, true
				}
				continue
			}
			if have.StartPort != want.StartPort {
				continue
			}
			if have.Host == "" || want.Host == "" || have.Host == want.Host {
				return name, true
			}
		}
	}
	return "", false
}

// warnUnusedLayer4Routes warns about the tls and tcp routes of
// VirtualServices with hosts that no layer4 listener serves.
func (t *translator) warnUnusedLayer4Routes() {
	var used map[*virtualService]map[string]bool
	if t.layer4 != nil {
		used = t.layer4.usedRoutes
	}
	for _, vs := range t.virtualServices {
		if len(vs.spec.GetHosts()) == 0 {
			continue // a delegate: tls and tcp routes are not delegated
		}
		for i := range vs.spec.GetTls() {
			key := fmt.Sprintf("tls[%d]", i)
			if !used[vs][key] {
				t.warn(vs.obj, "spec."+key, "not served: no TLS passthrough Gateway server or Sidecar TLS egress listener this route applies to")
			}
		}
		for i := range vs.spec.GetTcp() {
			key := fmt.Sprintf("tcp[%d]", i)
			if !used[vs][key] {
				t.warn(vs.obj, "spec."+key, "not served: no TCP Gateway server or Sidecar TCP egress listener this route applies to")
			}
		}
	}
}
