package istiomesh

import (
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestClientSANVerifier(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/default/sa/client")
	withURI := &x509.Certificate{URIs: []*url.URL{spiffe}}
	withDNS := &x509.Certificate{DNSNames: []string{"client.example.com"}}
	v := ClientSANVerifier{SubjectAltNames: []string{"client.example.com", "spiffe://cluster.local/ns/default/sa/client"}}
	for _, tc := range []struct {
		what   string
		chains [][]*x509.Certificate
		ok     bool
	}{
		{"URI SAN", [][]*x509.Certificate{{withURI}}, true},
		{"DNS SAN", [][]*x509.Certificate{{withDNS}}, true},
		{"other names", [][]*x509.Certificate{{{DNSNames: []string{"evil.example.com"}}}}, false},
		{"no certificate (verify_if_given)", nil, true},
	} {
		err := v.VerifyClientCertificate(nil, tc.chains)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.what, err, tc.ok)
		}
	}
	if err := (&ClientSANVerifier{}).Provision(caddy.Context{}); err == nil {
		t.Error("no names: provisioned")
	}
}
