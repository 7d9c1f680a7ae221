package validation

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

const meshGateway = "mesh"

// virtualService ports ValidateVirtualService.
func (c *checker) virtualService(vs *networking.VirtualService) {
	if len(vs.Hosts) == 0 {
		// No hosts: this is a delegate VirtualService.
		if len(vs.Gateways) != 0 {
			c.err("spec.gateways", "delegate virtual service must have no gateways specified")
		}
		if len(vs.Tls) != 0 {
			c.err("spec.tls", "delegate virtual service must have no tls route specified")
		}
		if len(vs.Tcp) != 0 {
			c.err("spec.tcp", "delegate virtual service must have no tcp route specified")
		}
	}
	gatewaySemantics := c.obj.Annotations[annotationInternalRouteSemantics] == semanticsGateway

	appliesToMesh, appliesToGateway := false, false
	if len(vs.Gateways) == 0 {
		appliesToMesh = true
	} else {
		c.gatewayNames("spec.gateways", vs.Gateways, gatewaySemantics)
		appliesToGateway = isGatewayBound(vs)
		appliesToMesh = !appliesToGateway
	}

	if !appliesToGateway {
		for i, h := range vs.Http {
			for j, m := range h.GetMatch() {
				mp := indexPath(indexPath("spec.http", i)+".match", j)
				c.jwtClaimRoutes(mp+".headers", m.GetHeaders(), vs.Gateways)
				c.jwtClaimRoutes(mp+".withoutHeaders", m.GetWithoutHeaders(), vs.Gateways)
			}
		}
	}

	allHostsValid := true
	sni := isSniHost(vs)
	for i, h := range vs.Hosts {
		var err error
		if appliesToGateway {
			err = validateWildcardDomainForVirtualServiceBoundToGateway(sni, h)
		} else {
			err = validateWildcardDomain(h)
		}
		if err != nil {
			if !isValidIPAddress(h) {
				c.err(indexPath("spec.hosts", i), err.Error())
				allHostsValid = false
			}
		} else if appliesToMesh && h == "*" {
			c.err(indexPath("spec.hosts", i), "wildcard host * is not allowed for virtual services bound to the mesh gateway")
			allHostsValid = false
		}
	}
	if allHostsValid {
		c.duplicateHosts(vs.Hosts)
	}

	if len(vs.Http) == 0 && len(vs.Tcp) == 0 && len(vs.Tls) == 0 {
		c.err("spec.http", "http, tcp or tls must be provided in virtual service")
	}
	for i, r := range vs.Http {
		if r == nil {
			c.err(indexPath("spec.http", i), "http route may not be null")
			continue
		}
		c.httpRoute(indexPath("spec.http", i), r, len(vs.Hosts) == 0, gatewaySemantics)
	}
	for i, r := range vs.Tls {
		c.tlsRoute(indexPath("spec.tls", i), r, vs, gatewaySemantics)
	}
	for i, r := range vs.Tcp {
		c.tcpRoute(indexPath("spec.tcp", i), r, gatewaySemantics)
	}
	c.exportTo("spec.exportTo", vs.ExportTo, false, false)

	c.unreachableHTTPRules(vs.Http)
	c.unreachableL4Rules("spec.tcp", tcpRules(vs.Tcp))
	c.unreachableL4Rules("spec.tls", tlsRules(vs.Tls))
}

// isGatewayBound ports isGateway: bound to gateways unless "mesh" is listed.
func isGatewayBound(vs *networking.VirtualService) bool {
	for _, g := range vs.Gateways {
		if g == meshGateway {
			return false
		}
	}
	return true
}

// isSniHost ports isSniHost: any TLS match with SNI hosts.
func isSniHost(vs *networking.VirtualService) bool {
	for _, t := range vs.Tls {
		for _, m := range t.GetMatch() {
			if len(m.GetSniHosts()) > 0 {
				return true
			}
		}
	}
	return false
}

const headerJWTClaim = "@request.auth.claims"

// isJWTClaimRoute ports jwt.ToRoutingClaim(name).Match.
func isJWTClaimRoute(name string) bool {
	if !strings.HasPrefix(strings.ToLower(name), headerJWTClaim) {
		return false
	}
	rest := name[len(headerJWTClaim):]
	if strings.HasPrefix(rest, ".") && len(rest) > 1 {
		return true
	}
	return strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") && len(rest) > 2
}

func (c *checker) jwtClaimRoutes(p string, headers map[string]*networking.StringMatch, gateways []string) {
	for _, k := range slices.Sorted(maps.Keys(headers)) {
		if isJWTClaimRoute(k) {
			c.err(keyPath(p, k), fmt.Sprintf("JWT claim based routing (key: %s) is only supported for gateway, found no gateways: %v", k, gateways))
		}
	}
}

// hostMatches ports host.Name.Matches: the two (possibly wildcard) names
// overlap.
func hostMatches(n, o string) bool {
	nWild, oWild := n != "" && n[0] == '*', o != "" && o[0] == '*'
	switch {
	case nWild && oWild:
		if len(n) < len(o) {
			return strings.HasSuffix(o[1:], n[1:])
		}
		return strings.HasSuffix(n[1:], o[1:])
	case nWild:
		return strings.HasSuffix(o, n[1:])
	case oWild:
		return strings.HasSuffix(n, o[1:])
	}
	return n == o
}

// hostSubsetOf ports host.Name.SubsetOf: n is covered by o.
func hostSubsetOf(n, o string) bool {
	nWild, oWild := n != "" && n[0] == '*', o != "" && o[0] == '*'
	switch {
	case nWild && oWild:
		if len(n) < len(o) {
			return false
		}
		return strings.HasSuffix(n[1:], o[1:])
	case nWild:
		return false
	case oWild:
		return strings.HasSuffix(n, o[1:])
	}
	return n == o
}

// duplicateHosts reports every overlapping pair of hosts, in Istio's order
// (i, then j). Exact names are paired through a map and only wildcards are
// compared with every host, so long lists of exact hosts stay linear.
func (c *checker) duplicateHosts(hosts []string) {
	if len(hosts) < 2 {
		return
	}
	type pair struct{ i, j int }
	var pairs []pair
	exactAt := make(map[string][]int, len(hosts))
	var wildcards []int
	for j, h := range hosts {
		if h != "" && h[0] == '*' {
			for i := 0; i < j; i++ {
				if hostMatches(hosts[i], h) {
					pairs = append(pairs, pair{i, j})
				}
			}
			wildcards = append(wildcards, j)
			continue
		}
		for _, i := range wildcards {
			if hostMatches(hosts[i], h) {
				pairs = append(pairs, pair{i, j})
			}
		}
		for _, i := range exactAt[h] {
			pairs = append(pairs, pair{i, j})
		}
		exactAt[h] = append(exactAt[h], j)
	}
	sort.Slice(pairs, func(a, b int) bool {
		return pairs[a].i < pairs[b].i || (pairs[a].i == pairs[b].i && pairs[a].j < pairs[b].j)
	})
	for _, p := range pairs {
		c.err(indexPath("spec.hosts", p.j), fmt.Sprintf("duplicate hosts in virtual service: %s & %s", hosts[p.i], hosts[p.j]))
	}
}

// gatewayNames ports validateGatewayNames. Like Istio it stops at the first
// name without a namespace.
func (c *checker) gatewayNames(p string, names []string, gatewaySemantics bool) {
	for i, name := range names {
		gp := indexPath(p, i)
		ns, gw, found := strings.Cut(name, "/")
		if !found {
			if strings.Contains(name, ".") {
				// Legacy name.namespace form.
				parts := strings.Split(name, ".")
				c.warn(gp, fmt.Sprintf("using legacy gatewayName format %q; prefer the <namespace>/<name> format: %q", name, parts[1]+"/"+parts[0]))
			}
			c.add(gp, validateFQDN(name))
			return
		}
		if ns == "" || gw == "" {
			c.err(gp, "config namespace and gateway name cannot be empty")
		}
		if !isDNS1123Label(ns) {
			c.err(gp, fmt.Sprintf("invalid value for namespace: %q", ns))
		}
		if !isDNS1123Label(gw) && !gatewaySemantics {
			c.err(gp, fmt.Sprintf("invalid value for gateway name: %q", gw))
		}
	}
}

// httpRoute ports validateHTTPRoute (virtualservice.go).
func (c *checker) httpRoute(p string, r *networking.HTTPRoute, delegate, gatewaySemantics bool) {
	c.httpRouteConflicts(p, r, delegate)
	c.httpMatchRequests(p, r)

	// Sub-checks of absent blocks are skipped before their paths are built.
	if r.Headers != nil {
		c.headerOperations(p+".headers", r.Headers)
	}
	if r.CorsPolicy != nil {
		c.corsPolicy(p+".corsPolicy", r.CorsPolicy)
	}
	if r.Fault != nil {
		c.faultInjection(p+".fault", r.Fault)
	}

	// mirrorPercent is deprecated but still validated, with a warning.
	if r.MirrorPercent != nil {
		if v := r.MirrorPercent.GetValue(); v > 100 {
			c.err(p+".mirrorPercent", fmt.Sprintf("mirror_percent must have a max value of 100 (it has %d)", v))
		}
		c.warn(p+".mirrorPercent", `using deprecated setting "mirrorPercent", use "mirrorPercentage" instead`)
	}
	if r.MirrorPercentage != nil {
		v := r.MirrorPercentage.GetValue()
		if v > 100 {
			c.err(p+".mirrorPercentage.value", fmt.Sprintf("mirror_percentage must have a max value of 100 (it has %f)", v))
		}
		if v < 0 {
			c.err(p+".mirrorPercentage.value", fmt.Sprintf("mirror_percentage must have a min value of 0 (it has %f)", v))
		}
	}
	if r.Mirror != nil {
		c.destination(p+".mirror", r.Mirror)
	}
	if len(r.Mirrors) > 0 {
		c.mirrors(p+".mirrors", r.Mirrors)
	}
	c.redirect(p, r.Redirect, r.Match)
	if r.DirectResponse != nil {
		c.directResponse(p+".directResponse", r.DirectResponse)
	}
	if r.Retries != nil {
		c.retries(p+".retries", r.Retries)
	}
	if r.Rewrite != nil {
		c.rewrite(p+".rewrite", r.Rewrite)
	}
	if r.Headers != nil {
		c.authorityRewrite(p, r.Rewrite, r.Headers)
	}
	c.httpRouteDestinations(p+".route", r.Route, gatewaySemantics)
	if r.Timeout != nil {
		c.addAt(p, ".timeout", validateDuration(r.Timeout))
	}
}

// httpRouteConflicts ports validateHTTPRouteConflict.
func (c *checker) httpRouteConflicts(p string, r *networking.HTTPRoute, delegate bool) {
	if !delegate && r.Delegate != nil {
		// A root route may only carry the delegate action.
		if r.Redirect != nil {
			c.err(p+".redirect", fmt.Sprintf("root HTTP route %s must not specify redirect", r.Name))
		}
		if r.Route != nil {
			c.err(p+".route", fmt.Sprintf("root HTTP route %s must not specify route", r.Name))
		}
		return
	}
	if delegate && r.Delegate != nil {
		c.err(p+".delegate", "delegate HTTP route cannot contain delegate")
	}
	switch {
	case r.Redirect != nil:
		if len(r.Route) > 0 {
			c.err(p+".route", "HTTP route cannot contain both route and redirect")
		}
		if r.Fault != nil {
			c.err(p+".fault", "HTTP route cannot contain both fault and redirect")
		}
		if r.Rewrite != nil {
			c.err(p+".rewrite", "HTTP route rule cannot contain both rewrite and redirect")
		}
		if r.DirectResponse != nil {
			c.err(p+".directResponse", "HTTP route rule cannot contain both direct_response and redirect")
		}
	case r.DirectResponse != nil:
		if len(r.Route) > 0 {
			c.err(p+".route", "HTTP route cannot contain both route and direct_response")
		}
		if r.Fault != nil {
			c.err(p+".fault", "HTTP route cannot contain both fault and direct_response")
		}
		if r.Rewrite != nil {
			c.err(p+".rewrite", "HTTP route rule cannot contain both rewrite and direct_response")
		}
	case len(r.Route) == 0:
		c.err(p+".route", "HTTP route, redirect or direct_response is required")
	}
	if r.Mirror != nil && len(r.Mirrors) > 0 {
		c.err(p+".mirrors", "HTTP route cannot contain both mirror and mirrors")
	}
}

// httpMatchRequests ports validateHTTPRouteMatchRequest.
func (c *checker) httpMatchRequests(p string, r *networking.HTTPRoute) {
	for j, m := range r.Match {
		if m == nil {
			continue
		}
		mp := indexPath(p+".match", j)
		for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
			hp := keyPath(mp+".headers", name)
			header := m.Headers[name]
			if header == nil {
				c.err(hp, fmt.Sprintf("header match %v cannot be null", name))
			}
			c.add(hp, validateHTTPHeaderNameOrJwtClaimRoute(name))
			c.stringMatch(hp, header, "headers")
		}
		for _, name := range slices.Sorted(maps.Keys(m.WithoutHeaders)) {
			hp := keyPath(mp+".withoutHeaders", name)
			header := m.WithoutHeaders[name]
			c.add(hp, validateHTTPHeaderNameOrJwtClaimRoute(name))
			// regex "*" is not RE2: it means "header present".
			if header != nil && header.GetRegex() != "*" {
				c.stringMatch(hp, header, "withoutHeaders")
			}
		}
		// uri allows an empty prefix; scheme, method and authority do not.
		c.stringMatchRegexp(mp+".uri", m.GetUri(), "uri")
		c.stringMatch(mp+".scheme", m.GetScheme(), "scheme")
		c.stringMatch(mp+".method", m.GetMethod(), "method")
		c.stringMatch(mp+".authority", m.GetAuthority(), "authority")
		for _, name := range slices.Sorted(maps.Keys(m.QueryParams)) {
			c.stringMatch(keyPath(mp+".queryParams", name), m.QueryParams[name], "queryParams")
		}
	}
	for j, m := range r.Match {
		if m == nil {
			continue
		}
		mp := indexPath(p+".match", j)
		if m.Port != 0 {
			c.addAt(mp, ".port", validatePort(int(m.Port)))
		}
		c.labels(mp+".sourceLabels", m.SourceLabels)
		// Istio keeps only the errors here (no legacy-name warning).
		c.errorsOnly(func() { c.gatewayNames(mp+".gateways", m.Gateways, false) })
		if m.SourceNamespace != "" && !isDNS1123Label(m.SourceNamespace) {
			c.err(mp+".sourceNamespace", fmt.Sprintf("sourceNamespace match %s is invalid", m.SourceNamespace))
		}
	}
}

// stringMatch ports validateStringMatch; p is the StringMatch's path.
func (c *checker) stringMatch(p string, sm *networking.StringMatch, where string) {
	switch sm.GetMatchType().(type) {
	case *networking.StringMatch_Prefix:
		if sm.GetPrefix() == "" {
			c.err(p+".prefix", fmt.Sprintf("%q: prefix string match should not be empty", where))
		}
	case *networking.StringMatch_Regex:
		c.stringMatchRegexp(p, sm, where)
	}
}

// stringMatchRegexp ports validateStringMatchRegexp.
func (c *checker) stringMatchRegexp(p string, sm *networking.StringMatch, where string) {
	if _, ok := sm.GetMatchType().(*networking.StringMatch_Regex); !ok {
		return
	}
	re := sm.GetRegex()
	if re == "" {
		c.err(p+".regex", fmt.Sprintf("%q: regex string match should not be empty", where))
		return
	}
	c.addAt(p, ".regex", validateStringRegexp(re, where))
}

// validateStringRegexp ports validateStringRegexp: RE2 syntax, at most 1024
// characters (Istio's stand-in for Envoy's program-size limit).
func validateStringRegexp(re, where string) error {
	if len(re) > 1024 {
		return fmt.Errorf("%q: regex is too large, max length allowed is 1024", where)
	}
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("%q: %w; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)", where, err)
	}
	return nil
}

// headerOperations ports the header-manipulation loops of validateHTTPRoute
// and validateHTTPRouteDestinations.
func (c *checker) headerOperations(p string, h *networking.Headers) {
	req, resp := h.GetRequest(), h.GetResponse()
	for _, name := range slices.Sorted(maps.Keys(req.GetAdd())) {
		c.add(keyPath(p+".request.add", name), validateHTTPHeaderWithAuthorityOperationName(name))
		c.add(keyPath(p+".request.add", name), validateHTTPHeaderValue(req.GetAdd()[name]))
	}
	for _, name := range slices.Sorted(maps.Keys(req.GetSet())) {
		c.add(keyPath(p+".request.set", name), validateHTTPHeaderWithAuthorityOperationName(name))
		c.add(keyPath(p+".request.set", name), validateHTTPHeaderValue(req.GetSet()[name]))
	}
	for i, name := range req.GetRemove() {
		c.add(indexPath(p+".request.remove", i), validateHTTPHeaderOperationName(name))
	}
	for _, name := range slices.Sorted(maps.Keys(resp.GetAdd())) {
		c.add(keyPath(p+".response.add", name), validateHTTPHeaderOperationName(name))
		c.add(keyPath(p+".response.add", name), validateHTTPHeaderValue(resp.GetAdd()[name]))
	}
	for _, name := range slices.Sorted(maps.Keys(resp.GetSet())) {
		c.add(keyPath(p+".response.set", name), validateHTTPHeaderOperationName(name))
		c.add(keyPath(p+".response.set", name), validateHTTPHeaderValue(resp.GetSet()[name]))
	}
	for i, name := range resp.GetRemove() {
		c.add(indexPath(p+".response.remove", i), validateHTTPHeaderOperationName(name))
	}
}

// authorityRewrite ports validateAuthorityRewrite: the authority may be
// rewritten in one place only. Istio walks the maps in random order; we
// walk them sorted.
func (c *checker) authorityRewrite(p string, rw *networking.HTTPRewrite, h *networking.Headers) {
	current := rw.GetAuthority()
	for _, op := range []struct {
		name string
		m    map[string]string
	}{{"set", h.GetRequest().GetSet()}, {"add", h.GetRequest().GetAdd()}} {
		for _, k := range slices.Sorted(maps.Keys(op.m)) {
			if !isAuthorityHeader(k) {
				continue
			}
			v := op.m[k]
			if current != "" {
				c.err(keyPath(p+".headers.request."+op.name, k), fmt.Sprintf("authority header cannot be set multiple times: have %q, attempting to set %q", current, v))
				return
			}
			current = v
		}
	}
}

// corsPolicy ports validateCORSPolicy.
func (c *checker) corsPolicy(p string, policy *networking.CorsPolicy) {
	if policy == nil {
		return
	}
	for i, origin := range policy.AllowOrigins {
		op := indexPath(p+".allowOrigins", i)
		var match string
		switch origin.GetMatchType().(type) {
		case *networking.StringMatch_Exact:
			match = origin.GetExact()
		case *networking.StringMatch_Prefix:
			match = origin.GetPrefix()
		case *networking.StringMatch_Regex:
			match = origin.GetRegex()
		}
		if match == "" {
			c.err(op, fmt.Sprintf("'%v' is not a valid match type for CORS allow origins", match))
			continue
		}
		c.stringMatchRegexp(op, origin, "corsPolicy.allowOrigins")
	}
	for i, m := range policy.AllowMethods {
		if !supportedCORSMethods[m] {
			c.err(indexPath(p+".allowMethods", i), fmt.Sprintf("%q is not a supported HTTP method", m))
		}
	}
	for i, name := range policy.AllowHeaders {
		c.add(indexPath(p+".allowHeaders", i), validateCORSHTTPHeaderName(name))
	}
	for i, name := range policy.ExposeHeaders {
		c.add(indexPath(p+".exposeHeaders", i), validateCORSHTTPHeaderName(name))
	}
	if policy.MaxAge != nil {
		c.addAt(p, ".maxAge", validateDuration(policy.MaxAge))
		if policy.MaxAge.Nanos > 0 {
			c.err(p+".maxAge", "max_age duration is accurate only to seconds precision")
		}
	}
	c.enumValue(p+".unmatchedPreflights", int32(policy.UnmatchedPreflights), networking.CorsPolicy_UnmatchedPreflights_name)
}

// supportedCORSMethods are Go's HTTP methods plus "*".
var supportedCORSMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodConnect: true,
	http.MethodOptions: true, http.MethodTrace: true, "*": true,
}

// faultInjection ports validateHTTPFaultInjection.
func (c *checker) faultInjection(p string, fault *networking.HTTPFaultInjection) {
	if fault == nil {
		return
	}
	if fault.Abort == nil && fault.Delay == nil {
		c.err(p, "HTTP fault injection must have an abort and/or a delay")
	}
	if abort := fault.Abort; abort != nil {
		ap := p + ".abort"
		c.addAt(ap, ".percentage.value", validatePercentage(abort.Percentage))
		switch abort.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if !supportedGRPCStatus[abort.GetGrpcStatus()] {
				c.err(ap+".grpcStatus", fmt.Sprintf("gRPC status %q is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md "+
					"for a list of supported codes, for example 'NOT_FOUND'", abort.GetGrpcStatus()))
			}
		case *networking.HTTPFaultInjection_Abort_Http2Error:
			c.err(ap+".http2Error", "HTTP/2 abort fault injection not supported yet")
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			c.addAt(ap, ".httpStatus", validateHTTPStatus(abort.GetHttpStatus()))
		default:
			// Istio warns "abort configured, but error type not set" here
			// but joins the result with appendErrors, which drops warnings.
		}
	}
	if delay := fault.Delay; delay != nil {
		dp := p + ".delay"
		c.addAt(dp, ".percentage.value", validatePercentage(delay.Percentage))
		switch d := delay.HttpDelayType.(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			c.addAt(dp, ".fixedDelay", validateDuration(d.FixedDelay))
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			c.addAt(dp, ".exponentialDelay", validateDuration(d.ExponentialDelay))
			c.err(dp+".exponentialDelay", "exponentialDelay not supported yet")
		}
	}
}

// supportedGRPCStatus ports grpc.SupportedGRPCStatus.
var supportedGRPCStatus = map[string]bool{
	"OK": true, "CANCELLED": true, "UNKNOWN": true, "INVALID_ARGUMENT": true,
	"DEADLINE_EXCEEDED": true, "NOT_FOUND": true, "ALREADY_EXISTS": true,
	"PERMISSION_DENIED": true, "RESOURCE_EXHAUSTED": true, "FAILED_PRECONDITION": true,
	"ABORTED": true, "OUT_OF_RANGE": true, "UNIMPLEMENTED": true, "INTERNAL": true,
	"UNAVAILABLE": true, "DATA_LOSS": true, "UNAUTHENTICATED": true,
}

// validateHTTPStatus ports validateHTTPStatus; Istio allows 600 although the
// message says 599.
func validateHTTPStatus(status int32) error {
	if status < 200 || status > 600 {
		return fmt.Errorf("HTTP status %d is not in range 200-599", status)
	}
	return nil
}

// destination ports validateDestination; p is the Destination's path.
func (c *checker) destination(p string, d *networking.Destination) {
	if d == nil {
		return
	}
	if d.Host == "*" {
		c.err(p+".host", fmt.Sprintf("invalid destination host %s", d.Host))
	} else {
		c.addAt(p, ".host", validateWildcardDomain(d.Host))
	}
	if d.Subset != "" {
		c.addAt(p, ".subset", validateSubsetName(d.Subset))
	}
	if d.Port != nil {
		c.addAt(p, ".port.number", validatePort(int(d.Port.GetNumber())))
	}
}

// validateSubsetName ports validateSubsetName.
func validateSubsetName(name string) error {
	if len(name) == 0 {
		return fmt.Errorf("subset name cannot be empty")
	}
	if !isDNS1123Label(name) {
		return fmt.Errorf("subset name is invalid: %s", name)
	}
	return nil
}

// mirrors ports validateHTTPMirrors.
func (c *checker) mirrors(p string, mirrors []*networking.HTTPMirrorPolicy) {
	for i, m := range mirrors {
		mp := indexPath(p, i)
		if m == nil {
			c.err(mp, "mirror cannot be null")
			continue
		}
		if m.Destination == nil {
			c.err(mp+".destination", "destination is required for mirrors")
			continue
		}
		c.destination(mp+".destination", m.Destination)
		if m.Percentage != nil {
			v := m.Percentage.GetValue()
			if v > 100 {
				c.err(mp+".percentage.value", fmt.Sprintf("mirror percentage must have a max value of 100 (it has %f)", v))
			}
			if v < 0 {
				c.err(mp+".percentage.value", fmt.Sprintf("mirror percentage must have a min value of 0 (it has %f)", v))
			}
		}
	}
}

// redirect ports validateHTTPRedirect, which stops at the first problem; p
// is the route's path.
func (c *checker) redirect(p string, rd *networking.HTTPRedirect, matches []*networking.HTTPMatchRequest) {
	if rd == nil {
		return
	}
	rp := p + ".redirect"
	if rd.Uri != "" && rd.PrefixRewrite != "" {
		c.err(rp+".prefixRewrite", "redirect may only specify one of uri or prefix_rewrite")
		return
	}
	if rd.PrefixRewrite != "" {
		for j, m := range matches {
			if _, isPrefix := m.GetUri().GetMatchType().(*networking.StringMatch_Prefix); m.GetUri() != nil && !isPrefix {
				c.err(indexPath(p+".match", j)+".uri", "redirect prefix_rewrite requires all URI matches to use prefix match type")
				return
			}
		}
	}
	if rd.Uri == "" && rd.PrefixRewrite == "" && rd.Authority == "" && rd.RedirectPort == nil && rd.Scheme == "" {
		c.err(rp, "redirect must specify URI, authority, scheme, or port")
		return
	}
	if rd.RedirectCode != 0 && (rd.RedirectCode < 300 || rd.RedirectCode > 399) {
		c.err(rp+".redirectCode", fmt.Sprintf("%d is not a valid redirect code, must be 3xx", rd.RedirectCode))
		return
	}
	if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
		c.err(rp+".scheme", `invalid redirect scheme, must be "http" or "https"`)
		return
	}
	if rd.GetPort() > 0 {
		if err := validatePort(int(rd.GetPort())); err != nil {
			c.err(rp+".port", err.Error())
			return
		}
	}
	if dp, ok := rd.RedirectPort.(*networking.HTTPRedirect_DerivePort); ok {
		c.enumValue(rp+".derivePort", int32(dp.DerivePort), networking.HTTPRedirect_RedirectPortSelection_name)
	}
}

const (
	kb = 1024
	mb = 1024 * kb
)

// directResponse ports validateHTTPDirectResponse.
func (c *checker) directResponse(p string, dr *networking.HTTPDirectResponse) {
	if dr == nil {
		return
	}
	if dr.Body != nil {
		size := 0
		switch b := dr.Body.Specifier.(type) {
		case *networking.HTTPBody_String_:
			size = len(b.String_)
		case *networking.HTTPBody_Bytes:
			size = len(b.Bytes)
		}
		if size > 1*mb {
			c.err(p+".body", "large direct_responses may impact control plane performance, must be less than 1MB")
		} else if size > 100*kb {
			c.warn(p+".body", "large direct_responses may impact control plane performance")
		}
	}
	c.addAt(p, ".status", validateHTTPStatus(int32(dr.Status)))
}

// retries ports validateHTTPRetry.
func (c *checker) retries(p string, r *networking.HTTPRetry) {
	if r == nil {
		return
	}
	if r.Attempts < 0 {
		c.err(p+".attempts", "attempts cannot be negative")
	}
	if r.Attempts == 0 && (r.PerTryTimeout != nil || r.RetryOn != "" || r.RetryRemoteLocalities != nil) {
		c.err(p+".attempts", "http retry policy configured when attempts are set to 0 (disabled)")
	}
	if r.PerTryTimeout != nil {
		c.addAt(p, ".perTryTimeout", validateDuration(r.PerTryTimeout))
	}
	if r.RetryOn != "" {
		for _, policy := range strings.Split(r.RetryOn, ",") {
			// Integer tokens are HTTP status codes.
			i, _ := strconv.Atoi(policy)
			if http.StatusText(i) == "" && !supportedRetryOnPolicies[policy] {
				c.err(p+".retryOn", fmt.Sprintf("%q is not a valid retryOn policy", policy))
			}
		}
	}
	if r.Backoff != nil {
		c.addAt(p, ".backoff", validateDuration(r.Backoff))
	}
}

// supportedRetryOnPolicies are Envoy's x-envoy-retry-on and
// x-envoy-retry-grpc-on values that Istio accepts.
var supportedRetryOnPolicies = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true,
	"connect-failure": true, "retriable-4xx": true, "refused-stream": true,
	"retriable-status-codes": true, "retriable-headers": true, "envoy-ratelimited": true,
	"http3-post-connect-failure": true,
	"cancelled":                  true, "deadline-exceeded": true, "internal": true,
	"resource-exhausted": true, "unavailable": true,
}

// rewrite ports validateHTTPRewrite, which stops at the first problem.
func (c *checker) rewrite(p string, rw *networking.HTTPRewrite) {
	if rw == nil {
		return
	}
	if rw.Uri != "" && rw.UriRegexRewrite != nil {
		c.err(p+".uriRegexRewrite", "rewrite may only contain one of URI or UriRegexRewrite")
		return
	}
	if rw.Uri == "" && rw.UriRegexRewrite == nil && rw.Authority == "" {
		c.err(p, "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified")
		return
	}
	if rr := rw.UriRegexRewrite; rr != nil {
		const prefix = "UriRegexRewrite has errors\n"
		rp := p + ".uriRegexRewrite"
		switch {
		case rr.Match == "":
			c.err(rp+".match", prefix+"UriRegexRewrite requires both Rewrite and Match fields to be specified")
		case rr.Rewrite == "":
			c.err(rp+".rewrite", prefix+"UriRegexRewrite requires both Rewrite and Match fields to be specified")
		default:
			if err := validateStringRegexp(rr.Match, "HTTPRewrite.UriRegexRewrite.Match"); err != nil {
				c.err(rp+".match", prefix+err.Error())
			}
		}
	}
}

// httpRouteDestinations ports validateHTTPRouteDestinations.
func (c *checker) httpRouteDestinations(p string, dests []*networking.HTTPRouteDestination, gatewaySemantics bool) {
	var total int32
	for i, d := range dests {
		dp := indexPath(p, i)
		if d == nil {
			c.err(dp, "weight may not be nil")
			continue
		}
		if d.Destination == nil {
			c.err(dp+".destination", "destination is required")
		}
		if d.Headers != nil {
			c.headerOperations(dp+".headers", d.Headers)
		}
		c.routeDestination(dp+".destination", d.Destination, gatewaySemantics)
		c.addAt(dp, ".weight", validateWeight(d.Weight))
		total += d.Weight
	}
	if len(dests) > 1 && total == 0 {
		c.err(p, "total destination weight = 0")
	}
}

// routeDestinations ports validateRouteDestinations (TCP and TLS routes).
func (c *checker) routeDestinations(p string, dests []*networking.RouteDestination, gatewaySemantics bool) {
	var total int32
	for i, d := range dests {
		dp := indexPath(p, i)
		if d == nil {
			c.err(dp, "weight may not be nil")
			continue
		}
		if d.Destination == nil {
			c.err(dp+".destination", "destination is required")
		}
		c.routeDestination(dp+".destination", d.Destination, gatewaySemantics)
		c.addAt(dp, ".weight", validateWeight(d.Weight))
		total += d.Weight
	}
	if len(dests) > 1 && total == 0 {
		c.err(p, "total destination weight = 0")
	}
}

// routeDestination checks a route's destination; with Gateway API
// semantics Istio skips it and only the CRD's required host remains.
func (c *checker) routeDestination(p string, d *networking.Destination, gatewaySemantics bool) {
	if !gatewaySemantics {
		c.destination(p, d)
	} else if d != nil && d.Host == "" {
		c.err(p+".host", "Required value")
	}
}

func validateWeight(w int32) error {
	if w < 0 {
		return fmt.Errorf("weight %d < 0", w)
	}
	return nil
}

// tlsRoute ports validateTLSRoute.
func (c *checker) tlsRoute(p string, r *networking.TLSRoute, vs *networking.VirtualService, gatewaySemantics bool) {
	if r == nil {
		return
	}
	if len(r.Match) == 0 {
		c.err(p+".match", "TLS route must have at least one match condition")
	}
	for j, m := range r.Match {
		mp := indexPath(p+".match", j)
		if m == nil {
			c.err(mp, "TLS match may not be null")
			continue
		}
		if len(m.SniHosts) == 0 {
			c.err(mp+".sniHosts", "TLS match must have at least one SNI host")
		} else {
			for k, sni := range m.SniHosts {
				c.sniHost(indexPath(mp+".sniHosts", k), sni, vs)
			}
		}
		for k, s := range m.DestinationSubnets {
			c.add(indexPath(mp+".destinationSubnets", k), validateIPSubnet(s))
		}
		if m.Port != 0 {
			c.addAt(mp, ".port", validatePort(int(m.Port)))
		}
		c.labels(mp+".sourceLabels", m.SourceLabels)
		c.gatewayNames(mp+".gateways", m.Gateways, false)
	}
	if len(r.Route) == 0 {
		c.err(p+".route", "TLS route is required")
	}
	c.routeDestinations(p+".route", r.Route, gatewaySemantics)
}

// sniHost ports validateSniHost.
func (c *checker) sniHost(p, sni string, vs *networking.VirtualService) {
	var err error
	if isGatewayBound(vs) {
		err = validateWildcardDomainForVirtualServiceBoundToGateway(true, sni)
	} else {
		err = validateWildcardDomain(sni)
	}
	if err != nil {
		if isValidIPAddress(sni) {
			c.warn(p, fmt.Sprintf("using an IP address (%q) goes against SNI spec and most clients do not support this", sni))
			return
		}
		c.err(p, err.Error())
		return
	}
	for _, h := range vs.Hosts {
		if hostSubsetOf(sni, h) {
			return
		}
	}
	c.err(p, fmt.Sprintf("SNI host %q is not a compatible subset of any of the virtual service hosts: [%s]", sni, strings.Join(vs.Hosts, ", ")))
}

// tcpRoute ports validateTCPRoute.
func (c *checker) tcpRoute(p string, r *networking.TCPRoute, gatewaySemantics bool) {
	if r == nil {
		return
	}
	for j, m := range r.Match {
		mp := indexPath(p+".match", j)
		if m == nil {
			c.err(mp, "tcp match may not be nil")
			continue
		}
		for k, s := range m.DestinationSubnets {
			c.add(indexPath(mp+".destinationSubnets", k), validateIPSubnet(s))
		}
		if m.Port != 0 {
			c.addAt(mp, ".port", validatePort(int(m.Port)))
		}
		c.labels(mp+".sourceLabels", m.SourceLabels)
		c.errorsOnly(func() { c.gatewayNames(mp+".gateways", m.Gateways, false) })
	}
	if len(r.Route) == 0 {
		c.err(p+".route", "TCP route is required")
	}
	c.routeDestinations(p+".route", r.Route, gatewaySemantics)
}

// Unreachable and overlapping rules (analyzeUnreachable*Rules), reported as
// warnings.

// matchKey stands for Istio's asJSON: two matches are duplicates when their
// serializations, without the match name, are equal. A deterministic proto
// encoding has the same equality as jsonpb's JSON and is much cheaper.
func matchKey(m proto.Message) string {
	if hm, ok := m.(*networking.HTTPMatchRequest); ok && hm.GetName() != "" {
		cl := proto.Clone(hm).(*networking.HTTPMatchRequest)
		cl.Name = ""
		m = cl
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func httpRouteName(r *networking.HTTPRoute, n int) string {
	if r.GetName() != "" {
		return strconv.Quote(r.GetName())
	}
	return "#" + strconv.Itoa(n)
}

func httpMatchName(m *networking.HTTPMatchRequest, n int) string {
	if m.GetName() != "" {
		return strconv.Quote(m.GetName())
	}
	return "#" + strconv.Itoa(n)
}

func (c *checker) unusedRule(p, ruleno, reason string) {
	c.warn(p, fmt.Sprintf("virtualService rule %v not used (%s)", ruleno, reason))
}

func (c *checker) ineffectiveMatch(p, ruleno, matchno, dupno string) {
	c.warn(p, fmt.Sprintf("virtualService rule %v match %v is not used (duplicate/overlapping match in rule %v)", ruleno, matchno, dupno))
}

// prefixMatch is Istio's OverlappingMatchValidationForHTTPRoute.
type prefixMatch struct {
	rulen       int
	matchn      int
	routeStr    string
	matchStr    string
	prefix      string
	port        uint32
	method      string
	authority   string
	headers     map[string]string
	queryParams map[string]string
	withoutHdrs map[string]string
}

func exactOrPrefix(sm *networking.StringMatch) string {
	if e := sm.GetExact(); e != "" {
		return "exact:" + e
	}
	if p := sm.GetPrefix(); p != "" {
		return "prefix:" + p
	}
	return ""
}

func exactOrPrefixMap(m map[string]*networking.StringMatch) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = exactOrPrefix(v)
	}
	return out
}

// genPrefixMatch ports genMatchHTTPRoutes for a match with a uri prefix.
func genPrefixMatch(r *networking.HTTPRoute, m *networking.HTTPMatchRequest, rulen, matchn int) *prefixMatch {
	prefix := m.Uri.GetPrefix()
	method := exactOrPrefix(m.Method)
	if method == "" {
		// No method means GET for this analysis.
		method = "exact:GET"
	}
	return &prefixMatch{
		rulen:       rulen,
		matchn:      matchn,
		routeStr:    httpRouteName(r, rulen),
		matchStr:    httpMatchName(m, matchn),
		prefix:      prefix,
		port:        m.Port,
		method:      method,
		authority:   exactOrPrefix(m.Authority),
		headers:     exactOrPrefixMap(m.Headers),
		queryParams: exactOrPrefixMap(m.QueryParams),
		withoutHdrs: exactOrPrefixMap(m.WithoutHeaders),
	}
}

// covered ports coveredValidation: a's match covers b's.
func covered(a, b *prefixMatch) bool {
	if !strings.HasPrefix(b.prefix, a.prefix) {
		return false
	}
	if b.port != a.port {
		return false
	}
	if a.method != b.method && !strings.HasPrefix(a.method, b.method) {
		return false
	}
	if a.authority != b.authority && !strings.HasPrefix(a.authority, b.authority) {
		return false
	}
	mapCovered := func(am, bm map[string]string) bool {
		if len(am) != len(bm) {
			return false
		}
		for k, av := range am {
			bv, ok := bm[k]
			if !ok || (av != bv && !strings.HasPrefix(av, bv)) {
				return false
			}
		}
		return true
	}
	return mapCovered(a.headers, b.headers) && mapCovered(a.queryParams, b.queryParams) && mapCovered(a.withoutHdrs, b.withoutHdrs)
}

// unreachableHTTPRules ports analyzeUnreachableHTTPRules.
func (c *checker) unreachableHTTPRules(routes []*networking.HTTPRoute) {
	totalMatches := 0
	for _, r := range routes {
		totalMatches += len(r.GetMatch())
	}
	var seen map[string]int
	if totalMatches > 1 {
		seen = make(map[string]int, totalMatches)
	}
	emptyMatchAt := -1
	// Matches with a uri prefix take part in the overlap analysis.
	type candidate struct{ rulen, matchn int }
	var prefixes []candidate
	for rulen, r := range routes {
		if r == nil {
			continue
		}
		rp := indexPath("spec.http", rulen)
		if len(r.Match) == 0 {
			if emptyMatchAt >= 0 {
				c.unusedRule(rp, httpRouteName(r, rulen), "only the last rule can have no matches")
			}
			emptyMatchAt = rulen
			continue
		}
		duplicates := 0
		for matchn, m := range r.Match {
			if emptyMatchAt >= 0 {
				c.unusedRule(rp, httpRouteName(r, rulen), "route without matches defined before")
				continue
			}
			if seen == nil {
				// A single match can neither duplicate nor overlap another.
				continue
			}
			key := matchKey(m)
			if dupn, ok := seen[key]; ok {
				c.ineffectiveMatch(indexPath(rp+".match", matchn), httpRouteName(r, rulen), httpMatchName(m, matchn), httpRouteName(routes[dupn], dupn))
				duplicates++
				continue
			}
			seen[key] = rulen
			if m.GetUri().GetPrefix() != "" {
				prefixes = append(prefixes, candidate{rulen, matchn})
			}
		}
		if duplicates == len(r.Match) {
			c.unusedRule(rp, httpRouteName(r, rulen), "all matches used by prior rules")
		}
	}
	if len(prefixes) < 2 {
		return
	}
	pms := make([]*prefixMatch, len(prefixes))
	for i, pc := range prefixes {
		r := routes[pc.rulen]
		pms[i] = genPrefixMatch(r, r.Match[pc.matchn], pc.rulen, pc.matchn)
	}
	for i, a := range pms {
		for _, b := range pms[i+1:] {
			if b.prefix == a.prefix {
				// Exact duplicates were reported above.
				continue
			}
			if covered(a, b) {
				c.ineffectiveMatch(indexPath(indexPath("spec.http", b.rulen)+".match", b.matchn), b.routeStr, b.matchStr+" of prefix "+b.prefix,
					a.matchStr+" of prefix "+a.prefix+" on "+a.routeStr)
			}
		}
	}
}

// l4Rule is a TCP or TLS rule for the unreachable-rule analysis.
type l4Rule struct {
	null    bool
	matches []proto.Message
}

func tcpRules(routes []*networking.TCPRoute) []l4Rule {
	out := make([]l4Rule, len(routes))
	for i, r := range routes {
		out[i].null = r == nil
		for _, m := range r.GetMatch() {
			out[i].matches = append(out[i].matches, m)
		}
	}
	return out
}

func tlsRules(routes []*networking.TLSRoute) []l4Rule {
	out := make([]l4Rule, len(routes))
	for i, r := range routes {
		out[i].null = r == nil
		for _, m := range r.GetMatch() {
			out[i].matches = append(out[i].matches, m)
		}
	}
	return out
}

// unreachableL4Rules ports analyzeUnreachableTCPRules and
// analyzeUnreachableTLSRules; TCP and TLS rules have no names.
func (c *checker) unreachableL4Rules(p string, rules []l4Rule) {
	seen := map[string]int{}
	emptyMatchAt := -1
	for rulen, rule := range rules {
		if rule.null {
			continue
		}
		rp := indexPath(p, rulen)
		name := "#" + strconv.Itoa(rulen)
		if len(rule.matches) == 0 {
			if emptyMatchAt >= 0 {
				c.unusedRule(rp, name, "only the last rule can have no matches")
			}
			emptyMatchAt = rulen
			continue
		}
		duplicates := 0
		for matchn, m := range rule.matches {
			if emptyMatchAt >= 0 {
				c.unusedRule(rp, name, "route without matches defined before")
				continue
			}
			key := matchKey(m)
			if dupn, ok := seen[key]; ok {
				c.ineffectiveMatch(indexPath(rp+".match", matchn), name, "#"+strconv.Itoa(matchn), "#"+strconv.Itoa(dupn))
				duplicates++
			} else {
				seen[key] = rulen
			}
		}
		if duplicates == len(rule.matches) {
			c.unusedRule(rp, name, "all matches used by prior rules")
		}
	}
}

// Header names and values.

// isHeaderTokenChar reports RFC 7230 tchar: !#$%&'*+-.^_`|~ and alphanumerics.
func isHeaderTokenChar(b byte) bool {
	return isAlnum(b) || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func isHeaderToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHeaderTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// validateCORSHTTPHeaderName ports ValidateCORSHTTPHeaderName.
func validateCORSHTTPHeaderName(name string) error {
	if name == "" {
		return fmt.Errorf("header name cannot be empty")
	}
	if name == "*" {
		return nil
	}
	if !isHeaderToken(name) {
		return fmt.Errorf("header name %s is not a valid header name", name)
	}
	return nil
}

var pseudoHeaders = map[string]bool{":method": true, ":scheme": true, ":authority": true, ":path": true, ":status": true}

// validateHTTPHeaderNameOrJwtClaimRoute ports the function of that name.
func validateHTTPHeaderNameOrJwtClaimRoute(name string) error {
	if name == "" {
		return fmt.Errorf("header name cannot be empty")
	}
	if isJWTClaimRoute(name) || pseudoHeaders[name] {
		return nil
	}
	if !isHeaderToken(name) {
		return fmt.Errorf("header name %s is not a valid header name", name)
	}
	return nil
}

// isInternalHeader: Envoy does not let these be modified.
func isInternalHeader(k string) bool {
	return strings.HasPrefix(k, ":") || strings.EqualFold(k, "host")
}

func isAuthorityHeader(k string) bool {
	return strings.EqualFold(k, ":authority") || strings.EqualFold(k, "host")
}

// validateHTTPHeaderWithAuthorityOperationName ports the function of that
// name (request add/set; the authority is checked elsewhere).
func validateHTTPHeaderWithAuthorityOperationName(name string) error {
	if name == "" {
		return fmt.Errorf("header name cannot be empty")
	}
	if isInternalHeader(name) && !isAuthorityHeader(name) {
		return fmt.Errorf(`invalid header %q: header cannot have ":" prefix`, name)
	}
	return nil
}

// validateHTTPHeaderOperationName ports the function of that name (request
// remove and all response operations).
func validateHTTPHeaderOperationName(name string) error {
	if name == "" {
		return fmt.Errorf("header name cannot be empty")
	}
	if strings.EqualFold(name, "host") {
		return fmt.Errorf(`invalid header %q: cannot set Host header`, name)
	}
	if isInternalHeader(name) {
		return fmt.Errorf(`invalid header %q: header cannot have ":" prefix`, name)
	}
	return nil
}

// validateHTTPHeaderValue ports ValidateHTTPHeaderValue: no control
// characters other than tab, and well-formed %VARIABLE% expressions.
func validateHTTPHeaderValue(value string) error {
	for i := 0; i < len(value); i++ {
		if b := value[i]; b <= 0x08 || (0x0A <= b && b <= 0x1F) || b == 0x7F {
			return fmt.Errorf("header value configuration %s is invalid", value)
		}
	}
	if err := validateHeaderValueVariables(value); err != nil {
		return fmt.Errorf("header value configuration: %w", err)
	}
	return nil
}

// validateHeaderValueVariables ports validateHeaderValue
// (header_value_validator.go), itself a port of Envoy's header parser.
func validateHeaderValueVariables(v string) error {
	const (
		literal = iota
		variableName
		expectArray
		expectString
		inString
		expectArrayDelimiterOrEnd
		expectArgsEnd
		expectVariableEnd
	)
	state := literal
	for pos := 0; pos < len(v); pos++ {
		ch := v[pos]
		hasNext := pos+1 < len(v)
		switch state {
		case literal:
			if ch != '%' {
				break
			}
			if !hasNext {
				return fmt.Errorf("invalid header configuration. Un-escaped %%")
			}
			if v[pos+1] == '%' {
				pos++ // escaped %
				break
			}
			state = variableName
		case variableName:
			if ch == '%' {
				state = literal
			} else if ch == '(' {
				state = expectArray
			}
		case expectArray:
			if ch == '[' {
				state = expectString
			} else if ch != ' ' {
				state = inString
			}
		case expectArrayDelimiterOrEnd:
			switch {
			case ch == ',':
				state = expectString
			case ch == ']':
				state = expectArgsEnd
			case ch != ' ':
				return fmt.Errorf("invalid header configuration. Expecting ',', ']', or whitespace")
			}
		case expectString:
			if ch == '"' {
				state = inString
			} else if ch != ' ' {
				return fmt.Errorf("invalid header configuration. Expecting '\"'")
			}
		case inString:
			switch ch {
			case '\\':
				if !hasNext {
					return fmt.Errorf("invalid header configuration. Un-terminated backslash in JSON string")
				}
				pos++
			case ')':
				state = expectVariableEnd
			case '"':
				state = expectArrayDelimiterOrEnd
			}
		case expectArgsEnd:
			if ch == ')' {
				state = expectVariableEnd
			} else if ch != ' ' {
				return fmt.Errorf("invalid header configuration. Expecting ')' or whitespace after '{}', but found '{}'")
			}
		case expectVariableEnd:
			if ch == '%' {
				state = literal
			} else if ch != ' ' {
				return fmt.Errorf("invalid header configuration. Expecting '%%' or whitespace after")
			}
		}
	}
	if state != literal {
		return fmt.Errorf("invalid header configuration. Un-terminated variable expression '%s'", v)
	}
	return nil
}
