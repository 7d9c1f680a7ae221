package istioroute

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// This file is the read-only introspection API of provisioned istio_route
// handlers, as `istioctl proxy-config routes` shows Envoy's: per server
// (listener), the virtual hosts with their domains and their routes in
// order, each with a summary of its match, its action and its weighted
// destinations.
//
// The live handlers are found by walking the routes of the running http
// app (Handlers), so the handler needs no registration hook.

// ServerRoutes are the istio_route handlers of one http server.
type ServerRoutes struct {
	// Server is the http app's name of the server (e.g. the adapter's
	// "istio-gateway-8080"); Listen its listener addresses.
	Server string   `json:"server"`
	Listen []string `json:"listen"`
	// Handlers are the server's istio_route handlers in route order
	// (usually one).
	Handlers []HandlerSnapshot `json:"handlers"`
}

// HandlerSnapshot is the routing table of one istio_route handler.
type HandlerSnapshot struct {
	PathNormalization string                `json:"path_normalization"`
	VirtualHosts      []VirtualHostSnapshot `json:"virtual_hosts"`
}

// VirtualHostSnapshot is one virtual host and its routes in order.
type VirtualHostSnapshot struct {
	Name    string          `json:"name"`
	Domains []string        `json:"domains"`
	Routes  []RouteSnapshot `json:"routes"`
}

// RouteSnapshot summarizes one route.
type RouteSnapshot struct {
	Name string `json:"name,omitempty"`
	// VirtualService that defined the route, namespace/name.
	VirtualService string `json:"virtual_service,omitempty"`
	// Match has one summary per alternative (OR), each a list of its
	// conditions joined by " && "; empty matches every request.
	Match []string `json:"match"`
	// Action is "route", "redirect" or "direct_response".
	Action string `json:"action"`
	// Destinations of a "route" action, with their share of the traffic.
	Destinations []DestinationSnapshot `json:"destinations,omitempty"`
	// Redirect summarizes a redirect ("301 uri=/login"); DirectResponse
	// is the status of a direct response.
	Redirect       string `json:"redirect,omitempty"`
	DirectResponse int    `json:"direct_response,omitempty"`

	// Features lists what else the route does: "timeout=1s",
	// "retries=3", "fault", "mirror=CLUSTER 50%", "rewrite", "cors",
	// "headers".
	Features []string `json:"features,omitempty"`
}

// DestinationSnapshot is one weighted destination.
type DestinationSnapshot struct {
	Cluster string `json:"cluster"`
	Weight  int32  `json:"weight"`
	// Percent is the share of the route's requests the destination gets.
	Percent float64 `json:"percent"`
	// Found is false when the istio app has no such cluster: requests
	// routed to it get 503 (Envoy's NC). A destination that gets no
	// traffic (weight 0 beside others) is not looked up and shows true.
	Found bool `json:"found"`
}

// Snapshot returns the routing table of a provisioned handler.
func (h *Handler) Snapshot() HandlerSnapshot {
	missing := h.missingClusters()
	hs := HandlerSnapshot{PathNormalization: h.PathNormalization, VirtualHosts: []VirtualHostSnapshot{}}
	for _, vh := range h.VirtualHosts {
		if vh == nil {
			continue
		}
		vs := VirtualHostSnapshot{Name: vh.Name, Domains: slices.Clone(vh.Domains), Routes: []RouteSnapshot{}}
		for _, rc := range vh.Routes {
			if rc != nil {
				vs.Routes = append(vs.Routes, routeSnapshot(rc, missing))
			}
		}
		hs.VirtualHosts = append(hs.VirtualHosts, vs)
	}
	return hs
}

// missingClusters are the clusters the compiled routes send traffic to
// but did not find in the istio app.
func (h *Handler) missingClusters() map[string]bool {
	missing := make(map[string]bool)
	add := func(vh *virtualHost) {
		if vh == nil {
			return
		}
		for _, rt := range vh.routes {
			for _, d := range rt.destinations {
				if d.handler == nil {
					missing[d.cluster] = true
				}
			}
		}
	}
	for _, vh := range h.hosts.exact {
		add(vh)
	}
	for _, w := range h.hosts.wildcards {
		add(w.vh)
	}
	add(h.hosts.any)
	return missing
}

// routeSnapshot summarizes rc; missing are the clusters that do not exist.
func routeSnapshot(rc *Route, missing map[string]bool) RouteSnapshot {
	rs := RouteSnapshot{Name: rc.Name, VirtualService: rc.VirtualService, Match: []string{}}
	for _, m := range rc.Match {
		if m != nil {
			rs.Match = append(rs.Match, matchSummary(m))
		}
	}
	switch {
	case rc.Redirect != nil:
		rs.Action = "redirect"
		rs.Redirect = redirectSummary(rc.Redirect)
	case rc.DirectResponse != nil:
		rs.Action = "direct_response"
		rs.DirectResponse = rc.DirectResponse.Status
	default:
		rs.Action = "route"
		rs.Destinations = destinationShares(rc.Route, missing)
	}
	if rc.Timeout > 0 {
		rs.Features = append(rs.Features, "timeout="+time.Duration(rc.Timeout).String())
	}
	if rc.Retries != nil && rc.Retries.Attempts > 0 {
		rs.Features = append(rs.Features, "retries="+strconv.Itoa(rc.Retries.Attempts))
	}
	if rc.Fault != nil {
		rs.Features = append(rs.Features, faultSummary(rc))
	}
	for _, m := range rc.Mirrors {
		if m != nil {
			rs.Features = append(rs.Features, fmt.Sprintf("mirror=%s %g%%", m.Cluster, m.Percentage))
		}
	}
	if rc.Rewrite != nil {
		rs.Features = append(rs.Features, "rewrite")
	}
	if rc.CORS != nil {
		rs.Features = append(rs.Features, "cors")
	}
	if rc.Headers != nil {
		rs.Features = append(rs.Features, "headers")
	}
	return rs
}

// destinationShares gives each destination its share of the requests as
// the handler picks them: a single destination gets all; among several,
// in proportion to the weights (weight 0 gets none).
func destinationShares(dests []*Destination, missing map[string]bool) []DestinationSnapshot {
	var total int64
	for _, d := range dests {
		if d != nil && d.Weight > 0 {
			total += int64(d.Weight)
		}
	}
	out := make([]DestinationSnapshot, 0, len(dests))
	for _, d := range dests {
		if d == nil {
			continue
		}
		ds := DestinationSnapshot{Cluster: d.Cluster, Weight: d.Weight, Found: !missing[d.Cluster]}
		switch {
		case len(dests) == 1:
			ds.Percent = 100
		case total > 0 && d.Weight > 0:
			ds.Percent = float64(d.Weight) * 100 / float64(total)
		}
		out = append(out, ds)
	}
	return out
}

// matchSummary writes one match alternative as its conditions, e.g.
// `uri prefix "/api" && headers[end-user] exact "jason"`.
func matchSummary(m *Match) string {
	var conds []string
	add := func(name string, sm *StringMatch) {
		if sm != nil {
			conds = append(conds, name+" "+stringMatchSummary(sm))
		}
	}
	add("uri", m.URI)
	if m.IgnoreURICase {
		conds = append(conds, "ignore_uri_case")
	}
	add("scheme", m.Scheme)
	add("method", m.Method)
	add("authority", m.Authority)
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		add("headers["+k+"]", m.Headers[k])
	}
	for _, k := range slices.Sorted(maps.Keys(m.WithoutHeaders)) {
		add("!headers["+k+"]", m.WithoutHeaders[k])
	}
	for _, k := range slices.Sorted(maps.Keys(m.QueryParams)) {
		add("query["+k+"]", m.QueryParams[k])
	}
	if len(conds) == 0 {
		return "any"
	}
	return strings.Join(conds, " && ")
}

// stringMatchSummary writes sm as `exact "v"`, `prefix "v"`, `regex "v"`
// or `present`.
func stringMatchSummary(sm *StringMatch) string {
	switch {
	case sm.Exact != nil:
		return "exact " + strconv.Quote(*sm.Exact)
	case sm.Prefix != nil:
		return "prefix " + strconv.Quote(*sm.Prefix)
	case sm.Regex != nil:
		return "regex " + strconv.Quote(*sm.Regex)
	}
	return "present"
}

// redirectSummary writes rd as its status and the parts it changes.
func redirectSummary(rd *Redirect) string {
	code := rd.RedirectCode
	if code == 0 {
		code = 301
	}
	parts := []string{strconv.Itoa(code)}
	for _, p := range []struct{ name, value string }{
		{"scheme", rd.Scheme},
		{"authority", rd.Authority},
		{"uri", rd.URI},
		{"prefix", rd.PrefixRewrite},
		{"derive_port", rd.DerivePort},
	} {
		if p.value != "" {
			parts = append(parts, p.name+"="+p.value)
		}
	}
	if rd.Port != 0 {
		parts = append(parts, "port="+strconv.FormatUint(uint64(rd.Port), 10))
	}
	return strings.Join(parts, " ")
}

// faultSummary writes the route's fault, e.g. "fault=delay 5s 10% abort 500 50%".
func faultSummary(rc *Route) string {
	var parts []string
	if d := rc.Fault.Delay; d != nil {
		parts = append(parts, fmt.Sprintf("delay %s %g%%", time.Duration(d.FixedDelay), d.Percentage))
	}
	if a := rc.Fault.Abort; a != nil {
		status := strconv.Itoa(a.HTTPStatus)
		if a.GRPCStatus != "" {
			status = "grpc " + a.GRPCStatus
		}
		parts = append(parts, fmt.Sprintf("abort %s %g%%", status, a.Percentage))
	}
	return "fault=" + strings.Join(parts, " ")
}

// Handlers returns the istio_route handlers of the running http app's
// servers, sorted by server name. It walks each server's routes and the
// routes of subroute handlers (Caddyfile handle blocks), error routes
// included.
func Handlers(app *caddyhttp.App) []ServerRoutes {
	if app == nil {
		return nil
	}
	var out []ServerRoutes
	for _, name := range slices.Sorted(maps.Keys(app.Servers)) {
		srv := app.Servers[name]
		if srv == nil {
			continue
		}
		sr := ServerRoutes{Server: name, Listen: slices.Clone(srv.Listen), Handlers: []HandlerSnapshot{}}
		collect(srv.Routes, &sr.Handlers, 0)
		if srv.Errors != nil {
			collect(srv.Errors.Routes, &sr.Handlers, 0)
		}
		if len(sr.Handlers) > 0 {
			out = append(out, sr)
		}
	}
	return out
}

// maxSubrouteDepth bounds the walk of nested subroutes.
const maxSubrouteDepth = 16

// collect appends the snapshots of the istio_route handlers in routes.
func collect(routes caddyhttp.RouteList, into *[]HandlerSnapshot, depth int) {
	if depth > maxSubrouteDepth {
		return
	}
	for _, r := range routes {
		for _, mh := range r.Handlers {
			switch h := mh.(type) {
			case *Handler:
				*into = append(*into, h.Snapshot())
			case *caddyhttp.Subroute:
				collect(h.Routes, into, depth+1)
				if h.Errors != nil {
					collect(h.Errors.Routes, into, depth+1)
				}
			}
		}
	}
}
