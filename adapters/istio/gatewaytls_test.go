package istio

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

func TestSNIEntriesOrder(t *testing.T) {
	servers := []*serverPolicy{
		{hosts: []string{"*"}},
		{hosts: []string{"*.example.com", "shop.example.com"}},
		{hosts: []string{"*.eu.example.com", "shop.example.com"}}, // claimed by server 1
		{hosts: []string{"api.example.com"}},
	}
	var got []string
	for _, e := range sniEntries(servers) {
		got = append(got, e.name+"@"+string(rune('0'+e.server)))
	}
	want := []string{"shop.example.com@1", "api.example.com@3", "*.eu.example.com@2", "*.example.com@1", "*@0"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries %v, want %v", got, want)
	}
}

func TestSNIPattern(t *testing.T) {
	for _, tc := range []struct {
		entry   sniEntry
		matches []string
		refuses []string
	}{
		{sniEntry{name: "shop.example.com"}, []string{"shop.example.com", "SHOP.example.com"}, []string{"xshop.example.com", "a.shop.example.com"}},
		{sniEntry{name: "*.example.com", rank: 1}, []string{"a.example.com", "a.b.example.com"}, []string{"example.com", "aexample.com"}},
	} {
		pattern := tc.entry.sniPattern()
		for _, m := range tc.matches {
			if !matchesPattern(t, pattern, m) {
				t.Errorf("%s does not match %s", pattern, m)
			}
		}
		for _, m := range tc.refuses {
			if matchesPattern(t, pattern, m) {
				t.Errorf("%s matches %s", pattern, m)
			}
		}
	}
	if p := (sniEntry{name: "*", rank: 2}).sniPattern(); p != "" {
		t.Errorf("catch-all pattern %q", p)
	}
}

func TestIsLocalName(t *testing.T) {
	for name, local := range map[string]bool{
		"localhost": true, "app.localhost": true, "printer.local": true, "db.internal": true,
		"reviews": true, "reviews.default.svc.cluster.local": true, "*.svc.cluster.local": true,
		"127.0.0.1": true, "10.1.2.3": true, "::1": true,
		"httpbin.example.com": false, "*.example.com": false, "example.org": false,
	} {
		if got := isLocalName(name); got != local {
			t.Errorf("isLocalName(%q) = %v, want %v", name, got, local)
		}
	}
}

// Every name Istio accepts maps to a Go cipher suite name. Caddy offers
// only Go's secure ones: the RSA key exchange and 3DES suites are
// dropped with a warning.
func TestOpenSSLCipherSuites(t *testing.T) {
	known := map[string]bool{}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		known[cs.Name] = true
	}
	for openssl, goName := range openSSLCipherSuites {
		if !known[goName] {
			t.Errorf("%s: %s is not a Go cipher suite", openssl, goName)
		}
		if strings.HasPrefix(openssl, "ECDHE-") && !caddytls.CipherSuiteNameSupported(goName) {
			t.Errorf("%s: Caddy does not offer %s", openssl, goName)
		}
	}
}

// credentialName resolves next to the config file, in the Gateway's
// namespace or in istio-system; MUTUAL takes the CA from the credential,
// or from NAME-cacert.
func TestGatewayCredentialName(t *testing.T) {
	t.Setenv(CredentialsEnv, "")
	dir := t.TempDir()
	for _, f := range []string{
		"credentials/istio-system/simple/tls.crt", "credentials/istio-system/simple/tls.key",
		"credentials/edge/mutual/cert", "credentials/edge/mutual/key",
		"credentials/edge/mutual-cacert/ca.crt",
		"credentials/edge/nocert/ca.crt",
	} {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("pem"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	input := `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  servers:
  - port: {number: 443, name: https-simple, protocol: HTTPS}
    hosts: [simple.example.com]
    tls: {mode: SIMPLE, credentialName: simple}
  - port: {number: 443, name: https-mutual, protocol: HTTPS}
    hosts: [mutual.example.com]
    tls: {mode: MUTUAL, credentialName: mutual}
  - port: {number: 443, name: https-nocert, protocol: HTTPS}
    hosts: [nocert.example.com]
    tls: {mode: SIMPLE, credentialName: nocert}
  - port: {number: 443, name: https-noca, protocol: HTTPS}
    hosts: [noca.example.com]
    tls: {mode: MUTUAL, credentialName: simple}
`
	out, warnings, err := Adapter{}.Adapt([]byte(input), map[string]any{"filename": filepath.Join(dir, "gw.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			TLS struct {
				Certificates struct {
					LoadFiles caddytls.FileLoader `json:"load_files"`
				} `json:"certificates"`
			} `json:"tls"`
			HTTP struct {
				Servers map[string]struct {
					Policies []struct {
						Match      map[string]json.RawMessage `json:"match"`
						ClientAuth *struct {
							CA   json.RawMessage `json:"ca"`
							Mode string          `json:"mode"`
						} `json:"client_authentication"`
					} `json:"tls_connection_policies"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "credentials")
	var files []string
	for _, f := range cfg.Apps.TLS.Certificates.LoadFiles {
		files = append(files, strings.TrimPrefix(f.Certificate, creds)+" "+strings.TrimPrefix(f.Key, creds))
	}
	wantFiles := []string{
		"/istio-system/simple/tls.crt /istio-system/simple/tls.key",
		"/edge/mutual/cert /edge/mutual/key",
	}
	if !reflect.DeepEqual(files, wantFiles) {
		t.Errorf("load_files %q, want %q", files, wantFiles)
	}
	policies := cfg.Apps.HTTP.Servers["gateway-443"].Policies
	if len(policies) != 2 {
		t.Fatalf("%d policies, want simple and mutual: %s", len(policies), out)
	}
	ca := policies[1].ClientAuth
	if ca == nil || ca.Mode != "require_and_verify" || !strings.Contains(string(ca.CA), "mutual-cacert/ca.crt") {
		t.Errorf("mutual client authentication: %+v", ca)
	}
	w := formatWarnings(warnings)
	for _, want := range []string{
		`spec.servers[2].tls.credentialName: Gateway edge/gw: credential "nocert" has no tls.crt/tls.key`,
		`spec.servers[3].tls.credentialName: Gateway edge/gw: no CA certificate to verify clients with`,
	} {
		if !strings.Contains(w, want) {
			t.Errorf("no warning %q in\n%s", want, w)
		}
	}
}

func matchesPattern(t *testing.T, pattern, s string) bool {
	t.Helper()
	ok, err := regexp.MatchString(pattern, s)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// An HTTPS server on port 80 would be served in plaintext by Caddy (its
// http_port): it is not served.
func TestGatewayHTTPSOnPort80(t *testing.T) {
	_, warnings := adaptInline(t, `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  servers:
  - port: {number: 80, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}
`)
	if !hasWarning(warnings, "spec.servers[0].port.number", "without TLS") {
		t.Errorf("no warning: %q", warnings)
	}
}
