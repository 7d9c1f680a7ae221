package istiomesh

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// proxyRoute is a route of path to a reverse_proxy towards upstream with
// an istio transport.
func proxyRoute(path, upstream string, transport map[string]any) map[string]any {
	transport["protocol"] = "istio"
	return map[string]any{
		"match": []any{map[string]any{"path": []string{path}}},
		"handle": []any{map[string]any{
			"handler":   "reverse_proxy",
			"transport": transport,
			"upstreams": []any{map[string]any{"dial": upstream}},
		}},
	}
}

// get returns the status and body of a GET of url, with a bounded client.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// TestIstioTransport proxies through the istio transport to a server
// behind the istio_mtls listener wrapper.
func TestIstioTransport(t *testing.T) {
	upstream, proxy := freeAddr(t), freeAddr(t)
	mesh := meshServer(upstream, map[string]any{"identity": serverID})
	// The client's identity, and the Host the upstream got.
	mesh["routes"].([]any)[0].(map[string]any)["handle"].([]any)[0].(map[string]any)["body"] = "{http.request.tls.client.san.uris.0} {http.request.hostport}"
	loadCaddy(t, map[string]any{
		"mesh": mesh,
		"proxy": map[string]any{
			"listen":          []string{proxy},
			"automatic_https": map[string]any{"disable": true},
			"routes": []any{
				proxyRoute("/right", upstream, map[string]any{
					"istio_mutual":      true,
					"identity":          clientID,
					"subject_alt_names": []string{otherID, serverID},
				}),
				proxyRoute("/wrong", upstream, map[string]any{
					"istio_mutual":      true,
					"identity":          clientID,
					"subject_alt_names": []string{otherID},
				}),
				proxyRoute("/trust-domain", upstream, map[string]any{"istio_mutual": true}),
				proxyRoute("/foreign-trust-domain", upstream, map[string]any{
					"istio_mutual": true,
					"trust_domain": "example.org",
				}),
				proxyRoute("/other-ca", upstream, map[string]any{
					"istio_mutual": true,
					"ca":           "other",
					"identity":     clientID,
				}),
				proxyRoute("/plaintext", upstream, map[string]any{}),
			},
		},
	})
	for _, tc := range []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		// The client's Host is kept, as an Istio sidecar keeps it.
		{"/right", http.StatusOK, clientID + " " + proxy},
		{"/wrong", http.StatusBadGateway, ""},
		{"/trust-domain", http.StatusOK, DefaultIdentity("") + " " + proxy},
		{"/foreign-trust-domain", http.StatusBadGateway, ""},
		{"/other-ca", http.StatusBadGateway, ""},
		{"/plaintext", http.StatusBadGateway, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			status, body := get(t, "http://"+proxy+tc.path)
			if status != tc.wantStatus || (tc.wantBody != "" && body != tc.wantBody) {
				t.Errorf("got %d %q; want %d %q", status, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
}

// TestIstioTransportFromCaddyfile: the user's path, reverse_proxy blocks
// with `transport istio` in a Caddyfile.
func TestIstioTransportFromCaddyfile(t *testing.T) {
	upstream, proxy := freeAddr(t), freeAddr(t)
	_, upstreamPort, _ := net.SplitHostPort(upstream)
	_, proxyPort, _ := net.SplitHostPort(proxy)
	input := `{
	admin off
	persist_config off
	skip_install_trust
	storage file_system ` + t.TempDir() + `
	log {
		level ERROR
	}
	pki {
		ca istio {
			name "Istio mesh"
		}
	}
	servers ` + upstream + ` {
		listener_wrappers {
			istio_mtls {
				identity spiffe://cluster.local/ns/default/sa/api
			}
		}
	}
}
http://:` + upstreamPort + ` {
	bind 127.0.0.1
	respond "{http.request.tls.client.san.uris.0}"
}
http://:` + proxyPort + ` {
	bind 127.0.0.1
	reverse_proxy /right 127.0.0.1:` + upstreamPort + ` {
		transport istio {
			istio_mutual
			identity spiffe://cluster.local/ns/default/sa/web
			subject_alt_names spiffe://cluster.local/ns/default/sa/api
			dial_timeout 5s
		}
	}
	reverse_proxy /wrong 127.0.0.1:` + upstreamPort + ` {
		transport istio {
			istio_mutual
			identity spiffe://cluster.local/ns/default/sa/web
			subject_alt_names spiffe://cluster.local/ns/default/sa/db
		}
	}
}
`
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	if err := caddy.Load(adapted, true); err != nil {
		t.Fatalf("loading %s: %v", adapted, err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	if status, body := get(t, "http://"+proxy+"/right"); status != http.StatusOK || body != "spiffe://cluster.local/ns/default/sa/web" {
		t.Errorf("right subject alt name: got %d %q\nconfig: %s", status, body, adapted)
	}
	if status, body := get(t, "http://"+proxy+"/wrong"); status != http.StatusBadGateway {
		t.Errorf("wrong subject alt name: got %d %q, want 502", status, body)
	}
}

func TestIstioTransportCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  IstioTransport
		fails string // a part of the error
	}{
		{input: `istio`},
		{
			input: `istio {
				istio_mutual
				identity spiffe://cluster.local/ns/default/sa/web
				trust_domain cluster.local
				ca mesh
				subject_alt_names spiffe://cluster.local/ns/default/sa/api
				subject_alt_names spiffe://cluster.local/ns/default/sa/api2
				sni outbound_.8443_._.api.default.svc.cluster.local
				dial_timeout 5s
				keepalive 30s
				versions 1.1
			}`,
			want: IstioTransport{
				HTTPTransport: reverseproxy.HTTPTransport{
					DialTimeout: caddy.Duration(5 * time.Second),
					KeepAlive:   &reverseproxy.KeepAlive{IdleConnTimeout: caddy.Duration(30 * time.Second)},
					Versions:    []string{"1.1"},
				},
				IstioMutual:     true,
				Identity:        "spiffe://cluster.local/ns/default/sa/web",
				TrustDomain:     "cluster.local",
				CA:              "mesh",
				SubjectAltNames: []string{"spiffe://cluster.local/ns/default/sa/api", "spiffe://cluster.local/ns/default/sa/api2"},
				SNI:             "outbound_.8443_._.api.default.svc.cluster.local",
			},
		},
		{
			// Without istio_mutual: the http transport's TLS with Istio's
			// subjectAltNames.
			input: `istio {
				tls_server_name api.internal
				tls_trust_pool file {
					pem_file ca.pem
				}
				subject_alt_names api.example.com
			}`,
			want: IstioTransport{
				HTTPTransport: reverseproxy.HTTPTransport{TLS: &reverseproxy.TLSConfig{
					ServerName: "api.internal",
					CARaw:      json.RawMessage(`{"pem_files":["ca.pem"],"provider":"file"}`),
				}},
				SubjectAltNames: []string{"api.example.com"},
			},
		},
		{input: `istio extra`, fails: "wrong argument count"},
		{input: "istio {\n istio_mutual yes\n}", fails: "wrong argument count"},
		{input: "istio {\n identity\n}", fails: "wrong argument count"},
		{input: "istio {\n sni a b\n}", fails: "wrong argument count"},
		{input: "istio {\n ca a\n ca b\n}", fails: "ca already specified"},
		{input: "istio {\n subject_alt_names\n}", fails: "wrong argument count"},
		{input: "istio {\n istio_mutual\n mode strict\n}", fails: "unrecognized subdirective mode"},
	} {
		var got IstioTransport
		err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if tc.fails != "" {
			if err == nil || !strings.Contains(err.Error(), tc.fails) {
				t.Errorf("%q: error %v, want one containing %q", tc.input, err, tc.fails)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.input, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.input, got, tc.want)
		}
	}
}

// TestIstioTransportRefused: option combinations Provision refuses before
// it issues anything.
func TestIstioTransportRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport IstioTransport
		fails     string
	}{
		{"identity without istio_mutual", IstioTransport{Identity: clientID}, "need istio_mutual"},
		{"sni without istio_mutual", IstioTransport{SNI: "x"}, "need istio_mutual"},
		{"subject_alt_names without TLS", IstioTransport{SubjectAltNames: []string{"a"}}, "needs TLS"},
		{
			"subject_alt_names with HTTP/3",
			IstioTransport{SubjectAltNames: []string{"a"}, HTTPTransport: reverseproxy.HTTPTransport{TLS: &reverseproxy.TLSConfig{}, Versions: []string{"3"}}},
			"HTTP/3",
		},
		{"istio_mutual with HTTP/3", IstioTransport{IstioMutual: true, HTTPTransport: reverseproxy.HTTPTransport{Versions: []string{"3"}}}, "HTTP/3"},
		{"bad identity", IstioTransport{IstioMutual: true, Identity: "web"}, "identity"},
		{"subject alt name not a SPIFFE ID", IstioTransport{IstioMutual: true, SubjectAltNames: []string{"api.example.com"}}, "subject_alt_names"},
		{
			"tls trust options",
			IstioTransport{IstioMutual: true, HTTPTransport: reverseproxy.HTTPTransport{TLS: &reverseproxy.TLSConfig{RootCAPEMFiles: []string{"ca.pem"}}}},
			"mesh root only",
		},
		{
			"tls client certificate",
			IstioTransport{IstioMutual: true, HTTPTransport: reverseproxy.HTTPTransport{TLS: &reverseproxy.TLSConfig{ClientCertificateFile: "c.pem"}}},
			"client certificate",
		},
		{
			"insecure_skip_verify",
			IstioTransport{IstioMutual: true, HTTPTransport: reverseproxy.HTTPTransport{TLS: &reverseproxy.TLSConfig{InsecureSkipVerify: true}}},
			"insecure_skip_verify",
		},
		{
			"sni and another tls server_name",
			IstioTransport{IstioMutual: true, SNI: "a", HTTPTransport: reverseproxy.HTTPTransport{TLS: &reverseproxy.TLSConfig{ServerName: "b"}}},
			"disagree",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.transport.prepare()
			if err == nil || !strings.Contains(err.Error(), tc.fails) {
				t.Errorf("error %v, want one containing %q", err, tc.fails)
			}
		})
	}
}

// TestIstioTransportDefaults: the defaults of istio_mutual.
func TestIstioTransportDefaults(t *testing.T) {
	for _, tc := range []struct {
		transport                IstioTransport
		wantIdentity, wantDomain string
		wantServerName, wantCA   string
	}{
		{
			transport:    IstioTransport{IstioMutual: true},
			wantIdentity: "spiffe://cluster.local/ns/default/sa/default", wantDomain: "cluster.local", wantCA: "istio",
		},
		{
			transport:    IstioTransport{IstioMutual: true, TrustDomain: "example.org", CA: "mesh"},
			wantIdentity: "spiffe://example.org/ns/default/sa/default", wantDomain: "example.org", wantCA: "mesh",
		},
		{
			transport:    IstioTransport{IstioMutual: true, Identity: "spiffe://example.org/ns/a/sa/b", SNI: "outbound_.80_._.b"},
			wantIdentity: "spiffe://example.org/ns/a/sa/b", wantDomain: "example.org", wantCA: "istio", wantServerName: "outbound_.80_._.b",
		},
	} {
		tr := tc.transport
		if err := tr.prepare(); err != nil {
			t.Errorf("%+v: %v", tc.transport, err)
			continue
		}
		if tr.Identity != tc.wantIdentity || tr.TrustDomain != tc.wantDomain || tr.CA != tc.wantCA || tr.TLS == nil || tr.TLS.ServerName != tc.wantServerName {
			t.Errorf("%+v: got identity %q, trust domain %q, ca %q, tls %+v", tc.transport, tr.Identity, tr.TrustDomain, tr.CA, tr.TLS)
		}
		if ops := tr.RequestHeaderOps(); ops != nil {
			t.Errorf("%+v: istio_mutual changes request headers: %+v", tc.transport, ops)
		}
	}
}
