package istio

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/modules/istiofault"
	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// routeModifiers translates the modifiers of sr into route, whose action
// is already set. As Istio, rewrite, timeout, retries and mirrors only
// apply to routes that proxy; headers (response operations), fault and
// CORS apply to redirects and direct responses too.
func (t *translator) routeModifiers(route *istioroute.Route, sr *sourcedRoute, scope routeScope) {
	r := sr.http
	var authority string
	route.Headers, authority = t.headersOf(sr.at("headers"), r.GetHeaders())
	if f := r.GetFault(); f != nil {
		route.Fault = t.faultOf(sr.at("fault"), f)
	}
	if c := r.GetCorsPolicy(); c != nil {
		route.CORS = corsOf(c)
	}
	if len(route.Route) == 0 {
		// A redirect or a direct response: nothing is proxied.
		for _, f := range []struct {
			field string
			set   bool
		}{
			{"timeout", r.GetTimeout() != nil},
			{"retries", r.GetRetries() != nil},
			{"mirror", r.GetMirror() != nil},
			{"mirrors", len(r.GetMirrors()) > 0},
		} {
			if f.set {
				t.warnAt(sr.at(f.field), "ignored: the route answers itself, nothing is proxied (as in Istio)")
			}
		}
		return
	}

	// The authority: a host or :authority header operation of the route,
	// replaced by rewrite.authority, else the only destination's.
	if rw := r.GetRewrite(); rw != nil {
		route.Rewrite = &istioroute.Rewrite{URI: rw.GetUri()}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			route.Rewrite = &istioroute.Rewrite{URIRegex: &istioroute.RegexRewrite{Match: rr.GetMatch(), Rewrite: rr.GetRewrite()}}
		}
		if rw.GetAuthority() != "" {
			authority = rw.GetAuthority()
		}
	}
	for j, d := range r.GetRoute() {
		if d.GetHeaders() == nil {
			continue
		}
		ref := sr.at(fmt.Sprintf("route[%d].headers", j))
		dh, da := t.headersOf(ref, d.GetHeaders())
		route.Route[j].Headers = dh
		switch {
		case da == "":
		case len(r.GetRoute()) > 1:
			// Envoy rewrites the host per weighted cluster; the runtime
			// has one authority per route.
			t.warnAt(ref, "an authority (host or :authority) for one of several destinations is not implemented yet; ignored")
		case authority == "":
			// Istio only uses it when the route sets none.
			authority = da
		}
	}
	if authority != "" {
		if route.Rewrite == nil {
			route.Rewrite = &istioroute.Rewrite{}
		}
		route.Rewrite.Authority = authority
	}
	if route.Rewrite != nil && *route.Rewrite == (istioroute.Rewrite{}) {
		route.Rewrite = nil
	}

	if d := r.GetTimeout(); d != nil {
		route.Timeout = caddy.Duration(d.AsDuration())
	}
	consistentHash := len(r.GetRoute()) == 1 && t.destinationHash(r.GetRoute()[0].GetDestination()) != nil
	route.Retries = retryPolicyOf(r.GetRetries(), consistentHash)
	route.Mirrors = t.mirrorsOf(sr, scope)
}

// headersOf translates header operations written at ref, as Istio's
// TranslateHeadersOperations: a host or :authority key in request set or
// add is the authority to rewrite to (set wins over add), not a header;
// other pseudo-headers (":" keys), and host in the other operations, are
// dropped. The result is nil when no operation is left.
func (t *translator) headersOf(ref fieldRef, h *networking.Headers) (*istioroute.Headers, string) {
	if h == nil {
		return nil, ""
	}
	req, setAuthority, addAuthority := t.headerOperations(ref, "request", h.GetRequest(), true)
	resp, _, _ := t.headerOperations(ref, "response", h.GetResponse(), false)
	authority := addAuthority
	if setAuthority != "" {
		authority = setAuthority
	}
	if req == nil && resp == nil {
		return nil, authority
	}
	return &istioroute.Headers{Request: req, Response: resp}, authority
}

// headerOperations translates one side (request or response) of header
// operations; on the request side, it returns the authority of set and
// add.
func (t *translator) headerOperations(ref fieldRef, side string, ops *networking.Headers_HeaderOperations, request bool) (out *istioroute.HeaderOperations, setAuthority, addAuthority string) {
	if ops == nil {
		return nil, "", ""
	}
	out = &istioroute.HeaderOperations{}
	values := func(op string, in map[string]string) (map[string]string, string) {
		var kept map[string]string
		var authority string
		for _, k := range slices.Sorted(maps.Keys(in)) {
			field := ref.path + "." + side + "." + op + "." + k
			switch {
			case request && isAuthorityHeader(k):
				authority = in[k]
				continue
			case isInternalHeader(k):
				t.warn(ref.obj, field, "a pseudo-header or host cannot be changed here: dropped (as in Istio)")
				continue
			}
			if kept == nil {
				kept = make(map[string]string)
			}
			kept[k] = in[k]
		}
		return kept, authority
	}
	out.Set, setAuthority = values("set", ops.GetSet())
	out.Add, addAuthority = values("add", ops.GetAdd())
	for i, k := range ops.GetRemove() {
		if isInternalHeader(k) {
			t.warn(ref.obj, fmt.Sprintf("%s.%s.remove[%d]", ref.path, side, i), "a pseudo-header or host cannot be removed: dropped (as in Istio)")
			continue
		}
		out.Remove = append(out.Remove, k)
	}
	if out.Set == nil && out.Add == nil && out.Remove == nil {
		out = nil
	}
	return out, setAuthority, addAuthority
}

// isInternalHeader is Istio's: a pseudo-header or host.
func isInternalHeader(key string) bool {
	return strings.HasPrefix(key, ":") || strings.EqualFold(key, "host")
}

// isAuthorityHeader is Istio's: host or :authority.
func isAuthorityHeader(key string) bool {
	return strings.EqualFold(key, ":authority") || strings.EqualFold(key, "host")
}

// defaultRetryOn is Istio's default retry_on (route/retry/retry.go): 503
// is not retried since Istio 1.24.
var defaultRetryOn = []string{"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"}

// retryPolicyOf is Istio's retry.ConvertPolicy. No policy gives Istio's
// default one, written out: 2 retries on defaultRetryOn. attempts 0 turns
// retries off. Istio prefers a host not tried before unless
// retryIgnorePreviousHosts is false, or is unset and the route's only
// destination uses consistent hashing.
func retryPolicyOf(in *networking.HTTPRetry, consistentHash bool) *istioroute.RetryPolicy {
	out := &istioroute.RetryPolicy{
		Attempts:           2,
		RetryOn:            slices.Clone(defaultRetryOn),
		AllowPreviousHosts: consistentHash,
	}
	if in == nil {
		return out
	}
	if in.GetAttempts() <= 0 {
		return nil
	}
	out.Attempts = int(in.GetAttempts())
	if in.GetRetryOn() != "" {
		out.RetryOn, out.RetriableStatusCodes = parseRetryOn(in.GetRetryOn())
		if len(out.RetriableStatusCodes) > 0 && !slices.Contains(out.RetryOn, "retriable-status-codes") {
			out.RetryOn = append(out.RetryOn, "retriable-status-codes")
		}
	}
	if d := in.GetPerTryTimeout(); d != nil {
		out.PerTryTimeout = caddy.Duration(d.AsDuration())
	}
	if v := in.GetRetryIgnorePreviousHosts(); v != nil {
		out.AllowPreviousHosts = !v.GetValue()
	}
	out.RetryRemoteLocalities = in.GetRetryRemoteLocalities().GetValue()
	if d := in.GetBackoff(); d != nil {
		out.Backoff = caddy.Duration(d.AsDuration())
	}
	return out
}

// parseRetryOn is Istio's parseRetryOn: comma-separated, trimmed tokens;
// integers that are HTTP status codes are retriable status codes.
func parseRetryOn(s string) (on []string, codes []int) {
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if code, err := strconv.Atoi(part); err == nil && http.StatusText(code) != "" {
			codes = append(codes, code)
			continue
		}
		on = append(on, part)
	}
	return on, codes
}

// destinationHash returns the consistent hash settings that apply to
// destination d (host fully qualified), as Istio's HashForHTTPDestination:
// a subset's port-level setting for d.port, else the subset's, else the
// DestinationRule's port-level one for d.port, else its top-level one.
// Port-level settings only count when the destination names its port.
func (t *translator) destinationHash(d *networking.Destination) *networking.LoadBalancerSettings_ConsistentHashLB {
	hp := policyFor(t.policies, d.GetHost())
	if hp == nil {
		return nil
	}
	portHash := func(pls []*networking.TrafficPolicy_PortTrafficPolicy) *networking.LoadBalancerSettings_ConsistentHashLB {
		if d.GetPort() == nil {
			return nil
		}
		for _, s := range pls {
			if s.GetPort().GetNumber() == d.GetPort().GetNumber() {
				return s.GetLoadBalancer().GetConsistentHash()
			}
		}
		return nil
	}
	hash := hp.trafficPolicy.GetLoadBalancer().GetConsistentHash()
	plsHash := portHash(hp.trafficPolicy.GetPortLevelSettings())
	var subsetHash, subsetPLSHash *networking.LoadBalancerSettings_ConsistentHashLB
	if s := hp.subset(d.GetSubset()); s != nil {
		subsetHash = s.GetTrafficPolicy().GetLoadBalancer().GetConsistentHash()
		subsetPLSHash = portHash(s.GetTrafficPolicy().GetPortLevelSettings())
	}
	switch {
	case subsetPLSHash != nil:
		return subsetPLSHash
	case subsetHash != nil:
		return subsetHash
	case plsHash != nil:
		return plsHash
	}
	return hash
}

// percentOf converts Istio's Percent as Envoy receives it: parts per
// million, truncated.
func percentOf(p *networking.Percent) float64 {
	return float64(uint32(p.GetValue()*10000)) / 10000
}

// faultOf is Istio's TranslateFault. A missing percentage injects nothing
// (0%), except that a delay falls back to the deprecated integer percent;
// an abort without a status is dropped.
func (t *translator) faultOf(ref fieldRef, f *networking.HTTPFaultInjection) *istiofault.Fault {
	out := &istiofault.Fault{}
	if d := f.GetDelay(); d != nil {
		if fixed, ok := d.GetHttpDelayType().(*networking.HTTPFaultInjection_Delay_FixedDelay); ok {
			out.Delay = &istiofault.Delay{FixedDelay: caddy.Duration(fixed.FixedDelay.AsDuration())}
			switch {
			case d.GetPercentage() != nil:
				out.Delay.Percentage = percentOf(d.GetPercentage())
			case d.GetPercent() != 0: //nolint:staticcheck // deprecated, still honoured
				out.Delay.Percentage = float64(d.GetPercent()) //nolint:staticcheck // deprecated, still honoured
			default:
				t.warnAt(fieldRef{ref.obj, ref.path + ".delay"}, "no percentage: no request is delayed (as in Istio, where it defaults to 0%)")
			}
		}
	}
	if a := f.GetAbort(); a != nil {
		abort := &istiofault.Abort{}
		switch e := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			abort.HTTPStatus = int(e.HttpStatus)
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			abort.GRPCStatus = e.GrpcStatus
		default:
			t.warnAt(fieldRef{ref.obj, ref.path + ".abort"}, "abort configured, but error type not set: dropped (Istio supports only HTTP and gRPC type abort faults)")
			abort = nil
		}
		if abort != nil {
			if a.GetPercentage() != nil {
				abort.Percentage = percentOf(a.GetPercentage())
			} else {
				t.warnAt(fieldRef{ref.obj, ref.path + ".abort"}, "no percentage: no request is aborted (as in Istio, where it defaults to 0%)")
			}
			out.Abort = abort
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}

// mirrorsOf translates mirror (with mirrorPercentage, or the deprecated
// mirrorPercent; absent: 100%) and mirrors (each with its percentage;
// absent: 100%), as Istio: an explicit 0% mirrors nothing. Mirror
// destinations resolve to clusters like route destinations.
func (t *translator) mirrorsOf(sr *sourcedRoute, scope routeScope) []*istioroute.Mirror {
	r := sr.http
	var out []*istioroute.Mirror
	if m := r.GetMirror(); m != nil {
		pct := 100.0
		switch {
		case r.GetMirrorPercentage() != nil:
			pct = percentOf(r.GetMirrorPercentage())
		case r.GetMirrorPercent() != nil: //nolint:staticcheck // deprecated, still honoured
			pct = float64(r.GetMirrorPercent().GetValue()) //nolint:staticcheck // deprecated, still honoured
		}
		if pct > 0 {
			out = append(out, &istioroute.Mirror{Cluster: t.destinationCluster(sr.at("mirror"), m, scope.port), Percentage: pct})
		}
	}
	for i, m := range r.GetMirrors() {
		if m.GetDestination() == nil {
			continue
		}
		pct := 100.0
		if m.GetPercentage() != nil {
			pct = percentOf(m.GetPercentage())
		}
		if pct > 0 {
			out = append(out, &istioroute.Mirror{Cluster: t.destinationCluster(sr.at(fmt.Sprintf("mirrors[%d].destination", i)), m.GetDestination(), scope.port), Percentage: pct})
		}
	}
	return out
}

// corsOf is Istio's TranslateCORSPolicy: allowOrigins, else the deprecated
// allowOrigin as exact matches; maxAge in whole seconds; preflights that
// match no origin go upstream unless unmatchedPreflights is IGNORE.
func corsOf(c *networking.CorsPolicy) *istioroute.CORSPolicy {
	out := &istioroute.CORSPolicy{
		AllowMethods:  c.GetAllowMethods(),
		AllowHeaders:  c.GetAllowHeaders(),
		ExposeHeaders: c.GetExposeHeaders(),
	}
	if c.GetAllowOrigins() != nil {
		for _, o := range c.GetAllowOrigins() {
			if sm := stringMatchOf(o); sm != nil && (sm.Exact != nil || sm.Prefix != nil || sm.Regex != nil) {
				out.AllowOrigins = append(out.AllowOrigins, sm)
			}
		}
	} else {
		for _, o := range c.GetAllowOrigin() { //nolint:staticcheck // deprecated, still honoured
			out.AllowOrigins = append(out.AllowOrigins, &istioroute.StringMatch{Exact: &o})
		}
	}
	if d := c.GetMaxAge(); d != nil {
		out.MaxAge = d.GetSeconds()
	}
	if v := c.GetAllowCredentials(); v != nil {
		b := v.GetValue()
		out.AllowCredentials = &b
	}
	if c.GetUnmatchedPreflights() == networking.CorsPolicy_IGNORE {
		out.UnmatchedPreflights = "IGNORE"
	}
	return out
}
