package istioroute

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// rewrite is a compiled Rewrite.
type rewrite struct {
	uri       string
	regex     *regexp.Regexp
	regexRepl string // in Go's expansion syntax
	authority string
}

// compileRewrite checks rw; nil or empty gives nil.
func compileRewrite(rw *Rewrite) (*rewrite, error) {
	if rw == nil || (rw.URI == "" && rw.URIRegex == nil && rw.Authority == "") {
		return nil, nil
	}
	c := &rewrite{uri: rw.URI, authority: rw.Authority}
	if rw.URIRegex != nil {
		if rw.URI != "" {
			return nil, fmt.Errorf("uri and uri_regex are exclusive")
		}
		if rw.URIRegex.Match == "" {
			return nil, fmt.Errorf("uri_regex: match is required")
		}
		re, err := regexp.Compile(rw.URIRegex.Match)
		if err != nil {
			return nil, fmt.Errorf("uri_regex: match %q: %v", rw.URIRegex.Match, err)
		}
		c.regex = re
		c.regexRepl = goExpansion(rw.URIRegex.Rewrite)
	}
	return c, nil
}

// backreference is an RE2 substitution group reference, \1.
var backreference = regexp.MustCompile(`\\(\d+)`)

// goExpansion turns an Envoy (RE2) substitution, where \N names a group,
// into Go's Regexp.Expand syntax, where $ is special and groups are ${N}.
func goExpansion(s string) string {
	s = strings.ReplaceAll(s, "$", "$$")
	return backreference.ReplaceAllString(s, "$${$1}")
}

// apply rewrites the request that goes upstream. path is its normalized,
// escaped path and matchedLen the length of the prefix the route matched,
// which a uri rewrite replaces (Envoy's prefix_rewrite: the whole path for
// an exact or regex match, "/" for an alternative without uri condition).
// The query string is kept.
func (rw *rewrite) apply(r *http.Request, path string, matchedLen int) {
	newPath := path
	switch {
	case rw.uri != "":
		newPath = rw.uri + path[min(matchedLen, len(path)):]
	case rw.regex != nil:
		newPath = rw.regex.ReplaceAllString(path, rw.regexRepl)
	}
	if newPath != path {
		u := *r.URL
		if decoded, err := url.PathUnescape(newPath); err == nil {
			u.Path, u.RawPath = decoded, newPath
		} else {
			u.Path, u.RawPath = newPath, ""
		}
		r.URL = &u
		r.RequestURI = u.RequestURI()
	}
	if rw.authority != "" {
		r.Host = rw.authority
	}
}
