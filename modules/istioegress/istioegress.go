// Package istioegress implements the `http.handlers.istio_egress` handler:
// the forward proxy of the mesh listener. Applications use it with
// HTTP_PROXY / HTTPS_PROXY: absolute-form HTTP requests and CONNECT tunnels
// (HTTP/1.1, and HTTP/2 CONNECT). Requests for mesh hosts go on to the next
// handler (istio_route); others are decided by the egress policy of
// Istio's Sidecar outboundTrafficPolicy, the ServiceEntries of the istio
// app, allow and deny lists, and a private address (SSRF) check.
package istioegress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults.
const (
	defaultDialTimeout = 10 * time.Second
	defaultIdleTimeout = time.Hour
	defaultRealm       = "istio-egress"
)

// Handler is the egress forward proxy. Its configuration is Config (see
// config.go).
type Handler struct {
	Config

	allow, deny patternList
	// routeHosts finds an exact host with one map lookup: the adapter
	// lists every virtual host domain there, thousands in a large mesh.
	routeHosts hostIndex
	accounts   map[string][]byte
	fakeHash   []byte

	// app is the istio app, nil when the configuration has none (then
	// nothing is a registry host).
	app *istioapp.App

	// resolver looks host names up; a test hook.
	resolver Resolver
	// dial connects to a checked address; a test hook.
	dial func(ctx context.Context, network, address string) (net.Conn, error)

	// forward proxies plain HTTP requests to the address chosen by the
	// policy (see forward.go).
	forward *reverseproxy.Handler

	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.istio_egress",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, parses the host lists and finds the istio app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Mode == "" {
		h.Mode = ModeAllowAny
	}
	if h.DialTimeout == 0 {
		h.DialTimeout = caddy.Duration(defaultDialTimeout)
	}
	if h.IdleTimeout == 0 {
		h.IdleTimeout = caddy.Duration(defaultIdleTimeout)
	}
	if h.Realm == "" {
		h.Realm = defaultRealm
	}
	var err error
	if h.allow, err = parsePatterns("allow", h.Allow); err != nil {
		return err
	}
	if h.deny, err = parsePatterns("deny", h.Deny); err != nil {
		return err
	}
	routeHosts, err := parsePatterns("route_hosts", h.RouteHosts)
	if err != nil {
		return err
	}
	h.routeHosts = newHostIndex(routeHosts)
	if h.accounts, h.fakeHash, err = loadAccounts(h.Auth); err != nil {
		return err
	}
	if h.resolver == nil {
		h.resolver = net.DefaultResolver
	}
	if h.dial == nil {
		dialer := &net.Dialer{Timeout: time.Duration(h.DialTimeout), KeepAlive: 30 * time.Second}
		h.dial = dialer.DialContext
	}
	switch app, err := ctx.AppIfConfigured("istio"); {
	case err == nil:
		h.app = app.(*istioapp.App)
	case !errors.Is(err, caddy.ErrNotConfigured):
		return fmt.Errorf("istio app: %v", err)
	}
	return h.provisionForward(ctx)
}

// Validate checks the mode.
func (h *Handler) Validate() error {
	switch h.Mode {
	case ModeAllowAny, ModeRegistryOnly:
	default:
		return fmt.Errorf("mode %q: must be ALLOW_ANY or REGISTRY_ONLY", h.Mode)
	}
	if h.DialTimeout < 0 || h.IdleTimeout < 0 {
		return fmt.Errorf("timeouts must not be negative")
	}
	return nil
}

// Cleanup releases the forwarding reverse_proxy.
func (h *Handler) Cleanup() error {
	if h.forward != nil {
		return h.forward.Cleanup()
	}
	return nil
}

// ServeHTTP proxies CONNECT tunnels and plain HTTP requests per the policy,
// and passes requests for mesh hosts to next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The log entry is made only for what this handler answers: a request
	// that goes on to istio_route is logged there, and costs no allocation
	// here.
	if status, reason := h.authorize(r); status != 0 {
		entry := h.newLogEntry(r)
		entry.refuse(reason)
		h.deny407or403(w, status, reason)
		entry.status = status
		entry.write(h.logger)
		return nil
	}
	// the credentials are for this proxy only
	delete(r.Header, "Proxy-Authorization") // the canonical key, as Header.Del would make it

	// An extended CONNECT (RFC 8441, :protocol such as websocket) is an
	// HTTP request for :authority and :path, not a tunnel: it is routed
	// and forwarded like the others (reverse_proxy speaks it).
	if r.Method == http.MethodConnect && !(r.ProtoMajor >= 2 && r.Header.Get(":protocol") != "") {
		return h.serveConnect(w, r, h.newLogEntry(r))
	}

	defaultPort := uint32(80)
	if r.URL.Scheme == "https" || (r.URL.Host == "" && r.TLS != nil) {
		defaultPort = 443
	}
	dest, err := splitDestination(r.Host, defaultPort)
	if err != nil {
		entry := h.newLogEntry(r)
		entry.refuse("bad request: " + err.Error())
		entry.status = http.StatusBadRequest
		http.Error(w, "istio_egress: "+err.Error(), http.StatusBadRequest)
		entry.write(h.logger)
		return nil
	}
	if h.isMeshHost(&dest) && !h.deny.matches(&dest) {
		// the VirtualService routing of the next handler applies; it logs
		// the request itself
		return next.ServeHTTP(w, r)
	}
	entry := h.newLogEntry(r)
	forwarded := dest // on the heap only here, so dest stays on the stack
	entry.dest = &forwarded
	return h.serveForward(w, r, &forwarded, entry)
}

// isMeshHost reports whether plain HTTP for d is routed by the next
// handler: a route host, or a registry host on a declared port.
func (h *Handler) isMeshHost(d *destination) bool {
	if h.routeHosts.matches(d) {
		return true
	}
	_, _, ok := h.app.LookupService(d.host, d.port)
	return ok
}

// decision is what the policy decided for a destination.
type decision struct {
	// refused, with the reason, when the request must not go out.
	refused bool
	reason  string

	// dials are the addresses to try, in order; all were checked.
	dials []string
	// viaRegistry is true when dials are ServiceEntry endpoints.
	viaRegistry bool
}

// decide applies the egress policy to d and finds where it goes. It may
// resolve d's host (the IPs are checked, and only checked IPs are dialled,
// so a DNS answer that changes between check and dial cannot reach a
// private address).
func (h *Handler) decide(ctx context.Context, d *destination) decision {
	if h.deny.matches(d) {
		return decision{refused: true, reason: "destination " + d.String() + " is denied"}
	}
	svc, port, registered := h.app.LookupService(d.host, d.port)
	allowed := h.allow.matches(d)
	switch {
	case registered:
		if dials := h.app.ServiceDials(svc, port); len(dials) > 0 {
			return decision{dials: dials, viaRegistry: true, reason: "service entry " + svc.Hostname}
		}
		if istioapp.ServiceResolution(svc) == "STATIC" {
			return decision{refused: true, reason: "service " + svc.Hostname + " has no endpoints"}
		}
		// NONE and DYNAMIC_DNS: the host the client asked for, on the
		// target port
		target := d.port
		if port.TargetPort != 0 {
			target = port.TargetPort
		}
		return h.resolveChecked(ctx, d, target, svc, "service entry "+svc.Hostname)
	case allowed:
		return h.resolveChecked(ctx, d, d.port, nil, "allow list")
	case h.Mode == ModeRegistryOnly:
		if svc != nil {
			return decision{refused: true, reason: fmt.Sprintf("port %d is not declared by service %s (REGISTRY_ONLY)", d.port, svc.Hostname)}
		}
		return decision{refused: true, reason: "host " + d.host + " is not in the registry (REGISTRY_ONLY)"}
	default:
		return h.resolveChecked(ctx, d, d.port, nil, "ALLOW_ANY passthrough")
	}
}

// resolveChecked resolves d's host (unless it is an IP literal) and keeps
// the IPs that pass the private address check, dialled on port. An IP is
// exempt from the check when an allow entry names it, or when the service
// svc (non-nil for a registry host) names it: an exact, non-wildcard
// hostname equal to the requested host, or an address containing it.
func (h *Handler) resolveChecked(ctx context.Context, d *destination, port uint32, svc *istioapp.Service, why string) decision {
	var ips []netip.Addr
	if d.literal.IsValid() {
		ips = []netip.Addr{d.literal}
	} else {
		found, err := h.resolver.LookupNetIP(ctx, "ip", d.host)
		if err != nil || len(found) == 0 {
			return decision{refused: true, reason: fmt.Sprintf("cannot resolve %s: %v", d.host, err)}
		}
		ips = found
	}
	var dials []string
	var privateWhy string
	for _, ip := range ips {
		ip = ip.WithZone("").Unmap()
		if why := privateReason(ip); why != "" && !h.allow.namesIP(d, ip) && !serviceNames(svc, d, ip) {
			privateWhy = why
			continue
		}
		dials = append(dials, net.JoinHostPort(ip.String(), strconv.FormatUint(uint64(port), 10)))
	}
	if len(dials) == 0 {
		return decision{refused: true, reason: fmt.Sprintf("destination %s is a %s address", d, privateWhy)}
	}
	return decision{dials: dials, reason: why}
}

// serviceNames reports whether the registry service names ip for d: the
// request's host is the service's own (non-wildcard) hostname, or one of
// its addresses contains ip.
func serviceNames(svc *istioapp.Service, d *destination, ip netip.Addr) bool {
	if svc == nil {
		return false
	}
	if svc.Hostname == d.host && !d.literal.IsValid() {
		return true
	}
	for _, a := range svc.Addresses {
		if prefix, err := netip.ParsePrefix(a); err == nil && prefix.Masked().Contains(ip) {
			return true
		}
		if addr, err := netip.ParseAddr(a); err == nil && addr.Unmap() == ip {
			return true
		}
	}
	return d.literal.IsValid() && svc.Hostname == d.literal.String()
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
