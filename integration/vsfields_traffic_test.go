package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fault: an abort at 50% measured over 2000 requests (the aborted ones
// never reach the backend), a 200 ms delay at 100%, and a grpcStatus abort
// read by an HTTP/2 (h2c) gRPC client.
func TestVSFieldFault(t *testing.T) {
	requireBinaries(t)
	backend := startRecorder(t, "web-v1", http.StatusOK, 0)
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
        prefix: /abort
    fault:
      abort:
        httpStatus: 418
        percentage:
          value: 50
    route:
    - destination:
        host: web
  - match:
    - uri:
        prefix: /delay
    fault:
      delay:
        fixedDelay: 200ms
        percentage:
          value: 100
    route:
    - destination:
        host: web
  - match:
    - uri:
        prefix: /grpc.health.v1.Health/
    fault:
      abort:
        grpcStatus: UNAVAILABLE
        percentage:
          value: 100
    route:
    - destination:
        host: web
`
	config := joinDocs(webService(t, recorderBackends("web", map[string]*recorder{"v1": backend})), vs)
	addr := meshAddr(startVSMesh(t, config))
	client := hostClient(t, addr)

	const requests = 2000
	aborted := 0
	for i := 0; i < requests; i++ {
		a := get(t, client, "http://web:9080/abort")
		switch {
		case a.Status == http.StatusTeapot && a.Header.Get("x-recorder") == "":
			aborted++
		case a.Status == http.StatusOK && a.Header.Get("x-recorder") == "web-v1":
		default:
			t.Fatalf("request %d: %d from %q, want 418 from the proxy or 200 from web-v1", i, a.Status, a.Header.Get("x-recorder"))
		}
	}
	if share := float64(aborted) / requests; math.Abs(share-0.5) > 0.04 {
		t.Errorf("aborted %d of %d (%.3f), want 50%% within 4 points", aborted, requests, share)
	}
	if got := backend.count(); got != requests-aborted {
		t.Errorf("the backend saw %d requests, want the %d not aborted", got, requests-aborted)
	}

	for i := 0; i < 5; i++ {
		start := time.Now()
		a := get(t, client, "http://web:9080/delay")
		if elapsed := time.Since(start); elapsed < 190*time.Millisecond {
			t.Errorf("delayed request %d answered after %v, want the 200ms delay first", i, elapsed)
		}
		if a.Status != http.StatusOK || a.Header.Get("x-recorder") != "web-v1" {
			t.Errorf("delayed request %d: %d from %q, want 200 from web-v1", i, a.Status, a.Header.Get("x-recorder"))
		}
	}

	// A unary gRPC call (empty message) over h2c: the abort is a
	// trailers-only response, HTTP 200 with grpc-status 14 (UNAVAILABLE).
	req, err := http.NewRequest(http.MethodPost, "http://web:9080/grpc.health.v1.Health/Check", bytes.NewReader([]byte{0, 0, 0, 0, 0}))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := h2cClient(t, addr).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	status := resp.Header.Get("grpc-status")
	if status == "" {
		status = resp.Trailer.Get("grpc-status")
	}
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || status != "14" || resp.Header.Get("x-recorder") != "" {
		t.Errorf("gRPC abort: %s %d grpc-status %q (header %v, trailer %v), want HTTP/2 200 with grpc-status 14 from the proxy",
			resp.Proto, resp.StatusCode, status, resp.Header, resp.Trailer)
	}
	if got := backend.count(); got != requests-aborted+5 {
		t.Errorf("the gRPC abort reached the backend (%d requests, want %d)", got, requests-aborted+5)
	}
}

// match fields not covered by the bookinfo samples: queryParams,
// withoutHeaders, method, authority (with the port), ignoreUriCase and a
// regex uri. Each rule sends to v2; everything else falls through to v1.
func TestVSFieldMatch(t *testing.T) {
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
  - name: query
    match:
    - uri:
        prefix: /q
      queryParams:
        debug:
          exact: "1"
        mode:
          regex: fa(st|ir)
    route:
    - destination:
        host: web
        subset: v2
  - name: without-headers
    match:
    - uri:
        prefix: /wh
      withoutHeaders:
        x-skip:
          exact: "yes"
    route:
    - destination:
        host: web
        subset: v2
  - name: method
    match:
    - uri:
        prefix: /m
      method:
        exact: POST
    route:
    - destination:
        host: web
        subset: v2
  - name: authority
    match:
    - uri:
        prefix: /au
      authority:
        exact: web:9080
    route:
    - destination:
        host: web
        subset: v2
  - name: ignore-uri-case
    match:
    - uri:
        prefix: /Case/Path
      ignoreUriCase: true
    route:
    - destination:
        host: web
        subset: v2
  - name: regex
    match:
    - uri:
        regex: /r/[0-9]+
    route:
    - destination:
        host: web
        subset: v2
  - route:
    - destination:
        host: web
        subset: v1
`
	client := hostClient(t, meshAddr(startVSMesh(t, joinDocs(webService(t, b), vs))))
	for _, tc := range []struct {
		method, url string
		headers     []string
		want        string
	}{
		{"GET", "http://web:9080/q?debug=1&mode=fast", nil, "v2"},
		{"GET", "http://web:9080/q?mode=fair&debug=1", nil, "v2"},
		{"GET", "http://web:9080/q?debug=1", nil, "v1"},             // every queryParam must match
		{"GET", "http://web:9080/q?debug=10&mode=fast", nil, "v1"},  // exact
		{"GET", "http://web:9080/q?debug=1&mode=faster", nil, "v1"}, // regex is a full match
		{"GET", "http://web:9080/q?DEBUG=1&mode=fast", nil, "v1"},   // names are case-sensitive
		{"GET", "http://web:9080/wh", nil, "v2"},
		{"GET", "http://web:9080/wh", []string{"x-skip", "no"}, "v2"},
		{"GET", "http://web:9080/wh", []string{"x-skip", "yes"}, "v1"},
		{"POST", "http://web:9080/m", nil, "v2"},
		{"GET", "http://web:9080/m", nil, "v1"},
		{"PUT", "http://web:9080/m", nil, "v1"},
		{"GET", "http://web:9080/au", nil, "v2"},
		{"GET", "http://web/au", nil, "v1"}, // :authority "web" has no port
		{"GET", "http://web:9080/case/path/x", nil, "v2"},
		{"GET", "http://web:9080/CASE/PATH", nil, "v2"},
		{"GET", "http://web:9080/Case/Pat", nil, "v1"},
		{"GET", "http://web:9080/r/123", nil, "v2"},
		{"GET", "http://web:9080/r/123?x=1", nil, "v2"}, // the query is not part of the regex
		{"GET", "http://web:9080/r/12a", nil, "v1"},
		{"GET", "http://web:9080/r/123/x", nil, "v1"}, // full match
	} {
		req, err := http.NewRequest(tc.method, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(tc.headers); i += 2 {
			req.Header.Set(tc.headers[i], tc.headers[i+1])
		}
		expectBackend(t, fmt.Sprintf("%s %s %q", tc.method, tc.url, tc.headers), do(t, client, req), "web", tc.want)
	}
}

// match.sourceLabels against the Sidecar's workloadSelector labels, this
// proxy's labels on that Sidecar's listeners: the same VirtualService
// routes to v2 through the listener of a Sidecar selecting app: productpage
// and to v1 through the listener of one selecting app: details.
func TestVSFieldSourceLabels(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "web/v1", "web/v2", "web/v3")
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
spec:
  hosts:
  - web
  http:
  - match:
    - sourceLabels:
        app: productpage
        version: v1
    route:
    - destination:
        host: web
        subset: v2
  - match:
    - sourceLabels:
        app: reviews
    route:
    - destination:
        host: web
        subset: v3
  - route:
    - destination:
        host: web
        subset: v1
`
	productpage, details := randomLoopback(), randomLoopback()
	for productpage == details {
		details = randomLoopback()
	}
	config := joinDocs(webService(t, b), vs,
		vsSidecar("productpage", productpage, map[string]string{"app": "productpage", "version": "v1"}, vsPort),
		vsSidecar("details", details, map[string]string{"app": "details"}, vsPort))
	startCaddy(t, config, meshAddr(productpage), meshAddr(details))
	fromProductpage, fromDetails := hostClient(t, meshAddr(productpage)), hostClient(t, meshAddr(details))
	for i := 0; i < 5; i++ {
		expectBackend(t, "from productpage", get(t, fromProductpage, "http://web:9080/"), "web", "v2")
		expectBackend(t, "from details", get(t, fromDetails, "http://web:9080/"), "web", "v1")
	}
}

// HTTP/2 with prior knowledge (h2c) through the mesh listener and through a
// Gateway: the request reaches the backend and the answer comes back over
// HTTP/2; curl --http2-prior-knowledge too.
func TestVSFieldHTTP2(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "web/v1")
	gatewayPort := freePort(t)
	gateway := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: web-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: %d
      name: http
      protocol: HTTP
    hosts:
    - web.example.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web-ingress
spec:
  hosts:
  - web.example.com
  gateways:
  - web-gateway
  http:
  - route:
    - destination:
        host: web
        port:
          number: 9080
`, gatewayPort)
	gatewayAddr := "127.0.0.1:" + strconv.Itoa(gatewayPort)
	bind := randomLoopback()
	startCaddy(t, joinDocs(webService(t, b), gateway, vsSidecar("vsfields", bind, nil, vsPort)), meshAddr(bind), gatewayAddr)

	for _, tc := range []struct{ name, addr, url string }{
		{"mesh", meshAddr(bind), "http://web:9080/h2?x=1"},
		{"gateway", gatewayAddr, "http://web.example.com/h2?x=1"},
	} {
		client := h2cClient(t, tc.addr)
		for i := 0; i < 3; i++ {
			req, err := http.NewRequest(http.MethodGet, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			a := newAnswer(resp.StatusCode, resp.Header, body)
			expectBackend(t, tc.name, a, "web", "v1")
			if resp.ProtoMajor != 2 {
				t.Errorf("%s: answered over %s, want HTTP/2", tc.name, resp.Proto)
			}
			if a.Reply != nil && (a.Reply.Path != "/h2" || a.Reply.Query != "x=1") {
				t.Errorf("%s: backend saw %q %q", tc.name, a.Reply.Path, a.Reply.Query)
			}
		}
		host := strings.TrimPrefix(tc.url, "http://")
		host, _, _ = strings.Cut(host, "/")
		out := curl(t, "--http2-prior-knowledge", "-H", "Host: "+host, "-w", "\n%{http_version} %{http_code}", "http://"+tc.addr+"/curl")
		if !strings.HasSuffix(out, "\n2 200") || !strings.Contains(out, `"service": "web"`) {
			t.Errorf("%s: curl --http2-prior-knowledge printed %q", tc.name, out)
		}
	}
}

// A WebSocket upgrade through a route chosen by a header match: the
// handshake and the echo go to the version the header selects.
func TestVSFieldWebSocketHeaderMatch(t *testing.T) {
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
        exact: /ws
      headers:
        x-channel:
          exact: beta
    route:
    - destination:
        host: web
        subset: v2
  - route:
    - destination:
        host: web
        subset: v1
`
	addr := meshAddr(startVSMesh(t, joinDocs(webService(t, b), vs)))
	for _, tc := range []struct{ channel, want string }{{"beta", "v2"}, {"", "v1"}, {"stable", "v1"}} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(requestTimeout))
		extra := ""
		if tc.channel != "" {
			extra = "x-channel: " + tc.channel + "\r\n"
		}
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: web:9080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n", extra)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			conn.Close()
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("x-bookinfo-version") != tc.want {
			t.Errorf("x-channel %q: handshake %d from %q, want 101 from %s", tc.channel, resp.StatusCode, resp.Header.Get("x-bookinfo-version"), tc.want)
			conn.Close()
			continue
		}
		msg := "hello " + tc.want
		if err := writeClientFrame(conn, 0x1, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if opcode, payload, err := readServerFrame(br); err != nil || opcode != 0x1 || string(payload) != msg {
			t.Errorf("x-channel %q: echo opcode %d %q, %v; want %q", tc.channel, opcode, payload, err, msg)
		}
		conn.Close()
	}
}
