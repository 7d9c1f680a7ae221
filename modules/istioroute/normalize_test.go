package istioroute

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

var allNormalizations = []struct {
	name string
	mode pathNormalization
}{
	{pathNormalizationNone, normalizeNone},
	{pathNormalizationBase, normalizeBase},
	{pathNormalizationMergeSlashes, normalizeMergeSlashes},
	{pathNormalizationDecodeAndMergeSlashes, normalizeDecodeAndMergeSlashes},
}

// TestNormalizePath holds the cases of Envoy's path_utility_test.cc
// (PathUtilityTest, PathTransformerTest) and of Istio's normalization pages
// (reference/config/security/normalization, and the path normalization
// table of the security best practices).
func TestNormalizePath(t *testing.T) {
	// want lists the result under BASE, MERGE_SLASHES and
	// DECODE_AND_MERGE_SLASHES; "" means the path is rejected.
	type want struct{ base, merge, decode string }
	same := func(s string) want { return want{s, s, s} }
	for _, tc := range []struct {
		in   string
		want want
	}{
		// Envoy: already normal paths do not change.
		{"/xyz", same("/xyz")},
		{"/x/y/z", same("/x/y/z")},
		{"/", same("/")},

		// Envoy: NormalizeValidPaths.
		{"/a/b/../c", same("/a/c")},
		{"/a/b/./c", same("/a/b/c")},
		{"a/b/../c", same("/a/c")},
		{"/a/b/../../../../c", same("/c")},
		{`/a/..\c`, same("/c")},
		{"/%c0%af", same("/%c0%af")},
		{"/%5c%25", want{"/%5c%25", "/%5c%25", "/%25"}},
		{"/a/b/%2E%2E/c", same("/a/c")},
		{"/a/b/%2E./c", same("/a/c")},
		{"/a/b/%2E/c", same("/a/b/c")},
		{"..", same("/")},
		{"/../a/b", same("/a/b")},
		{"/./a/b", same("/a/b")},

		// Envoy: NormalizeCasePath. Kept escapes keep their hex case.
		{"/A/B/C", same("/A/B/C")},
		{"/a/b/%2e%2e/c", same("/a/c")},
		{"/a/%2F%2f/c", want{"/a/%2F%2f/c", "/a/%2F%2f/c", "/a/c"}},

		// Envoy: InvalidPaths.
		{"/xyz/.%00../abc", same("")},
		{"/xyz/%00.%00./abc", same("")},
		{"/xyz/AAAAA%%0000/abc", same("")},
		{"/a%00", same("")},
		{"/a\x00b", same("")},

		// Envoy: MergeSlashes (after BASE, which leaves slashes alone).
		{"/a//b/c/", want{"/a//b/c/", "/a/b/c/", "/a/b/c/"}},
		{"//a/b/c", want{"//a/b/c", "/a/b/c", "/a/b/c"}},
		{"/a//b/c", want{"/a//b/c", "/a/b/c", "/a/b/c"}},
		{"/a/b/c//", want{"/a/b/c//", "/a/b/c/", "/a/b/c/"}},
		{"/a///b/c", want{"/a///b/c", "/a/b/c", "/a/b/c"}},
		{"/a////b/c", want{"/a////b/c", "/a/b/c", "/a/b/c"}},
		// Envoy's merge keeps a leading and a trailing slash, so a path of
		// slashes only stays "//".
		{"//", same("//")},
		{"///", want{"///", "//", "//"}},

		// Envoy: UnescapeSlashes (DECODE_AND_MERGE_SLASHES only).
		{"/a%2Fb%2fc/", want{"/a%2Fb%2fc/", "/a%2Fb%2fc/", "/a/b/c/"}},
		{"/a%5Cb%5cc/", want{"/a%5Cb%5cc/", "/a%5Cb%5cc/", "/a/b/c/"}},
		{"/a%2b", same("/a%2b")},
		{"/a%2F", want{"/a%2F", "/a%2F", "/a/"}},
		{"/%2fa/", want{"/%2fa/", "/%2fa/", "/a/"}},
		{"/a%252Fb", same("/a%252Fb")}, // decoded once only
		{"/a%2F..%2Fb", want{"/a%2F..%2Fb", "/a%2F..%2Fb", "/b"}},
		{"/a%2f%2fb", want{"/a%2f%2fb", "/a%2f%2fb", "/a/b"}},

		// Istio's best practices table.
		{"/a/../b", same("/b")},
		{`\da`, same("/da")},
		{"/a//b", want{"/a//b", "/a/b", "/a/b"}},
		{"/a%2fb", want{"/a%2fb", "/a%2fb", "/a/b"}},

		// Istio's normalization reference page.
		{"/some%2fdata/%61%62%63", want{"/some%2fdata/abc", "/some%2fdata/abc", "/some/data/abc"}},
		{`/some\data`, same("/some/data")},
		{"/some//data///abc", want{"/some//data///abc", "/some/data/abc", "/some/data/abc"}},
		{"/public/./data/abc/../xyz", same("/public/data/xyz")},
		{"/%2d%2e%30%39%41%5a%5f%61%7a%7e", same("/-.09AZ_az~")},
		{"/%2D%2E%5F%7E%41", same("/-._~A")},
		{"/%7e", same("/~")},
		{"/%41", same("/A")},

		// Dot segments: trailing, above the root, not segments.
		{"/a/b/..", same("/a/")},
		{"/a/b/.", same("/a/b/")},
		{"/a/b/../", same("/a/")},
		{"/a/%2e", same("/a/")},
		{"/..", same("/")},
		{"/../..", same("/")},
		{"/../../a/../..", same("/")},
		{"/.", same("/")},
		{"/...", same("/...")},
		{"/.a", same("/.a")},
		{"/a.", same("/a.")},
		{"/a/..b", same("/a/..b")},
		{"/a/b..", same("/a/b..")},
		{"/a%2e%2e", same("/a..")},
		{"/a/.%2e", same("/")},
		{"/a/b/..%2fc", want{"/a/b/..%2fc", "/a/b/..%2fc", "/a/c"}},
		{"//..", same("/")},
		{"/a//../b", same("/a/b")},
		{"/a/.//b", want{"/a//b", "/a/b", "/a/b"}},
		{`/a\.\b`, same("/a/b")},
		{`/a\..\b`, same("/b")},

		// Trailing slashes are kept.
		{"/a/", same("/a/")},
		{"/a/b/", same("/a/b/")},

		// Escapes of reserved and other characters are kept as sent.
		{"/a%20b", same("/a%20b")},
		{"/a%3ab%3A", same("/a%3ab%3A")},
		{"/a%25", same("/a%25")},
		{"/%252e%252e/", same("/%252e%252e/")},
		{"/a%23b%3f", same("/a%23b%3f")},
		{"/%e2%82%ac", same("/%e2%82%ac")},

		// Bytes that may not stay raw in a path are escaped.
		{`/a"b`, same("/a%22b")},
		{"/a{b}|^`", same("/a%7Bb%7D%7C%5E%60")},
		{"/a<b>", same("/a%3Cb%3E")},
		{"/é", same("/%C3%A9")},
		{"/a\tb\x7f", same("/a%09b%7F")},
		{"/a b", same("/a%20b")},

		// Characters that are fine raw stay raw.
		{"/a!$&'()*+,;=:@[]-._~", same("/a!$&'()*+,;=:@[]-._~")},

		// Invalid escapes (Go's server rejects them before this).
		{"/a%zz", same("")},
		{"/a%4", same("")},
		{"/a%", same("")},

		{"", same("/")},
	} {
		for _, m := range allNormalizations[1:] {
			want := map[pathNormalization]string{
				normalizeBase:                  tc.want.base,
				normalizeMergeSlashes:          tc.want.merge,
				normalizeDecodeAndMergeSlashes: tc.want.decode,
			}[m.mode]
			got, err := normalizePath(tc.in, m.mode)
			switch {
			case want == "" && err == nil:
				t.Errorf("%s %q = %q, want an error", m.name, tc.in, got)
			case want != "" && err != nil:
				t.Errorf("%s %q: %v, want %q", m.name, tc.in, err, want)
			case got != want:
				t.Errorf("%s %q = %q, want %q", m.name, tc.in, got, want)
			}
		}
		if got, err := normalizePath(tc.in, normalizeNone); err != nil || got != tc.in {
			t.Errorf("NONE %q = %q, %v; want it unchanged", tc.in, got, err)
		}
	}
}

func TestNormalizePathErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"/a%00", errNULInPath},
		{"/a\x00", errNULInPath},
		{"/a%0", errInvalidEscape},
		{"/a%g0", errInvalidEscape},
	} {
		if _, err := normalizePath(tc.in, normalizeBase); !errors.Is(err, tc.want) {
			t.Errorf("%q: error %v, want %v", tc.in, err, tc.want)
		}
	}
}

// TestNormalizePathFastPath checks that the fast path takes every path
// that is already normal without allocating, and agrees with the rewrite.
func TestNormalizePathFastPath(t *testing.T) {
	normal := []string{
		"/", "/productpage", "/api/v1/items/12345", "/a/b/", "/a.b/.c/..d/e..",
		"/search/hello%20world", "/a%2Fb", "/%C3%A9", "/a!$&'()*+,;=:@[]-._~",
	}
	for _, p := range normal {
		for _, m := range allNormalizations[1:] {
			if m.mode == normalizeDecodeAndMergeSlashes && strings.Contains(p, "%2F") {
				continue
			}
			if !isNormalPath(p, m.mode) {
				t.Errorf("%s: %q is not taken by the fast path", m.name, p)
				continue
			}
			if got, err := rewritePath(p, m.mode); err != nil || got != p {
				t.Errorf("%s: %q rewritten to %q, %v", m.name, p, got, err)
			}
			if raceEnabled {
				continue
			}
			if allocs := testing.AllocsPerRun(50, func() { _, _ = normalizePath(p, m.mode) }); allocs != 0 {
				t.Errorf("%s: %q: %.1f allocations, want 0", m.name, p, allocs)
			}
		}
	}
	for _, p := range []string{"/a//b"} {
		if !isNormalPath(p, normalizeBase) || isNormalPath(p, normalizeMergeSlashes) {
			t.Errorf("%q: fast path differs from the modes' rules", p)
		}
	}
}

// FuzzNormalizePath checks that normalization is idempotent, that its
// result is a path Go keeps as is, and that the fast path never takes a
// path the rewrite would change.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/a/b/../c", `/a/..\c`, "/%2e%2E/%2f%5C", "//a//b//", "/%7e%41%00", "/a b\"#", "/.%2e/..%2f", "/é/%c3%a9",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		for _, m := range allNormalizations[1:] {
			rewritten, err := rewritePath(p, m.mode)
			if err != nil {
				continue
			}
			if isNormalPath(p, m.mode) && rewritten != p {
				t.Fatalf("%s: fast path takes %q, which the rewrite makes %q", m.name, p, rewritten)
			}
			again, err := normalizePath(rewritten, m.mode)
			if err != nil || again != rewritten {
				t.Fatalf("%s: %q -> %q -> %q, %v: not idempotent", m.name, p, rewritten, again, err)
			}
			decoded, err := url.PathUnescape(rewritten)
			if err != nil {
				t.Fatalf("%s: %q -> %q: %v", m.name, p, rewritten, err)
			}
			if u := (&url.URL{Path: decoded, RawPath: rewritten}); u.EscapedPath() != rewritten {
				t.Fatalf("%s: %q -> %q, which Go escapes as %q", m.name, p, rewritten, u.EscapedPath())
			}
		}
	})
}

func TestParsePathNormalization(t *testing.T) {
	for in, want := range map[string]pathNormalization{
		"":                         normalizeBase,
		"DEFAULT":                  normalizeBase,
		"BASE":                     normalizeBase,
		"NONE":                     normalizeNone,
		"MERGE_SLASHES":            normalizeMergeSlashes,
		"DECODE_AND_MERGE_SLASHES": normalizeDecodeAndMergeSlashes,
	} {
		if got, err := parsePathNormalization(in); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"base", "MERGE", "UNESCAPE_AND_FORWARD"} {
		if _, err := parsePathNormalization(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// TestNormalizeRequestPath checks what normalization leaves on the request:
// Path and RawPath that agree, the query as sent without any fragment,
// RequestURI updated.
func TestNormalizeRequestPath(t *testing.T) {
	ctx := newContext(t, nil)
	for _, tc := range []struct {
		mode, target   string
		path, escaped  string
		query, uri     string
		changed, error bool
	}{
		{mode: "BASE", target: "/a/%2e%2e/b%2Fc/%7e?q=%2e%2e/x", path: "/b/c/~", escaped: "/b%2Fc/~", query: "q=%2e%2e/x", uri: "/b%2Fc/~?q=%2e%2e/x", changed: true},
		{mode: "DECODE_AND_MERGE_SLASHES", target: "/a/%2e%2e/b%2Fc/%7e?q=%2e%2e", path: "/b/c/~", escaped: "/b/c/~", query: "q=%2e%2e", uri: "/b/c/~?q=%2e%2e", changed: true},
		{mode: "BASE", target: `/public\..\admin`, path: "/admin", escaped: "/admin", uri: "/admin", changed: true},
		{mode: "BASE", target: "/a/b%20c?x=1", path: "/a/b c", escaped: "/a/b%20c", query: "x=1", uri: "/a/b%20c?x=1"},
		{mode: "BASE", target: "http://host.example/a/./b?x", path: "/a/b", escaped: "/a/b", query: "x", uri: "/a/b?x", changed: true},
		{mode: "BASE", target: "/a%00?x", error: true},

		// Fragments are cut off in every mode, with a query that follows them.
		{mode: "BASE", target: "/a/b#frag", path: "/a/b", escaped: "/a/b", uri: "/a/b", changed: true},
		{mode: "BASE", target: "/a/b#frag?x=1", path: "/a/b", escaped: "/a/b", uri: "/a/b", changed: true},
		{mode: "BASE", target: "/a/b?x=1#frag", path: "/a/b", escaped: "/a/b", query: "x=1", uri: "/a/b?x=1", changed: true},
		{mode: "BASE", target: "/a/b?#frag", path: "/a/b", escaped: "/a/b", uri: "/a/b?", changed: true},
		{mode: "NONE", target: "/a/../b#frag", path: "/a/../b", escaped: "/a/../b", uri: "/a/../b", changed: true},

		// NONE keeps the rest as sent, %00 included.
		{mode: "NONE", target: "/a/../b%2f?x", path: "/a/../b/", escaped: "/a/../b%2f", query: "x", uri: "/a/../b%2f?x"},
		{mode: "NONE", target: "/a%00?x", path: "/a\x00", escaped: "/a%00", query: "x", uri: "/a%00?x"},
	} {
		h := &Handler{PathNormalization: tc.mode}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, tc.target, nil)
		before, beforeURI := *req.URL, req.RequestURI
		got, err := h.normalizeRequestPath(req)
		if tc.error {
			if err == nil {
				t.Errorf("%s %q: not rejected", tc.mode, tc.target)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %q: %v", tc.mode, tc.target, err)
			continue
		}
		if got != tc.escaped || req.URL.Path != tc.path || req.URL.EscapedPath() != tc.escaped ||
			req.URL.RawQuery != tc.query || req.URL.RequestURI() != tc.uri {
			t.Errorf("%s %q: got %q; URL Path %q RawPath %q, query %q, RequestURI() %q; want %q, Path %q, query %q, RequestURI() %q",
				tc.mode, tc.target, got, req.URL.Path, req.URL.RawPath, req.URL.RawQuery, req.URL.RequestURI(),
				tc.escaped, tc.path, tc.query, tc.uri)
		}
		switch {
		case tc.changed && req.RequestURI != tc.uri:
			t.Errorf("%s %q: RequestURI %q, want %q", tc.mode, tc.target, req.RequestURI, tc.uri)
		case !tc.changed && (*req.URL != before || req.RequestURI != beforeURI):
			t.Errorf("%s %q: request changed though its path is normal", tc.mode, tc.target)
		}
	}
}

// echoBackend answers with its name and the request target it received.
func echoBackend(t testing.TB, name string) *backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(name + " " + r.RequestURI))
	}))
	t.Cleanup(srv.Close)
	return &backend{name: name, srv: srv}
}

// publicAdminRoutes routes /public to the v1 subset and /admin to v2, and
// has routes that read the path in other ways.
func publicAdminRoutes() *VirtualHost {
	return &VirtualHost{
		Name:    "reviews",
		Domains: []string{"reviews"},
		Routes: []*Route{
			{Match: []*Match{{Headers: map[string]*StringMatch{":path": prefix("/secret")}}}, DirectResponse: &DirectResponse{Status: 403, Body: []byte("denied")}},
			{Match: []*Match{{URI: prefix("/old/")}}, Redirect: &Redirect{PrefixRewrite: "/new/"}},
			{Match: []*Match{{URI: prefix("/public")}}, Route: []*Destination{{Cluster: cluster(9080, "v1", reviewsHost)}}},
			{Match: []*Match{{URI: prefix("/admin")}}, Route: []*Destination{{Cluster: cluster(9080, "v2", reviewsHost)}}},
		},
	}
}

func TestHandlerPathNormalization(t *testing.T) {
	ctx := newContext(t, reviewsApp(echoBackend(t, "public"), echoBackend(t, "admin")))
	handlers := map[string]*Handler{}
	for _, m := range allNormalizations {
		h := new(Handler)
		if err := json.Unmarshal(mustJSON(t, Handler{VirtualHosts: []*VirtualHost{publicAdminRoutes()}, PathNormalization: m.name}), h); err != nil {
			t.Fatal(err)
		}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		handlers[m.name] = h
	}
	for _, tc := range []struct {
		mode, target string
		code         int
		body         string
		location     string
	}{
		{"BASE", "/public/x", 200, "public /public/x", ""},
		{"BASE", "/public/../admin", 200, "admin /admin", ""},
		{"BASE", "/public/%2e%2e/admin?q=/../x", 200, "admin /admin?q=/../x", ""},
		{"BASE", "/public/%2E./admin", 200, "admin /admin", ""},
		{"BASE", `/public\..\admin`, 200, "admin /admin", ""},
		{"BASE", "/public/..%2fadmin", 200, "public /public/..%2fadmin", ""},
		{"BASE", "/public/%7euser/%41", 200, "public /public/~user/A", ""},
		{"BASE", "/public//x/", 200, "public /public//x/", ""},
		{"BASE", "/admin/../public/%20x", 200, "public /public/%20x", ""},
		{"BASE", "/%70ublic", 200, "public /public", ""},
		{"BASE", "/public/a%00", 400, "", ""},
		{"BASE", "/x/../secret", 403, "denied", ""},
		{"BASE", "/x/../old/a?b", 301, "", "http://reviews/new/a?b"},
		{"MERGE_SLASHES", "/public//x/", 200, "public /public/x/", ""},
		{"MERGE_SLASHES", "/public/..%2fadmin", 200, "public /public/..%2fadmin", ""},
		{"MERGE_SLASHES", "//admin/../public", 200, "public /public", ""},
		{"DECODE_AND_MERGE_SLASHES", "/public/..%2fadmin", 200, "admin /admin", ""},
		{"DECODE_AND_MERGE_SLASHES", "/public%5C..%5Cadmin", 200, "admin /admin", ""},
		{"DECODE_AND_MERGE_SLASHES", "/public%2F%2Fx", 200, "public /public/x", ""},
		{"NONE", "/public/../admin", 200, "public /public/../admin", ""},
		{"NONE", "/public/a%00", 200, "public /public/a%00", ""},
		{"NONE", "/x/../secret", 404, "", ""},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.target, nil)
		req.Host = "reviews"
		got := serve(t, handlers[tc.mode], req)
		if got.code != tc.code || got.body != tc.body {
			t.Errorf("%s %s: %d %q, want %d %q", tc.mode, tc.target, got.code, got.body, tc.code, tc.body)
		}
		if tc.location != "" && got.header.Get("Location") != tc.location {
			t.Errorf("%s %s: Location %q, want %q", tc.mode, tc.target, got.header.Get("Location"), tc.location)
		}
	}
}

func TestHandlerPathNormalizationProvision(t *testing.T) {
	ctx := newContext(t, nil)
	h := &Handler{}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if h.PathNormalization != "BASE" || h.pathNormalization != normalizeBase {
		t.Errorf("default: %q (%v), want BASE", h.PathNormalization, h.pathNormalization)
	}
	h = &Handler{PathNormalization: "MERGE"}
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), `unknown path_normalization "MERGE"`) {
		t.Errorf("unknown value: error %v", err)
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct {
		name, path string
		mode       pathNormalization
	}{
		{"normal", "/api/v2/products/12345/reviews", normalizeBase},
		{"normal-escaped", "/search/hello%20world", normalizeBase},
		{"normal-merge", "/api/v2/products/12345/reviews", normalizeMergeSlashes},
		{"dot-segments", "/public/../admin/./users/", normalizeBase},
		{"unreserved-escapes", "/%7euser/%61%62%63/%2e%2e/x", normalizeBase},
		{"decode-and-merge", "/a%2F%2Fb//c/..%5Cd", normalizeDecodeAndMergeSlashes},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := normalizePath(bc.path, bc.mode); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCaddyServerPathNormalization runs istio_route behind real Caddy
// servers (loaded with caddy.Load), one per path normalization, with
// requests written byte for byte on the wire and backends that answer with
// the request target they received.
func TestCaddyServerPathNormalization(t *testing.T) {
	app := reviewsApp(echoBackend(t, "public"), echoBackend(t, "admin"))
	addrs := map[string]string{}
	servers := map[string]any{}
	for _, mode := range []string{"", "DECODE_AND_MERGE_SLASHES", "NONE"} {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		addrs[mode] = addr
		handler := map[string]any{"handler": "istio_route", "virtual_hosts": []*VirtualHost{publicAdminRoutes()}}
		if mode != "" {
			handler["path_normalization"] = mode
		}
		servers["mesh"+strconv.Itoa(len(servers))] = map[string]any{
			"listen":          []string{addr},
			"automatic_https": map[string]any{"disable": true},
			"routes":          []any{map[string]any{"handle": []any{handler}}},
		}
	}
	config := map[string]any{
		"admin": map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"apps":  map[string]any{"istio": app, "http": map[string]any{"servers": servers}},
	}
	if err := caddy.Load(mustJSON(t, config), true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	// get sends "GET target HTTP/1.1" as is, so no client cleans the path.
	get := func(addr, target string) (int, string) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n", target)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct {
		mode, target string
		code         int
		body         string
	}{
		// The default, BASE.
		{"", "/public/x?a=1", 200, "public /public/x?a=1"},
		{"", "/public/../admin", 200, "admin /admin"},
		{"", "/public/%2e%2e/admin?next=/public/../x", 200, "admin /admin?next=/public/../x"},
		{"", `/public\..\admin`, 200, "admin /admin"},
		{"", "/public/./x//y/%7euser/%41%2d", 200, "public /public/x//y/~user/A-"},
		{"", "/public/a%2fb/../c", 200, "public /public/c"},
		{"", "/public%2F..%2Fadmin", 200, "public /public%2F..%2Fadmin"},
		{"", "/public/x#frag", 200, "public /public/x"},
		{"", "/public/%00", 400, ""},
		{"", "/x/../secret", 403, "denied"},
		{"DECODE_AND_MERGE_SLASHES", "/public%2F..%2Fadmin", 200, "admin /admin"},
		{"DECODE_AND_MERGE_SLASHES", "/public//x///y%2f%2Fz", 200, "public /public/x/y/z"},
		{"DECODE_AND_MERGE_SLASHES", "/public/%00", 400, ""},
		{"NONE", "/public/../admin", 200, "public /public/../admin"},
		{"NONE", "/public/%7e", 200, "public /public/%7e"},
	} {
		code, body := get(addrs[tc.mode], tc.target)
		if code != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("%s GET %s: %d %q, want %d %q", tc.mode, tc.target, code, body, tc.code, tc.body)
		}
	}
}
