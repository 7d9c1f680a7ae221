package istiomesh

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/standard"
)

// meshServer is an http server whose listener terminates mesh mTLS as
// serverID and whose reply names the client identity and protocol.
func meshServer(addr string, wrapper map[string]any) map[string]any {
	wrapper["wrapper"] = "istio_mtls"
	return map[string]any{
		"listen":            []string{addr},
		"listener_wrappers": []any{wrapper},
		"automatic_https":   map[string]any{"disable": true},
		"routes": []any{map[string]any{
			"handle": []any{map[string]any{
				"handler": "static_response",
				"body":    "{http.request.tls.client.san.uris.0} {http.request.proto}",
			}},
		}},
	}
}

// meshClient is an HTTP client presenting id with ISTIO_MUTUAL towards
// serverID.
func meshClient(t *testing.T, id *Identity, h2 bool) *http.Client {
	t.Helper()
	cfg := &tls.Config{}
	ConfigureIstioMutual(cfg, id, "", []string{serverID}, "")
	transport := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	if !h2 {
		transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 10 * time.Second}
}

func getBody(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func TestMTLSListenerWrapper(t *testing.T) {
	open, restricted := freeAddr(t), freeAddr(t)
	ctx := loadCaddy(t, map[string]any{
		"open": meshServer(open, map[string]any{"identity": serverID}),
		"restricted": meshServer(restricted, map[string]any{
			"identity":           serverID,
			"allowed_identities": []string{otherID},
		}),
	})
	client := newIdentity(t, ctx, "", clientID)
	allowed := newIdentity(t, ctx, "", otherID)
	stranger := newIdentity(t, ctx, "other", clientID)
	foreignDomain := newIdentity(t, ctx, "", "spiffe://example.org/ns/default/sa/client")

	t.Run("mesh client over HTTP/1.1", func(t *testing.T) {
		body, err := getBody(meshClient(t, client, false), "https://"+open+"/")
		if err != nil || body != clientID+" HTTP/1.1" {
			t.Errorf("got %q, %v; want %q", body, err, clientID+" HTTP/1.1")
		}
	})
	t.Run("mesh client over HTTP/2", func(t *testing.T) {
		body, err := getBody(meshClient(t, client, true), "https://"+open+"/")
		if err != nil || body != clientID+" HTTP/2.0" {
			t.Errorf("got %q, %v; want %q", body, err, clientID+" HTTP/2.0")
		}
	})
	t.Run("plaintext client", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", open, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return // refused
		}
		// Closed without an answer, as a STRICT sidecar resets it (Go's
		// own TLS server would answer 400).
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			t.Errorf("plaintext request answered %d %q", resp.StatusCode, body)
		}
	})
	t.Run("TLS client without certificate", func(t *testing.T) {
		cfg := &tls.Config{InsecureSkipVerify: true}
		transport := &http.Transport{TLSClientConfig: cfg}
		defer transport.CloseIdleConnections()
		if body, err := getBody(&http.Client{Transport: transport, Timeout: 10 * time.Second}, "https://"+open+"/"); err == nil {
			t.Errorf("answered %q", body)
		}
	})
	for _, tc := range []struct {
		name string
		id   *Identity
		addr string
	}{
		{"certificate of another CA", stranger, open},
		{"identity of another trust domain", foreignDomain, open},
		{"identity not allowed", client, restricted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if body, err := getBody(meshClient(t, tc.id, false), "https://"+tc.addr+"/"); err == nil {
				t.Errorf("answered %q", body)
			}
		})
	}
	t.Run("allowed identity", func(t *testing.T) {
		body, err := getBody(meshClient(t, allowed, true), "https://"+restricted+"/")
		if err != nil || body != otherID+" HTTP/2.0" {
			t.Errorf("got %q, %v", body, err)
		}
	})
}

func TestMTLSListenerWrapperCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  MTLSListenerWrapper
		fails bool
	}{
		{input: `istio_mtls`},
		{
			input: `istio_mtls {
				ca mesh
				trust_domain example.org
				identity spiffe://example.org/ns/a/sa/b
				allowed_identities spiffe://example.org/ns/a/sa/c spiffe://example.org/ns/a/sa/d
				allowed_identities spiffe://example.org/ns/a/sa/e
				alpn http/1.1
			}`,
			want: MTLSListenerWrapper{
				CA:                "mesh",
				TrustDomain:       "example.org",
				Identity:          "spiffe://example.org/ns/a/sa/b",
				AllowedIdentities: []string{"spiffe://example.org/ns/a/sa/c", "spiffe://example.org/ns/a/sa/d", "spiffe://example.org/ns/a/sa/e"},
				ALPN:              []string{"http/1.1"},
			},
		},
		{input: `istio_mtls extra`, fails: true},
		{input: "istio_mtls {\n identity\n}", fails: true},
		{input: "istio_mtls {\n identity a b\n}", fails: true},
		{input: "istio_mtls {\n allowed_identities\n}", fails: true},
		{input: "istio_mtls {\n mode strict\n}", fails: true},
	} {
		var got MTLSListenerWrapper
		err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if tc.fails {
			if err == nil {
				t.Errorf("%q: no error", tc.input)
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

// TestMTLSListenerWrapperFromCaddyfile: the user's path, a Caddyfile with the
// mesh CA in the pki global option and the wrapper in the servers option.
func TestMTLSListenerWrapperFromCaddyfile(t *testing.T) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	input := `{
	admin off
	persist_config off
	skip_install_trust
	storage file_system ` + t.TempDir() + `
	pki {
		ca istio {
			name "Istio mesh"
		}
	}
	servers {
		listener_wrappers {
			istio_mtls {
				identity ` + serverID + `
			}
		}
	}
}
http://:` + port + ` {
	bind 127.0.0.1
	respond "{http.request.tls.client.san.uris.0} {http.request.proto}"
}
`
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	if len(warnings) > 0 {
		t.Logf("warnings: %v", warnings)
	}
	if err := caddy.Load(adapted, true); err != nil {
		t.Fatalf("loading %s: %v", adapted, err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	client := newIdentity(t, caddy.ActiveContext(), "", clientID)
	body, err := getBody(meshClient(t, client, true), "https://"+addr+"/")
	if err != nil || body != clientID+" HTTP/2.0" {
		t.Errorf("got %q, %v; want %q\nconfig: %s", body, err, clientID+" HTTP/2.0", adapted)
	}
}
