package istioegress

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// testPassword's bcrypt hash (cost 4, so tests stay fast).
const (
	testPassword = "s3cret"
	testHash     = "$2a$04$Shytol4vInXF0/Hc47GmCOp9pEj2XMeTblLb77zM6kZqw5fYGxTWu"
)

// proxyServer serves h as a Caddy route would: the request prepared by
// caddyhttp, and a next handler that answers 299 "next" and counts calls.
type proxyServer struct {
	*httptest.Server
	nextCalls atomic.Int32
}

func newProxyServer(t testing.TB, h *Handler, h2 bool) *proxyServer {
	t.Helper()
	ps := new(proxyServer)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ps.nextCalls.Add(1)
		w.WriteHeader(299)
		_, _ = io.WriteString(w, "next "+r.Host)
		return nil
	})
	ps.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
		if err := h.ServeHTTP(w, r, next); err != nil {
			status := http.StatusInternalServerError
			if he, ok := err.(caddyhttp.HandlerError); ok && he.StatusCode != 0 {
				status = he.StatusCode
			}
			w.WriteHeader(status)
		}
	}))
	if h2 {
		ps.EnableHTTP2 = true
		ps.StartTLS()
	} else {
		ps.Start()
	}
	t.Cleanup(ps.Close)
	return ps
}

// echoServer is an "external" TCP service on loopback: it answers each
// line with "echo: LINE", and on the client's half-close writes "bye" and
// closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					fmt.Fprintf(conn, "echo: %s\n", sc.Text())
				}
				_, _ = io.WriteString(conn, "bye\n")
			}()
		}
	}()
	return ln.Addr().String()
}

// connectH1 opens a CONNECT tunnel through proxy to target and returns the
// connection and the proxy's response.
func connectH1(t *testing.T, proxy, target string, header ...string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	for i := 0; i+1 < len(header); i += 2 {
		req += header[i] + ": " + header[i+1] + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

func TestConnectHTTP1(t *testing.T) {
	target := echoServer(t)
	_, port, _ := net.SplitHostPort(target)
	h := newTestHandler(t, registryJSON, `{"allow": ["127.0.0.1:`+port+`"]}`)
	ps := newProxyServer(t, h, false)
	proxy := ps.Listener.Addr().String()

	t.Run("allowed with half-close", func(t *testing.T) {
		conn, br, resp := connectH1(t, proxy, target)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT status %d", resp.StatusCode)
		}
		fmt.Fprintf(conn, "hello\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo: hello\n" {
			t.Fatalf("got %q, %v", line, err)
		}
		// half-close: the server still answers after our FIN
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "bye\n" {
			t.Fatalf("after half-close got %q, %v", rest, err)
		}
	})
	t.Run("bytes sent with the request head", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", proxy, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nearly\n", target, target)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		if line, err := br.ReadString('\n'); err != nil || line != "echo: early\n" {
			t.Fatalf("got %q, %v", line, err)
		}
	})
	for _, tc := range []struct {
		name, target, reason string
	}{
		{"loopback other port", "127.0.0.1:1", "loopback"},
		{"decimal loopback", "2130706433:1", "loopback"},
		{"metadata", "169.254.169.254:80", "link-local"},
		{"mapped v6", "[::ffff:127.0.0.1]:1", "loopback"},
		{"hex loopback", "0x7f000001:1", "loopback"},
		{"v6 link-local", "[fe80::1]:80", "link-local"},
	} {
		t.Run("refused "+tc.name, func(t *testing.T) {
			_, _, resp := connectH1(t, proxy, tc.target)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), tc.reason) {
				t.Fatalf("got %d %q, want 403 with %q", resp.StatusCode, body, tc.reason)
			}
		})
	}
	if n := ps.nextCalls.Load(); n != 0 {
		t.Errorf("next called %d times for CONNECT", n)
	}
}

// TestConnectRegistry tunnels to the endpoint of a ServiceEntry, not to
// the name the client asked for.
func TestConnectRegistry(t *testing.T) {
	target := echoServer(t)
	host, port, _ := net.SplitHostPort(target)
	app := `{"services": [{"hostname": "api.example.test", "resolution": "STATIC",
		"ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
		"endpoints": [{"address": "` + host + `", "ports": {"tls": ` + port + `}}]}]}`
	h := newTestHandler(t, app, `{"mode": "REGISTRY_ONLY"}`)
	proxy := newProxyServer(t, h, false).Listener.Addr().String()

	conn, br, resp := connectH1(t, proxy, "api.example.test:443")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	fmt.Fprintf(conn, "via registry\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo: via registry\n" {
		t.Fatalf("got %q, %v", line, err)
	}
	for _, refused := range []string{"api.example.test:8443", "other.example.test:443", target} {
		_, _, resp := connectH1(t, proxy, refused)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("CONNECT %s: status %d, want 403", refused, resp.StatusCode)
		}
	}
}

func TestConnectHTTP2(t *testing.T) {
	target := echoServer(t)
	_, port, _ := net.SplitHostPort(target)
	h := newTestHandler(t, "", `{"allow": ["127.0.0.1:`+port+`"]}`)
	ps := newProxyServer(t, h, true)
	transport := ps.Client().Transport.(*http.Transport).Clone()
	transport.ForceAttemptHTTP2 = true
	t.Cleanup(transport.CloseIdleConnections)

	connect := func(target string) (*http.Response, *io.PipeWriter) {
		pr, pw := io.Pipe()
		req := &http.Request{
			Method: http.MethodConnect,
			URL:    &url.URL{Scheme: "https", Host: ps.Listener.Addr().String()},
			Host:   target,
			Header: http.Header{},
			Body:   pr,
		}
		resp, err := transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close(); pw.Close() })
		if resp.ProtoMajor != 2 {
			t.Fatalf("proxy answered over %s, want HTTP/2", resp.Proto)
		}
		return resp, pw
	}

	resp, pw := connect(target)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	fmt.Fprintf(pw, "over h2\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo: over h2\n" {
		t.Fatalf("got %q, %v", line, err)
	}
	pw.Close() // end of the client's stream half: the destination sees EOF
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "bye\n" {
		t.Fatalf("after end of stream got %q, %v", rest, err)
	}

	resp, _ = connect("127.0.0.1:1")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "loopback") {
		t.Fatalf("refused h2 CONNECT: %d %q", resp.StatusCode, body)
	}
}

func TestForwardHTTP(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "backend %s %s host=%s proxy-auth=%q body=%s", r.Method, r.URL.RequestURI(), r.Host,
			r.Header.Get("Proxy-Authorization"), body)
	}))
	t.Cleanup(backend.Close)
	_, port, _ := net.SplitHostPort(backend.Listener.Addr().String())
	h := newTestHandler(t, registryJSON, `{"mode": "REGISTRY_ONLY", "allow": ["127.0.0.1:`+port+`"], "route_hosts": ["ratings"]}`)
	ps := newProxyServer(t, h, false)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: ps.Listener.Addr().String()}),
	}}
	t.Cleanup(client.CloseIdleConnections)

	get := func(rawURL string) (int, string) {
		t.Helper()
		resp, err := client.Post(rawURL, "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, body := get(backend.URL + "/path?q=1"); status != http.StatusOK ||
		body != "backend POST /path?q=1 host="+backend.Listener.Addr().String()+` proxy-auth="" body=payload` {
		t.Errorf("allowed: %d %q", status, body)
	}
	for _, u := range []string{"http://public.test/", "http://127.0.0.1:1/", "http://2130706433:1/", "http://[::ffff:127.0.0.1]:1/", "http://169.254.169.254/", "http://api.example.test:8080/"} {
		if status, body := get(u); status != http.StatusBadGateway || body != "" {
			t.Errorf("refused %s: %d %q, want 502 with an empty body", u, status, body)
		}
	}
	// mesh hosts go to the next handler (istio_route)
	for _, u := range []string{"http://reviews.default.svc.cluster.local:9080/", "http://api.example.test/", "http://ratings/"} {
		if status, body := get(u); status != 299 || !strings.HasPrefix(body, "next ") {
			t.Errorf("mesh host %s: %d %q, want the next handler", u, status, body)
		}
	}
	// origin-form with a Host header: the same decision
	req, _ := http.NewRequest(http.MethodGet, "http://"+ps.Listener.Addr().String()+"/", nil)
	req.Host = "public.test"
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("origin-form unknown host: %d, want 502", resp.StatusCode)
	}
}

func TestProxyAuth(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proxy-auth=%q", r.Header.Get("Proxy-Authorization"))
	}))
	t.Cleanup(backend.Close)
	target := echoServer(t)
	h := newTestHandler(t, "", `{"allow": ["127.0.0.1"], "auth": [{"username": "app", "password": "`+testHash+`"}], "realm": "mesh"}`)
	proxy := newProxyServer(t, h, false).Listener.Addr().String()
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}

	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"missing", "", http.StatusProxyAuthRequired},
		{"wrong password", basic("app", "nope"), http.StatusProxyAuthRequired},
		{"unknown user", basic("other", testPassword), http.StatusProxyAuthRequired},
		{"not basic", "Bearer x", http.StatusProxyAuthRequired},
		{"right", basic("app", testPassword), http.StatusOK},
	} {
		t.Run("connect "+tc.name, func(t *testing.T) {
			var header []string
			if tc.auth != "" {
				header = []string{"Proxy-Authorization", tc.auth}
			}
			_, _, resp := connectH1(t, proxy, target, header...)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusProxyAuthRequired && resp.Header.Get("Proxy-Authenticate") != `Basic realm="mesh"` {
				t.Fatalf("Proxy-Authenticate %q", resp.Header.Get("Proxy-Authenticate"))
			}
		})
	}

	// plain HTTP: the credentials are checked, then not forwarded
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", User: url.UserPassword("app", testPassword), Host: proxy}),
	}}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Get(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != `proxy-auth=""` {
		t.Errorf("authenticated GET: %d %q", resp.StatusCode, body)
	}
}

func TestClientIdentity(t *testing.T) {
	h := newTestHandler(t, "", `{"client_identities": ["spiffe://cluster.local/ns/default/*"]}`)
	for _, tc := range []struct {
		name string
		uris []string
		want bool
	}{
		{"no TLS", nil, false},
		{"allowed", []string{"spiffe://cluster.local/ns/default/sa/app"}, true},
		{"other namespace", []string{"spiffe://cluster.local/ns/other/sa/app"}, false},
	} {
		r := httptest.NewRequest(http.MethodConnect, "http://x:443", nil)
		if tc.uris != nil {
			cert := new(x509.Certificate)
			for _, u := range tc.uris {
				parsed, _ := url.Parse(u)
				cert.URIs = append(cert.URIs, parsed)
			}
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		}
		status, _ := h.authorize(r)
		if got := status == 0; got != tc.want {
			t.Errorf("%s: allowed = %v, want %v (status %d)", tc.name, got, tc.want, status)
		}
	}
}

// TestConnectIdleTimeout: a tunnel with traffic stays open past the idle
// timeout; one without traffic for that long is closed.
func TestConnectIdleTimeout(t *testing.T) {
	target := echoServer(t)
	_, port, _ := net.SplitHostPort(target)
	h := newTestHandler(t, "", `{"allow": ["127.0.0.1:`+port+`"], "idle_timeout": "300ms"}`)
	proxy := newProxyServer(t, h, false).Listener.Addr().String()

	conn, br, resp := connectH1(t, proxy, target)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	// active for longer than the idle timeout
	for i := range 6 {
		fmt.Fprintf(conn, "ping %d\n", i)
		if line, err := br.ReadString('\n'); err != nil || line != fmt.Sprintf("echo: ping %d\n", i) {
			t.Fatalf("ping %d: %q, %v", i, line, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// then quiet: the proxy closes the tunnel (well before the 10s deadline)
	start := time.Now()
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("tunnel still open after the idle timeout")
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("tunnel closed after %v, want about 300ms", waited)
	}
}

// TestExtendedConnect: an HTTP/2 extended CONNECT (a websocket) for a
// mesh host is an HTTP request routed by the next handler, and refused
// with 502 like other HTTP requests for hosts the policy refuses.
func TestExtendedConnect(t *testing.T) {
	h := newTestHandler(t, registryJSON, `{"mode": "REGISTRY_ONLY"}`)
	for _, tc := range []struct {
		authority string
		want      int
	}{
		{"reviews.default.svc.cluster.local:9080", 299},
		{"unknown.test:80", http.StatusBadGateway},
	} {
		r := httptest.NewRequest(http.MethodConnect, "/chat", nil)
		r.ProtoMajor, r.ProtoMinor, r.Proto = 2, 0, "HTTP/2.0"
		r.Host = tc.authority
		r.Header.Set(":protocol", "websocket")
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), httptest.NewRecorder(), &caddyhttp.Server{})
		rec := httptest.NewRecorder()
		err := h.ServeHTTP(rec, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(299)
			return nil
		}))
		if err != nil || rec.Code != tc.want {
			t.Errorf("extended CONNECT %s: %d, %v; want %d", tc.authority, rec.Code, err, tc.want)
		}
	}
}
