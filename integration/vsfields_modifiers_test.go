package integration

import (
	"bufio"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// webService is the Service "web" on vsPort with subsets v1, v2 and v3 and
// their WorkloadEntries on b.
func webService(t *testing.T, b backends) string {
	t.Helper()
	return joinDocs(kubeService("web", vsPort), subsetsRule("web", "v1", "v2", "v3"), workloadEntries(t, b))
}

// rewrite (uri prefix, uriRegexRewrite, authority), redirect (code,
// Location) and directResponse (status, body, route response headers).
func TestVSFieldRewriteRedirectDirectResponse(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "web/v1")
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
spec:
  hosts:
  - web
  http:
  - name: prefix-rewrite
    match:
    - uri:
        prefix: /old/
    rewrite:
      uri: /new/
    route:
    - destination:
        host: web
  - name: regex-rewrite
    match:
    - uri:
        prefix: /re/
    rewrite:
      uriRegexRewrite:
        match: ^/re/([a-z]+)/([0-9]+)$
        rewrite: /items/\2/\1
    route:
    - destination:
        host: web
  - name: authority-rewrite
    match:
    - uri:
        prefix: /auth
    rewrite:
      authority: other.example
    route:
    - destination:
        host: web
  - name: redirect-302
    match:
    - uri:
        exact: /redirect
    redirect:
      uri: /target
      redirectCode: 302
  - name: redirect-authority
    match:
    - uri:
        exact: /moved
    redirect:
      authority: new.example
      uri: /x
  - name: direct
    match:
    - uri:
        prefix: /direct
    directResponse:
      status: 418
      body:
        string: short and stout
    headers:
      response:
        set:
          content-type: text/plain
  - route:
    - destination:
        host: web
`
	addr := meshAddr(startVSMesh(t, joinDocs(webService(t, b), vs)))
	client := hostClient(t, addr)

	for _, tc := range []struct{ url, path, query string }{
		{"http://web:9080/old/page?q=1", "/new/page", "q=1"},
		{"http://web:9080/old/", "/new/", ""},
		{"http://web:9080/re/abc/42?x=y", "/items/42/abc", "x=y"},
		{"http://web:9080/re/abc/x", "/re/abc/x", ""}, // the regex does not match: path unchanged
		{"http://web:9080/older", "/older", ""},       // not under the /old/ prefix
	} {
		a := get(t, client, tc.url)
		expectBackend(t, tc.url, a, "web", "v1")
		if a.Reply != nil && (a.Reply.Path != tc.path || a.Reply.Query != tc.query || a.Reply.Host != "web:9080") {
			t.Errorf("%s: backend saw path %q query %q host %q, want %q %q web:9080", tc.url, a.Reply.Path, a.Reply.Query, a.Reply.Host, tc.path, tc.query)
		}
	}

	a := get(t, client, "http://web:9080/auth/me")
	expectBackend(t, "authority rewrite", a, "web", "v1")
	if a.Reply != nil {
		if a.Reply.Host != "other.example" || a.Reply.Path != "/auth/me" {
			t.Errorf("authority rewrite: backend saw Host %q path %q, want other.example /auth/me", a.Reply.Host, a.Reply.Path)
		}
		if got := a.Reply.Headers["x-forwarded-host"]; !strings.Contains(got, "web:9080") {
			t.Errorf("authority rewrite: x-forwarded-host %q, want the original web:9080", got)
		}
	}

	for _, tc := range []struct {
		url      string
		status   int
		location string
	}{
		{"http://web:9080/redirect?a=b", http.StatusFound, "http://web:9080/target?a=b"},
		{"http://web:9080/moved", http.StatusMovedPermanently, "http://new.example/x"},
	} {
		a := get(t, client, tc.url)
		expectNoBackend(t, tc.url, a, tc.status)
		if got := a.Header.Get("Location"); got != tc.location {
			t.Errorf("%s: Location %q, want %q", tc.url, got, tc.location)
		}
	}

	a = get(t, client, "http://web:9080/direct/anything")
	expectNoBackend(t, "direct response", a, http.StatusTeapot)
	if a.Body != "short and stout" || a.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("direct response: body %q content-type %q, want \"short and stout\" text/plain", a.Body, a.Header.Get("Content-Type"))
	}
	// The same with curl.
	if out := curl(t, "-H", "Host: web:9080", "-w", " %{http_code}", "http://"+addr+"/direct"); out != "short and stout 418" {
		t.Errorf("curl /direct: %q", out)
	}
}

// headers: request set/add/remove seen by the backend, response
// set/add/remove seen by the client, destination-level operations winning
// over the route's on the same header, for one destination and for
// weighted destinations.
func TestVSFieldHeaders(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "web/v1", "web/v2")
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
spec:
  hosts:
  - web
  http:
  - match:
    - uri:
        prefix: /weighted
    headers:
      request:
        set:
          x-both: route
      response:
        set:
          x-resp-both: route
    route:
    - destination:
        host: web
        subset: v1
      weight: 50
      headers:
        request:
          set:
            x-both: dest-v1
        response:
          set:
            x-resp-both: dest-v1
    - destination:
        host: web
        subset: v2
      weight: 50
      headers:
        request:
          set:
            x-both: dest-v2
        response:
          set:
            x-resp-both: dest-v2
  - headers:
      request:
        set:
          x-set: route
          x-both: route
        add:
          x-add: route
        remove:
        - x-remove
      response:
        set:
          x-resp-set: route
          x-resp-both: route
        add:
          x-bookinfo-version: added
        remove:
        - x-bookinfo-service
    route:
    - destination:
        host: web
        subset: v1
      headers:
        request:
          set:
            x-both: destination
        response:
          set:
            x-resp-both: destination
`
	client := hostClient(t, meshAddr(startVSMesh(t, joinDocs(webService(t, b), vs))))

	a := get(t, client, "http://web:9080/h", "x-set", "client", "x-add", "client", "x-remove", "gone", "x-both", "client", "x-keep", "kept")
	expectBackend(t, "headers", a, "web", "v1")
	if a.Reply != nil {
		for name, want := range map[string]string{
			"x-set":    "route",
			"x-add":    "client,route",
			"x-remove": "",
			"x-both":   "destination",
			"x-keep":   "kept",
		} {
			if got := a.Reply.Headers[name]; got != want {
				t.Errorf("backend saw %s: %q, want %q", name, got, want)
			}
		}
	}
	if got := a.Header.Values("x-bookinfo-version"); !slices.Equal(got, []string{"v1", "added"}) {
		t.Errorf("client saw x-bookinfo-version %q, want [v1 added] (response add appends)", got)
	}
	for name, want := range map[string]string{"x-resp-set": "route", "x-resp-both": "destination", "x-bookinfo-service": ""} {
		if got := strings.Join(a.Header.Values(name), ","); got != want {
			t.Errorf("client saw %s: %q, want %q", name, got, want)
		}
	}

	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		a := get(t, client, "http://web:9080/weighted")
		expectBackend(t, "weighted", a, "web", "")
		if a.Reply == nil {
			continue
		}
		want := "dest-" + a.Reply.Version
		seen[a.Reply.Version]++
		if got := a.Reply.Headers["x-both"]; got != want {
			t.Errorf("weighted, %s: backend saw x-both %q, want %q", a.Reply.Version, got, want)
		}
		if got := a.Header.Get("x-resp-both"); got != want {
			t.Errorf("weighted, %s: client saw x-resp-both %q, want %q", a.Reply.Version, got, want)
		}
	}
	if seen["v1"] == 0 || seen["v2"] == 0 {
		t.Errorf("weighted 50/50 over 20 requests: %v", seen)
	}
}

// curlHeaders runs curl with -D - -o /dev/null and returns the status and
// header of the response.
func curlHeaders(t *testing.T, args ...string) (int, http.Header) {
	t.Helper()
	out := curl(t, append([]string{"-D", "-", "-o", "/dev/null"}, args...)...)
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(out)))
	statusLine, err := r.ReadLine()
	if err != nil {
		t.Fatalf("curl %v: %q: %v", args, out, err)
	}
	fields := strings.Fields(statusLine)
	if len(fields) < 2 {
		t.Fatalf("curl %v: status line %q", args, statusLine)
	}
	status, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("curl %v: status line %q", args, statusLine)
	}
	h, err := r.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		t.Fatalf("curl %v: headers of %q: %v", args, out, err)
	}
	return status, http.Header(h)
}

// corsPolicy as Envoy's CORS filter applies it: a preflight from an allowed
// origin (exact or regex) is answered by the proxy; one from another
// origin is forwarded to the upstream; a simple request from an allowed
// origin gets the allow-origin, credentials and expose headers.
func TestVSFieldCORS(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "web/v1")
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
spec:
  hosts:
  - web
  http:
  - corsPolicy:
      allowOrigins:
      - exact: https://allowed.example
      - regex: https://[a-z]+\.trusted\.example
      allowMethods:
      - POST
      - GET
      allowHeaders:
      - x-custom
      exposeHeaders:
      - x-exposed
      maxAge: 24h
      allowCredentials: true
    route:
    - destination:
        host: web
`
	addr := meshAddr(startVSMesh(t, joinDocs(webService(t, b), vs)))
	url := "http://" + addr + "/api"

	for _, origin := range []string{"https://allowed.example", "https://app.trusted.example"} {
		status, h := curlHeaders(t, "-X", "OPTIONS", "-H", "Host: web:9080", "-H", "Origin: "+origin,
			"-H", "Access-Control-Request-Method: POST", url)
		if status != http.StatusOK || h.Get("x-bookinfo-version") != "" {
			t.Errorf("preflight from %s: status %d, x-bookinfo-version %q; want 200 from the proxy", origin, status, h.Get("x-bookinfo-version"))
		}
		for name, want := range map[string]string{
			"Access-Control-Allow-Origin":      origin,
			"Access-Control-Allow-Methods":     "POST,GET",
			"Access-Control-Allow-Headers":     "x-custom",
			"Access-Control-Max-Age":           "86400",
			"Access-Control-Allow-Credentials": "true",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("preflight from %s: %s %q, want %q", origin, name, got, want)
			}
		}
	}

	// A preflight from an origin not allowed goes to the upstream
	// (unmatchedPreflights defaults to FORWARD) without CORS headers.
	status, h := curlHeaders(t, "-X", "OPTIONS", "-H", "Host: web:9080", "-H", "Origin: https://evil.example",
		"-H", "Access-Control-Request-Method: POST", url)
	if status != http.StatusOK || h.Get("x-bookinfo-version") != "v1" || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from evil.example: status %d, x-bookinfo-version %q, allow-origin %q; want the backend's 200 without CORS headers",
			status, h.Get("x-bookinfo-version"), h.Get("Access-Control-Allow-Origin"))
	}

	client := hostClient(t, addr)
	a := get(t, client, "http://web:9080/api", "Origin", "https://allowed.example")
	expectBackend(t, "simple request", a, "web", "v1")
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin":      "https://allowed.example",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Expose-Headers":    "x-exposed",
	} {
		if got := a.Header.Get(name); got != want {
			t.Errorf("simple request: %s %q, want %q", name, got, want)
		}
	}
	a = get(t, client, "http://web:9080/api", "Origin", "https://evil.example")
	expectBackend(t, "simple request from evil.example", a, "web", "v1")
	if got := a.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("simple request from evil.example: allow-origin %q, want none", got)
	}
}
