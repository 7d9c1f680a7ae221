package istioapp

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/modules/istiolb"
)

// handlerBackend is a loopback server running h.
func handlerBackend(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// serverEndpoint is the workload of a loopback server, on port "http".
func serverEndpoint(t *testing.T, addr string) *Workload {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := parsePort(p)
	return &Workload{Address: host, Ports: map[string]uint32{"http": n}}
}

// oneClusterApp provisions an app with one service of endpoints eps and
// the cluster c (its name, service and port are filled in).
func oneClusterApp(t *testing.T, c *Cluster, eps ...*Workload) *ClusterHandler {
	t.Helper()
	c.Service, c.Port = "svc.example", 80
	cfg := &App{
		Services: []*Service{{
			Hostname: "svc.example", Resolution: "STATIC",
			Ports:     []*ServicePort{{Number: 80, Name: "http"}},
			Endpoints: eps,
		}},
		Clusters: []*Cluster{c},
	}
	app, _ := provisionApp(t, mustJSON(t, cfg))
	return app.ClusterHandler(c.Name)
}

// result is a response seen by a test client.
type result struct {
	code       int
	body       string
	overloaded string
}

// do serves one request through ch; it is safe for concurrent use.
func do(ch *ClusterHandler, path string) result {
	rec := httptest.NewRecorder()
	req := caddyhttp.PrepareRequest(httptest.NewRequest(http.MethodGet, "http://svc.example"+path, nil), caddy.NewReplacer(), rec, &caddyhttp.Server{})
	err := ch.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	if err != nil {
		if he, ok := err.(caddyhttp.HandlerError); ok {
			return result{code: he.StatusCode}
		}
		return result{code: -1, body: err.Error()}
	}
	return result{code: rec.Code, body: rec.Body.String(), overloaded: rec.Header().Get("X-Envoy-Overloaded")}
}

func TestOutlierEjectionThroughProxy(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	good := func(name string) *httptest.Server {
		return handlerBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	a, b := good("a"), good("b")
	bad := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "c")
	})
	ch := oneClusterApp(t, &Cluster{
		Name:  "outbound|80||outlier-proxy.example",
		Proxy: json.RawMessage(`{"load_balancing":{"selection_policy":{"policy":"round_robin"}}}`),
		OutlierDetection: &OutlierDetection{
			Consecutive5xxErrors: 2,
			Interval:             caddy.Duration(time.Hour), // swept by hand
			BaseEjectionTime:     caddy.Duration(30 * time.Second),
			MaxEjectionPercent:   100,
		},
	}, serverEndpoint(t, a.Listener.Addr().String()), serverEndpoint(t, b.Listener.Addr().String()), serverEndpoint(t, bad.Listener.Addr().String()))
	clock := &fakeClock{t: time.Unix(1000, 0)}
	d := ch.lease.outlier
	d.mu.Lock()
	d.now = clock.now
	d.mu.Unlock()

	fails := 0
	for range 9 {
		if r := do(ch, "/"); r.code == 503 {
			fails++
		}
	}
	if fails != 2 {
		t.Errorf("503s before the ejection: %d, want 2", fails)
	}
	for range 20 {
		if r := do(ch, "/"); r.code != 200 {
			t.Fatalf("after ejection: status %d body %q", r.code, r.body)
		}
	}
	failing.Store(false)
	clock.advance(30 * time.Second)
	d.sweep()
	seen := map[string]bool{}
	for range 9 {
		seen[do(ch, "/").body] = true
	}
	if !seen["c"] {
		t.Errorf("the ejected endpoint did not return after the base ejection time: reached %v", seen)
	}
}

func TestOutlierAllEjectedNoHealthyUpstream(t *testing.T) {
	bad := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	ch := oneClusterApp(t, &Cluster{
		Name:             "outbound|80||outlier-all.example",
		OutlierDetection: &OutlierDetection{Consecutive5xxErrors: 1, Interval: caddy.Duration(time.Hour)},
	}, serverEndpoint(t, bad.Listener.Addr().String()))
	if r := do(ch, "/"); r.code != 500 {
		t.Fatalf("first request: %d, want the backend's 500", r.code)
	}
	if r := do(ch, "/"); r.code != 503 {
		t.Errorf("only endpoint ejected: %d, want 503 (no healthy upstream)", r.code)
	}
}

func TestOutlierConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	good := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") })
	ch := oneClusterApp(t, &Cluster{
		Name:             "outbound|80||outlier-connect.example",
		Proxy:            json.RawMessage(`{"load_balancing":{"selection_policy":{"policy":"round_robin"}}}`),
		OutlierDetection: &OutlierDetection{ConsecutiveGatewayErrors: 1, Interval: caddy.Duration(time.Hour)},
	}, serverEndpoint(t, closedAddr), serverEndpoint(t, good.Listener.Addr().String()))
	for range 4 {
		do(ch, "/")
	}
	if got := ejectedList(ch.lease.outlier); got != closedAddr {
		t.Errorf("ejected %q, want the unreachable endpoint %s", got, closedAddr)
	}
}

// blockingBackend holds every request until release is closed, counting
// those that arrived.
func blockingBackend(t *testing.T) (srv *httptest.Server, arrived *atomic.Int32, release func()) {
	arrived = new(atomic.Int32)
	gate := make(chan struct{})
	srv = handlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-gate:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "ok")
	})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return srv, arrived, release
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCircuitBreakerConnectionsAndPending(t *testing.T) {
	srv, arrived, release := blockingBackend(t)
	ch := oneClusterApp(t, &Cluster{
		Name:             "outbound|80||breaker-pending.example",
		Proxy:            json.RawMessage(`{"transport":{"protocol":"http","versions":["1.1"]}}`),
		ConnectionPool:   &ConnectionPool{MaxConnections: 2, MaxPendingRequests: 1},
		OutlierDetection: &OutlierDetection{Consecutive5xxErrors: 1, ConsecutiveGatewayErrors: 1, Interval: caddy.Duration(time.Hour)},
	}, serverEndpoint(t, srv.Listener.Addr().String()))

	results := make(chan result, 3)
	for range 2 {
		go func() { results <- do(ch, "/") }()
	}
	waitFor(t, "two requests at the backend", func() bool { return arrived.Load() == 2 })
	go func() { results <- do(ch, "/") }()
	waitFor(t, "a pending request", func() bool { return ch.transport.pending.Load() == 1 })

	// over the pending cap: Envoy's overflow reply at once
	r := do(ch, "/")
	if r.code != 503 || r.overloaded != "true" || r.body != overflowBody {
		t.Errorf("overflow: %+v, want 503 x-envoy-overloaded %q", r, overflowBody)
	}
	if got := ejectedList(ch.lease.outlier); got != "" {
		t.Errorf("the overflow counted as an outlier error: ejected %q", got)
	}

	release()
	for range 3 {
		if r := <-results; r.code != 200 {
			t.Errorf("request within the limits: %+v, want 200", r)
		}
	}
	if n := ch.transport.active.Load(); n != 0 {
		t.Errorf("active requests after all ended: %d", n)
	}
}

func TestCircuitBreakerMaxRequests(t *testing.T) {
	srv, arrived, release := blockingBackend(t)
	ch := oneClusterApp(t, &Cluster{
		Name:           "outbound|80||breaker-requests.example",
		ConnectionPool: &ConnectionPool{MaxRequests: 3},
	}, serverEndpoint(t, srv.Listener.Addr().String()))

	results := make(chan result, 3)
	for range 3 {
		go func() { results <- do(ch, "/") }()
	}
	waitFor(t, "three requests at the backend", func() bool { return arrived.Load() == 3 })
	for range 3 {
		if r := do(ch, "/"); r.code != 503 || r.overloaded != "true" {
			t.Errorf("over max requests: %+v, want overflow 503", r)
		}
	}
	release()
	for range 3 {
		if r := <-results; r.code != 200 {
			t.Errorf("within max requests: %+v", r)
		}
	}
	// below the limit again: served
	if r := do(ch, "/"); r.code != 200 {
		t.Errorf("after the burst: %+v", r)
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]int{}
	srv := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr]++
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	for _, tc := range []struct {
		perConn   uint32
		wantConns int
	}{{0, 1}, {2, 3}, {1, 6}} {
		clear(conns)
		cp := &ConnectionPool{MaxRequestsPerConnection: tc.perConn}
		if tc.perConn == 0 {
			cp = nil
		}
		ch := oneClusterApp(t, &Cluster{
			Name:           "outbound|80||per-conn.example",
			Proxy:          json.RawMessage(`{"transport":{"protocol":"http","versions":["1.1"]}}`),
			ConnectionPool: cp,
		}, serverEndpoint(t, srv.Listener.Addr().String()))
		for range 6 {
			if r := do(ch, "/"); r.code != 200 {
				t.Fatalf("status %d", r.code)
			}
		}
		mu.Lock()
		if len(conns) != tc.wantConns {
			t.Errorf("max %d requests per connection: 6 requests used %d connections (%v), want %d", tc.perConn, len(conns), conns, tc.wantConns)
		}
		mu.Unlock()
	}
}

func TestMaxConnectionDuration(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]int{}
	srv := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr]++
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	ch := oneClusterApp(t, &Cluster{
		Name:           "outbound|80||conn-duration.example",
		Proxy:          json.RawMessage(`{"transport":{"protocol":"http","versions":["1.1"]}}`),
		ConnectionPool: &ConnectionPool{MaxConnectionDuration: caddy.Duration(100 * time.Millisecond)},
	}, serverEndpoint(t, srv.Listener.Addr().String()))
	do(ch, "/")
	do(ch, "/")
	time.Sleep(300 * time.Millisecond)
	do(ch, "/")
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 2 {
		t.Errorf("connections %v, want the first reused once, then a new one past its duration", conns)
	}
}

// connectProxy is a loopback HTTP CONNECT proxy that records the targets
// asked for.
func connectProxy(t *testing.T) (addr string, targets func() []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var seen []string
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				mu.Lock()
				seen = append(seen, req.Method+" "+req.Host)
				mu.Unlock()
				if req.Method != http.MethodConnect {
					io.WriteString(conn, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
					return
				}
				up, err := net.DialTimeout("tcp", req.Host, 5*time.Second)
				if err != nil {
					io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
					return
				}
				defer up.Close()
				io.WriteString(conn, "HTTP/1.1 200 OK\r\n\r\n")
				go io.Copy(up, br)
				io.Copy(conn, up)
			}()
		}
	}()
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func TestTunnel(t *testing.T) {
	target := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "target") })
	proxyAddr, targets := connectProxy(t)
	host, port, _ := net.SplitHostPort(target.Listener.Addr().String())
	n, _ := parsePort(port)
	ch := oneClusterApp(t, &Cluster{
		Name:   "outbound|80||tunnel.example",
		Tunnel: &Tunnel{TargetHost: host, TargetPort: n},
	}, serverEndpoint(t, proxyAddr))
	if r := do(ch, "/"); r.code != 200 || r.body != "target" {
		t.Fatalf("through the tunnel: %+v, want 200 target", r)
	}
	if got := strings.Join(targets(), ","); got != "CONNECT "+target.Listener.Addr().String() {
		t.Errorf("proxy saw %q, want one CONNECT to the target", got)
	}

	// a refused tunnel is a connect failure
	ch = oneClusterApp(t, &Cluster{
		Name:   "outbound|80||tunnel-refused.example",
		Tunnel: &Tunnel{TargetHost: "127.0.0.1", TargetPort: 1},
	}, serverEndpoint(t, proxyAddr))
	if r := do(ch, "/"); r.code != 502 {
		t.Errorf("refused tunnel: %+v, want 502", r)
	}
}

func TestAdmitRetry(t *testing.T) {
	srv := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	ep := serverEndpoint(t, srv.Listener.Addr().String())

	ch := oneClusterApp(t, &Cluster{Name: "outbound|80||retry-max.example", ConnectionPool: &ConnectionPool{MaxRetries: 2}}, ep)
	done1, ok1 := ch.AdmitRetry()
	_, ok2 := ch.AdmitRetry()
	_, ok3 := ch.AdmitRetry()
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("max retries 2: admitted %v %v %v, want true true false", ok1, ok2, ok3)
	}
	done1()
	done1() // idempotent
	if _, ok := ch.AdmitRetry(); !ok {
		t.Error("a finished retry did not free its place")
	}
	if _, ok := ch.AdmitRetry(); ok {
		t.Error("done called twice freed two places")
	}

	// budget: max(min concurrency, percent of active requests); nothing is
	// active here, so the minimum applies
	ch = oneClusterApp(t, &Cluster{Name: "outbound|80||retry-budget.example", RetryBudget: &RetryBudget{}, ConnectionPool: &ConnectionPool{MaxRetries: 100}}, ep)
	admitted := 0
	for range 10 {
		if _, ok := ch.AdmitRetry(); ok {
			admitted++
		}
	}
	if admitted != defaultRetryBudgetMinConcurrency {
		t.Errorf("retry budget with no active requests admitted %d, want %d", admitted, defaultRetryBudgetMinConcurrency)
	}
	ch.transport.active.Store(100)
	if _, ok := ch.AdmitRetry(); !ok {
		t.Error("retry budget at 20% of 100 active requests refused the 4th retry")
	}

	ch = oneClusterApp(t, &Cluster{Name: "outbound|80||retry-none.example"}, ep)
	for range 50 {
		if _, ok := ch.AdmitRetry(); !ok {
			t.Fatal("no cap: retry refused")
		}
	}
}

func TestUpstreamTLSNeedsTransportTLS(t *testing.T) {
	cfg := `{"services":[{"hostname":"s.example","resolution":"STATIC","ports":[{"number":80,"name":"http"}]}],` +
		`"clusters":[{"name":"outbound|80||tls-error.example","service":"s.example","port":80,"tls":{"subject_alt_names":["a.example"]}}]}`
	_, err := caddy.ProvisionContext(&caddy.Config{AppsRaw: caddy.ModuleMap{"istio": json.RawMessage(cfg)}})
	if err == nil || !strings.Contains(err.Error(), "tls: the proxy transport must enable tls") {
		t.Errorf("error = %v, want tls: the proxy transport must enable tls", err)
	}
}

// infoPolicy is a selection policy that keeps the EndpointInfo it is given.
type infoPolicy struct{ info istiolb.EndpointInfo }

func (infoPolicy) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.istioapp_test_info",
		New: func() caddy.Module { return new(infoPolicy) },
	}
}

func (p *infoPolicy) Select(pool reverseproxy.UpstreamPool, _ *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	return pool[0]
}

func (p *infoPolicy) SetEndpointInfo(info istiolb.EndpointInfo) { p.info = info }

func init() { caddy.RegisterModule(infoPolicy{}) }

func TestEndpointInfoGivenToSelectionPolicy(t *testing.T) {
	srv := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	ep := serverEndpoint(t, srv.Listener.Addr().String())
	ep.Weight = 7
	ch := oneClusterApp(t, &Cluster{
		Name:  "outbound|80||info.example",
		Proxy: json.RawMessage(`{"load_balancing":{"selection_policy":{"policy":"istioapp_test_info"}}}`),
	}, ep)
	info := ch.proxy.LoadBalancing.SelectionPolicy.(*infoPolicy).info
	if info == nil {
		t.Fatal("SetEndpointInfo was not called")
	}
	dial := srv.Listener.Addr().String()
	// an endpoint of a new cluster is not slow-started: zero time
	if info.EndpointWeight(dial) != 7 || !info.EndpointAddedAt(dial).IsZero() {
		t.Errorf("endpoint info: weight %d added %v, want 7 and the zero time", info.EndpointWeight(dial), info.EndpointAddedAt(dial))
	}
}

func TestPerConnectionLimitsOverTLS(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]int{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr]++
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name, tls string
	}{
		{"go handshake", `{"insecure_skip_verify":true}`},
		// a server name placeholder makes Caddy dial TLS itself
		{"caddy handshake", `{"insecure_skip_verify":true,"server_name":"{http.request.host}"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clear(conns)
			ch := oneClusterApp(t, &Cluster{
				Name:           "outbound|80||per-conn-tls.example",
				Proxy:          json.RawMessage(`{"transport":{"protocol":"http","versions":["1.1"],"tls":` + tc.tls + `}}`),
				ConnectionPool: &ConnectionPool{MaxRequestsPerConnection: 2},
			}, serverEndpoint(t, srv.Listener.Addr().String()))
			for range 6 {
				if r := do(ch, "/"); r.code != 200 {
					t.Fatalf("%+v", r)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(conns) != 3 {
				t.Errorf("6 requests with at most 2 per connection used %d connections, want 3", len(conns))
			}
		})
	}
}

func TestTunnelTLS(t *testing.T) {
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls target") }))
	t.Cleanup(target.Close)
	proxyAddr, targets := connectProxy(t)
	host, port, _ := net.SplitHostPort(target.Listener.Addr().String())
	n, _ := parsePort(port)
	ch := oneClusterApp(t, &Cluster{
		Name:   "outbound|80||tunnel-tls.example",
		Proxy:  json.RawMessage(`{"transport":{"protocol":"http","versions":["1.1"],"tls":{"insecure_skip_verify":true,"server_name":"{http.request.host}"}}}`),
		Tunnel: &Tunnel{TargetHost: host, TargetPort: n},
	}, serverEndpoint(t, proxyAddr))
	if r := do(ch, "/"); r.code != 200 || r.body != "tls target" {
		t.Fatalf("TLS through the tunnel: %+v", r)
	}
	if got := strings.Join(targets(), ","); got != "CONNECT "+target.Listener.Addr().String() {
		t.Errorf("proxy saw %q", got)
	}
}

// TestPerConnectionLimitsHTTP2: maxRequestsPerConnection counts the
// streams of an HTTP/2 connection (h2c and h2 over TLS), as Envoy does: the
// Nth is the last one opened on the connection.
func TestPerConnectionLimitsHTTP2(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]int{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr]++
		mu.Unlock()
		if r.ProtoMajor != 2 {
			http.Error(w, "want HTTP/2, got "+r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		io.WriteString(w, "ok")
	})
	h2c := httptest.NewUnstartedServer(handler)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	t.Cleanup(h2c.Close)
	h2 := httptest.NewUnstartedServer(handler)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	for _, tc := range []struct {
		name, transport string
		srv             *httptest.Server
	}{
		{"h2c", `{"protocol":"http","versions":["h2c"]}`, h2c},
		{"h2", `{"protocol":"http","versions":["2"],"tls":{"insecure_skip_verify":true}}`, h2},
		{"h2 with auto-SNI", `{"protocol":"http","versions":["2"],"tls":{"insecure_skip_verify":true,"server_name":"` + AutoSNI + `"}}`, h2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			clear(conns)
			mu.Unlock()
			ch := oneClusterApp(t, &Cluster{
				Name:           "outbound|80||per-conn-h2.example",
				Proxy:          json.RawMessage(`{"transport":` + tc.transport + `}`),
				ConnectionPool: &ConnectionPool{MaxRequestsPerConnection: 2},
			}, serverEndpoint(t, tc.srv.Listener.Addr().String()))
			for range 6 {
				if r := do(ch, "/"); r.code != 200 {
					t.Fatalf("%+v", r)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(conns) != 3 {
				t.Errorf("6 HTTP/2 requests with at most 2 per connection used %d connections (%v), want 3", len(conns), conns)
			}
		})
	}
}
