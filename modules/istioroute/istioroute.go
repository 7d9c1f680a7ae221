// Package istioroute implements the http.handlers.istio_route handler: the
// HTTP routing of Istio VirtualServices, as Envoy applies it.
package istioroute

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler routes requests as Envoy routes an Istio HTTP route
// configuration. It first normalizes the request path as Istio's mesh
// pathNormalization says (see PathNormalization), then finds the virtual host of the request's host (exact
// host:port, exact host, longest *.suffix, then *), takes the first route
// of that virtual host whose match holds, and then answers with the
// route's redirect or direct response, or picks one of its weighted
// destinations at random and proxies through that cluster of the istio app.
//
// Around that decision the route applies what Istio's HTTPRoute asks, in
// the order of Istio's filter chain: CORS (a preflight from an allowed
// origin is answered here), the fault (delay, then abort), then the
// action. A proxied request gets the route's and the destination's request
// header operations and the rewrite on the copy that goes upstream, is
// copied to the mirrors, and is sent under the route timeout (504
// "upstream request timeout" when it expires) with the retry policy: a
// retriable response is discarded while attempts remain, the next attempt
// prefers an endpoint not tried yet, and the last response is passed
// through. Response header operations and CORS headers are applied to the
// response that reaches the client.
//
// When no upstream response comes, the handler answers with Envoy's local
// replies (text/plain): 503 "no healthy upstream" for a cluster without
// endpoints; 503 "upstream connect error or disconnect/reset before
// headers. reset reason: ..." for a failed connection ("remote connection
// failure, transport failure reason: delayed connect error: Connection
// refused", "connection timeout") or one closed before the response
// headers ("connection termination"), with "retried and the latest "
// before "reset reason" when a retry was made; and 504 "upstream request
// timeout" when the route timeout, or the last per-try timeout, expires.
//
// A request with no virtual host or no matching route gets 404, as Envoy's
// "no route" (NR); a destination whose cluster does not exist gets 503, as
// Envoy's "no cluster" (NC), with no body. Both are returned as handler
// errors, so the server's error routes may handle them.
//
// Every request is counted in Istio's standard metrics on Caddy's metrics
// registry (see Telemetry), with Envoy's response flags (NR, NC, UH, UF,
// UC, UR, UO, UT, URX, DI, FI, DC); a server with access logs gets the
// fields route_name, virtual_service, upstream_cluster, upstream_host,
// retry_count, response_flags and request_id. A request without
// x-request-id gets a random UUID in it, which goes upstream, to mirrors
// and to every retry; trace headers (traceparent, tracestate, b3) are
// forwarded as they come.
type Handler struct {
	// VirtualHosts to route among. A domain may appear in one virtual
	// host only.
	VirtualHosts []*VirtualHost `json:"virtual_hosts,omitempty"`

	// PathNormalization is how the request path is normalized before
	// routing, as Istio's MeshConfig pathNormalization. The normalized path
	// is both matched and forwarded to the destination; the query string is
	// kept as sent. Values:
	//
	//   - NONE: the path is routed and forwarded as sent.
	//   - BASE: RFC 3986 normalization as Envoy's normalize_path does it:
	//     "." and ".." segments removed, percent-encoded unreserved
	//     characters (ALPHA, DIGIT, '-', '.', '_', '~') decoded, '\'
	//     turned into '/'. A path containing %00 is rejected with 400.
	//   - MERGE_SLASHES: BASE, then runs of '/' merged into one.
	//   - DECODE_AND_MERGE_SLASHES: %2F, %2f, %5C and %5c decoded to '/'
	//     and '\' first, then MERGE_SLASHES.
	//
	// DEFAULT, Istio's name for BASE, is accepted. In every mode a
	// "#fragment" sent in the path is dropped, as Istio's Envoy does.
	//
	// Default: BASE
	PathNormalization string `json:"path_normalization,omitempty"`

	// Telemetry configures Istio's standard metrics (istio_requests_total,
	// istio_request_duration_milliseconds, istio_request_bytes,
	// istio_response_bytes) on Caddy's metrics endpoint. Default: on,
	// reporter "source", source labels from the istio app's mesh.
	Telemetry *Telemetry `json:"telemetry,omitempty"`

	hosts             hostTable
	telemetry         *telemetry
	pathNormalization pathNormalization
	logger            *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.istio_route",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision compiles the virtual hosts and resolves the destination
// clusters in the istio app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()

	if h.PathNormalization == "" {
		h.PathNormalization = pathNormalizationBase
	}
	var err error
	if h.pathNormalization, err = parsePathNormalization(h.PathNormalization); err != nil {
		return err
	}

	// The istio app may be absent (e.g. routes made only of redirects);
	// its destinations then answer 503.
	var app *istioapp.App
	if appIface, err := ctx.AppIfConfigured("istio"); err == nil {
		app = appIface.(*istioapp.App)
	} else if !errors.Is(err, caddy.ErrNotConfigured) {
		return err
	}

	if h.telemetry, err = compileTelemetry(ctx, h.Telemetry, app); err != nil {
		return err
	}

	owners := make(map[string]string)
	for i, vhc := range h.VirtualHosts {
		if vhc == nil {
			return fmt.Errorf("virtual host %d: null", i)
		}
		vh := &virtualHost{name: vhc.Name}
		for j, rc := range vhc.Routes {
			rt, err := h.compileRoute(rc, app)
			if err != nil {
				return fmt.Errorf("virtual host %q: route %d: %v", vhc.Name, j, err)
			}
			for k, m := range rt.matches {
				if prefix := rc.Match[k].StatPrefix; prefix != "" {
					if m.stats, err = newRouteStats(ctx, vhc.Name, prefix); err != nil {
						return fmt.Errorf("virtual host %q: route %d: match %d: stat_prefix: %v", vhc.Name, j, k, err)
					}
				}
			}
			vh.routes = append(vh.routes, rt)
		}
		for _, domain := range vhc.Domains {
			if err := h.hosts.add(domain, vh, owners); err != nil {
				return fmt.Errorf("virtual host %q: %v", vhc.Name, err)
			}
		}
	}
	h.hosts.sortWildcards()
	return nil
}

// compileRoute compiles one route and resolves its destinations.
func (h *Handler) compileRoute(rc *Route, app *istioapp.App) (*route, error) {
	if rc == nil {
		return nil, fmt.Errorf("null")
	}
	rt := &route{name: rc.Name, virtualService: rc.VirtualService, directResponse: rc.DirectResponse}
	for i, mc := range rc.Match {
		if mc == nil {
			return nil, fmt.Errorf("match %d: null", i)
		}
		m, err := compileMatch(mc)
		if err != nil {
			return nil, fmt.Errorf("match %d: %v", i, err)
		}
		rt.matches = append(rt.matches, m)
	}

	routeRequestOps, routeResponseOps, err := compileHeaders(rc.Headers)
	if err != nil {
		return nil, fmt.Errorf("headers: %v", err)
	}
	rt.responseOps = joinOps(routeResponseOps)

	actions := 0
	if len(rc.Route) > 0 {
		actions++
		var dests []*destination
		for i, dc := range rc.Route {
			if dc == nil {
				return nil, fmt.Errorf("destination %d: null", i)
			}
			d := h.resolveDestination(dc, rc, app)
			requestOps, responseOps, err := compileHeaders(dc.Headers)
			if err != nil {
				return nil, fmt.Errorf("destination %d: headers: %v", i, err)
			}
			d.requestOps = joinOps(routeRequestOps, requestOps)
			d.responseOps = joinOps(routeResponseOps, responseOps)
			dests = append(dests, d)
		}
		if err := rt.setDestinations(dests); err != nil {
			return nil, err
		}
	}
	if rc.Redirect != nil {
		actions++
		rd, err := compileRedirect(rc.Redirect)
		if err != nil {
			return nil, fmt.Errorf("redirect: %v", err)
		}
		rt.redirect = rd
	}
	if rc.DirectResponse != nil {
		actions++
		if s := rc.DirectResponse.Status; s < 200 || s > 599 {
			return nil, fmt.Errorf("direct_response: status %d must be in 200..599", s)
		}
	}
	if actions != 1 {
		return nil, fmt.Errorf("exactly one of route, redirect and direct_response is required")
	}
	if err := h.compileRouteFeatures(rt, rc, app); err != nil {
		return nil, err
	}
	return rt, nil
}

// compileRouteFeatures compiles what a route does beyond choosing its
// action. Rewrite, timeout, retries and mirrors only apply to routes that
// proxy, as in Envoy, where redirects and direct responses have no route
// action to carry them.
func (h *Handler) compileRouteFeatures(rt *route, rc *Route, app *istioapp.App) error {
	var err error
	if rt.cors, err = compileCORS(rc.CORS); err != nil {
		return fmt.Errorf("cors: %v", err)
	}
	if rc.Fault != nil {
		if err := rc.Fault.Provision(); err != nil {
			return fmt.Errorf("fault: %v", err)
		}
		rt.fault = rc.Fault
	}
	if rc.Timeout < 0 {
		return fmt.Errorf("timeout %s: must not be negative", time.Duration(rc.Timeout))
	}
	if rt.rewrite, err = compileRewrite(rc.Rewrite); err != nil {
		return fmt.Errorf("rewrite: %v", err)
	}
	if rt.retry, err = compileRetryPolicy(rc.Retries); err != nil {
		return fmt.Errorf("retries: %v", err)
	}
	for i, mc := range rc.Mirrors {
		if mc == nil {
			return fmt.Errorf("mirror %d: null", i)
		}
		if mc.Percentage < 0 || mc.Percentage > 100 {
			return fmt.Errorf("mirror %d: percentage %v must be in 0..100", i, mc.Percentage)
		}
		mr := &mirror{cluster: mc.Cluster, ppm: uint32(mc.Percentage * 10000)}
		if app != nil {
			mr.handler = app.ClusterHandler(mc.Cluster)
		}
		if mr.handler == nil {
			h.logger.Warn("mirror cluster not found; nothing will be mirrored to it",
				zap.String("cluster", mc.Cluster),
				zap.String("route", rc.Name),
				zap.String("virtual_service", rc.VirtualService))
		}
		if mr.ppm > 0 {
			rt.mirrors = append(rt.mirrors, mr)
		}
	}
	if len(rt.destinations) > 0 {
		rt.timeout = time.Duration(rc.Timeout)
	} else {
		rt.rewrite, rt.retry, rt.mirrors = nil, nil, nil
	}

	rt.plain = rt.cors == nil && rt.fault == nil && rt.rewrite == nil && rt.timeout == 0 &&
		rt.retry == nil && len(rt.mirrors) == 0 && len(rt.responseOps) == 0
	for _, d := range rt.destinations {
		rt.plain = rt.plain && len(d.requestOps) == 0 && len(d.responseOps) == 0
	}
	return nil
}

// resolveDestination looks the destination's cluster up in the istio app.
func (h *Handler) resolveDestination(dc *Destination, rc *Route, app *istioapp.App) *destination {
	d := &destination{cluster: dc.Cluster, weight: dc.Weight, telemetry: destinationTelemetryOf(dc.Cluster, app)}
	if app != nil {
		d.handler = app.ClusterHandler(dc.Cluster)
	}
	if d.handler == nil {
		d.notFound = fmt.Errorf("cluster %q not found", dc.Cluster)
		h.logger.Warn("destination cluster not found; requests routed to it will get 503",
			zap.String("cluster", dc.Cluster),
			zap.String("route", rc.Name),
			zap.String("virtual_service", rc.VirtualService),
			zap.Bool("istio_app_configured", app != nil))
	}
	return d
}

// ServeHTTP routes the request and records its telemetry: metrics,
// access log fields, and an x-request-id when the request has none.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	requestID := ensureRequestID(r)
	t := startTelemetry(w)
	defer releaseTelemetry(t)
	err := h.route(&t.rec, r, next, t)
	h.finishTelemetry(t, r, requestID, err)
	return err
}

// route normalizes the request path and routes the request; t follows it.
func (h *Handler) route(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, t *requestTelemetry) error {
	path, err := h.normalizeRequestPath(r)
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	ri := requestInfoFor(r, path)
	vh, rt, m := h.findRoute(&ri)
	t.matched = m
	if vh == nil {
		return caddyhttp.Error(http.StatusNotFound, errNoVirtualHost)
	}
	if rt == nil {
		return caddyhttp.Error(http.StatusNotFound, errNoRoute)
	}

	if !rt.plain {
		return h.serveRoute(w, r, &ri, vh, rt, m, next, t)
	}

	switch {
	case rt.directResponse != nil:
		t.routed(vh, rt, nil)
		serveDirectResponse(w, rt.directResponse)
		return nil
	case rt.redirect != nil:
		t.routed(vh, rt, nil)
		rt.redirect.serve(w, &ri, m.matchedPrefixLen(ri.path))
		return nil
	}

	d := rt.pick()
	h.logRouted(vh, rt, d)
	t.routed(vh, rt, d)
	if d.handler == nil {
		t.set(flagNoClusterFound)
		return caddyhttp.Error(http.StatusServiceUnavailable, d.notFound)
	}
	t.attempt()
	return h.answerUpstreamError(w, d.handler.ServeHTTP(w, r, next), false, d.cluster, t)
}

// findRoute returns the virtual host of the request, its first route whose
// match holds, and the match alternative that held (nil for a route
// without match); nil values when there is none. It does not allocate.
func (h *Handler) findRoute(ri *requestInfo) (*virtualHost, *route, *match) {
	vh := h.hosts.lookup(ri.r.Host)
	if vh == nil {
		return nil, nil, nil
	}
	rt, m := vh.match(ri)
	return vh, rt, m
}

var (
	errNoVirtualHost = errors.New("no virtual host for the request host")
	errNoRoute       = errors.New("no route matches the request")
)

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
