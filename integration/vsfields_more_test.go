package integration

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

// mirrors (the list form) with percentages, mirrorPercentage 0, a POST
// body copied to the mirror, and a slow mirror that never delays the
// client's answer.
func TestVSFieldMirrors(t *testing.T) {
	requireBinaries(t)
	v1 := startRecorder(t, "v1", http.StatusOK, 0)
	v2 := startRecorder(t, "v2", http.StatusOK, 0)
	v3 := startRecorder(t, "v3", http.StatusOK, 0)
	slow := startRecorder(t, "slow", http.StatusOK, time.Second)
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
        prefix: /list
    route:
    - destination:
        host: web
        subset: v1
    mirrors:
    - destination:
        host: web
        subset: v2
    - destination:
        host: web
        subset: v3
      percentage:
        value: 50
  - match:
    - uri:
        prefix: /none
    route:
    - destination:
        host: web
        subset: v1
    mirror:
      host: web
      subset: v2
    mirrorPercentage:
      value: 0
  - match:
    - uri:
        prefix: /slow
    route:
    - destination:
        host: web
        subset: v1
    mirror:
      host: web
      subset: slow
`
	b := recorderBackends("web", map[string]*recorder{"v1": v1, "v2": v2, "v3": v3, "slow": slow})
	config := joinDocs(kubeService("web", vsPort), subsetsRule("web", "v1", "v2", "v3", "slow"), vs, workloadEntries(t, b))
	client := hostClient(t, meshAddr(startVSMesh(t, config)))

	const requests = 400
	for i := 0; i < requests; i++ {
		if a := get(t, client, "http://web:9080/list"); a.Status != http.StatusOK || a.Header.Get("x-recorder") != "v1" {
			t.Fatalf("request %d: %d from %q, want 200 from v1", i, a.Status, a.Header.Get("x-recorder"))
		}
	}
	if got := v2.waitForCount(requests, 10*time.Second); got != requests {
		t.Errorf("v2 (mirror at 100%%) got %d copies of %d", got, requests)
	}
	time.Sleep(200 * time.Millisecond) // let the last copies to v3 land
	if got := v3.count(); got < requests*40/100 || got > requests*60/100 {
		t.Errorf("v3 (mirror at 50%%) got %d copies of %d, want 50%% within 10 points", got, requests)
	}

	before := v2.count()
	for i := 0; i < 20; i++ {
		get(t, client, "http://web:9080/none")
	}
	time.Sleep(300 * time.Millisecond)
	if got := v2.count() - before; got != 0 {
		t.Errorf("mirrorPercentage 0: v2 got %d copies, want none", got)
	}

	// A POST to the slow mirror: the client is answered by v1 at once, and
	// the mirror receives the whole body later.
	body := strings.Repeat("mirror me. ", 3000)
	for i := 0; i < 3; i++ {
		req, err := http.NewRequest(http.MethodPost, "http://web:9080/slow", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		a := do(t, client, req)
		if elapsed := time.Since(start); elapsed > 900*time.Millisecond {
			t.Errorf("POST %d answered after %v: the 1s mirror delayed the client", i, elapsed)
		}
		if a.Status != http.StatusOK || a.Header.Get("x-recorder") != "v1" {
			t.Errorf("POST %d: %d from %q, want 200 from v1", i, a.Status, a.Header.Get("x-recorder"))
		}
	}
	if got := slow.waitForCount(3, 5*time.Second); got != 3 {
		t.Errorf("the slow mirror got %d copies, want 3", got)
	}
	for _, r := range slow.requests() {
		if r.Method != http.MethodPost || r.Body != body || r.Host != "web:9080" {
			t.Errorf("mirrored POST: %s Host %q with %d body bytes, want POST Host web:9080 with %d", r.Method, r.Host, len(r.Body), len(body))
		}
	}
}

// More redirect forms (port, scheme with its default port omitted,
// derivePort FROM_REQUEST_PORT), the authority set through a host header
// operation, the route timeout bounding the retries, and a CORS policy
// with unmatchedPreflights: IGNORE.
func TestVSFieldMoreModifiers(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "web/v1")
	slow := startRecorder(t, "slow", http.StatusOK, 2*time.Second)
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
        exact: /to-port
    redirect:
      port: 8443
      uri: /p
  - match:
    - uri:
        exact: /to-https
    redirect:
      scheme: https
      port: 443
      uri: /secure
  - match:
    - uri:
        exact: /derive
    redirect:
      authority: new.example
      derivePort: FROM_REQUEST_PORT
      redirectCode: 308
  - match:
    - uri:
        prefix: /host-header
    headers:
      request:
        set:
          host: alias.example
    route:
    - destination:
        host: web
        subset: v1
  - match:
    - uri:
        prefix: /timeout
    timeout: 0.5s
    retries:
      attempts: 3
      retryOn: 5xx
    route:
    - destination:
        host: web
        subset: slow
  - corsPolicy:
      allowOrigins:
      - exact: https://allowed.example
      allowMethods:
      - GET
      unmatchedPreflights: IGNORE
    route:
    - destination:
        host: web
        subset: v1
`
	backends := mergeBackends(b, recorderBackends("web", map[string]*recorder{"slow": slow}))
	config := joinDocs(kubeService("web", vsPort), subsetsRule("web", "v1", "slow"), vs, workloadEntries(t, backends))
	addr := meshAddr(startVSMesh(t, config))
	client := hostClient(t, addr)

	for _, tc := range []struct {
		url      string
		status   int
		location string
	}{
		{"http://web:9080/to-port?a=1", http.StatusMovedPermanently, "http://web:8443/p?a=1"},
		{"http://web:9080/to-https", http.StatusMovedPermanently, "https://web/secure"},
		{"http://web:9080/derive?z=2", http.StatusPermanentRedirect, "http://new.example:9080/derive?z=2"},
	} {
		a := get(t, client, tc.url)
		expectNoBackend(t, tc.url, a, tc.status)
		if got := a.Header.Get("Location"); got != tc.location {
			t.Errorf("%s: Location %q, want %q", tc.url, got, tc.location)
		}
	}

	a := get(t, client, "http://web:9080/host-header")
	expectBackend(t, "host header set", a, "web", "v1")
	if a.Reply != nil && a.Reply.Host != "alias.example" {
		t.Errorf("headers.request.set host: backend saw Host %q, want alias.example (an authority rewrite)", a.Reply.Host)
	}

	start := time.Now()
	a = get(t, client, "http://web:9080/timeout")
	elapsed := time.Since(start)
	expectNoBackend(t, "route timeout with retries", a, http.StatusGatewayTimeout)
	if elapsed < 450*time.Millisecond || elapsed > 1900*time.Millisecond {
		t.Errorf("504 after %v, want about 0.5s: the route timeout covers the retries", elapsed)
	}
	if got := slow.waitForCount(2, 500*time.Millisecond); got != 1 {
		t.Errorf("the slow endpoint saw %d attempts, want 1 (the route timeout is not retried)", got)
	}

	// unmatchedPreflights: IGNORE answers a preflight from another origin
	// here, without CORS headers, instead of forwarding it.
	status, h := curlHeaders(t, "-X", "OPTIONS", "-H", "Host: web:9080", "-H", "Origin: https://evil.example",
		"-H", "Access-Control-Request-Method: GET", "http://"+addr+"/api")
	if status != http.StatusOK || h.Get("x-bookinfo-version") != "" || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("ignored preflight: status %d, x-bookinfo-version %q, allow-origin %q; want 200 from the proxy without CORS headers",
			status, h.Get("x-bookinfo-version"), h.Get("Access-Control-Allow-Origin"))
	}
	status, h = curlHeaders(t, "-X", "OPTIONS", "-H", "Host: web:9080", "-H", "Origin: https://allowed.example",
		"-H", "Access-Control-Request-Method: GET", "http://"+addr+"/api")
	if status != http.StatusOK || h.Get("Access-Control-Allow-Origin") != "https://allowed.example" || h.Get("x-bookinfo-version") != "" {
		t.Errorf("allowed preflight: status %d, allow-origin %q, x-bookinfo-version %q", status, h.Get("Access-Control-Allow-Origin"), h.Get("x-bookinfo-version"))
	}
}

// match.sourceNamespace against the namespace of the Sidecar whose
// listener received the request.
func TestVSFieldSourceNamespace(t *testing.T) {
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
    - sourceNamespace: frontend
    route:
    - destination:
        host: web
        subset: v2
  - route:
    - destination:
        host: web
        subset: v1
`
	frontend, other := randomLoopback(), randomLoopback()
	for frontend == other {
		other = randomLoopback()
	}
	frontendSidecar := strings.Replace(vsSidecar("frontend", frontend, nil, vsPort), "  name: frontend\n", "  name: frontend\n  namespace: frontend\n", 1)
	config := joinDocs(webService(t, b), vs, frontendSidecar, vsSidecar("other", other, nil, vsPort))
	startCaddy(t, config, meshAddr(frontend), meshAddr(other))
	fromFrontend, fromOther := hostClient(t, meshAddr(frontend)), hostClient(t, meshAddr(other))
	for i := 0; i < 5; i++ {
		// From namespace frontend the short name "web" would mean
		// web.frontend; the full name is unambiguous.
		expectBackend(t, "from frontend", get(t, fromFrontend, "http://web.default.svc.cluster.local:9080/"), "web", "v2")
		expectBackend(t, "from default", get(t, fromOther, "http://web:9080/"), "web", "v1")
	}
}
