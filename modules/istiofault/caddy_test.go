package istiofault

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// These tests run the handler in a real Caddy, one at a time (Caddy has one
// running config per process), in front of a loopback backend that counts
// the requests it gets.

// countingBackend starts a loopback backend answering 200 "backend".
func countingBackend(t *testing.T) (addr string, hits *atomic.Int64) {
	t.Helper()
	hits = new(atomic.Int64)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "backend")
	}))
	t.Cleanup(backend.Close)
	return backend.Listener.Addr().String(), hits
}

// freeAddr returns a free 127.0.0.1 TCP address.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runCaddy loads cfg (admin disabled, not persisted) and stops it when the
// test ends.
func runCaddy(t *testing.T, cfg []byte) {
	t.Helper()
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v\n%s", err, cfg)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
}

// runFaultProxy runs Caddy on a free address with the handler (fault as
// JSON) before a reverse proxy to a counting backend.
func runFaultProxy(t *testing.T, fault string, protocols ...string) (url string, hits *atomic.Int64) {
	t.Helper()
	backend, hits := countingBackend(t)
	addr := freeAddr(t)
	if len(protocols) == 0 {
		protocols = []string{"h1"}
	}
	protocolsJSON, _ := json.Marshal(protocols)
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"apps": {"http": {"servers": {"fault": {
			"listen": [%q],
			"protocols": %s,
			"automatic_https": {"disable": true},
			"routes": [{"handle": [
				%s,
				{"handler": "reverse_proxy", "upstreams": [{"dial": %q}]}
			]}]
		}}}}
	}`, addr, protocolsJSON, fault, backend)
	runCaddy(t, []byte(cfg))
	return "http://" + addr, hits
}

var testClient = &http.Client{Timeout: 20 * time.Second}

// get sends a GET and returns status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := testClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// countAborts sends n GETs over a few connections and counts the 503s
// with the abort body; any other answer must come from the backend.
func countAborts(t *testing.T, url string, n int) int {
	t.Helper()
	const workers = 4
	var aborts, others atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				resp, err := testClient.Get(url)
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 503 && string(body) == abortBody:
					aborts.Add(1)
				case resp.StatusCode == 200 && string(body) == "backend":
				default:
					others.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if others.Load() != 0 {
		t.Fatalf("%d answers neither aborted nor from the backend", others.Load())
	}
	return int(aborts.Load())
}

func TestCaddyAbortAlways(t *testing.T) {
	url, hits := runFaultProxy(t, `{"handler": "istio_fault", "abort": {"http_status": 503, "percentage": 100}}`)
	resp, err := testClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != abortBody || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("got %d %q %q, want 503 %q text/plain", resp.StatusCode, resp.Header.Get("Content-Type"), body, abortBody)
	}
	if aborts := countAborts(t, url, 200); aborts != 200 {
		t.Fatalf("%d of 200 requests aborted, want all", aborts)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("backend got %d requests, want 0", n)
	}
}

func TestCaddyAbortPercentage(t *testing.T) {
	const n = 2000
	tests := []struct {
		name     string
		fault    string
		min, max int
	}{
		// 50% within 4 points: 3.6 standard deviations for 2000 draws.
		{"half", `{"handler": "istio_fault", "abort": {"http_status": 503, "percentage": 50}}`, n * 46 / 100, n * 54 / 100},
		{"zero", `{"handler": "istio_fault", "abort": {"http_status": 503, "percentage": 0}}`, 0, 0},
		{"absent", `{"handler": "istio_fault", "abort": {"http_status": 503}}`, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, hits := runFaultProxy(t, tt.fault)
			aborts := countAborts(t, url, n)
			if aborts < tt.min || aborts > tt.max {
				t.Errorf("%d of %d requests aborted, want %d to %d", aborts, n, tt.min, tt.max)
			}
			if got, want := hits.Load(), int64(n-aborts); got != want {
				t.Errorf("backend got %d requests, want the %d not aborted", got, want)
			}
		})
	}
}

func TestCaddyDelay(t *testing.T) {
	const delay = 200 * time.Millisecond
	tests := []struct {
		name      string
		fault     string
		status    int
		body      string
		backendOK bool
	}{
		{"delay", `{"handler": "istio_fault", "delay": {"fixed_delay": "200ms", "percentage": 100}}`, 200, "backend", true},
		{"delay then abort", `{"handler": "istio_fault", "delay": {"fixed_delay": "200ms", "percentage": 100},
			"abort": {"http_status": 429, "percentage": 100}}`, 429, abortBody, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, hits := runFaultProxy(t, tt.fault)
			start := time.Now()
			status, body := get(t, url)
			elapsed := time.Since(start)
			if status != tt.status || body != tt.body {
				t.Errorf("got %d %q, want %d %q", status, body, tt.status, tt.body)
			}
			// Generous bounds: no timing assertion beyond "it waited".
			if elapsed < delay*9/10 || elapsed > 5*time.Second {
				t.Errorf("answered after %v, want about %v", elapsed, delay)
			}
			if got := hits.Load() == 1; got != tt.backendOK {
				t.Errorf("backend got %d requests", hits.Load())
			}
		})
	}
}

// probeResults receives what the handlers after the probe returned.
var probeResults = make(chan error, 16)

// probe is a test handler that reports what the rest of the chain returns.
type probe struct{}

func (probe) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.istio_fault_test_probe",
		New: func() caddy.Module { return new(probe) },
	}
}

func (probe) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	err := next.ServeHTTP(w, r)
	probeResults <- err
	return err
}

func init() {
	caddy.RegisterModule(probe{})
}

func TestCaddyClientCancelDuringDelay(t *testing.T) {
	url, hits := runFaultProxy(t, `{"handler": "istio_fault_test_probe"},
		{"handler": "istio_fault", "delay": {"fixed_delay": "10s", "percentage": 100}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got %d, want the request canceled during the delay", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request ended with %v, want the client's timeout", err)
	}
	// The server sees the closed connection and must give up the request
	// long before the 10s delay ends, with a client-cancel error and
	// without proxying it.
	select {
	case err := <-probeResults:
		var handlerErr caddyhttp.HandlerError
		if !errors.As(err, &handlerErr) || handlerErr.StatusCode != 499 || !errors.Is(err, context.Canceled) {
			t.Fatalf("handler returned %#v, want a 499 error wrapping context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not return within 5s of the client's cancel")
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("handler returned after %v", elapsed)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("backend got %d requests, want 0", n)
	}
}

// TestCaddyGRPCAbortHTTP2 reads the grpc abort with a real HTTP/2 client
// over h2c, as a gRPC client would.
func TestCaddyGRPCAbortHTTP2(t *testing.T) {
	url, hits := runFaultProxy(t, `{"handler": "istio_fault", "abort": {"grpc_status": "UNAVAILABLE", "percentage": 100}}`, "h1", "h2c")
	transport := &http.Transport{Protocols: new(http.Protocols), TLSClientConfig: &tls.Config{}}
	transport.Protocols.SetUnencryptedHTTP2(true)
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 20 * time.Second}

	req, err := http.NewRequest("POST", url+"/helloworld.Greeter/SayHello", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc" ||
		resp.Header.Get("Grpc-Status") != "14" || resp.Header.Get("Grpc-Message") != abortBody {
		t.Fatalf("got %d %v, want a trailers-only gRPC response with grpc-status 14", resp.StatusCode, resp.Header)
	}
	if len(body) != 0 || len(resp.Trailer) != 0 {
		t.Fatalf("got body %q and trailers %v, want neither (trailers-only)", body, resp.Trailer)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("backend got %d requests, want 0", n)
	}
}

func TestCaddyfile(t *testing.T) {
	backend, hits := countingBackend(t)
	addr := freeAddr(t)
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	log {
		level ERROR
	}
}

http://%s {
	istio_fault /abort* {
		abort 418
	}
	istio_fault /slow* {
		delay 200ms 100%%
	}
	reverse_proxy %s
}
`, addr, backend)
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	if len(warnings) != 0 {
		t.Fatalf("adapting warned: %v", warnings)
	}
	runCaddy(t, cfg)
	url := "http://" + addr

	if status, body := get(t, url+"/abort"); status != 418 || body != abortBody {
		t.Errorf("/abort: got %d %q, want 418 %q", status, body, abortBody)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("backend got %d requests after the abort, want 0", n)
	}
	start := time.Now()
	if status, body := get(t, url+"/slow"); status != 200 || body != "backend" {
		t.Errorf("/slow: got %d %q, want 200 from the backend", status, body)
	}
	if elapsed := time.Since(start); elapsed < 180*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("/slow answered after %v, want about 200ms", elapsed)
	}
	if status, body := get(t, url+"/other"); status != 200 || body != "backend" {
		t.Errorf("/other: got %d %q, want 200 from the backend", status, body)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("backend got %d requests, want 2", n)
	}
}
