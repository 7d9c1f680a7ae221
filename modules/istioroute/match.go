package istioroute

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// matchKind is what a compiled StringMatch tests.
type matchKind uint8

const (
	// matchPresent holds for any value that is present (StringMatch {}).
	matchPresent matchKind = iota
	matchExact
	matchPrefix
	matchRegex
)

// stringMatcher is a compiled StringMatch.
type stringMatcher struct {
	kind  matchKind
	value string
	regex *regexp.Regexp
}

// compileStringMatch compiles sm. A regex must match the whole value, as
// Envoy's safe_regex does; RE2 and Go's regexp have the same syntax.
func compileStringMatch(sm *StringMatch) (stringMatcher, error) {
	set := 0
	var m stringMatcher
	if sm.Exact != nil {
		set++
		m = stringMatcher{kind: matchExact, value: *sm.Exact}
	}
	if sm.Prefix != nil {
		set++
		m = stringMatcher{kind: matchPrefix, value: *sm.Prefix}
	}
	if sm.Regex != nil {
		set++
		re, err := regexp.Compile("^(?:" + *sm.Regex + ")$")
		if err != nil {
			return m, fmt.Errorf("regex %q: %v", *sm.Regex, err)
		}
		m = stringMatcher{kind: matchRegex, value: *sm.Regex, regex: re}
	}
	if set > 1 {
		return m, fmt.Errorf("only one of exact, prefix and regex may be set")
	}
	return m, nil
}

// matches reports whether the present value s matches.
func (m *stringMatcher) matches(s string) bool {
	switch m.kind {
	case matchExact:
		return s == m.value
	case matchPrefix:
		return strings.HasPrefix(s, m.value)
	case matchRegex:
		return m.regex.MatchString(s)
	}
	return true
}

// matchesFold is matches with exact and prefix ignoring ASCII case
// (ignoreUriCase); a regex stays case-sensitive unless it says (?i).
func (m *stringMatcher) matchesFold(s string) bool {
	switch m.kind {
	case matchExact:
		return strings.EqualFold(s, m.value)
	case matchPrefix:
		return len(s) >= len(m.value) && strings.EqualFold(s[:len(m.value)], m.value)
	}
	return m.matches(s)
}

// headerSource says where a header matcher reads its value. Go moves Host
// out of the header map, and Envoy exposes pseudo-headers by name.
type headerSource uint8

const (
	fromHeader headerSource = iota
	fromAuthority
	fromMethod
	fromScheme
	fromPath
)

// headerMatcher is one entry of headers or without_headers.
type headerMatcher struct {
	name   string // as configured, for errors
	key    string // canonical key in http.Header
	source headerSource
	match  stringMatcher
}

// queryMatcher is one entry of query_params.
type queryMatcher struct {
	name  string
	match stringMatcher
}

// match is a compiled Match: every set condition must hold.
type match struct {
	uri, scheme, method, authority *stringMatcher
	ignoreURICase                  bool
	headers                        []headerMatcher
	withoutHeaders                 []headerMatcher
	queryParams                    []queryMatcher

	// stats are the Envoy route statistics of this alternative, when it
	// has a stat prefix.
	stats *routeStats
}

// requestInfo holds the request values that several matchers read,
// computed once per request.
type requestInfo struct {
	r *http.Request
	// path is the path, normalized as the handler's path_normalization
	// says and still escaped, without the query.
	path   string
	scheme string
}

// requestInfoFor reads r, whose escaped path is path.
func requestInfoFor(r *http.Request, path string) requestInfo {
	if path == "" {
		path = "/" // absolute-form request without a path
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return requestInfo{r: r, path: path, scheme: scheme}
}

// compileMatch compiles m. Header and query keys are sorted so evaluation
// order does not depend on map order.
func compileMatch(m *Match) (*match, error) {
	cm := &match{ignoreURICase: m.IgnoreURICase}
	for _, f := range []struct {
		name string
		sm   *StringMatch
		dst  **stringMatcher
	}{
		{"uri", m.URI, &cm.uri},
		{"scheme", m.Scheme, &cm.scheme},
		{"method", m.Method, &cm.method},
		{"authority", m.Authority, &cm.authority},
	} {
		if f.sm == nil {
			continue
		}
		sm, err := compileStringMatch(f.sm)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f.name, err)
		}
		if sm.kind != matchPresent { // {} matches anything
			*f.dst = &sm
		}
	}
	var err error
	if cm.headers, err = compileHeaderMatchers(m.Headers); err != nil {
		return nil, fmt.Errorf("headers: %v", err)
	}
	if cm.withoutHeaders, err = compileHeaderMatchers(m.WithoutHeaders); err != nil {
		return nil, fmt.Errorf("without_headers: %v", err)
	}
	for _, name := range slices.Sorted(maps.Keys(m.QueryParams)) {
		sm, err := compileStringMatch(nonNil(m.QueryParams[name]))
		if err != nil {
			return nil, fmt.Errorf("query_params %q: %v", name, err)
		}
		cm.queryParams = append(cm.queryParams, queryMatcher{name: name, match: sm})
	}
	return cm, nil
}

func compileHeaderMatchers(headers map[string]*StringMatch) ([]headerMatcher, error) {
	var out []headerMatcher
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		sm := nonNil(headers[name])
		if sm.Regex != nil && *sm.Regex == "*" && sm.Exact == nil && sm.Prefix == nil {
			sm = &StringMatch{} // Istio reads regex "*" as "present"
		}
		compiled, err := compileStringMatch(sm)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", name, err)
		}
		hm := headerMatcher{name: name, key: http.CanonicalHeaderKey(name), match: compiled}
		switch strings.ToLower(name) {
		case "host", ":authority":
			hm.source = fromAuthority
		case ":method":
			hm.source = fromMethod
		case ":scheme":
			hm.source = fromScheme
		case ":path":
			hm.source = fromPath
		}
		out = append(out, hm)
	}
	return out, nil
}

// matches reports whether the request satisfies every condition of m.
func (m *match) matches(ri *requestInfo) bool {
	if m.uri != nil {
		if m.ignoreURICase {
			if !m.uri.matchesFold(ri.path) {
				return false
			}
		} else if !m.uri.matches(ri.path) {
			return false
		}
	}
	if m.scheme != nil && !m.scheme.matches(ri.scheme) {
		return false
	}
	if m.method != nil && !m.method.matches(ri.r.Method) {
		return false
	}
	if m.authority != nil && !m.authority.matches(ri.r.Host) {
		return false
	}
	for i := range m.headers {
		value, present := m.headers[i].value(ri)
		if !present || !m.headers[i].match.matches(value) {
			return false
		}
	}
	for i := range m.withoutHeaders {
		hm := &m.withoutHeaders[i]
		value, present := hm.value(ri)
		var matched bool
		if hm.match.kind == matchPresent {
			matched = present
		} else {
			// Istio sets treat_missing_header_as_empty on these.
			matched = hm.match.matches(value)
		}
		if matched {
			return false
		}
	}
	for i := range m.queryParams {
		value, present := queryValue(ri.r.URL.RawQuery, m.queryParams[i].name)
		if !present || !m.queryParams[i].match.matches(value) {
			return false
		}
	}
	return true
}

// matchedPrefixLen is the length of the path prefix that this match
// alternative matched, which a redirect's prefix_rewrite replaces: the
// prefix of a prefix match, the whole path of an exact or regex match, and
// "/" when the alternative has no uri condition (Istio then emits prefix "/").
func (m *match) matchedPrefixLen(path string) int {
	if m == nil || m.uri == nil {
		return min(1, len(path))
	}
	if m.uri.kind == matchPrefix {
		return len(m.uri.value)
	}
	return len(path)
}

// value returns the header's value, several values joined with "," as Envoy
// does, and whether it is present.
func (hm *headerMatcher) value(ri *requestInfo) (string, bool) {
	switch hm.source {
	case fromAuthority:
		return ri.r.Host, ri.r.Host != ""
	case fromMethod:
		return ri.r.Method, true
	case fromScheme:
		return ri.scheme, true
	case fromPath:
		return ri.r.RequestURI, true
	}
	values := ri.r.Header[hm.key]
	switch len(values) {
	case 0:
		return "", false
	case 1:
		return values[0], true
	}
	return strings.Join(values, ","), true
}

// queryValue returns the first value of the query parameter name in
// rawQuery, decoded, and whether it is present ("?k" and "?k=" give "").
// It allocates only to decode escaped keys or values.
func queryValue(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		key, value, _ := strings.Cut(pair, "=")
		if key != name {
			if !needsUnescape(key) || unescapeQuery(key) != name {
				continue
			}
		}
		if needsUnescape(value) {
			value = unescapeQuery(value)
		}
		return value, true
	}
	return "", false
}

func needsUnescape(s string) bool {
	return strings.ContainsAny(s, "%+")
}

// unescapeQuery decodes s as a query component, or returns it as is when
// it is not valid escaping.
func unescapeQuery(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// nonNil treats a null StringMatch as {}.
func nonNil(sm *StringMatch) *StringMatch {
	if sm == nil {
		return &StringMatch{}
	}
	return sm
}
