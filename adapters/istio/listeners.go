package istio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// routeHandler is the JSON of the istio_route handler (istioroute.Handler's
// config fields).
type routeHandler struct {
	VirtualHosts []*istioroute.VirtualHost `json:"virtual_hosts,omitempty"`
}

// meshListener is a listener for the mesh: a Sidecar egress listener, or
// the default one when there is no Sidecar.
type meshListener struct {
	name   string
	listen string
	// port is the egress listener port: only service ports with this
	// number are served. 0 serves every port, telling them apart by the
	// port in the Host header.
	port  uint32
	hosts []egressHost // which hosts are served; nil means all
	all   bool         // serves every host (no Sidecar, or a Sidecar without egress)
	// implicit is true for the listener that exists because no Sidecar
	// says otherwise; it is left out when it would serve nothing.
	implicit bool
	// proxies are the caller identities of the listener, one per Sidecar
	// that defines it (see proxyIdentity).
	proxies []proxyIdentity
}

// proxyIdentity is who this Caddy is, for a listener, when Istio evaluates
// match.gateways, match.sourceLabels and match.sourceNamespace at
// configuration time against the proxy a route is built for. This Caddy is
// not a Kubernetes pod, so its identity is defined from the resources
// that configure the listener:
//
//   - a mesh listener of a Sidecar: the Sidecar's workloadSelector.labels
//     (none without a selector) and the Sidecar's namespace;
//   - the default mesh listener (no Sidecar): no labels, namespace
//     "default";
//   - a Gateway listener: the Gateway's selector labels and namespace.
//
// When several Sidecars (or Gateways) share one listener, a match
// alternative is kept if it holds for one of them: Istio would build the
// route for that proxy, and the listener serves them all.
type proxyIdentity struct {
	gateway   string // "mesh", or the Gateway as "namespace/name"
	labels    map[string]string
	namespace string
}

// defaultProxyNamespace is the namespace of the default mesh listener's
// identity.
const defaultProxyNamespace = "default"

// addProxy adds id to the identities of l once.
func (l *meshListener) addProxy(id proxyIdentity) {
	for _, p := range l.proxies {
		if p.namespace == id.namespace && maps.Equal(p.labels, id.labels) {
			return
		}
	}
	l.proxies = append(l.proxies, id)
}

// egressHost is one entry "ns/dnsName" of a Sidecar egress listener.
type egressHost struct {
	namespace string // "*", ".", "~" or a namespace
	dnsName   string
	own       string // the Sidecar's namespace, which "." stands for
}

// selects reports whether the listener serves host of namespace ns.
func (l *meshListener) selects(ns, host string) bool {
	if l.all {
		return true
	}
	for _, h := range l.hosts {
		if !namespaceSelected(h.namespace, h.own, ns) {
			continue
		}
		if _, ok := intersectHosts(h.dnsName, host); ok {
			return true
		}
	}
	return false
}

// gatewayListener is one Caddy server for the Gateway servers that share a
// (bind, port), merged as Istio merges them.
type gatewayListener struct {
	name    string
	listen  string
	port    uint32
	servers []gatewayServer
	// istioMutual: the servers terminate the mesh's mTLS (tls.mode
	// ISTIO_MUTUAL).
	istioMutual bool
	// terminatesTLS: the servers are HTTPS servers with tls.mode SIMPLE,
	// MUTUAL or OPTIONAL_MUTUAL; policies are their TLS settings, one per
	// server (see gatewaytls.go).
	terminatesTLS bool
	policies      []*serverPolicy
	// redirects are the servers with tls.httpsRedirect: their hosts are
	// answered with a redirect to https.
	redirects []*networking.Server
}

// kind names what the listener terminates, for messages.
func (l *gatewayListener) kind() string {
	switch {
	case l.istioMutual:
		return "ISTIO_MUTUAL"
	case l.terminatesTLS:
		return "HTTPS"
	}
	return "plaintext HTTP"
}

type gatewayServer struct {
	gw     *gateway
	index  int
	server *networking.Server
}

// buildServers returns the Caddy HTTP servers: the mesh listeners and one
// per Gateway (bind, port).
func (t *translator) buildServers() (map[string]*caddyhttp.Server, *gatewayTLS) {
	mesh := t.meshListeners()
	t.checkVirtualServices(mesh)
	servers := make(map[string]*caddyhttp.Server)
	var served []*meshListener
	for _, l := range mesh {
		vhosts := t.meshVirtualHosts(l)
		if l.implicit && len(vhosts) == 0 {
			continue
		}
		srv := newServer(l.listen, vhosts)
		t.addEgress(l, srv, vhosts)
		servers[l.name] = srv
		served = append(served, l)
	}
	acc := &gatewayTLS{}
	for _, l := range t.gatewayListeners(served, acc) {
		srv := newServer(l.listen, t.gatewayVirtualHosts(l))
		if l.istioMutual {
			srv.ListenerWrappersRaw = []json.RawMessage{t.istioMTLSWrapper()}
		}
		if l.terminatesTLS {
			entries := sniEntries(l.policies)
			srv.TLSConnPolicies = connectionPolicies(l.policies, entries)
			srv.Routes = t.sniRoutes(l, entries)
			// Envoy serves HTTP/1.1 and h2 over TLS (ALPN); no h2c there.
			srv.Protocols = []string{"h1", "h2"}
			// Envoy does not compare the SNI with the Host header; Caddy
			// would answer 421 on a mismatch once client auth is on.
			strict := false
			srv.StrictSNIHost = &strict
		}
		if len(l.redirects) > 0 {
			srv.Routes = append(httpsRedirectRoutes(l), srv.Routes...)
		}
		servers[l.name] = srv
	}
	return servers, acc
}

// sniRoutes are the routes of a TLS listener: per SNI entry, the
// istio_route of the virtual hosts of the server the entry belongs to.
// A connection whose SNI no entry matches gets no route (404); it got no
// handshake in the first place.
func (t *translator) sniRoutes(l *gatewayListener, entries []sniEntry) caddyhttp.RouteList {
	vhosts := make(map[int][]*istioroute.VirtualHost)
	var routes caddyhttp.RouteList
	for _, e := range entries {
		vh, ok := vhosts[e.server]
		if !ok {
			one := *l
			one.servers = l.servers[e.server : e.server+1]
			vh = t.gatewayVirtualHosts(&one)
			vhosts[e.server] = vh
		}
		route := istioRoute(vh)
		route.MatcherSetsRaw = e.sniRouteMatcher()
		routes = append(routes, route)
	}
	return routes
}

// httpsRedirectRoutes answer the hosts of the listener's servers with
// tls.httpsRedirect with a 301 to https, same host and path, for every
// request, as Envoy's require_tls: ALL. Like Envoy, the port is dropped
// when it is 80 and kept otherwise.
func httpsRedirectRoutes(l *gatewayListener) caddyhttp.RouteList {
	var patterns []string
	all := false
	for _, s := range l.redirects {
		for _, h := range s.GetHosts() {
			_, name := splitNamespacedHost(h)
			var p string
			switch {
			case name == "*":
				all = true
			case strings.HasPrefix(name, "*."):
				// Envoy's domain wildcards match any number of labels.
				p = ".+" + regexp.QuoteMeta(name[1:])
			default:
				p = regexp.QuoteMeta(name)
			}
			if p != "" && !slices.Contains(patterns, p) {
				patterns = append(patterns, p)
			}
		}
	}
	location := "https://{http.request.hostport}{http.request.uri}"
	if l.port == 80 {
		location = "https://{http.request.host}{http.request.uri}"
	}
	var w []caddyconfig.Warning
	route := caddyhttp.Route{
		HandlersRaw: []json.RawMessage{jsonModuleObject(caddyhttp.StaticResponse{
			StatusCode: caddyhttp.WeakString("301"),
			Headers:    http.Header{"Location": []string{location}},
		}, "handler", "static_response", &w)},
	}
	if !all {
		route.MatcherSetsRaw = caddyhttp.RawMatcherSets{{"vars_regexp": caddyconfig.JSON(map[string]any{
			"{http.request.host}": map[string]string{"pattern": `(?i)^(` + strings.Join(patterns, "|") + `)$`},
		}, &w)}}
	}
	return caddyhttp.RouteList{route}
}

// newServer is a plaintext HTTP server (HTTP/1.1 and h2c, as Envoy's
// HTTP listeners accept both) whose only handler is istio_route.
func newServer(listen string, vhosts []*istioroute.VirtualHost) *caddyhttp.Server {
	return &caddyhttp.Server{
		Listen:    []string{listen},
		AutoHTTPS: &caddyhttp.AutoHTTPSConfig{Disabled: true},
		Protocols: []string{"h1", "h2", "h2c"},
		Routes:    caddyhttp.RouteList{istioRoute(vhosts)},
	}
}

// istioRoute is a route whose only handler is istio_route.
func istioRoute(vhosts []*istioroute.VirtualHost) caddyhttp.Route {
	return caddyhttp.Route{HandlersRaw: []json.RawMessage{istioRouteJSON(vhosts)}}
}

// istioRouteJSON is the istio_route handler of vhosts as
// jsonModuleObject(routeHandler{vhosts}, "handler", "istio_route")
// encodes it. With thousands of virtual hosts, they are encoded on
// GOMAXPROCS goroutines: each is an element of the one array of the
// handler's object, encoded on its own.
func istioRouteJSON(vhosts []*istioroute.VirtualHost) json.RawMessage {
	const minPerWorker = 512
	workers := min(runtime.GOMAXPROCS(0), len(vhosts)/minPerWorker)
	if workers <= 1 {
		return jsonModuleObject(routeHandler{VirtualHosts: vhosts}, "handler", "istio_route", nil)
	}
	parts := make([][]byte, workers)
	failed := make([]bool, workers)
	per := (len(vhosts) + workers - 1) / workers
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			var part []byte
			var c jsonCanonicalizer
			var buf bytes.Buffer
			encoder := json.NewEncoder(&buf) // json.Marshal's bytes, and a newline
			for _, vh := range vhosts[min(i*per, len(vhosts)):min((i+1)*per, len(vhosts))] {
				buf.Reset()
				if err := encoder.Encode(vh); err != nil {
					failed[i] = true
					return
				}
				enc := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
				if len(part) > 0 {
					part = append(part, ',')
				}
				var ok bool
				if part, ok = c.appendCanonical(part, enc); !ok {
					failed[i] = true
					return
				}
			}
			parts[i] = part
		})
	}
	wg.Wait()
	size := 64
	for i, part := range parts {
		if failed[i] {
			return jsonModuleObject(routeHandler{VirtualHosts: vhosts}, "handler", "istio_route", nil)
		}
		size += len(part) + 1
	}
	// the keys in order, as the map JSONModuleObject encodes sorts them
	out := make([]byte, 0, size)
	out = append(out, `{"handler":"istio_route","virtual_hosts":[`...)
	for _, part := range parts {
		if len(part) == 0 {
			continue
		}
		if out[len(out)-1] != '[' {
			out = append(out, ',')
		}
		out = append(out, part...)
	}
	return append(out, "]}"...)
}

// meshListeners returns the listeners of the Sidecar egress listeners, or
// the default listener (Options.MeshListen, every host) without Sidecar.
//
// Istio applies a Sidecar to the workloads it selects; this Caddy is one
// proxy, so every Sidecar's egress listeners are served, and listeners on
// the same address merge their hosts.
func (t *translator) meshListeners() []*meshListener {
	if len(t.sidecars) == 0 {
		return []*meshListener{{name: "mesh", listen: t.meshListen(), all: true, implicit: true,
			proxies: []proxyIdentity{{gateway: meshGateway, namespace: defaultProxyNamespace}}}}
	}
	var out []*meshListener
	byListen := make(map[string]*meshListener)
	get := func(listen, name string, port uint32) *meshListener {
		if l := byListen[listen]; l != nil {
			return l
		}
		l := &meshListener{name: name, listen: listen, port: port}
		byListen[listen] = l
		out = append(out, l)
		return l
	}
	for _, sc := range t.sidecars {
		obj, spec := sc.obj, sc.spec
		id := proxyIdentity{gateway: meshGateway, labels: spec.GetWorkloadSelector().GetLabels(), namespace: obj.Namespace}
		if spec.GetWorkloadSelector() != nil {
			t.warn(obj, "spec.workloadSelector", "not implemented yet: the Sidecar applies to this whole proxy (its labels are this proxy's labels for match.sourceLabels)")
		}
		if len(spec.GetIngress()) > 0 {
			t.warn(obj, "spec.ingress", notImplemented)
		}
		if spec.GetInboundConnectionPool() != nil {
			t.warn(obj, "spec.inboundConnectionPool", notImplemented)
		}
		if len(spec.GetEgress()) == 0 {
			l := get(t.meshListen(), "mesh", 0)
			l.all = true
			l.addProxy(id)
			continue
		}
		for i, e := range spec.GetEgress() {
			path := fmt.Sprintf("spec.egress[%d]", i)
			if e.GetCaptureMode() != networking.CaptureMode_DEFAULT {
				t.warn(obj, path+".captureMode", notImplemented)
			}
			var l *meshListener
			if port := e.GetPort().GetNumber(); port != 0 {
				if proto := parseProtocol(e.GetPort().GetProtocol()); !isHTTPProtocol(proto) {
					if t.layer4SidecarListener(sc, i, e) {
						continue
					}
					t.warn(obj, path+".port.protocol", fmt.Sprintf("not implemented yet: this listener is not served (protocol %s)", e.GetPort().GetProtocol()))
					continue
				}
				// Istio binds egress listeners to 0.0.0.0 by default; we
				// bind to loopback so that a config never opens a port to
				// the network unless it says so.
				bind := e.GetBind()
				if bind == "" {
					bind = "127.0.0.1"
				}
				l = get(listenAddress(bind, port), "mesh-"+strings.TrimPrefix(bind, "unix://")+"-"+strconv.FormatUint(uint64(port), 10), port)
			} else {
				if e.GetBind() != "" {
					t.warn(obj, path+".bind", "ignored: an egress listener without port is served on the mesh listener "+t.opts.MeshListen)
				}
				l = get(t.meshListen(), "mesh", 0)
			}
			l.addProxy(id)
			for _, h := range e.GetHosts() {
				ns, name := splitNamespacedHost(h)
				l.hosts = append(l.hosts, egressHost{namespace: ns, dnsName: name, own: obj.Namespace})
			}
		}
	}
	return out
}

// meshListen is the Caddy listen address of the default mesh listener.
func (t *translator) meshListen() string {
	if strings.Contains(t.opts.MeshListen, "/") {
		return t.opts.MeshListen
	}
	return "tcp/" + t.opts.MeshListen
}

// gatewayListeners groups the HTTP servers of every Gateway by (bind,
// port). This Caddy implements every Gateway of the input: a Gateway's
// selector (which workloads run it) is not matched against anything.
func (t *translator) gatewayListeners(mesh []*meshListener, acc *gatewayTLS) []*gatewayListener {
	var out []*gatewayListener
	byListen := make(map[string]*gatewayListener)
	for _, gw := range t.gateways {
		for i, s := range gw.spec.GetServers() {
			path := fmt.Sprintf("spec.servers[%d]", i)
			proto := strings.ToUpper(s.GetPort().GetProtocol())
			// An HTTPS server with ISTIO_MUTUAL terminates the mesh's mTLS
			// (the istio_mtls listener wrapper); other TLS modes are not
			// served yet.
			istioMutual := proto == "HTTPS" && s.GetTls().GetMode() == networking.ServerTLSSettings_ISTIO_MUTUAL
			terminates := terminatesTLS(s)
			plain := proto == "HTTP" || proto == "HTTP2" || proto == "GRPC" || proto == "GRPC-WEB"
			switch {
			case plain, istioMutual, terminates:
			default:
				if t.layer4GatewayServer(gw, i, s) {
					continue
				}
				t.warn(gw.obj, path+".port.protocol", fmt.Sprintf("not implemented yet: this server is not served (protocol %s)", proto))
				continue
			}
			redirect := false
			if tls := s.GetTls(); tls != nil && plain {
				// Istio's validation allows only httpsRedirect (or a
				// certificate-less passthrough block) on plaintext ports.
				redirect = tls.GetHttpsRedirect()
			}
			if s.GetDefaultEndpoint() != "" {
				t.warn(gw.obj, path+".defaultEndpoint", notImplemented)
			}
			port := s.GetPort().GetNumber()
			listen := listenAddress(s.GetBind(), port)
			if m := conflictingMeshListener(mesh, s.GetBind(), port); m != nil {
				t.warn(gw.obj, path+".port.number", fmt.Sprintf("not served: the mesh listener %s uses this port", strings.TrimPrefix(m.listen, "tcp/")))
				continue
			}
			l := byListen[listen]
			if l != nil && (l.istioMutual != istioMutual || l.terminatesTLS != terminates) {
				if l.istioMutual || istioMutual {
					t.warn(gw.obj, path+".tls.mode", "not served: servers on this port with and without ISTIO_MUTUAL cannot share one listener")
				} else {
					t.warn(gw.obj, path+".port.protocol", fmt.Sprintf("not served: this port is already a %s listener", l.kind()))
				}
				continue
			}
			if terminates && port == caddyhttp.DefaultHTTPPort {
				// Caddy serves its http_port without TLS whatever the
				// connection policies say.
				t.warn(gw.obj, path+".port.number", "not served: Caddy serves port 80 (its http_port) without TLS")
				continue
			}
			var policy *serverPolicy
			if terminates {
				var ok bool
				if policy, ok = t.serverTLSPolicy(gw, path, s, acc); !ok {
					continue
				}
			}
			if l == nil {
				name := "gateway-" + strconv.FormatUint(uint64(port), 10)
				if b := s.GetBind(); b != "" {
					name = "gateway-" + strings.TrimPrefix(b, "unix://") + "-" + strconv.FormatUint(uint64(port), 10)
				}
				l = &gatewayListener{name: name, listen: listen, port: port, istioMutual: istioMutual, terminatesTLS: terminates}
				byListen[listen] = l
				out = append(out, l)
			}
			if policy != nil {
				l.policies = append(l.policies, policy)
			}
			if redirect {
				l.redirects = append(l.redirects, s)
			}
			l.servers = append(l.servers, gatewayServer{gw: gw, index: i, server: s})
		}
	}
	return out
}

// conflictingMeshListener returns the mesh listener that a gateway server
// on bind:port could not listen next to.
func conflictingMeshListener(mesh []*meshListener, bind string, port uint32) *meshListener {
	for _, m := range mesh {
		addr := strings.TrimPrefix(m.listen, "tcp/")
		i := strings.LastIndexByte(addr, ':')
		if i < 0 || addr[i+1:] != strconv.FormatUint(uint64(port), 10) {
			continue
		}
		mbind := strings.Trim(addr[:i], "[]")
		if bind == "" || mbind == "" || mbind == bind {
			return m
		}
	}
	return nil
}
