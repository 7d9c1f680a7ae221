package istioroute

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// CORSPolicy.UnmatchedPreflights values.
const (
	unmatchedPreflightsForward = "FORWARD"
	unmatchedPreflightsIgnore  = "IGNORE"
)

// corsPolicy is a compiled CORSPolicy, run as Envoy's CORS filter.
type corsPolicy struct {
	origins          []stringMatcher
	allowMethods     string
	allowHeaders     string
	exposeHeaders    string
	maxAge           string
	allowCredentials bool
	forwardUnmatched bool
}

// compileCORS compiles p; nil gives nil.
func compileCORS(p *CORSPolicy) (*corsPolicy, error) {
	if p == nil {
		return nil, nil
	}
	c := &corsPolicy{
		allowMethods:     strings.Join(p.AllowMethods, ","),
		allowHeaders:     strings.Join(p.AllowHeaders, ","),
		exposeHeaders:    strings.Join(p.ExposeHeaders, ","),
		allowCredentials: p.AllowCredentials != nil && *p.AllowCredentials,
	}
	switch p.UnmatchedPreflights {
	case "", unmatchedPreflightsForward, "UNSPECIFIED":
		c.forwardUnmatched = true
	case unmatchedPreflightsIgnore:
	default:
		return nil, fmt.Errorf("unknown unmatched_preflights %q", p.UnmatchedPreflights)
	}
	if p.MaxAge < 0 {
		return nil, fmt.Errorf("negative max_age %d", p.MaxAge)
	}
	if p.MaxAge > 0 {
		c.maxAge = strconv.FormatInt(p.MaxAge, 10)
	}
	for i, sm := range p.AllowOrigins {
		if sm == nil {
			return nil, fmt.Errorf("allow_origins %d: null", i)
		}
		m, err := compileStringMatch(sm)
		if err != nil {
			return nil, fmt.Errorf("allow_origins %d: %v", i, err)
		}
		c.origins = append(c.origins, m)
	}
	return c, nil
}

// allows reports whether origin matches one of the allowed origins.
func (c *corsPolicy) allows(origin string) bool {
	for i := range c.origins {
		if c.origins[i].matches(origin) {
			return true
		}
	}
	return false
}

// handle runs the CORS filter before the route's action. It answers a
// preflight itself (done is true), or returns the origin whose response
// gets CORS headers ("" for none).
func (c *corsPolicy) handle(w http.ResponseWriter, r *http.Request) (allowedOrigin string, done bool) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return "", false
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !c.allows(origin) {
		if preflight && !c.forwardUnmatched {
			w.WriteHeader(http.StatusOK)
			return "", true
		}
		return "", false
	}
	if !preflight {
		return origin, false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if c.allowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.allowMethods != "" {
		h.Set("Access-Control-Allow-Methods", c.allowMethods)
	}
	if c.allowHeaders != "" {
		h.Set("Access-Control-Allow-Headers", c.allowHeaders)
	}
	if c.maxAge != "" {
		h.Set("Access-Control-Max-Age", c.maxAge)
	}
	w.WriteHeader(http.StatusOK)
	return "", true
}

// setResponseHeaders adds the CORS headers of an allowed, non-preflight
// request to its response.
func (c *corsPolicy) setResponseHeaders(h http.Header, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	if c.allowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if c.exposeHeaders != "" {
		h.Set("Access-Control-Expose-Headers", c.exposeHeaders)
	}
}
