package istiomesh

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// handshake runs a TLS handshake between client and server over an
// in-memory connection and returns the client's error and the server's.
func handshake(t *testing.T, client, server *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	// Loopback TCP, not net.Pipe: an unbuffered pipe blocks a refusing
	// client's alert until the deadline.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(10 * time.Second)
	_ = c.SetDeadline(deadline)
	_ = s.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		conn := tls.Server(s, server)
		err := conn.Handshake()
		if err == nil {
			// TLS 1.3: the server learns of the client's refusal on read.
			_, err = conn.Read(make([]byte, 1))
			if err != nil && err.Error() == "EOF" {
				err = nil
			}
		}
		s.Close()
		done <- err
	}()
	conn := tls.Client(c, client)
	clientErr = conn.Handshake()
	c.Close()
	return clientErr, <-done
}

func TestConfigureIstioMutual(t *testing.T) {
	ctx := loadCaddy(t, nil)
	client := newIdentity(t, ctx, "", clientID)
	server := newIdentity(t, ctx, "", serverID)
	stranger := newIdentity(t, ctx, "other", serverID)
	otherDomain := newIdentity(t, ctx, "", "spiffe://example.org/ns/default/sa/server")

	for _, tc := range []struct {
		name   string
		server *Identity
		sans   []string
		trust  string
		ok     bool
	}{
		{"expected SAN", server, []string{otherID, serverID}, "", true},
		{"unexpected SAN", server, []string{otherID}, "", false},
		{"no SANs: trust domain of the client", server, nil, "", true},
		{"no SANs: other trust domain", otherDomain, nil, "", false},
		{"no SANs: explicit trust domain", otherDomain, nil, "example.org", true},
		{"SAN of another trust domain given", otherDomain, []string{"spiffe://example.org/ns/default/sa/server"}, "", true},
		{"other CA, expected SAN", stranger, []string{serverID}, "", false},
		{"other CA, no SANs", stranger, nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{}
			ConfigureIstioMutual(cfg, client, IstioMutualSNI(9080, "v1", "reviews.default.svc.cluster.local"), tc.sans, tc.trust)
			var sawSNI string
			var sawClient []string
			serverCfg := &tls.Config{
				GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
					sawSNI = hello.ServerName
					return tc.server.Certificate(), nil
				},
				ClientAuth: tls.RequireAnyClientCert,
				VerifyConnection: func(cs tls.ConnectionState) error {
					sawClient = uris(cs.PeerCertificates[0])
					return nil
				},
			}
			clientErr, _ := handshake(t, cfg, serverCfg)
			if tc.ok != (clientErr == nil) {
				t.Fatalf("client handshake error %v, want ok=%v", clientErr, tc.ok)
			}
			if sawSNI != "outbound_.9080_.v1_.reviews.default.svc.cluster.local" {
				t.Errorf("SNI %q", sawSNI)
			}
			if tc.ok && (len(sawClient) != 1 || sawClient[0] != clientID) {
				t.Errorf("server saw client identity %v, want %s", sawClient, clientID)
			}
		})
	}
}

func TestConfigureSubjectAltNames(t *testing.T) {
	rootCert, rootKey := selfSignedCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(rootCert)
	serverCert := leafFor(t, rootCert, rootKey, []string{"reviews.default.svc.cluster.local"})

	for _, tc := range []struct {
		name     string
		roots    *x509.CertPool
		sans     []string
		insecure bool
		ok       bool
	}{
		{"expected DNS SAN, other server name", roots, []string{"x.example", "reviews.default.svc.cluster.local"}, false, true},
		{"unexpected SAN", roots, []string{"ratings.default.svc.cluster.local"}, false, false},
		{"untrusted root", x509.NewCertPool(), []string{"reviews.default.svc.cluster.local"}, false, false},
		{"insecureSkipVerify skips both", x509.NewCertPool(), []string{"ratings"}, true, true},
		// Without SANs the hostname check applies, and the certificate is
		// not for 127.0.0.1.
		{"no SANs: hostname check", roots, nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: tc.roots, ServerName: "127.0.0.1", InsecureSkipVerify: tc.insecure}
			ConfigureSubjectAltNames(cfg, tc.sans)
			clientErr, _ := handshake(t, cfg, &tls.Config{Certificates: []tls.Certificate{serverCert}})
			if tc.ok != (clientErr == nil) {
				t.Fatalf("client handshake error %v, want ok=%v", clientErr, tc.ok)
			}
		})
	}
}

// TestConfigureSubjectAltNamesURI: MUTUAL towards a mesh certificate,
// trusting the mesh root as a plain CA pool.
func TestConfigureSubjectAltNamesURI(t *testing.T) {
	ctx := loadCaddy(t, nil)
	server := newIdentity(t, ctx, "", serverID)
	for _, tc := range []struct {
		sans []string
		ok   bool
	}{
		{[]string{serverID}, true},
		{[]string{otherID}, false},
	} {
		cfg := &tls.Config{RootCAs: server.RootPool(), ServerName: "reviews"}
		ConfigureSubjectAltNames(cfg, tc.sans)
		clientErr, _ := handshake(t, cfg, &tls.Config{Certificates: []tls.Certificate{*server.Certificate()}})
		if tc.ok != (clientErr == nil) {
			t.Errorf("sans %v: client handshake error %v, want ok=%v", tc.sans, clientErr, tc.ok)
		}
	}
}

func selfSignedCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func leafFor(t *testing.T, root *x509.Certificate, rootKey *ecdsa.PrivateKey, dnsNames []string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
