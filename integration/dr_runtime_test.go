package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DestinationRule traffic policy at runtime: outlier detection ejects and
// returns endpoints, connection pool limits answer Envoy's overflow 503.

// switchBackend is a loopback backend that answers 200 with its name, or
// failStatus while failing is set, counting the requests it gets. While
// gate is set, it holds each request until gate is closed.
type switchBackend struct {
	name       string
	addr       string
	failStatus int
	failing    atomic.Bool
	requests   atomic.Int32
	gate       chan struct{}
}

func startSwitchBackend(t *testing.T, name string, failStatus int, gate chan struct{}) *switchBackend {
	t.Helper()
	b := &switchBackend{name: name, failStatus: failStatus, gate: gate}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		if b.gate != nil {
			select {
			case <-b.gate:
			case <-r.Context().Done():
				return
			case <-time.After(requestTimeout):
			}
		}
		if b.failing.Load() {
			w.WriteHeader(b.failStatus)
			return
		}
		io.WriteString(w, b.name)
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	b.addr = ln.Addr().String()
	return b
}

// poolConfig is the Service "pool" on vsPort with one WorkloadEntry per
// backend (version: its name), a VirtualService routing every request to
// it, and a DestinationRule with trafficPolicy (lines indented four

// poolVirtualService routes every request for host pool to the whole
// service, so the DestinationRule's host-level policy applies.
const poolVirtualService = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: pool
spec:
  hosts:
  - pool
  http:
  - route:
    - destination:
        host: pool
`

// spaces).
func poolConfig(t *testing.T, trafficPolicy string, bs ...*switchBackend) string {
	t.Helper()
	b := backends{}
	for _, sb := range bs {
		b["pool/"+sb.name] = sb.addr
	}
	vs := poolVirtualService
	dr := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: pool
spec:
  host: pool
  trafficPolicy:
` + trafficPolicy
	return joinDocs(kubeService("pool", vsPort), vs, dr, workloadEntries(t, b))
}

func poolURL() string { return fmt.Sprintf("http://pool:%d/", vsPort) }

// TestDROutlierEjection: one of three endpoints starts failing with 503; after
// two consecutive 5xx it gets no requests; once it is healthy again it
// returns after the base ejection time.
func TestDROutlierEjection(t *testing.T) {
	requireBinaries(t)
	a := startSwitchBackend(t, "a", 503, nil)
	b := startSwitchBackend(t, "b", 503, nil)
	bad := startSwitchBackend(t, "c", 503, nil)
	bad.failing.Store(true)
	config := poolConfig(t, `    loadBalancer:
      simple: ROUND_ROBIN
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 200ms
      baseEjectionTime: 1s
      maxEjectionPercent: 100
`, a, b, bad)
	client := hostClient(t, meshAddr(startVSMesh(t, config)))

	get := func() answer {
		req, _ := http.NewRequest(http.MethodGet, poolURL(), nil)
		return do(t, client, req)
	}
	for i := 0; bad.requests.Load() < 2; i++ {
		if i == 30 {
			t.Fatalf("the failing endpoint got %d requests out of 30, want 2 in round robin", bad.requests.Load())
		}
		get()
	}
	ejectedAt := time.Now()
	for range 12 {
		if r := get(); r.Status != http.StatusOK {
			t.Errorf("after the ejection: %v, want 200 from a healthy endpoint", r)
		}
	}
	// only meaningful while the ejection (1s) lasts; a slow machine may
	// have outlived it
	if n := bad.requests.Load(); n != 2 && time.Since(ejectedAt) < 800*time.Millisecond {
		t.Errorf("the ejected endpoint got %d requests, want no more than the 2 that ejected it", n)
	}

	bad.failing.Store(false)
	before := bad.requests.Load()
	deadline := time.Now().Add(10 * time.Second)
	for bad.requests.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the ejected endpoint did not return within 10s (base ejection time 1s)")
		}
		get()
		time.Sleep(50 * time.Millisecond)
	}
	if since := time.Since(ejectedAt); since < 900*time.Millisecond {
		t.Errorf("the endpoint returned %v after its ejection, before the base ejection time (1s)", since)
	}
}

// TestDRCircuitBreaker: with maxConnections 1 and http1MaxPendingRequests 1,
// a third concurrent request gets Envoy's overflow 503 at once, the two
// others are served; within the limits every request is served.
func TestDRCircuitBreaker(t *testing.T) {
	requireBinaries(t)
	gate := make(chan struct{})
	var closeGate sync.Once
	release := func() { closeGate.Do(func() { close(gate) }) }
	t.Cleanup(release)
	held := startSwitchBackend(t, "held", 503, gate)
	free := startSwitchBackend(t, "free", 503, nil)

	limited := poolConfig(t, `    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
`, held)
	unlimited := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: roomy
spec:
  host: roomy
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 4
      http:
        http1MaxPendingRequests: 4
`
	roomyEntry := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: roomy
spec:
  hosts:
  - roomy
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: %d
    name: http
    protocol: HTTP
  endpoints:
  - address: 127.0.0.1
    ports:
      http: %s
`, vsPort, portOf(t, free.addr))
	client := hostClient(t, meshAddr(startVSMesh(t, joinDocs(limited, unlimited, roomyEntry))))

	type reply struct {
		a   answer
		err error
	}
	send := func(url string, out chan<- reply) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			out <- reply{err: err}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		out <- reply{a: newAnswer(resp.StatusCode, resp.Header, body)}
	}

	inFlight := make(chan reply, 2)
	go send(poolURL(), inFlight)
	deadline := time.Now().Add(startTimeout)
	for held.requests.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first request did not reach the backend")
		}
		time.Sleep(10 * time.Millisecond)
	}
	go send(poolURL(), inFlight)
	// the second request waits for the connection: give it time to queue
	time.Sleep(300 * time.Millisecond)

	over := make(chan reply, 1)
	go send(poolURL(), over)
	select {
	case r := <-over:
		if r.err != nil {
			t.Fatalf("request over the limits: %v", r.err)
		}
		if r.a.Status != http.StatusServiceUnavailable || r.a.Header.Get("X-Envoy-Overloaded") != "true" ||
			r.a.Body != "upstream connect error or disconnect/reset before headers. reset reason: overflow" {
			t.Errorf("request over the limits: %v, want Envoy's overflow 503 with x-envoy-overloaded", r.a)
		}
	case <-time.After(requestTimeout):
		t.Fatal("the request over the limits waited instead of failing at once")
	}
	if n := held.requests.Load(); n != 1 {
		t.Errorf("the backend got %d requests while its connection was busy, want 1", n)
	}

	release()
	for range 2 {
		r := <-inFlight
		if r.err != nil || r.a.Status != http.StatusOK {
			t.Errorf("request within the limits: %v %v, want 200", r.a, r.err)
		}
	}

	// within the limits: none overflows
	results := make(chan reply, 4)
	for range 4 {
		go send(fmt.Sprintf("http://roomy:%d/", vsPort), results)
	}
	for range 4 {
		r := <-results
		if r.err != nil || r.a.Status != http.StatusOK || r.a.Header.Get("X-Envoy-Overloaded") != "" {
			t.Errorf("request within the limits: %v %v, want 200", r.a, r.err)
		}
	}
}

// portOf is the port of host:port.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestDRMaxRequestsPerConnection: http.maxRequestsPerConnection 2 makes
// the proxy open a new upstream connection every second request.
func TestDRMaxRequestsPerConnection(t *testing.T) {
	requireBinaries(t)
	var mu sync.Mutex
	conns := map[string]int{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr]++
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	b := &switchBackend{name: "v1", addr: ln.Addr().String()}
	config := poolConfig(t, `    connectionPool:
      http:
        maxRequestsPerConnection: 2
`, b)
	client := hostClient(t, meshAddr(startVSMesh(t, config)))
	for range 6 {
		req, _ := http.NewRequest(http.MethodGet, poolURL(), nil)
		if r := do(t, client, req); r.Status != http.StatusOK {
			t.Fatalf("%v", r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 3 {
		t.Errorf("6 requests with at most 2 per connection reached the backend on %d connections (%v), want 3", len(conns), conns)
	}
}

// TestDRLocalityFailover: this proxy (the Sidecar's WorkloadEntry) is in
// us-east/z1/s1; with outlier detection, requests go to the endpoint of
// its own locality only, and to the other region once it is ejected.
func TestDRLocalityFailover(t *testing.T) {
	requireBinaries(t)
	local := startSwitchBackend(t, "local", 503, nil)
	remote := startSwitchBackend(t, "remote", 503, nil)
	entry := func(name, addr, locality string) string {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: %s
spec:
  address: %s
  locality: %s
  labels:
    app: %s
  ports:
    http: %s
`, name, host, locality, map[bool]string{true: "proxy", false: "pool"}[name == "proxy"], port)
	}
	vs := poolVirtualService
	dr := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: pool
spec:
  host: pool
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1h
      baseEjectionTime: 1h
`
	bind := randomLoopback()
	config := joinDocs(kubeService("pool", vsPort), vs, dr,
		entry("pool-remote", remote.addr, "eu-west/z1/s1"),
		entry("pool-local", local.addr, "us-east/z1/s1"),
		entry("proxy", "127.0.0.1:1", "us-east/z1/s1"),
		vsSidecar("dr-locality", bind, map[string]string{"app": "proxy"}, vsPort))
	startCaddy(t, config, meshAddr(bind))
	client := hostClient(t, meshAddr(bind))
	get := func() answer {
		req, _ := http.NewRequest(http.MethodGet, poolURL(), nil)
		return do(t, client, req)
	}
	for range 10 {
		if r := get(); r.Body != "local" {
			t.Fatalf("healthy local endpoint: %v %q, want every request at the local endpoint", r, r.Body)
		}
	}
	local.failing.Store(true)
	get() // its 503 ejects it
	for range 10 {
		if r := get(); r.Body != "remote" {
			t.Fatalf("local endpoint ejected: %v %q, want the other region's endpoint", r, r.Body)
		}
	}
}

// TestDRTunnel: with trafficPolicy.tunnel, each upstream connection is an
// HTTP CONNECT tunnel that the endpoint (a proxy) opens to the target.
func TestDRTunnel(t *testing.T) {
	requireBinaries(t)
	target := startSwitchBackend(t, "target", 503, nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var connects atomic.Int32
	var badRequest atomic.Value
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 0, 512)
				one := make([]byte, 1)
				// read the CONNECT request head byte by byte, so nothing
				// after it is consumed
				for !strings.HasSuffix(string(buf), "\r\n\r\n") && len(buf) < 4096 {
					if _, err := conn.Read(one); err != nil {
						return
					}
					buf = append(buf, one[0])
				}
				if want := "CONNECT " + target.addr + " HTTP/1.1\r\n"; !strings.HasPrefix(string(buf), want) {
					badRequest.Store(string(buf))
					io.WriteString(conn, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
					return
				}
				connects.Add(1)
				up, err := net.DialTimeout("tcp", target.addr, 5*time.Second)
				if err != nil {
					io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
					return
				}
				defer up.Close()
				io.WriteString(conn, "HTTP/1.1 200 OK\r\n\r\n")
				go io.Copy(up, conn)
				io.Copy(conn, up)
			}()
		}
	}()

	host, port, _ := net.SplitHostPort(target.addr)
	config := poolConfig(t, fmt.Sprintf(`    tunnel:
      protocol: CONNECT
      targetHost: %s
      targetPort: %s
`, host, port), &switchBackend{name: "proxy", addr: ln.Addr().String()})
	client := hostClient(t, meshAddr(startVSMesh(t, config)))
	req, _ := http.NewRequest(http.MethodGet, poolURL(), nil)
	if r := do(t, client, req); r.Status != http.StatusOK || r.Body != "target" {
		t.Errorf("through the tunnel: %v %q, want 200 from the target", r, r.Body)
	}
	if bad := badRequest.Load(); bad != nil {
		t.Errorf("the endpoint got %q, want CONNECT %s", bad, target.addr)
	}
	if connects.Load() == 0 {
		t.Error("no CONNECT reached the endpoint")
	}
}

// TestDROutlierAllEjected: with its only endpoint ejected (panic mode off,
// Istio's default), the cluster answers Envoy's "no healthy upstream".
func TestDROutlierAllEjected(t *testing.T) {
	requireBinaries(t)
	bad := startSwitchBackend(t, "bad", 500, nil)
	bad.failing.Store(true)
	config := poolConfig(t, `    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1h
      baseEjectionTime: 1h
`, bad)
	client := hostClient(t, meshAddr(startVSMesh(t, config)))
	get := func() answer {
		req, _ := http.NewRequest(http.MethodGet, poolURL(), nil)
		return do(t, client, req)
	}
	if r := get(); r.Status != http.StatusInternalServerError {
		t.Fatalf("first request: %v, want the endpoint's 500", r)
	}
	if r := get(); r.Status != http.StatusServiceUnavailable || r.Body != "no healthy upstream" {
		t.Errorf("endpoint ejected: %v %q, want 503 no healthy upstream", r, r.Body)
	}
	if n := bad.requests.Load(); n != 1 {
		t.Errorf("the ejected endpoint got %d requests, want 1", n)
	}
}

// TestDROutlierSurvivesReload: an ejected endpoint stays ejected when the
// configuration is reloaded with the cluster unchanged.
func TestDROutlierSurvivesReload(t *testing.T) {
	requireBinaries(t)
	good := startSwitchBackend(t, "good", 500, nil)
	bad := startSwitchBackend(t, "bad", 500, nil)
	bad.failing.Store(true)
	config := poolConfig(t, `    loadBalancer:
      simple: ROUND_ROBIN
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1h
      baseEjectionTime: 1h
      maxEjectionPercent: 100
`, good, bad)
	bind := randomLoopback()
	full := joinDocs(config, vsSidecar("vsfields", bind, nil, vsPort))
	caddy := startCaddy(t, full, meshAddr(bind))
	client := hostClient(t, meshAddr(bind))
	get := func() answer {
		req, _ := http.NewRequest(http.MethodGet, poolURL(), nil)
		return do(t, client, req)
	}
	for i := 0; bad.requests.Load() == 0; i++ {
		if i == 10 {
			t.Fatal("the failing endpoint got no request")
		}
		get()
	}

	// reload the same configuration (forced: Caddy skips an unchanged one)
	req, _ := http.NewRequest(http.MethodPost, "http://"+caddy.adminAddr+"/load", strings.NewReader(full))
	req.Header.Set("Content-Type", "text/istio")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}
	if n := strings.Count(caddy.output.String(), "istio registry loaded"); n < 2 {
		t.Fatalf("the istio app was loaded %d times, want a reload", n)
	}

	before := bad.requests.Load()
	for range 10 {
		if r := get(); r.Status != http.StatusOK {
			t.Errorf("after the reload: %v, want 200 from the healthy endpoint", r)
		}
	}
	if n := bad.requests.Load(); n != before {
		t.Errorf("the ejected endpoint got %d requests after the reload, want none", n-before)
	}
}
