package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// egressHash is the bcrypt hash (cost 4) of egressPassword, the password
// of the proxy user "app".
const (
	egressPassword = "s3cret"
	egressHash     = "$2a$04$Shytol4vInXF0/Hc47GmCOp9pEj2XMeTblLb77zM6kZqw5fYGxTWu"
)

// externalServer is an "external" service on a loopback address other
// than 127.0.0.1, answering "NAME host=HOST path=PATH".
func externalServer(t *testing.T, name, ip string, useTLS bool) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s (loopback 127.0.0.0/8 must be routable): %v", ip, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s host=%s path=%s", name, r.Host, r.URL.Path)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

func serverPort(t *testing.T, srv *httptest.Server) int {
	t.Helper()
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// startEgressCaddy runs the caddy binary with a raw JSON configuration and
// waits until every address in listeners accepts connections.
func startEgressCaddy(t *testing.T, config any, listeners ...string) *process {
	t.Helper()
	requireBinaries(t)
	for _, addr := range listeners {
		requireFree(t, addr)
	}
	data, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	configFile := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(configFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, "caddy", caddyBin, []string{"run", "--config", configFile}, childEnv(filepath.Join(dir, "home")), nil)
	t.Cleanup(func() { stopAndCheckRaces(t, p, "caddy") })
	deadline := time.Now().Add(startTimeout)
	for _, addr := range listeners {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if p.exited() {
				t.Fatalf("caddy exited before listening on %s:\n%s", addr, tail(p.output.String(), 4096))
			}
			if time.Now().After(deadline) {
				t.Fatalf("caddy did not listen on %s within %v", addr, startTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return p
}

// curlResult is what a curl run gave, errors included: the HTTP status
// (of the proxy's answer to CONNECT when the tunnel failed), the CONNECT
// status, the body and curl's exit code.
type curlResult struct {
	status, connectStatus int
	body                  string
	exitCode              int
}

// curlProxy runs curl with args and extra environment (e.g. http_proxy),
// without failing on curl errors.
func curlProxy(t *testing.T, env []string, args ...string) curlResult {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	bodyFile := filepath.Join(t.TempDir(), "body")
	all := append([]string{"-sS", "--max-time", "10", "-o", bodyFile, "-w", "%{http_code} %{http_connect}"}, args...)
	cmd := exec.CommandContext(ctx, path, all...)
	cmd.Env = childEnv(t.TempDir(), env...)
	out, err := cmd.Output()
	var res curlResult
	if exitErr, ok := err.(*exec.ExitError); ok {
		res.exitCode = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) == 2 {
		res.status, _ = strconv.Atoi(fields[0])
		res.connectStatus, _ = strconv.Atoi(fields[1])
	}
	body, _ := os.ReadFile(bodyFile)
	res.body = string(body)
	return res
}

// TestEgress runs the egress proxy on two mesh listeners of one Caddy: a
// REGISTRY_ONLY one in front of istio_route, with ServiceEntries whose
// endpoints are "external" servers on 127.0.0.2 and 127.0.0.5, and an
// ALLOW_ANY one with proxy authentication. Names are mapped by the
// ServiceEntries, never looked up in DNS.
func TestEgress(t *testing.T) {
	requireBinaries(t)
	apiHTTP := externalServer(t, "api-http", "127.0.0.2", false)
	apiTLS := externalServer(t, "api-tls", "127.0.0.2", true)
	wildTLS := externalServer(t, "wild-tls", "127.0.0.5", true)
	allowedHTTP := externalServer(t, "allowed-http", "127.0.0.4", false)
	allowedTLS := externalServer(t, "allowed-tls", "127.0.0.4", true)

	registryOnly := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	allowAny := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	allowedHTTPAddr := apiAddr(allowedHTTP)
	allowedTLSAddr := apiAddr(allowedTLS)

	config := map[string]any{
		"admin": map[string]any{"disabled": true},
		"apps": map[string]any{
			"istio": map[string]any{
				"services": []any{
					map[string]any{
						"hostname": "api.example.test", "resolution": "STATIC",
						"ports": []any{
							map[string]any{"number": 80, "name": "http", "protocol": "HTTP"},
							map[string]any{"number": 443, "name": "https", "protocol": "HTTPS"},
						},
						"endpoints": []any{map[string]any{
							"address": "127.0.0.2",
							"ports":   map[string]any{"http": serverPort(t, apiHTTP), "https": serverPort(t, apiTLS)},
						}},
					},
					map[string]any{
						"hostname": "*.wild.test", "resolution": "STATIC",
						"ports":     []any{map[string]any{"number": 443, "name": "https", "protocol": "HTTPS"}},
						"endpoints": []any{map[string]any{"address": "127.0.0.5", "ports": map[string]any{"https": serverPort(t, wildTLS)}}},
					},
				},
				"clusters": []any{
					map[string]any{"name": "outbound|80||api.example.test", "service": "api.example.test", "port": 80},
				},
			},
			"http": map[string]any{
				"servers": map[string]any{
					"registry_only": map[string]any{
						"listen":    []any{registryOnly},
						"protocols": []any{"h1", "h2c"},
						"routes": []any{map[string]any{"handle": []any{
							map[string]any{
								"handler": "istio_egress",
								"mode":    "REGISTRY_ONLY",
								"allow":   []any{allowedHTTPAddr, allowedTLSAddr},
							},
							map[string]any{
								"handler": "istio_route",
								"virtual_hosts": []any{map[string]any{
									"name":    "api.example.test:80",
									"domains": []any{"api.example.test", "api.example.test:80"},
									"routes":  []any{map[string]any{"route": []any{map[string]any{"cluster": "outbound|80||api.example.test"}}}},
								}},
							},
						}}},
					},
					"allow_any": map[string]any{
						"listen": []any{allowAny},
						"routes": []any{map[string]any{"handle": []any{
							map[string]any{
								"handler": "istio_egress",
								"auth":    []any{map[string]any{"username": "app", "password": egressHash}},
								"allow":   []any{allowedHTTPAddr},
							},
							map[string]any{"handler": "static_response", "status_code": 299, "body": "next"},
						}}},
					},
				},
			},
		},
	}
	caddy := startEgressCaddy(t, config, registryOnly, allowAny)
	proxy := "http://" + registryOnly
	authProxy := "http://app:" + egressPassword + "@" + allowAny

	t.Run("curl", func(t *testing.T) {
		for _, tc := range []struct {
			name       string
			env        []string
			args       []string
			status     int // 0: the tunnel failed
			connect    int
			bodyPrefix string
		}{
			{"mesh host through istio_route", nil, []string{"-x", proxy, "http://api.example.test/hello"}, 200, 0, "api-http host=api.example.test path=/hello"},
			{"mesh host with http_proxy", []string{"http_proxy=" + proxy}, []string{"http://api.example.test/env"}, 200, 0, "api-http host=api.example.test path=/env"},
			{"CONNECT to ServiceEntry endpoints", nil, []string{"-k", "-x", proxy, "--proxytunnel", "https://api.example.test/tls"}, 200, 200, "api-tls host=api.example.test path=/tls"},
			{"CONNECT with HTTPS_PROXY", []string{"HTTPS_PROXY=" + proxy}, []string{"-k", "https://api.example.test/env"}, 200, 200, "api-tls host=api.example.test path=/env"},
			{"plain HTTP through the tunnel", nil, []string{"-x", proxy, "--proxytunnel", "http://api.example.test/tunnel"}, 200, 200, "api-http host=api.example.test path=/tunnel"},
			{"wildcard ServiceEntry", nil, []string{"-k", "-x", proxy, "https://deep.sub.wild.test/w"}, 200, 200, "wild-tls host=deep.sub.wild.test path=/w"},
			{"wildcard bare domain refused", nil, []string{"-k", "-x", proxy, "https://wild.test/"}, 0, 403, ""},
			{"port mismatch CONNECT", nil, []string{"-k", "-x", proxy, "https://api.example.test:8443/"}, 0, 403, ""},
			{"port mismatch HTTP", nil, []string{"-x", proxy, "http://api.example.test:8080/"}, 502, 0, ""},
			{"unknown host HTTP", nil, []string{"-x", proxy, "http://unknown.example.test/"}, 502, 0, ""},
			{"unknown host CONNECT", nil, []string{"-k", "-x", proxy, "https://unknown.example.test/"}, 0, 403, ""},
			{"allow list HTTP", nil, []string{"-x", proxy, "http://" + allowedHTTPAddr + "/a"}, 200, 0, "allowed-http host=" + allowedHTTPAddr + " path=/a"},
			{"allow list CONNECT", nil, []string{"-k", "-x", proxy, "https://" + allowedTLSAddr + "/b"}, 200, 200, "allowed-tls host=" + allowedTLSAddr + " path=/b"},
			{"allow list other port", nil, []string{"-x", proxy, "http://127.0.0.4:1/"}, 502, 0, ""},
			// SSRF attempts under REGISTRY_ONLY and under ALLOW_ANY
			{"loopback", nil, []string{"-x", proxy, "http://127.0.0.1:" + portOf(t, allowAny) + "/"}, 502, 0, ""},
			{"ALLOW_ANY loopback", nil, []string{"-x", authProxy, "http://127.0.0.1:" + portOf(t, allowAny) + "/"}, 502, 0, ""},
			{"ALLOW_ANY loopback CONNECT", nil, []string{"-x", authProxy, "--proxytunnel", "http://127.0.0.1:" + portOf(t, allowAny) + "/"}, 0, 403, ""},
			{"ALLOW_ANY metadata", nil, []string{"-x", authProxy, "http://169.254.169.254/latest/meta-data/"}, 502, 0, ""},
			{"ALLOW_ANY decimal loopback", nil, []string{"-x", authProxy, "http://2130706433:" + portOf(t, allowAny) + "/"}, 502, 0, ""},
			{"ALLOW_ANY hex loopback", nil, []string{"-x", authProxy, "http://0x7f000001:" + portOf(t, allowAny) + "/"}, 502, 0, ""},
			{"ALLOW_ANY mapped IPv6 loopback", nil, []string{"-x", authProxy, "http://[::ffff:127.0.0.1]:" + portOf(t, allowAny) + "/"}, 502, 0, ""},
			{"ALLOW_ANY IPv6 loopback CONNECT", nil, []string{"-x", authProxy, "--proxytunnel", "http://[::1]:" + portOf(t, allowAny) + "/"}, 0, 403, ""},
			{"ALLOW_ANY private", nil, []string{"-x", authProxy, "http://10.0.0.1/"}, 502, 0, ""},
			{"ALLOW_ANY named by the allow list", nil, []string{"-x", authProxy, "http://" + allowedHTTPAddr + "/c"}, 200, 0, "allowed-http host=" + allowedHTTPAddr + " path=/c"},
			// who may use the proxy
			{"no credentials", nil, []string{"-x", "http://" + allowAny, "http://" + allowedHTTPAddr + "/"}, 407, 0, ""},
			{"wrong credentials", nil, []string{"-x", "http://app:nope@" + allowAny, "http://" + allowedHTTPAddr + "/"}, 407, 0, ""},
			{"no credentials CONNECT", nil, []string{"-x", "http://" + allowAny, "--proxytunnel", "http://" + allowedHTTPAddr + "/"}, 0, 407, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := curlProxy(t, tc.env, tc.args...)
				if tc.status == 0 {
					if res.exitCode == 0 || res.connectStatus != tc.connect {
						t.Fatalf("got exit %d, CONNECT %d, status %d %q; want the tunnel refused with %d", res.exitCode, res.connectStatus, res.status, res.body, tc.connect)
					}
					return
				}
				if res.status != tc.status || (tc.connect != 0 && res.connectStatus != tc.connect) || !strings.HasPrefix(res.body, tc.bodyPrefix) {
					t.Fatalf("got exit %d, CONNECT %d, status %d %q; want %d %q", res.exitCode, res.connectStatus, res.status, res.body, tc.status, tc.bodyPrefix)
				}
			})
		}
	})

	t.Run("go client", func(t *testing.T) {
		transport := &http.Transport{
			Proxy:           http.ProxyURL(&url.URL{Scheme: "http", Host: registryOnly}),
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the external servers' test certificates
		}
		t.Cleanup(transport.CloseIdleConnections)
		client := &http.Client{Transport: transport, Timeout: requestTimeout}
		for _, tc := range []struct {
			url, want string
			status    int
		}{
			{"http://api.example.test/go", "api-http host=api.example.test path=/go", 200},
			{"https://api.example.test/go", "api-tls host=api.example.test path=/go", 200},
			{"https://x.wild.test/go", "wild-tls host=x.wild.test path=/go", 200},
			{"http://unknown.example.test/", "", 502},
		} {
			resp, err := client.Get(tc.url)
			if err != nil {
				t.Errorf("GET %s: %v", tc.url, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || string(body) != tc.want {
				t.Errorf("GET %s: %d %q, want %d %q", tc.url, resp.StatusCode, body, tc.status, tc.want)
			}
		}
		// a refused tunnel is an error for the client, with the status
		if _, err := client.Get("https://api.example.test:8443/"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("CONNECT to an undeclared port: %v, want a 403 Forbidden error", err)
		}
	})

	t.Run("h2c CONNECT", func(t *testing.T) {
		protocols := new(http.Protocols)
		protocols.SetUnencryptedHTTP2(true)
		transport := &http.Transport{Protocols: protocols}
		t.Cleanup(transport.CloseIdleConnections)
		pr, pw := io.Pipe()
		defer pw.Close()
		req := &http.Request{
			Method: http.MethodConnect,
			URL:    &url.URL{Scheme: "http", Host: registryOnly},
			Host:   "api.example.test:80",
			Header: http.Header{},
			Body:   pr,
		}
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		resp, err := transport.RoundTrip(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Fatalf("h2 CONNECT: %d over %s", resp.StatusCode, resp.Proto)
		}
		fmt.Fprintf(pw, "GET /h2 HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n")
		tunneled, err := http.ReadResponse(bufio.NewReader(resp.Body), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tunneled.Body)
		if tunneled.StatusCode != 200 || string(body) != "api-http host=api.example.test path=/h2" {
			t.Fatalf("through the h2 tunnel: %d %q", tunneled.StatusCode, body)
		}
	})

	// every decision is in the access log
	out := caddy.output.String()
	for _, want := range []string{`"decision":"allowed"`, `"decision":"refused"`, `"reason":"service entry api.example.test"`, `"bytes_down":`} {
		if !strings.Contains(out, want) {
			t.Errorf("access log lacks %s", want)
		}
	}
}

// apiAddr is the host:port of an external server.
func apiAddr(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// TestEgressCaddyfile runs the istio_egress directive from a Caddyfile,
// without the istio app: an allow list under REGISTRY_ONLY, and proxy
// authentication.
func TestEgressCaddyfile(t *testing.T) {
	requireBinaries(t)
	allowed := externalServer(t, "allowed-http", "127.0.0.4", false)
	other := externalServer(t, "other-http", "127.0.0.6", false)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	requireFree(t, listen)
	caddyfile := fmt.Sprintf(`{
	admin off
	auto_https off
}

http://:%s {
	bind 127.0.0.1
	istio_egress {
		mode REGISTRY_ONLY
		allow %s
		auth app %s
	}
	respond "next" 299
}
`, portOf(t, listen), apiAddr(allowed), egressHash)
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, "caddy", caddyBin, []string{"run", "--adapter", "caddyfile", "--config", file}, childEnv(filepath.Join(dir, "home")), nil)
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("caddy did not listen on %s:\n%s", listen, tail(p.output.String(), 4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
	proxy := "http://app:" + egressPassword + "@" + listen
	for _, tc := range []struct {
		name    string
		args    []string
		status  int
		connect int
		body    string
	}{
		{"allowed", []string{"-x", proxy, "http://" + apiAddr(allowed) + "/x"}, 200, 0, "allowed-http host=" + apiAddr(allowed) + " path=/x"},
		{"allowed CONNECT", []string{"-x", proxy, "--proxytunnel", "http://" + apiAddr(allowed) + "/y"}, 200, 200, "allowed-http host=" + apiAddr(allowed) + " path=/y"},
		{"not allowed", []string{"-x", proxy, "http://" + apiAddr(other) + "/"}, 502, 0, ""},
		{"not allowed CONNECT", []string{"-x", proxy, "--proxytunnel", "http://" + apiAddr(other) + "/"}, 0, 403, ""},
		{"no credentials", []string{"-x", "http://" + listen, "http://" + apiAddr(allowed) + "/"}, 407, 0, "istio_egress: proxy credentials missing\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := curlProxy(t, nil, tc.args...)
			if tc.status == 0 {
				if res.exitCode == 0 || res.connectStatus != tc.connect {
					t.Fatalf("got exit %d, CONNECT %d, status %d; want the tunnel refused with %d", res.exitCode, res.connectStatus, res.status, tc.connect)
				}
				return
			}
			if res.status != tc.status || res.body != tc.body {
				t.Fatalf("got exit %d, status %d %q; want %d %q", res.exitCode, res.status, res.body, tc.status, tc.body)
			}
		})
	}
}
