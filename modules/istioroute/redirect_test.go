package istioroute

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRedirectLocation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		redirect Redirect
		match    *Match // the alternative that matched; nil: none
		target   string
		host     string
		tls      bool
		local    string // listener address
		want     string
	}{
		{name: "uri replaces the path and keeps the query", redirect: Redirect{URI: "/new"},
			target: "/old/x?a=1", host: "example.com", want: "http://example.com/new?a=1"},
		{name: "uri with its own query replaces the query", redirect: Redirect{URI: "/new?b=2"},
			target: "/old?a=1", host: "example.com", want: "http://example.com/new?b=2"},
		{name: "no uri keeps path and query", redirect: Redirect{Authority: "other.com"},
			target: "/p/q?a=1", host: "example.com", want: "http://other.com/p/q?a=1"},
		{name: "prefix_rewrite replaces the matched prefix", redirect: Redirect{PrefixRewrite: "/v2"}, match: &Match{URI: prefix("/v1")},
			target: "/v1/items?a=1", host: "example.com", want: "http://example.com/v2/items?a=1"},
		{name: "prefix_rewrite with ignore_uri_case", redirect: Redirect{PrefixRewrite: "/v2"}, match: &Match{URI: prefix("/v1"), IgnoreURICase: true},
			target: "/V1/items", host: "example.com", want: "http://example.com/v2/items"},
		{name: "prefix_rewrite after an exact match replaces the path", redirect: Redirect{PrefixRewrite: "/new"}, match: &Match{URI: exact("/old")},
			target: "/old?a=1", host: "example.com", want: "http://example.com/new?a=1"},
		{name: "prefix_rewrite after a regex match replaces the path", redirect: Redirect{PrefixRewrite: "/new"}, match: &Match{URI: regex("/o.*")},
			target: "/old/x", host: "example.com", want: "http://example.com/new"},
		{name: "prefix_rewrite without uri match replaces /", redirect: Redirect{PrefixRewrite: "/bar/"},
			target: "/foo", host: "example.com", want: "http://example.com/bar/foo"},
		{name: "authority replaces the host and its port", redirect: Redirect{Authority: "new.example.com"},
			target: "/", host: "example.com:8080", want: "http://new.example.com/"},
		{name: "scheme change strips the old default port", redirect: Redirect{Scheme: "https"},
			target: "/login", host: "example.com:80", want: "https://example.com/login"},
		{name: "scheme change keeps another port", redirect: Redirect{Scheme: "https"},
			target: "/", host: "example.com:8080", want: "https://example.com:8080/"},
		{name: "https to http strips :443", redirect: Redirect{Scheme: "http"}, tls: true,
			target: "/", host: "example.com:443", want: "http://example.com/"},
		{name: "same scheme keeps :80 of the request", redirect: Redirect{URI: "/x"},
			target: "/", host: "example.com:80", want: "http://example.com:80/x"},
		{name: "scheme follows the connection", redirect: Redirect{URI: "/x"}, tls: true,
			target: "/", host: "example.com", want: "https://example.com/x"},
		{name: "port replaces the request port", redirect: Redirect{Port: 8443},
			target: "/", host: "example.com:9090", want: "http://example.com:8443/"},
		{name: "port 80 is omitted for http", redirect: Redirect{Port: 80},
			target: "/", host: "example.com:9090", want: "http://example.com/"},
		{name: "port 443 is omitted for https", redirect: Redirect{Port: 443, Scheme: "https"},
			target: "/", host: "example.com", want: "https://example.com/"},
		{name: "port 443 is kept for http", redirect: Redirect{Port: 443},
			target: "/", host: "example.com", want: "http://example.com:443/"},
		{name: "port with authority", redirect: Redirect{Port: 8080, Authority: "a.example.com"},
			target: "/", host: "example.com", want: "http://a.example.com:8080/"},
		{name: "FROM_REQUEST_PORT uses the listener port", redirect: Redirect{DerivePort: "FROM_REQUEST_PORT", Scheme: "https"},
			target: "/", host: "example.com:8000", local: "127.0.0.1:8443", want: "https://example.com:8443/"},
		{name: "FROM_PROTOCOL_DEFAULT keeps the host as sent", redirect: Redirect{DerivePort: "FROM_PROTOCOL_DEFAULT", URI: "/x"},
			target: "/", host: "example.com:8000", want: "http://example.com:8000/x"},
		{name: "ipv6 host", redirect: Redirect{Port: 9000},
			target: "/", host: "[::1]:8080", want: "http://[::1]:9000/"},
		{name: "escaped path stays escaped", redirect: Redirect{Authority: "b.com"},
			target: "/a%20b", host: "a.com", want: "http://b.com/a%20b"},
		{name: "uri without leading slash", redirect: Redirect{URI: "x"},
			target: "/", host: "a.com", want: "http://a.com/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := compileRedirect(&tc.redirect)
			if err != nil {
				t.Fatal(err)
			}
			var m *match
			if tc.match != nil {
				if m, err = compileMatch(tc.match); err != nil {
					t.Fatal(err)
				}
			}
			req := httptest.NewRequest(http.MethodGet, tc.target, nil)
			req.Host = tc.host
			req.TLS = nil
			if tc.tls {
				req.TLS = &tls.ConnectionState{}
			}
			if tc.local != "" {
				addr, err := net.ResolveTCPAddr("tcp", tc.local)
				if err != nil {
					t.Fatal(err)
				}
				req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, addr))
			}
			ri := newRequestInfo(req)
			rec := httptest.NewRecorder()
			rd.serve(rec, &ri, m.matchedPrefixLen(ri.path))
			if got := rec.Header().Get("Location"); got != tc.want {
				t.Errorf("Location = %q, want %q", got, tc.want)
			}
			if rec.Code != http.StatusMovedPermanently {
				t.Errorf("status %d, want the default 301", rec.Code)
			}
			if rec.Body.Len() != 0 {
				t.Errorf("body %q, want none", rec.Body.String())
			}
		})
	}
}

func TestRedirectCodes(t *testing.T) {
	for _, code := range []int{301, 302, 303, 307, 308} {
		rd, err := compileRedirect(&Redirect{URI: "/x", RedirectCode: code})
		if err != nil {
			t.Fatalf("code %d: %v", code, err)
		}
		req := httptest.NewRequest(http.MethodPost, "http://a.com/", nil)
		ri := newRequestInfo(req)
		rec := httptest.NewRecorder()
		rd.serve(rec, &ri, 1)
		if rec.Code != code {
			t.Errorf("status %d, want %d", rec.Code, code)
		}
	}
	for _, tc := range []struct {
		redirect Redirect
		want     string
	}{
		{Redirect{URI: "/x", RedirectCode: 300}, "redirect_code 300"},
		{Redirect{URI: "/x", RedirectCode: 200}, "redirect_code 200"},
		{Redirect{URI: "/x", PrefixRewrite: "/y"}, "exclusive"},
		{Redirect{Port: 80, DerivePort: "FROM_REQUEST_PORT"}, "exclusive"},
		{Redirect{DerivePort: "FROM_SOMEWHERE"}, "unknown derive_port"},
		{Redirect{Port: 70000}, "must be in 1..65535"},
	} {
		if _, err := compileRedirect(&tc.redirect); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error = %v, want %q", tc.redirect, err, tc.want)
		}
	}
}

func TestDirectResponse(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dr         DirectResponse
		presetType string
		wantType   string
		wantBody   string
		wantCode   int
		wantLength string
	}{
		{name: "status and body", dr: DirectResponse{Status: 503, Body: []byte("unavailable")},
			wantType: "text/plain", wantBody: "unavailable", wantCode: 503, wantLength: "11"},
		{name: "status only", dr: DirectResponse{Status: 204}, wantCode: 204},
		{name: "content type set before is kept", dr: DirectResponse{Status: 200, Body: []byte(`{"a":1}`)},
			presetType: "application/json", wantType: "application/json", wantBody: `{"a":1}`, wantCode: 200, wantLength: "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if tc.presetType != "" {
				rec.Header().Set("Content-Type", tc.presetType)
			}
			serveDirectResponse(rec, &tc.dr)
			if rec.Code != tc.wantCode || rec.Body.String() != tc.wantBody ||
				rec.Header().Get("Content-Type") != tc.wantType || rec.Header().Get("Content-Length") != tc.wantLength {
				t.Errorf("got %d %q type %q length %q, want %d %q type %q length %q",
					rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"), rec.Header().Get("Content-Length"),
					tc.wantCode, tc.wantBody, tc.wantType, tc.wantLength)
			}
		})
	}
}
