package istioapp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// leaf issues a server certificate for 127.0.0.1 and DNS name svc.example.
func (ca *testCA) leaf(t *testing.T, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "svc.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"svc.example"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// crlPEM is a CRL of ca revoking serials, valid until nextUpdate.
func (ca *testCA) crlPEM(t *testing.T, nextUpdate time.Time, serials ...int64) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-2 * time.Hour), NextUpdate: nextUpdate}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// TestUpstreamCRL: a server certificate its CA's CRL lists is refused
// (502), with Go's chain verification and with the subject alternative
// names check alike; a chain whose CA has no current CRL in the file is
// refused too, as in Envoy.
func TestUpstreamCRL(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, other := newTestCA(t, "test root"), newTestCA(t, "other root")
	caFile := write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
	later := time.Now().Add(time.Hour)
	revoking := write("revoking.crl", append(other.crlPEM(t, later), ca.crlPEM(t, later, 5, 7)...))
	otherOnly := write("other.crl", other.crlPEM(t, later, 5))
	expired := write("expired.crl", ca.crlPEM(t, time.Now().Add(-time.Hour)))

	server := func(cert tls.Certificate) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	good, revoked := server(ca.leaf(t, 6)), server(ca.leaf(t, 7))

	transport := `{"protocol":"http","versions":["1.1"],"tls":{"ca":{"provider":"file","pem_files":[` + quote(caFile) + `]}}}`
	for _, tc := range []struct {
		name, addr, crl string
		sans            []string
		want            int
	}{
		{"good", good, revoking, nil, 200},
		{"revoked", revoked, revoking, nil, 502},
		{"good, SAN check", good, revoking, []string{"svc.example"}, 200},
		{"revoked, SAN check", revoked, revoking, []string{"svc.example"}, 502},
		{"no CRL of the CA", good, otherOnly, nil, 502},
		{"expired CRL", good, expired, nil, 502},
		{"revoked, no CRL file", revoked, "", nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := oneClusterApp(t, &Cluster{
				Name:  "outbound|80||crl.example",
				Proxy: json.RawMessage(`{"transport":` + transport + `}`),
				TLS:   &UpstreamTLS{SubjectAltNames: tc.sans, CRLFile: tc.crl},
			}, serverEndpoint(t, tc.addr))
			if r := do(ch, "/"); r.code != tc.want {
				t.Errorf("%+v, want %d", r, tc.want)
			}
		})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestLoadRevocationListsRefusesFileWithoutCRL(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(p, []byte("not a crl\n"), 0o600)
	if _, err := loadRevocationLists(p); err == nil || !strings.Contains(err.Error(), "no PEM certificate revocation list") {
		t.Errorf("err = %v", err)
	}
}
