package istio

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestResolveCredential(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string) string {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("pem"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tlsCrt, tlsKey, caCrt := write("ns/tls/tls.crt"), write("ns/tls/tls.key"), write("ns/tls/ca.crt")
	cert, key, cacert := write("ns/generic/cert"), write("ns/generic/key"), write("ns/generic/cacert")
	// Both key sets: the kubernetes.io/tls keys win.
	write("ns/generic/tls.crt")
	genericTLS := filepath.Join(dir, "ns", "generic", "tls.crt")
	splitCrt, splitKey, splitCA := write("ns/split/tls.crt"), write("ns/split/tls.key"), write("ns/split-cacert/ca.crt")
	onlyCA := write("ns/ca-only-cacert/cacert")

	for _, tc := range []struct {
		name  string
		want  Credential
		found bool
	}{
		{"tls", Credential{Cert: tlsCrt, Key: tlsKey, CA: caCrt}, true},
		{"generic", Credential{Cert: genericTLS, Key: key, CA: cacert}, true},
		{"split", Credential{Cert: splitCrt, Key: splitKey, CA: splitCA}, true},
		{"ca-only", Credential{CA: onlyCA}, true},
		{"missing", Credential{}, false},
	} {
		got, looked, found := ResolveCredential(dir, "ns", tc.name)
		if got != tc.want || found != tc.found {
			t.Errorf("%s: got %+v found %v, want %+v found %v", tc.name, got, found, tc.want, tc.found)
		}
		wantLooked := []string{filepath.Join(dir, "ns", tc.name), filepath.Join(dir, "ns", tc.name+"-cacert")}
		if !reflect.DeepEqual(looked, wantLooked) {
			t.Errorf("%s: looked %v, want %v", tc.name, looked, wantLooked)
		}
	}
	_ = cert
	if _, looked, found := ResolveCredential("", "ns", "tls"); found || looked != nil {
		t.Errorf("no directory: found %v, looked %v", found, looked)
	}
}

func TestCredentialsDir(t *testing.T) {
	t.Setenv(CredentialsEnv, "")
	if got, want := CredentialsDir(filepath.Join("conf", "gateway.yaml")), filepath.Join("conf", "credentials"); got != want {
		t.Errorf("next to the config: %q, want %q", got, want)
	}
	if got := CredentialsDir(""); got != "" {
		t.Errorf("no config file: %q, want none", got)
	}
	t.Setenv(CredentialsEnv, "/srv/secrets")
	if got := CredentialsDir(filepath.Join("conf", "gateway.yaml")); got != "/srv/secrets" {
		t.Errorf("%s set: %q", CredentialsEnv, got)
	}
}
