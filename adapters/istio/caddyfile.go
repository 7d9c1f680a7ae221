package istio

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"weak"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istioapp"
	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// The Caddyfile's `istio` global option and istio_route directive are
// registered here, not in the istioapp and istioroute packages that parse
// their syntax, because they translate Istio YAML and this package imports
// those two.
func init() {
	httpcaddyfile.RegisterGlobalOption("istio", parseCaddyfileIstio)
	httpcaddyfile.RegisterHandlerDirective("istio_route", parseCaddyfileIstioRoute)
	// istio_route proxies itself; it goes where reverse_proxy would, and
	// after istio_fault, as Envoy's router runs after its fault filter.
	httpcaddyfile.RegisterDirectiveOrder("istio_route", httpcaddyfile.Before, "reverse_proxy")
}

// ListenerVirtualHosts returns the istio_route virtual hosts that
// Translate builds for one listener of objs (which must be valid), and the
// translation's warnings. It lets a Caddyfile site serve the routes of one
// Istio listener on an address of the Caddyfile's choosing.
//
// listener is "mesh" or a Gateway as "namespace/name":
//
//   - mesh: port 0 is the mesh listener without port (the default mesh
//     listener when there is no Sidecar), which serves every registry
//     service port by the Host header; another port is the Sidecar egress
//     listener of that port.
//   - a Gateway: its HTTP servers on port (0: the only port they use), as
//     Translate serves them, with the VirtualServices bound to the Gateway
//     and their hosts intersected with the servers' hosts. Unlike
//     Translate, servers with TLS termination (SIMPLE or MUTUAL) are served
//     too: the Caddyfile site terminates TLS, and the Gateway's tls
//     settings are not applied (a warning says so).
//
// An error says the listener does not exist.
func ListenerVirtualHosts(objs []*istioyaml.Object, listener string, port uint32) ([]*istioroute.VirtualHost, []istioyaml.Problem, error) {
	t := newTranslator(objs, Options{MeshListen: DefaultMeshListen})
	t.buildRegistry()
	t.buildClusters()
	t.checkVirtualServices(t.meshListeners())

	var vhosts []*istioroute.VirtualHost
	if listener == meshGateway {
		l, err := t.meshListenerOnPort(port)
		if err != nil {
			return nil, nil, err
		}
		vhosts = t.meshVirtualHosts(l)
	} else {
		l, err := t.gatewayListenerOf(listener, port)
		if err != nil {
			return nil, nil, err
		}
		vhosts = t.gatewayVirtualHosts(l)
	}
	sortProblems(t.problems)
	return vhosts, t.problems, nil
}

// meshListenerOnPort returns the mesh listener of the Sidecar egress port,
// or the port-less one for port 0.
func (t *translator) meshListenerOnPort(port uint32) (*meshListener, error) {
	var found *meshListener
	var ports []string
	for _, l := range t.meshListeners() {
		if l.port == port {
			if found != nil {
				return nil, fmt.Errorf("the Sidecars define several egress listeners on port %d (%s and %s)", port, strings.TrimPrefix(found.listen, "tcp/"), strings.TrimPrefix(l.listen, "tcp/"))
			}
			found = l
		} else if l.port != 0 {
			ports = append(ports, strconv.FormatUint(uint64(l.port), 10))
		}
	}
	if found != nil {
		return found, nil
	}
	if port == 0 {
		return nil, fmt.Errorf("the Sidecars define no egress listener without port; name one of the ports %s", strings.Join(ports, ", "))
	}
	return nil, fmt.Errorf("the Sidecars define no egress listener on port %d", port)
}

// gatewayListenerOf gathers the servers of the Gateway ref ("namespace/name")
// on port that a Caddyfile site can serve.
func (t *translator) gatewayListenerOf(ref string, port uint32) (*gatewayListener, error) {
	var gw *gateway
	for _, g := range t.gateways {
		if g.ref() == ref {
			gw = g
		}
	}
	if gw == nil {
		return nil, fmt.Errorf("gateway %s is not defined", ref)
	}
	var servers []gatewayServer
	var ports []uint32
	for i, s := range gw.spec.GetServers() {
		path := fmt.Sprintf("spec.servers[%d]", i)
		switch proto := strings.ToUpper(s.GetPort().GetProtocol()); proto {
		case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
			if s.GetTls().GetHttpsRedirect() {
				t.warn(gw.obj, path+".tls.httpsRedirect", "not implemented yet: this server is not served")
				continue
			}
		case "HTTPS":
			switch mode := s.GetTls().GetMode().String(); mode {
			case "SIMPLE", "MUTUAL":
				t.warn(gw.obj, path+".tls", "not applied: the Caddyfile site's TLS settings terminate TLS for this server")
			default:
				t.warn(gw.obj, path+".tls.mode", fmt.Sprintf("not implemented yet: this server is not served (mode %s)", mode))
				continue
			}
		default:
			t.warn(gw.obj, path+".port.protocol", fmt.Sprintf("not implemented yet: this server is not served (protocol %s)", proto))
			continue
		}
		number := s.GetPort().GetNumber()
		if !slices.Contains(ports, number) {
			ports = append(ports, number)
		}
		if port == 0 || number == port {
			servers = append(servers, gatewayServer{gw: gw, index: i, server: s})
		}
	}
	switch {
	case len(ports) == 0:
		return nil, fmt.Errorf("gateway %s has no HTTP server", ref)
	case port == 0 && len(ports) > 1:
		return nil, fmt.Errorf("gateway %s has HTTP servers on ports %s: name one", ref, joinPorts(ports))
	case len(servers) == 0:
		return nil, fmt.Errorf("gateway %s has no HTTP server on port %d (it has %s)", ref, port, joinPorts(ports))
	}
	if port == 0 {
		port = ports[0]
	}
	return &gatewayListener{name: "gateway-" + strconv.FormatUint(uint64(port), 10), port: port, servers: servers}, nil
}

func joinPorts(ports []uint32) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.FormatUint(uint64(p), 10)
	}
	return strings.Join(s, ", ")
}

// caddyfileSource is the Istio configuration that the `istio` global
// option of one Caddyfile adaptation loaded, for the istio_route directives
// of the same adaptation.
type caddyfileSource struct {
	objs []*istioyaml.Object
	// reported are the warnings already logged, so that a directive logs
	// only those about its listener.
	reported map[string]bool
	// clusters are the names of the istio app's clusters.
	clusters map[string]bool
}

// The global option's value must be an httpcaddyfile.App, which holds
// nothing but the app's JSON, and a directive sees only that value
// (Helper.Option). So the decoded objects are kept aside, keyed by the
// identity of that JSON: weak pointers, so that an entry is dropped when
// its adaptation is over.
var (
	caddyfileSourcesMu sync.Mutex
	caddyfileSources   = make(map[weak.Pointer[byte]]*caddyfileSource)
)

func rememberCaddyfileSource(appJSON json.RawMessage, src *caddyfileSource) {
	caddyfileSourcesMu.Lock()
	defer caddyfileSourcesMu.Unlock()
	for k := range caddyfileSources {
		if k.Value() == nil {
			delete(caddyfileSources, k)
		}
	}
	caddyfileSources[weak.Make(&appJSON[0])] = src
}

func lookupCaddyfileSource(appJSON json.RawMessage) *caddyfileSource {
	if len(appJSON) == 0 {
		return nil
	}
	caddyfileSourcesMu.Lock()
	defer caddyfileSourcesMu.Unlock()
	return caddyfileSources[weak.Make(&appJSON[0])]
}

// parseCaddyfileIstio sets up the istio app from the `istio` global
// option (syntax: istioapp.Source's UnmarshalCaddyfile): it decodes,
// validates and translates the Istio YAML, and returns the app, whose
// services, workloads and clusters are those Translate gives. It does not
// add listeners: Caddyfile sites serve the routes with istio_route.
//
// A global option cannot return Caddyfile adapter warnings, so the
// translation's warnings are logged (logger "caddyfile.istio").
func parseCaddyfileIstio(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the istio global option has already been specified")
	}
	src := new(istioapp.Source)
	if err := src.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	objs, warnings, err := loadCaddyfileSource(src)
	if err != nil {
		return nil, err
	}
	cfg, translateWarnings := Translate(objs, Options{})
	warnings = append(warnings, translateWarnings...)
	sortProblems(warnings)

	appJSON := append(json.RawMessage(nil), cfg.AppsRaw["istio"]...)
	var app appConfig
	if err := json.Unmarshal(appJSON, &app); err != nil {
		return nil, d.Errf("encoding the istio app: %v", err)
	}
	clusters := make(map[string]bool, len(app.Clusters))
	for _, c := range app.Clusters {
		clusters[c.Name] = true
	}
	reported := logCaddyfileWarnings(warnings, nil)
	rememberCaddyfileSource(appJSON, &caddyfileSource{objs: objs, reported: reported, clusters: clusters})
	return httpcaddyfile.App{Name: "istio", Value: appJSON}, nil
}

// loadCaddyfileSource decodes and validates every document of src.
func loadCaddyfileSource(src *istioapp.Source) ([]*istioyaml.Object, []istioyaml.Problem, error) {
	var objs []*istioyaml.Object
	var warnings []istioyaml.Problem
	for _, doc := range src.Documents {
		o, w, err := DecodeAndValidate(doc.Name, doc.Body, src.Namespace)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid Istio configuration, at %s:%d:\n%v", doc.Token.File, doc.Token.Line, err)
		}
		objs = append(objs, o...)
		warnings = append(warnings, w...)
	}
	return objs, warnings, nil
}

// logCaddyfileWarnings logs the warnings not in reported, and returns the
// set of those logged and reported.
func logCaddyfileWarnings(warnings []istioyaml.Problem, reported map[string]bool) map[string]bool {
	logged := make(map[string]bool, len(reported)+len(warnings))
	for k := range reported {
		logged[k] = true
	}
	logger := caddy.Log().Named("caddyfile.istio")
	for _, w := range warnings {
		msg := w.Error()
		if logged[msg] {
			continue
		}
		logged[msg] = true
		logger.Warn("istio configuration", zap.String("problem", msg))
	}
	return logged
}

// parseCaddyfileIstioRoute sets up an istio_route handler from Caddyfile
// tokens (syntax: istioroute.CaddyfileConfig's UnmarshalCaddyfile): the
// virtual hosts of the chosen listener, from the global option's Istio
// YAML or the directive's own. Warnings not logged by the global option are
// logged (logger "caddyfile.istio"), as the directive cannot return
// adapter warnings either.
func parseCaddyfileIstioRoute(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	cfg := new(istioroute.CaddyfileConfig)
	if err := cfg.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	app, ok := h.Option("istio").(httpcaddyfile.App)
	if !ok {
		return nil, h.Err("istio_route needs the istio global option ({ istio <file.yaml> }): it defines the clusters that routes proxy to")
	}
	global := lookupCaddyfileSource(app.Value)
	if global == nil {
		return nil, h.Err("the istio global option's configuration is not available to istio_route")
	}

	objs, reported := global.objs, global.reported
	if cfg.Source != nil {
		// The directive's objects come after the global option's, so that
		// they see its registry and replace its objects of the same kind,
		// namespace and name.
		own, warnings, err := loadCaddyfileSource(cfg.Source)
		if err != nil {
			return nil, err
		}
		objs = append(slices.Clip(objs), own...)
		reported = logCaddyfileWarnings(warnings, reported)
	}
	vhosts, warnings, err := ListenerVirtualHosts(objs, cfg.Listener, cfg.Port)
	if err != nil {
		return nil, h.Errf("%v", err)
	}
	if cfg.Source != nil {
		where := fmt.Sprintf("%s:%d", h.File(), h.Line())
		warnings = append(warnings, missingClusters(where, vhosts, global.clusters)...)
	}
	logCaddyfileWarnings(warnings, reported)

	return &istioroute.Handler{VirtualHosts: vhosts, PathNormalization: cfg.PathNormalization}, nil
}

// missingClusters warns about destinations that the global option's
// istio app does not define (the directive's own YAML may name services
// the app does not have): they would answer 503.
func missingClusters(where string, vhosts []*istioroute.VirtualHost, clusters map[string]bool) []istioyaml.Problem {
	var out []istioyaml.Problem
	seen := make(map[string]bool)
	add := func(name string) {
		if clusters[name] || seen[name] {
			return
		}
		seen[name] = true
		out = append(out, istioyaml.Problem{File: where, Message: fmt.Sprintf("istio_route: cluster %s is not defined by the istio global option: its requests get 503", name)})
	}
	for _, vh := range vhosts {
		for _, r := range vh.Routes {
			for _, d := range r.Route {
				add(d.Cluster)
			}
			for _, m := range r.Mirrors {
				add(m.Cluster)
			}
		}
	}
	return out
}
