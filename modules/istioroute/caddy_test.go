package istioroute

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
	"github.com/caddy-istio/caddy-istio/modules/istiofault"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// streamingBackend writes "first", flushes, and writes "second" only once
// the client has read the first chunk. It reports on streamed whether the
// client got the first chunk while the response was still open.
func streamingBackend(t *testing.T, clientRead <-chan struct{}, streamed chan<- bool) *backend {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-clientRead:
			streamed <- true
		case <-time.After(5 * time.Second):
			streamed <- false
		}
		_, _ = io.WriteString(w, "second\n")
	}))
	t.Cleanup(srv.Close)
	return &backend{name: "stream", srv: srv}
}

// echoUpgradeBackend switches to a raw echo protocol on an Upgrade request,
// as a websocket server does after its handshake.
func echoUpgradeBackend(t *testing.T) *backend {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		_, _ = rw.WriteString("echo: " + line)
		_ = rw.Flush()
	}))
	t.Cleanup(srv.Close)
	return &backend{name: "ws", srv: srv}
}

// TestCaddyServer runs the istio app and an http server whose route is
// istio_route through caddy.Load, with a real client.
func TestCaddyServer(t *testing.T) {
	v1 := newBackend(t, "v1")
	v2 := newBackend(t, "v2")
	clientRead := make(chan struct{})
	streamed := make(chan bool, 1)
	stream := streamingBackend(t, clientRead, streamed)
	ws := echoUpgradeBackend(t)

	app := reviewsApp(v1, v2)
	for _, b := range []*backend{stream, ws} {
		host := b.name + ".example.test"
		app.Services = append(app.Services, &istioapp.Service{
			Hostname: host, Resolution: "STATIC",
			Ports:     []*istioapp.ServicePort{{Number: 80, Name: "http"}},
			Endpoints: []*istioapp.Workload{b.endpoint(nil)},
		})
		app.Clusters = append(app.Clusters, &istioapp.Cluster{Name: cluster(80, "", host), Service: host, Port: 80})
	}
	vhosts := []*VirtualHost{
		reviewsRoutes(),
		{Name: "stream", Domains: []string{"stream.example.test"}, Routes: []*Route{{Route: []*Destination{{Cluster: cluster(80, "", "stream.example.test")}}}}},
		{Name: "ws", Domains: []string{"ws.example.test"}, Routes: []*Route{{Route: []*Destination{{Cluster: cluster(80, "", "ws.example.test")}}}}},
	}

	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	config := map[string]any{
		"admin": map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"apps": map[string]any{
			"istio": app,
			"http": map[string]any{
				"servers": map[string]any{
					"mesh": map[string]any{
						"listen":          []string{addr},
						"automatic_https": map[string]any{"disable": true},
						"routes": []any{map[string]any{
							"handle": []any{map[string]any{"handler": "istio_route", "virtual_hosts": vhosts}},
						}},
					},
				},
			},
		},
	}
	if err := caddy.Load(mustJSON(t, config), true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	client := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	do := func(method, path, host string, header ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for i := 0; i < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	t.Run("routes", func(t *testing.T) {
		for _, tc := range []struct {
			path, host string
			header     []string
			code       int
			body       string
		}{
			{"/", "reviews:9080", []string{"End-User", "jason"}, 200, "v2"},
			{"/v1/x", "reviews:9080", nil, 200, "v1"},
			{"/", reviewsHost, nil, 200, "v2"},
			{"/v3", "reviews", nil, 503, "no healthy upstream"},
			{"/v9", "reviews", nil, 503, ""},
			{"/teapot", "reviews", nil, 418, "short and stout"},
			{"/", "unknown.example", nil, 404, ""},
		} {
			resp, body := do("GET", tc.path, tc.host, tc.header...)
			if resp.StatusCode != tc.code || body != tc.body {
				t.Errorf("GET %s Host %s: %d %q, want %d %q", tc.path, tc.host, resp.StatusCode, body, tc.code, tc.body)
			}
		}
		resp, _ := do("GET", "/old/a?b=c", "reviews:9080")
		if resp.StatusCode != 308 || resp.Header.Get("Location") != "http://reviews:9080/new/a?b=c" {
			t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("absolute-form request routes by the URI authority", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET http://reviews:9080/v1/x HTTP/1.1\r\nHost: unknown.example\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "v1" {
			t.Errorf("got %d %q, want 200 v1", resp.StatusCode, body)
		}
	})

	t.Run("streaming response", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/events", nil)
		req.Host = "stream.example.test"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		first, err := r.ReadString('\n')
		if err != nil || first != "first\n" {
			t.Fatalf("first chunk %q, %v", first, err)
		}
		close(clientRead)
		second, err := r.ReadString('\n')
		if err != nil || second != "second\n" {
			t.Fatalf("second chunk %q, %v", second, err)
		}
		if !<-streamed {
			t.Error("the first chunk reached the client only after the response ended")
		}
	})

	t.Run("websocket upgrade", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /socket HTTP/1.1\r\nHost: ws.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		fmt.Fprintf(conn, "hello\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo: hello\n" {
			t.Fatalf("echo %q, %v", line, err)
		}
	})
}

// TestCaddyServerRouteFeatures runs retries, a route timeout, a fault and
// header operations inside a real Caddy HTTP server.
func TestCaddyServerRouteFeatures(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	busy := funcBackend(t, "busy", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	hang := funcBackend(t, "hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	app := new(istioapp.App)
	mixed := addService(app, "mixed.test", busy.endpoint(nil), newBackend(t, "ok").endpoint(nil))
	hung := addService(app, "hang.test", hang.endpoint(nil))
	allBusy := addService(app, "busy.test", busy.endpoint(nil))
	vhosts := []*VirtualHost{
		single("mixed.test", &Route{
			Route:   []*Destination{{Cluster: mixed}},
			Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}},
			Headers: &Headers{Response: &HeaderOperations{Set: map[string]string{"x-route": "mixed"}}},
		}),
		single("hang.test", &Route{Route: []*Destination{{Cluster: hung}}, Timeout: caddy.Duration(100 * time.Millisecond)}),
		single("abort.test", &Route{Route: []*Destination{{Cluster: mixed}}, Fault: &istiofault.Fault{Abort: &istiofault.Abort{HTTPStatus: 418, Percentage: 100}}}),
		single("busy.test", &Route{Route: []*Destination{{Cluster: allBusy}}, Retries: &RetryPolicy{Attempts: 1, RetryOn: []string{"5xx"}}}),
		single("noretry.test", &Route{Route: []*Destination{{Cluster: mixed}}}),
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	config := map[string]any{
		"admin": map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"apps": map[string]any{
			"istio": app,
			"http": map[string]any{"servers": map[string]any{"mesh": map[string]any{
				"listen":          []string{addr},
				"automatic_https": map[string]any{"disable": true},
				"routes":          []any{map[string]any{"handle": []any{map[string]any{"handler": "istio_route", "virtual_hosts": vhosts}}}},
			}}},
		},
	}
	if err := caddy.Load(mustJSON(t, config), true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(host string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	for range 10 {
		if resp, body := get("mixed.test"); resp.StatusCode != 200 || body != "ok" || resp.Header.Get("X-Route") != "mixed" {
			t.Fatalf("retries: %d %q %v", resp.StatusCode, body, resp.Header)
		}
	}
	// reverse_proxy drops the server's "Server: Caddy" from the responses
	// it relays; so do the attempts of a retry policy, the last one's
	// discarded response included.
	for _, host := range []string{"mixed.test", "busy.test", "noretry.test"} {
		if resp, _ := get(host); resp.Header["Server"] != nil {
			t.Errorf("%s: %d with Server %q", host, resp.StatusCode, resp.Header["Server"])
		}
	}
	if resp, body := get("hang.test"); resp.StatusCode != 504 || body != "upstream request timeout" {
		t.Errorf("timeout: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get("abort.test"); resp.StatusCode != 418 {
		t.Errorf("fault: %d", resp.StatusCode)
	}
}
