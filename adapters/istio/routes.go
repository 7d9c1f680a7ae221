package istio

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// routeScope is what the routes of a VirtualService are built for: Istio
// evaluates match.port, match.gateways, sourceLabels and sourceNamespace at
// configuration time, per listener, not per request.
type routeScope struct {
	// port is the listener port: the service port of a mesh virtual host,
	// or the Gateway server port. match.port is compared with it, and it is
	// the destination port of last resort.
	port uint32

	// proxies are the identities the routes are built for (see
	// proxyIdentity); an alternative is kept if it holds for one of them.
	proxies []proxyIdentity
}

// builtRoute is a translated route and whether it matches every request.
type builtRoute struct {
	route    *istioroute.Route
	catchAll bool
}

// httpRoutes translates the http routes of vs for scope, in order, with
// its delegates merged in. As Istio, it stops after the first route that
// matches every request: the ones after it are unreachable.
func (t *translator) httpRoutes(vs *virtualService, scope routeScope) []builtRoute {
	var out []builtRoute
	routes := t.expandedRoutes(vs)
	for i, sr := range routes {
		r := sr.http
		matches, catchAll, ok := t.routeMatches(sr, scope)
		if !ok {
			continue // no alternative applies to this listener
		}
		route := &istioroute.Route{
			Name:           r.GetName(),
			VirtualService: vs.ref(),
			Match:          matches,
		}
		switch {
		case r.GetRedirect() != nil:
			route.Redirect = redirectOf(r.GetRedirect())
		case r.GetDirectResponse() != nil:
			route.DirectResponse = directResponseOf(r.GetDirectResponse())
		default:
			for j, d := range r.GetRoute() {
				route.Route = append(route.Route, &istioroute.Destination{
					Cluster: t.destinationCluster(sr.at(fmt.Sprintf("route[%d].destination", j)), d.GetDestination(), scope.port),
					Weight:  d.GetWeight(),
				})
			}
		}
		t.routeModifiers(route, sr, scope)
		if catchAll {
			route.Match = nil // what is left matches every request
		}
		out = append(out, builtRoute{route: route, catchAll: catchAll})
		if catchAll {
			// Validation already warns about a route without match that is
			// not the last one.
			if len(r.GetMatch()) > 0 {
				t.warnUnreachable(sr, routes[i+1:], scope)
			}
			break
		}
	}
	return out
}

// warnUnreachable warns about the first of rest that would apply to scope
// but comes after the catch-all route sr.
func (t *translator) warnUnreachable(sr *sourcedRoute, rest []*sourcedRoute, scope routeScope) {
	for _, r := range rest {
		if !appliesTo(r.http, scope) {
			continue
		}
		catchAll := sr.path
		if r.obj != sr.obj {
			catchAll = sr.obj.Ref() + " " + catchAll
		}
		t.warn(r.obj, r.path, fmt.Sprintf("unreachable on port %d: %s matches every request there, so this route and those after it are dropped (as Istio does)", scope.port, catchAll))
		return
	}
}

// appliesTo reports whether route r has a match alternative that the
// configuration-time selectors keep in scope.
func appliesTo(r *networking.HTTPRoute, scope routeScope) bool {
	if len(r.GetMatch()) == 0 {
		return true
	}
	for _, m := range r.GetMatch() {
		if alternativeApplies(m, scope) {
			return true
		}
	}
	return false
}

// alternativeApplies evaluates the configuration-time selectors of match
// alternative m (whose gateways are "namespace/name") for scope, as
// Istio's TranslateRoute and sourceMatchHTTP: match.port must be the
// listener port; then, for one proxy of the scope, match.gateways must
// name its gateway when set, and otherwise sourceLabels must be a subset
// of its labels and sourceNamespace (when set) its namespace.
func alternativeApplies(m *networking.HTTPMatchRequest, scope routeScope) bool {
	if m.GetPort() != 0 && m.GetPort() != scope.port {
		return false
	}
	for _, p := range scope.proxies {
		if gws := m.GetGateways(); len(gws) > 0 {
			if slices.Contains(gws, p.gateway) {
				return true
			}
			continue
		}
		if !labelsSubset(m.GetSourceLabels(), p.labels) {
			continue
		}
		if ns := m.GetSourceNamespace(); ns == "" || ns == p.namespace {
			return true
		}
	}
	return false
}

// labelsSubset reports whether every label of sub is in labels.
func labelsSubset(sub, labels map[string]string) bool {
	for k, v := range sub {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// routeMatches translates the match alternatives of a route for scope.
// Alternatives that cannot apply to the listener (match.port,
// match.gateways, sourceLabels, sourceNamespace) or that need what is not
// implemented (JWT claims) are dropped; ok is false when the route had
// alternatives and none is left. catchAll reports whether the route
// matches every request.
func (t *translator) routeMatches(sr *sourcedRoute, scope routeScope) (out []*istioroute.Match, catchAll, ok bool) {
	matches := sr.http.GetMatch()
	if len(matches) == 0 {
		return nil, true, true
	}
	for j, m := range matches {
		ref := sr.matchPaths[j]
		if !alternativeApplies(m, scope) {
			continue
		}
		match, usable := t.matchOf(ref, m)
		if !usable {
			continue
		}
		match.StatPrefix = m.GetStatPrefix()
		out = append(out, match)
		if isCatchAll(match) {
			// Later alternatives of this route add nothing.
			return out, true, true
		}
	}
	return out, false, len(out) > 0
}

// matchOf translates one HTTPMatchRequest (without its config-time parts).
func (t *translator) matchOf(ref fieldRef, m *networking.HTTPMatchRequest) (*istioroute.Match, bool) {
	mp := ref.path
	match := &istioroute.Match{
		Name:          m.GetName(),
		URI:           stringMatchOf(m.GetUri()),
		Scheme:        stringMatchOf(m.GetScheme()),
		Method:        stringMatchOf(m.GetMethod()),
		Authority:     stringMatchOf(m.GetAuthority()),
		IgnoreURICase: m.GetIgnoreUriCase(),
	}
	var usable = true
	for _, name := range slices.Sorted(maps.Keys(m.GetHeaders())) {
		key := strings.ToLower(name)
		switch {
		case strings.HasPrefix(name, "@request.auth.claims"):
			t.warn(ref.obj, mp+".headers."+name, "JWT claim matching is not implemented yet: this match alternative is dropped (never matched)")
			usable = false
			continue
		case key == "uri" || key == "scheme" || key == "method" || key == "authority":
			t.warn(ref.obj, mp+".headers."+name, fmt.Sprintf("ignored, as in Istio: use match.%s", key))
			continue
		}
		if match.Headers == nil {
			match.Headers = make(map[string]*istioroute.StringMatch)
		}
		match.Headers[key] = headerMatchOf(m.GetHeaders()[name])
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetWithoutHeaders())) {
		key := strings.ToLower(name)
		if strings.HasPrefix(name, "@request.auth.claims") {
			t.warn(ref.obj, mp+".withoutHeaders."+name, "JWT claim matching is not implemented yet: this match alternative is dropped (never matched)")
			usable = false
			continue
		}
		if match.WithoutHeaders == nil {
			match.WithoutHeaders = make(map[string]*istioroute.StringMatch)
		}
		match.WithoutHeaders[key] = headerMatchOf(m.GetWithoutHeaders()[name])
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetQueryParams())) {
		if match.QueryParams == nil {
			match.QueryParams = make(map[string]*istioroute.StringMatch)
		}
		match.QueryParams[name] = stringMatchOf(m.GetQueryParams()[name])
		if match.QueryParams[name] == nil {
			match.QueryParams[name] = &istioroute.StringMatch{}
		}
	}
	return match, usable
}

// isCatchAll reports whether match holds for every request, as Istio's
// isCatchAllMatch: no URI condition, or prefix "/" or regex ".*", and no
// other condition (method, scheme and authority are header conditions in
// Envoy).
func isCatchAll(m *istioroute.Match) bool {
	if m.Scheme != nil || m.Method != nil || m.Authority != nil ||
		len(m.Headers) > 0 || len(m.WithoutHeaders) > 0 || len(m.QueryParams) > 0 {
		return false
	}
	u := m.URI
	switch {
	case u == nil, u.Exact == nil && u.Prefix == nil && u.Regex == nil:
		return true
	case u.Prefix != nil:
		return *u.Prefix == "/"
	case u.Regex != nil:
		return *u.Regex == ".*"
	}
	return false
}

// stringMatchOf translates a StringMatch; one with no field set matches
// anything (for headers and query parameters: presence).
func stringMatchOf(m *networking.StringMatch) *istioroute.StringMatch {
	if m == nil {
		return nil
	}
	switch v := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &istioroute.StringMatch{Exact: &v.Exact}
	case *networking.StringMatch_Prefix:
		return &istioroute.StringMatch{Prefix: &v.Prefix}
	case *networking.StringMatch_Regex:
		return &istioroute.StringMatch{Regex: &v.Regex}
	}
	return &istioroute.StringMatch{}
}

// headerMatchOf is stringMatchOf for header values, where Istio reads
// regex "*" (not a valid RE2 expression) as "present".
func headerMatchOf(m *networking.StringMatch) *istioroute.StringMatch {
	sm := stringMatchOf(m)
	if sm == nil || (sm.Regex != nil && *sm.Regex == "*") {
		return &istioroute.StringMatch{}
	}
	return sm
}

func redirectOf(r *networking.HTTPRedirect) *istioroute.Redirect {
	out := &istioroute.Redirect{
		URI:           r.GetUri(),
		PrefixRewrite: r.GetPrefixRewrite(),
		Authority:     r.GetAuthority(),
		Scheme:        r.GetScheme(),
		RedirectCode:  int(r.GetRedirectCode()),
	}
	switch p := r.GetRedirectPort().(type) {
	case *networking.HTTPRedirect_Port:
		out.Port = p.Port
	case *networking.HTTPRedirect_DerivePort:
		if p.DerivePort != networking.HTTPRedirect_FROM_PROTOCOL_DEFAULT {
			out.DerivePort = p.DerivePort.String()
		}
	}
	return out
}

func directResponseOf(d *networking.HTTPDirectResponse) *istioroute.DirectResponse {
	out := &istioroute.DirectResponse{Status: int(d.GetStatus())}
	switch b := d.GetBody().GetSpecifier().(type) {
	case *networking.HTTPBody_String_:
		out.Body = []byte(b.String_)
	case *networking.HTTPBody_Bytes:
		out.Body = b.Bytes // jsonpb already decoded the base64
	}
	return out
}

// destinationCluster names the cluster of destination d (its host fully
// qualified) written at ref, following Istio's GetDestinationCluster: the
// port is d.port, else the service's only port, else the listener port. A
// destination whose cluster does not exist is kept (the runtime answers
// 503, as Envoy's "no cluster") with a warning.
func (t *translator) destinationCluster(ref fieldRef, d *networking.Destination, listenerPort uint32) string {
	host := expandHost(d.GetHost(), ref.obj.Namespace)
	svc := t.serviceByHost[host]
	port := listenerPort
	switch {
	case d.GetPort().GetNumber() != 0:
		port = d.GetPort().GetNumber()
	case svc != nil && len(svc.Ports) == 1:
		port = svc.Ports[0].Number
	}
	name := clusterName(port, d.GetSubset(), host)
	switch {
	case svc == nil:
		t.warn(ref.obj, ref.path+".host", fmt.Sprintf("destination host %s is not a known service (no ServiceEntry or Service): requests to it get 503", host))
	case t.clusterByName[name] != nil:
	case svc.port(port) == nil:
		t.warn(ref.obj, ref.path, fmt.Sprintf("service %s has no port %d: requests to it get 503", host, port))
	case svc.port(port).Protocol == "UDP":
		t.warn(ref.obj, ref.path, fmt.Sprintf("port %d of service %s is UDP: requests to it get 503", port, host))
	default:
		t.warn(ref.obj, ref.path+".subset", fmt.Sprintf("no DestinationRule defines subset %q of host %s: requests to it get 503", d.GetSubset(), host))
	}
	return name
}

// sortCatchAllLast moves the routes that match every request after the
// others, keeping the order within each group, as Istio does when it merges
// several VirtualServices into one gateway virtual host.
func sortCatchAllLast(routes []builtRoute) {
	sort.SliceStable(routes, func(i, j int) bool {
		return !routes[i].catchAll && routes[j].catchAll
	})
}
