package istio

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

func TestCRLFileOf(t *testing.T) {
	dir := t.TempDir()
	put := func(secret, key string) string {
		p := filepath.Join(dir, "default", secret, key)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	put("tls-secret", "ca.crt")
	tlsCRL := put("tls-secret", "ca.crl")
	put("generic", "cacert")
	genericCRL := put("generic", "crl")
	put("split", "tls.crt")
	put("split-cacert", "ca.crt")
	splitCRL := put("split-cacert", "ca.crl")
	put("no-crl", "ca.crt")

	tr := &translator{opts: Options{CredentialsDir: dir}}
	simple, mutual := networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL
	for _, tc := range []struct {
		name string
		ct   *networking.ClientTLSSettings
		want string
	}{
		{"caCrl", &networking.ClientTLSSettings{Mode: simple, CaCrl: "/etc/crl.pem"}, "/etc/crl.pem"},
		{"MUTUAL caCrl", &networking.ClientTLSSettings{Mode: mutual, CaCrl: "/etc/crl.pem"}, "/etc/crl.pem"},
		{"none", &networking.ClientTLSSettings{Mode: simple}, ""},
		{"ISTIO_MUTUAL ignores it", &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL, CaCrl: "/etc/crl.pem"}, ""},
		{"insecureSkipVerify ignores it", &networking.ClientTLSSettings{Mode: simple, CaCrl: "/etc/crl.pem", InsecureSkipVerify: wrapperspb.Bool(true)}, ""},
		{"tls secret", &networking.ClientTLSSettings{Mode: simple, CredentialName: "tls-secret", CaCrl: "/etc/ignored.pem"}, tlsCRL},
		{"generic secret", &networking.ClientTLSSettings{Mode: mutual, CredentialName: "generic"}, genericCRL},
		{"-cacert secret", &networking.ClientTLSSettings{Mode: mutual, CredentialName: "split"}, splitCRL},
		{"secret without crl", &networking.ClientTLSSettings{Mode: simple, CredentialName: "no-crl"}, ""},
		{"missing secret", &networking.ClientTLSSettings{Mode: simple, CredentialName: "missing"}, ""},
	} {
		if got := tr.crlFileOf(tc.ct, nil); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
