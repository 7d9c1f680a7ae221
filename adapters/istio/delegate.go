package istio

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
)

// sourcedRoute is an HTTPRoute ready to translate, with where its parts
// are written, for warnings. Its host names (destinations, mirrors) are
// fully qualified and its match.gateways are "namespace/name", because a
// route merged from a delegate mixes parts of two namespaces.
type sourcedRoute struct {
	http *networking.HTTPRoute

	// obj and path are where the route is written: the root VirtualService
	// route, or the delegate's route for a merged one.
	obj  *istioyaml.Object
	path string

	// root and rootPath are the root route a delegate route was merged
	// into (nil when not delegated); inherited names the HTTPRoute fields
	// taken from it.
	root      *istioyaml.Object
	rootPath  string
	inherited map[string]bool

	// matchPaths are where each match alternative is written.
	matchPaths []fieldRef
}

// fieldRef is a field of an object, for warnings.
type fieldRef struct {
	obj  *istioyaml.Object
	path string
}

// at returns where field (an HTTPRoute field name, possibly followed by a
// sub-path) of the route is written.
func (sr *sourcedRoute) at(field string) fieldRef {
	name, _, _ := strings.Cut(field, ".")
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	if sr.inherited[name] {
		return fieldRef{sr.root, sr.rootPath + "." + field}
	}
	return fieldRef{sr.obj, sr.path + "." + field}
}

// warnAt records a warning about ref.
func (t *translator) warnAt(ref fieldRef, message string) {
	t.warn(ref.obj, ref.path, message)
}

// expandedRoutes returns the http routes of vs with delegates expanded, as
// Istio merges a root VirtualService with its delegates before building
// routes. The result is computed once per VirtualService.
func (t *translator) expandedRoutes(vs *virtualService) []*sourcedRoute {
	if out, ok := t.expanded[vs]; ok {
		return out
	}
	out := []*sourcedRoute{}
	for i, r := range vs.spec.GetHttp() {
		path := fmt.Sprintf("spec.http[%d]", i)
		root := normalizedRoute(r, vs.obj.Namespace)
		if root.GetDelegate() == nil {
			out = append(out, &sourcedRoute{http: root, obj: vs.obj, path: path, matchPaths: matchPaths(vs.obj, path, len(root.GetMatch()))})
			continue
		}
		out = append(out, t.delegatedRoutes(vs, path, root)...)
	}
	t.expanded[vs] = out
	return out
}

// normalizedRoute is a copy of r whose destination and mirror hosts are
// expanded with namespace and whose match.gateways are "namespace/name",
// as Istio's ResolveVirtualServiceShortnames.
func normalizedRoute(r *networking.HTTPRoute, namespace string) *networking.HTTPRoute {
	out := proto.Clone(r).(*networking.HTTPRoute)
	for _, m := range out.GetMatch() {
		for i, g := range m.GetGateways() {
			m.Gateways[i] = resolveGatewayRef(g, namespace)
		}
	}
	for _, d := range out.GetRoute() {
		if d.GetDestination() != nil {
			d.Destination.Host = expandHost(d.Destination.GetHost(), namespace)
		}
	}
	if out.GetMirror() != nil {
		out.Mirror.Host = expandHost(out.Mirror.GetHost(), namespace)
	}
	for _, m := range out.GetMirrors() {
		if m.GetDestination() != nil {
			m.Destination.Host = expandHost(m.Destination.GetHost(), namespace)
		}
	}
	return out
}

func matchPaths(obj *istioyaml.Object, path string, n int) []fieldRef {
	out := make([]fieldRef, n)
	for j := range out {
		out[j] = fieldRef{obj, fmt.Sprintf("%s.match[%d]", path, j)}
	}
	return out
}

// delegatedRoutes merges root (the route at path of vs, normalized) with
// the routes of the VirtualService it delegates to, as Istio's
// MergeHTTPRoutes: one level only; a delegate route whose match
// alternatives cannot all be narrowed within the root's is dropped; the
// route modifiers the delegate route leaves unset come from the root.
func (t *translator) delegatedRoutes(vs *virtualService, path string, root *networking.HTTPRoute) []*sourcedRoute {
	ref := root.GetDelegate()
	ns := ref.GetNamespace()
	if ns == "" {
		ns = vs.obj.Namespace
	}
	name := ns + "/" + ref.GetName()
	var target *virtualService
	for _, d := range t.virtualServices {
		if d.obj.Namespace == ns && d.obj.Name == ref.GetName() {
			target = d
			break
		}
	}
	switch {
	case target == nil:
		t.warn(vs.obj, path+".delegate", fmt.Sprintf("delegate VirtualService %s not found: this route is dropped (as in Istio)", name))
		return nil
	case len(target.spec.GetHosts()) > 0:
		t.warn(vs.obj, path+".delegate", fmt.Sprintf("VirtualService %s has hosts, so it is not a delegate: this route is dropped (as in Istio)", name))
		return nil
	case !exportedTo(target, vs.obj.Namespace):
		t.warn(vs.obj, path+".delegate", fmt.Sprintf("delegate VirtualService %s is not exported to namespace %s: this route is dropped (as in Istio)", name, vs.obj.Namespace))
		return nil
	}

	var out []*sourcedRoute
	for k, r := range target.spec.GetHttp() {
		dpath := fmt.Sprintf("spec.http[%d]", k)
		if r.GetDelegate() != nil {
			// Validation rejects this; only one level of delegation exists.
			t.warn(target.obj, dpath+".delegate", "a delegate route cannot delegate again: this route is dropped")
			continue
		}
		leaf := normalizedRoute(r, target.obj.Namespace)
		matches, refs, conflict := mergeMatches(root.GetMatch(), leaf.GetMatch(), matchPaths(vs.obj, path, len(root.GetMatch())), matchPaths(target.obj, dpath, len(leaf.GetMatch())))
		if conflict {
			t.warn(target.obj, dpath+".match", fmt.Sprintf("not within the match of the delegating route %s of %s: this route is dropped there (as in Istio)", path, vs.obj.Ref()))
			continue
		}
		leaf.Match = matches
		switch {
		case leaf.GetName() == "":
			leaf.Name = root.GetName()
		case root.GetName() != "":
			leaf.Name = root.GetName() + "-" + leaf.GetName()
		}
		out = append(out, &sourcedRoute{
			http:       leaf,
			obj:        target.obj,
			path:       dpath,
			root:       vs.obj,
			rootPath:   path,
			inherited:  inheritModifiers(root, leaf),
			matchPaths: refs,
		})
	}
	return out
}

// exportedTo reports whether vs is visible to namespace ns (a delegate
// to its root's namespace, a VirtualService with hosts to a proxy's).
func exportedTo(vs *virtualService, ns string) bool {
	return exportRank(vs, ns) != notExported
}

// Export ranks: the order in which Istio's VirtualServicesForGateway lists
// the VirtualServices visible to a proxy namespace, document order within
// each rank.
const (
	exportPrivate = iota // exported to "." or its own namespace, the proxy's
	exportNamed          // exported to the proxy's namespace by name
	exportPublic         // exported to "*", or exportTo empty
	notExported
)

// exportRank is the rank of vs for a proxy in namespace ns: exportTo empty
// or with "*" is every namespace (the mesh default), "." is the
// VirtualService's own namespace, any other entry names a namespace.
func exportRank(vs *virtualService, ns string) int {
	to := vs.spec.GetExportTo()
	if len(to) == 0 || slices.Contains(to, "*") {
		return exportPublic
	}
	rank := notExported
	for _, e := range to {
		switch {
		case (e == "." || e == vs.obj.Namespace) && ns == vs.obj.Namespace:
			return exportPrivate
		case e == ns:
			rank = exportNamed
		}
	}
	return rank
}

// inheritModifiers copies into leaf the route modifiers it leaves unset
// from root, as Istio's mergeHTTPRoute, and returns the names of the
// fields copied.
func inheritModifiers(root, leaf *networking.HTTPRoute) map[string]bool {
	inherited := make(map[string]bool)
	take := func(name string, unset, rootSet bool, copyField func()) {
		if unset && rootSet {
			copyField()
			inherited[name] = true
		}
	}
	take("rewrite", leaf.Rewrite == nil, root.Rewrite != nil, func() { leaf.Rewrite = root.Rewrite })
	take("directResponse", leaf.DirectResponse == nil, root.DirectResponse != nil, func() { leaf.DirectResponse = root.DirectResponse })
	take("timeout", leaf.Timeout == nil, root.Timeout != nil, func() { leaf.Timeout = root.Timeout })
	take("retries", leaf.Retries == nil, root.Retries != nil, func() { leaf.Retries = root.Retries })
	take("fault", leaf.Fault == nil, root.Fault != nil, func() { leaf.Fault = root.Fault })
	take("mirror", leaf.Mirror == nil, root.Mirror != nil, func() { leaf.Mirror = root.Mirror })
	take("mirrorPercent", leaf.MirrorPercent == nil, root.MirrorPercent != nil, func() { leaf.MirrorPercent = root.MirrorPercent }) //nolint:staticcheck // deprecated, still honoured
	take("mirrorPercentage", leaf.MirrorPercentage == nil, root.MirrorPercentage != nil, func() { leaf.MirrorPercentage = root.MirrorPercentage })
	take("corsPolicy", leaf.CorsPolicy == nil, root.CorsPolicy != nil, func() { leaf.CorsPolicy = root.CorsPolicy })
	take("mirrors", leaf.Mirrors == nil, root.Mirrors != nil, func() { leaf.Mirrors = root.Mirrors })
	take("headers", leaf.Headers == nil, root.Headers != nil, func() { leaf.Headers = root.Headers })
	return inherited
}

// mergeMatches merges the match alternatives of a root route and of a
// delegate route, as Istio's mergeHTTPMatchRequests: every delegate
// alternative is merged with every root alternative it does not conflict
// with, and one that conflicts with all of them makes the whole delegate
// route conflict. rootRefs and leafRefs say where each alternative is
// written; refs says it for the result.
func mergeMatches(root, leaf []*networking.HTTPMatchRequest, rootRefs, leafRefs []fieldRef) (out []*networking.HTTPMatchRequest, refs []fieldRef, conflict bool) {
	if len(root) == 0 {
		return leaf, leafRefs, false
	}
	if len(leaf) == 0 {
		return root, rootRefs, false
	}
	for k, l := range leaf {
		found := false
		for _, r := range root {
			if matchConflict(r, l) {
				continue
			}
			out = append(out, mergeMatch(r, l))
			refs = append(refs, leafRefs[k])
			found = true
		}
		if !found {
			return nil, nil, true
		}
	}
	return out, refs, len(out) == 0
}

// mergeMatch is Istio's mergeHTTPMatchRequest: the delegate alternative,
// with what it leaves unset taken from the root one and the maps merged
// (the delegate's entries win).
func mergeMatch(root, leaf *networking.HTTPMatchRequest) *networking.HTTPMatchRequest {
	out := proto.Clone(leaf).(*networking.HTTPMatchRequest)
	switch {
	case out.Name == "":
		out.Name = root.Name
	case root.Name != "":
		out.Name = root.Name + "-" + out.Name
	}
	if out.Uri == nil {
		out.Uri = root.Uri
	}
	if out.Scheme == nil {
		out.Scheme = root.Scheme
	}
	if out.Method == nil {
		out.Method = root.Method
	}
	if out.Authority == nil {
		out.Authority = root.Authority
	}
	out.Headers = mergeMaps(root.Headers, leaf.Headers)
	out.WithoutHeaders = mergeMaps(root.WithoutHeaders, leaf.WithoutHeaders)
	out.QueryParams = mergeMaps(root.QueryParams, leaf.QueryParams)
	if out.Port == 0 {
		out.Port = root.Port
	}
	out.SourceLabels = mergeMaps(root.SourceLabels, leaf.SourceLabels)
	if out.SourceNamespace == "" {
		out.SourceNamespace = root.SourceNamespace
	}
	if len(out.Gateways) == 0 {
		out.Gateways = root.Gateways
	}
	if out.StatPrefix == "" {
		out.StatPrefix = root.StatPrefix
	}
	return out
}

// mergeMaps is Istio's maps.MergeCopy: a copy of base with extra's entries
// added or replacing; nil when both are empty.
func mergeMaps[V any](base, extra map[string]V) map[string]V {
	if len(base) == 0 && len(extra) == 0 {
		return nil
	}
	out := maps.Clone(base)
	if out == nil {
		out = make(map[string]V, len(extra))
	}
	maps.Copy(out, extra)
	return out
}

// matchConflict is Istio's hasConflict: whether the delegate alternative
// leaf is not within the root alternative.
func matchConflict(root, leaf *networking.HTTPMatchRequest) bool {
	roots := []*networking.StringMatch{root.Uri, root.Scheme, root.Method, root.Authority}
	leaves := []*networking.StringMatch{leaf.Uri, leaf.Scheme, leaf.Method, leaf.Authority}
	for i := range roots {
		if stringMatchConflict(roots[i], leaves[i]) {
			return true
		}
	}
	for key, v := range leaf.Headers {
		if stringMatchConflict(root.Headers[key], v) {
			return true
		}
	}
	for key, v := range leaf.WithoutHeaders {
		if stringMatchConflict(root.WithoutHeaders[key], v) {
			return true
		}
	}
	for key, v := range leaf.QueryParams {
		if stringMatchConflict(root.QueryParams[key], v) {
			return true
		}
	}
	if root.IgnoreUriCase != leaf.IgnoreUriCase {
		return true
	}
	if root.Port > 0 && leaf.Port > 0 && root.Port != leaf.Port {
		return true
	}
	if root.SourceNamespace != "" && leaf.SourceNamespace != root.SourceNamespace {
		return true
	}
	for key, v := range leaf.SourceLabels {
		if rv, ok := root.SourceLabels[key]; ok && rv != v {
			return true
		}
	}
	if len(root.Gateways) > 0 && len(leaf.Gateways) > 0 {
		if len(root.Gateways) < len(leaf.Gateways) {
			return true
		}
		for _, gw := range leaf.Gateways {
			if !slices.Contains(root.Gateways, gw) {
				return true
			}
		}
	}
	return false
}

// stringMatchConflict is Istio's stringMatchConflict: leaf must narrow
// root (an exact equal to root's exact, or an exact or prefix under root's
// prefix); regexes only combine with an unset side.
func stringMatchConflict(root, leaf *networking.StringMatch) bool {
	if root == nil || leaf == nil {
		return false
	}
	if root.GetRegex() != "" && (leaf.GetRegex() != "" || leaf.GetPrefix() != "" || leaf.GetExact() != "") {
		return true
	}
	if leaf.GetRegex() != "" && (root.GetRegex() != "" || root.GetPrefix() != "" || root.GetExact() != "") {
		return true
	}
	if exact := root.GetExact(); exact != "" {
		return leaf.GetPrefix() != "" || leaf.GetExact() != exact
	}
	if prefix := root.GetPrefix(); prefix != "" {
		if leaf.GetPrefix() != "" {
			return !strings.HasPrefix(leaf.GetPrefix(), prefix)
		}
		if leaf.GetExact() != "" {
			return !strings.HasPrefix(leaf.GetExact(), prefix)
		}
	}
	return true
}
