package istioroute

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// headerValue is one header of a set or add operation.
type headerValue struct {
	key, value string
}

// headerOps is a compiled HeaderOperations, applied as Envoy's header
// parser does: removals first, then sets (overwrite or add), then adds
// (another value). Keys are canonical and sorted, as Istio sorts them.
type headerOps struct {
	remove []string
	set    []headerValue
	add    []headerValue
}

// compileHeaderOps compiles ops; nil or empty gives nil.
func compileHeaderOps(ops *HeaderOperations) (*headerOps, error) {
	if ops == nil || len(ops.Set)+len(ops.Add)+len(ops.Remove) == 0 {
		return nil, nil
	}
	c := new(headerOps)
	for _, name := range ops.Remove {
		if err := checkHeaderName(name); err != nil {
			return nil, fmt.Errorf("remove: %v", err)
		}
		c.remove = append(c.remove, http.CanonicalHeaderKey(name))
	}
	var err error
	if c.set, err = headerValues(ops.Set); err != nil {
		return nil, fmt.Errorf("set: %v", err)
	}
	if c.add, err = headerValues(ops.Add); err != nil {
		return nil, fmt.Errorf("add: %v", err)
	}
	sort.Strings(c.remove)
	return c, nil
}

// headerValues turns a map of headers into sorted canonical values.
func headerValues(m map[string]string) ([]headerValue, error) {
	var out []headerValue
	for name, value := range m {
		if err := checkHeaderName(name); err != nil {
			return nil, err
		}
		out = append(out, headerValue{key: http.CanonicalHeaderKey(name), value: value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out, nil
}

// checkHeaderName rejects names the adapter should have turned into an
// authority rewrite or dropped, as Istio does with host and pseudo-headers.
func checkHeaderName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty header name")
	case strings.HasPrefix(name, ":") || strings.EqualFold(name, "host"):
		return fmt.Errorf("header %q: host and pseudo-headers cannot be changed here (use rewrite.authority)", name)
	}
	return nil
}

// apply changes h.
func (o *headerOps) apply(h http.Header) {
	if o == nil {
		return
	}
	for _, key := range o.remove {
		delete(h, key)
	}
	for _, hv := range o.set {
		h[hv.key] = []string{hv.value}
	}
	for _, hv := range o.add {
		h[hv.key] = append(h[hv.key], hv.value)
	}
}

// headerOpsList applies several operations in order: a later one wins on
// set conflicts (destination operations come after the route's).
type headerOpsList []*headerOps

func (l headerOpsList) apply(h http.Header) {
	for _, o := range l {
		o.apply(h)
	}
}

// compileHeaders compiles the request and response operations of hs.
func compileHeaders(hs *Headers) (request, response *headerOps, err error) {
	if hs == nil {
		return nil, nil, nil
	}
	if request, err = compileHeaderOps(hs.Request); err != nil {
		return nil, nil, fmt.Errorf("request: %v", err)
	}
	if response, err = compileHeaderOps(hs.Response); err != nil {
		return nil, nil, fmt.Errorf("response: %v", err)
	}
	return request, response, nil
}

// joinOps lists the non-nil operations in order.
func joinOps(ops ...*headerOps) headerOpsList {
	var l headerOpsList
	for _, o := range ops {
		if o != nil {
			l = append(l, o)
		}
	}
	return l
}

// responseEditor changes the final response headers just before they are
// written: the route's response header operations and the CORS headers of
// an allowed cross-origin request. Informational responses pass untouched.
type responseEditor struct {
	*caddyhttp.ResponseWriterWrapper
	ops         headerOpsList
	cors        *corsPolicy
	corsOrigin  string
	wroteHeader bool
}

// edit applies the changes to h.
func (e *responseEditor) edit(h http.Header) {
	e.ops.apply(h)
	if e.corsOrigin != "" {
		e.cors.setResponseHeaders(h, e.corsOrigin)
	}
}

func (e *responseEditor) WriteHeader(code int) {
	if !e.wroteHeader && (code >= 200 || code == http.StatusSwitchingProtocols) {
		e.wroteHeader = true
		e.edit(e.ResponseWriter.Header())
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *responseEditor) Write(p []byte) (int, error) {
	if !e.wroteHeader {
		e.WriteHeader(http.StatusOK)
	}
	return e.ResponseWriter.Write(p)
}

// ReadFrom keeps the edit when the body is copied with io.Copy.
func (e *responseEditor) ReadFrom(r io.Reader) (int64, error) {
	if !e.wroteHeader {
		e.WriteHeader(http.StatusOK)
	}
	return e.ResponseWriterWrapper.ReadFrom(r)
}

// Interface guards
var _ http.ResponseWriter = (*responseEditor)(nil)
