package istioroute

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Redirect.DerivePort values.
const (
	deriveFromProtocolDefault = "FROM_PROTOCOL_DEFAULT"
	deriveFromRequestPort     = "FROM_REQUEST_PORT"
)

// redirect is a compiled Redirect, building the Location as Envoy's
// RedirectAction does.
type redirect struct {
	uri           string
	uriHasQuery   bool
	prefixRewrite string
	authority     string
	scheme        string
	// port is ":N" for an explicit port, "" otherwise.
	port            string
	fromRequestPort bool
	code            int
}

// compileRedirect checks rd and sets its defaults (code 301).
func compileRedirect(rd *Redirect) (*redirect, error) {
	c := &redirect{
		uri:           rd.URI,
		uriHasQuery:   strings.Contains(rd.URI, "?"),
		prefixRewrite: rd.PrefixRewrite,
		authority:     rd.Authority,
		scheme:        rd.Scheme,
		code:          rd.RedirectCode,
	}
	if rd.URI != "" && rd.PrefixRewrite != "" {
		return nil, fmt.Errorf("uri and prefix_rewrite are exclusive")
	}
	switch c.code {
	case 0:
		c.code = http.StatusMovedPermanently
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, fmt.Errorf("redirect_code %d: must be 301, 302, 303, 307 or 308", c.code)
	}
	if rd.Port > 65535 {
		return nil, fmt.Errorf("port %d: must be in 1..65535", rd.Port)
	}
	switch rd.DerivePort {
	case "", deriveFromProtocolDefault:
	case deriveFromRequestPort:
		if rd.Port != 0 {
			return nil, fmt.Errorf("port and derive_port are exclusive")
		}
		c.fromRequestPort = true
	default:
		return nil, fmt.Errorf("unknown derive_port %q", rd.DerivePort)
	}
	if rd.Port != 0 {
		c.port = ":" + strconv.FormatUint(uint64(rd.Port), 10)
	}
	return c, nil
}

// serve answers r with the redirect. matchedLen is the length of the path
// prefix the route matched, which prefix_rewrite replaces.
func (rd *redirect) serve(w http.ResponseWriter, ri *requestInfo, matchedLen int) {
	w.Header().Set("Location", rd.location(ri, matchedLen))
	w.WriteHeader(rd.code)
}

// location builds scheme://host[:port]/path[?query].
func (rd *redirect) location(ri *requestInfo, matchedLen int) string {
	r := ri.r
	scheme := rd.scheme
	if scheme == "" {
		scheme = ri.scheme
	}

	port := rd.port
	if rd.fromRequestPort {
		port = listenerPort(r)
	}
	if (scheme == "http" && port == ":80") || (scheme == "https" && port == ":443") {
		port = ""
	}

	host := rd.authority
	if host == "" {
		host = requestHostForRedirect(r.Host, ri.scheme, scheme, rd.fromRequestPort || rd.port != "")
	}

	var path string
	switch {
	case rd.uri != "":
		path = rd.uri
		if !rd.uriHasQuery && r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
	case rd.prefixRewrite != "":
		path = rd.prefixRewrite + ri.path[min(matchedLen, len(ri.path)):]
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
	default:
		path = ri.path
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return scheme + "://" + host + port + path
}

// requestHostForRedirect is Envoy's processRequestHost: the request's Host
// keeps its port, unless the redirect sets a port, or changes the scheme
// away from one whose default port the Host names.
func requestHostForRedirect(host, requestScheme, newScheme string, newPort bool) string {
	if host == "" {
		return host
	}
	var i int
	if host[0] == '[' {
		i = strings.LastIndex(host, "]:")
		if i >= 0 {
			i++
		}
	} else {
		i = strings.LastIndexByte(host, ':')
	}
	if i < 0 {
		return host
	}
	remove := newPort
	if newScheme != requestScheme {
		requestPort := host[i:]
		remove = remove || (requestScheme == "https" && requestPort == ":443") ||
			(requestScheme == "http" && requestPort == ":80")
	}
	if remove {
		return host[:i]
	}
	return host
}

// listenerPort is ":N" for the local port the request arrived on, which
// Istio uses for FROM_REQUEST_PORT, or "" if unknown.
func listenerPort(r *http.Request) string {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return ""
	}
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil || port == "" {
		return ""
	}
	return ":" + port
}

// serveDirectResponse answers with the route's fixed status and body. As
// Envoy's local replies, a body is sent as text/plain unless a content type
// was already set.
func serveDirectResponse(w http.ResponseWriter, dr *DirectResponse) {
	if len(dr.Body) > 0 {
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "text/plain")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(dr.Body)))
	}
	w.WriteHeader(dr.Status)
	if len(dr.Body) > 0 {
		_, _ = w.Write(dr.Body)
	}
}
