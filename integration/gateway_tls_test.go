package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test, never installed
// anywhere: clients trust it through their own root pool or --cacert.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

var serialNumber int64 = time.Now().UnixNano()

func nextSerial() *big.Int {
	serialNumber++
	return big.NewInt(serialNumber)
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leaf is a certificate signed by a testCA, with its PEM files.
type leaf struct {
	tls               tls.Certificate
	certPEM, keyPEM   []byte
	certFile, keyFile string
}

// issue signs a leaf for names (DNS SANs) valid from notBefore to
// notAfter, for servers and clients, and writes its PEM files to dir.
func (ca *testCA) issue(t *testing.T, dir, file string, names []string, notBefore, notAfter time.Time) *leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := &leaf{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	if l.tls, err = tls.X509KeyPair(l.certPEM, l.keyPEM); err != nil {
		t.Fatal(err)
	}
	l.certFile = filepath.Join(dir, file+".crt")
	l.keyFile = filepath.Join(dir, file+".key")
	writeFile(t, l.certFile, l.certPEM)
	writeFile(t, l.keyFile, l.keyPEM)
	return l
}

func (ca *testCA) issueValid(t *testing.T, dir, file string, names ...string) *leaf {
	return ca.issue(t, dir, file, names, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startCaddyIn runs `caddy run --adapter istio --config DIR/gateway.yaml`
// (so that credentials/ next to it is the credential directory) with a
// private home under dir, and waits until every listener accepts TCP
// connections.
func startCaddyIn(t *testing.T, dir, config string, listeners ...string) (*process, string) {
	t.Helper()
	requireBinaries(t)
	for _, addr := range listeners {
		requireFree(t, addr)
	}
	configFile := filepath.Join(dir, "gateway.yaml")
	writeFile(t, configFile, []byte(config))
	home := filepath.Join(dir, "home")
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	p := startProcess(t, "caddy", caddyBin, []string{"run", "--adapter", "istio", "--config", configFile}, childEnv(home, "CADDY_ADMIN="+admin), nil)
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
				t.Fatalf("caddy exited before listening on %s", addr)
			}
			if time.Now().After(deadline) {
				t.Fatalf("caddy did not listen on %s within %v", addr, startTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return p, home
}

// tlsClient dials addr whatever the URL says, with SNI serverName (the
// URL's host when empty), trusting roots only.
func tlsClient(t *testing.T, addr string, cfg *tls.Config) *http.Client {
	t.Helper()
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   cfg,
		ForceAttemptHTTP2: len(cfg.NextProtos) == 0,
	}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: requestTimeout, CheckRedirect: noRedirects}
}

// tlsGet sends GET url through a fresh client: it returns the answer, the
// negotiated protocol and the leaf certificate the server presented.
func tlsGet(t *testing.T, addr, url string, cfg *tls.Config) (answer, string, *x509.Certificate, error) {
	t.Helper()
	resp, err := tlsClient(t, addr, cfg).Get(url)
	if err != nil {
		return answer{}, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{}, "", nil, err
	}
	var peer *x509.Certificate
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		peer = resp.TLS.PeerCertificates[0]
	}
	return newAnswer(resp.StatusCode, resp.Header, body), resp.Proto, peer, nil
}

// handshake does only a TLS handshake (and one read, since with TLS 1.3
// the server's verdict on a client certificate comes after the client's
// handshake is done) and returns the error.
func handshake(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := fmt.Fprintf(conn, "GET /status/200 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", cfg.ServerName); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

const helloworldService = `apiVersion: v1
kind: Service
metadata:
  name: helloworld
  labels:
    app: helloworld
spec:
  ports:
  - port: 5000
    name: http
  selector:
    app: helloworld
`

// The istio.io secure-ingress task, "multiple hosts": two SIMPLE servers
// on one port, each with its credentialName, told apart by SNI. The
// credentials are laid out as credentials/istio-system/NAME/ next to the
// config, as `kubectl create -n istio-system secret tls` makes them. Also:
// h2 by ALPN, curl with --cacert and --resolve, a name no server has is
// refused.
func TestGatewayTLSSimpleCredentials(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "httpbin/v1", "helloworld/v1")
	dir := t.TempDir()
	ca := newTestCA(t, "example.com root")
	creds := filepath.Join(dir, "credentials", "istio-system")
	httpbinCert := ca.issueValid(t, filepath.Join(creds, "httpbin-credential"), "tls", "httpbin.example.com")
	helloCert := ca.issueValid(t, filepath.Join(creds, "helloworld-credential"), "tls", "helloworld.example.com")

	port := freePort(t)
	const task = "istio-samples/istio.io/tasks/traffic-management/ingress/secure-ingress/"
	config := joinDocs(corpus(t, "istio-samples/httpbin/httpbin.yaml"), helloworldService,
		withGatewayPort(t, corpus(t, task+"snip_configure_a_tls_ingress_gateway_for_multiple_hosts_4.yaml"), 443, port),
		corpus(t, task+"snip_configure_a_tls_ingress_gateway_for_a_single_host_3.yaml"),
		corpus(t, task+"snip_configure_a_tls_ingress_gateway_for_multiple_hosts_5.yaml"),
		workloadEntries(t, b))
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startCaddyIn(t, dir, config, addr)

	for _, tc := range []struct {
		sni, path string
		cert      *leaf
		status    int
		service   string
	}{
		{"httpbin.example.com", "/status/418", httpbinCert, http.StatusTeapot, "httpbin"},
		{"httpbin.example.com", "/status/200", httpbinCert, http.StatusOK, "httpbin"},
		{"helloworld.example.com", "/hello", helloCert, http.StatusOK, "helloworld"},
	} {
		a, proto, peer, err := tlsGet(t, addr, "https://"+tc.sni+tc.path, &tls.Config{RootCAs: ca.pool(), ServerName: tc.sni})
		if err != nil {
			t.Errorf("GET %s with SNI %s: %v", tc.path, tc.sni, err)
			continue
		}
		if a.Status != tc.status || a.Reply == nil || a.Reply.Service != tc.service {
			t.Errorf("GET %s with SNI %s: got %v, want %d from %s", tc.path, tc.sni, a, tc.status, tc.service)
		}
		if proto != "HTTP/2.0" {
			t.Errorf("SNI %s: protocol %s, want HTTP/2.0 (ALPN h2)", tc.sni, proto)
		}
		if peer == nil || !bytes.Equal(peer.Raw, tc.cert.tls.Certificate[0]) {
			t.Errorf("SNI %s: the server presented another certificate (%v)", tc.sni, peer.DNSNames)
		}
	}

	// HTTP/1.1 only, as an old client: ALPN http/1.1.
	a, proto, _, err := tlsGet(t, addr, "https://httpbin.example.com/status/200", &tls.Config{RootCAs: ca.pool(), NextProtos: []string{"http/1.1"}})
	if err != nil || a.Status != http.StatusOK || proto != "HTTP/1.1" {
		t.Errorf("HTTP/1.1 over TLS: %v %s %v", a, proto, err)
	}

	// No server has this name: Envoy finds no filter chain, Caddy no
	// connection policy: the handshake fails.
	if err := handshake(addr, &tls.Config{RootCAs: ca.pool(), ServerName: "other.example.com", InsecureSkipVerify: true}); err == nil {
		t.Error("SNI other.example.com: handshake succeeded, want it refused")
	}

	// curl, trusting only the test CA.
	caFile := filepath.Join(dir, "ca.crt")
	writeFile(t, caFile, ca.certPEM)
	out := curl(t, "--cacert", caFile, "--resolve", "httpbin.example.com:"+strconv.Itoa(port)+":127.0.0.1",
		"-o", "/dev/null", "-w", "%{http_code} %{http_version}", "https://httpbin.example.com:"+strconv.Itoa(port)+"/status/418")
	if out != "418 2" {
		t.Errorf("curl: %q, want \"418 2\"", out)
	}
}

// A websocket upgrade through a SIMPLE TLS gateway, and gRPC-style h2
// (POST with a body, trailers-free) over the same listener.
func TestGatewayTLSWebSocket(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "tornado/v1")
	dir := t.TempDir()
	ca := newTestCA(t, "ws root")
	cert := ca.issueValid(t, dir, "tornado", "tornado.example.com")
	port := freePort(t)
	gateway := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: tornado-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: %d
      name: https
      protocol: HTTPS
    hosts:
    - tornado.example.com
    tls:
      mode: SIMPLE
      serverCertificate: %s
      privateKey: %s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tornado
spec:
  hosts:
  - tornado.example.com
  gateways:
  - tornado-gateway
  http:
  - route:
    - destination:
        host: tornado
`, port, cert.certFile, cert.keyFile)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startCaddyIn(t, dir, joinDocs(tornadoService, gateway, workloadEntries(t, b)), addr)

	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: ca.pool(), ServerName: "tornado.example.com", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: tornado.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %d, want 101", resp.StatusCode)
	}
	msg := "hello over tls"
	if err := writeClientFrame(conn, 0x1, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	opcode, payload, err := readServerFrame(br)
	if err != nil || opcode != 0x1 || string(payload) != msg {
		t.Errorf("echo: opcode %d, %q, %v", opcode, payload, err)
	}

	// h2 with a request body, as a gRPC client sends.
	req, _ := http.NewRequest(http.MethodPost, "https://tornado.example.com/grpc.Echo/Say", strings.NewReader("payload"))
	req.Header.Set("Content-Type", "application/grpc")
	r2, err := tlsClient(t, addr, &tls.Config{RootCAs: ca.pool()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	got := newAnswer(r2.StatusCode, r2.Header, body)
	if r2.Proto != "HTTP/2.0" || got.Reply == nil || got.Reply.Method != http.MethodPost {
		t.Errorf("h2 POST: %s %v", r2.Proto, got)
	}
}

// MUTUAL and OPTIONAL_MUTUAL on one port: client certificates verified
// against caCertificates; no, untrusted or expired certificates refused
// by MUTUAL; OPTIONAL_MUTUAL accepts a client without a certificate but
// not one with a bad certificate; subjectAltNames refuses a trusted
// certificate without one of the names. minProtocolVersion TLSV1_3 refuses a
// TLS 1.2 client. A Host other than the SNI is routed among the hosts of
// the server the SNI chose (Envoy does not compare them; Caddy's strict
// SNI-Host check, 421, is off).
func TestGatewayTLSMutual(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "httpbin/v1")
	dir := t.TempDir()
	serverCA := newTestCA(t, "server root")
	clientCA := newTestCA(t, "client root")
	otherCA := newTestCA(t, "untrusted root")
	mutualCert := serverCA.issueValid(t, dir, "mutual", "mutual.example.com")
	optionalCert := serverCA.issueValid(t, dir, "optional", "optional.example.com")
	modernCert := serverCA.issueValid(t, dir, "modern", "modern.example.com")
	pinnedCert := serverCA.issueValid(t, dir, "pinned", "pinned.example.com")
	clientCAFile := filepath.Join(dir, "client-ca.crt")
	writeFile(t, clientCAFile, clientCA.certPEM)
	good := clientCA.issueValid(t, dir, "client", "client.example.com")
	untrusted := otherCA.issueValid(t, dir, "untrusted", "client.example.com")
	stranger := clientCA.issueValid(t, dir, "stranger", "stranger.example.com")
	expired := clientCA.issue(t, dir, "expired", []string{"client.example.com"}, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))

	port := freePort(t)
	config := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: %[1]d, name: https-mutual, protocol: HTTPS}
    hosts: [mutual.example.com]
    tls: {mode: MUTUAL, serverCertificate: %[2]s, privateKey: %[3]s, caCertificates: %[4]s}
  - port: {number: %[1]d, name: https-optional, protocol: HTTPS}
    hosts: [optional.example.com]
    tls: {mode: OPTIONAL_MUTUAL, serverCertificate: %[5]s, privateKey: %[6]s, caCertificates: %[4]s}
  - port: {number: %[1]d, name: https-modern, protocol: HTTPS}
    hosts: [modern.example.com]
    tls: {mode: SIMPLE, serverCertificate: %[7]s, privateKey: %[8]s, minProtocolVersion: TLSV1_3}
  - port: {number: %[1]d, name: https-pinned, protocol: HTTPS}
    hosts: [pinned.example.com]
    tls: {mode: MUTUAL, serverCertificate: %[9]s, privateKey: %[10]s, caCertificates: %[4]s, subjectAltNames: [client.example.com]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts: [mutual.example.com, optional.example.com, modern.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {host: httpbin, port: {number: 8000}}
`, port, mutualCert.certFile, mutualCert.keyFile, clientCAFile, optionalCert.certFile, optionalCert.keyFile, modernCert.certFile, modernCert.keyFile, pinnedCert.certFile, pinnedCert.keyFile)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startCaddyIn(t, dir, joinDocs(corpus(t, "istio-samples/httpbin/httpbin.yaml"), config, workloadEntries(t, b)), addr)

	cfg := func(sni string, client *leaf) *tls.Config {
		c := &tls.Config{RootCAs: serverCA.pool(), ServerName: sni}
		if client != nil {
			// Sent even when its CA is not one the server asks for.
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &client.tls, nil }
		}
		return c
	}
	for _, tc := range []struct {
		what   string
		sni    string
		client *leaf
		ok     bool
	}{
		{"MUTUAL with a trusted certificate", "mutual.example.com", good, true},
		{"MUTUAL without certificate", "mutual.example.com", nil, false},
		{"MUTUAL with an untrusted certificate", "mutual.example.com", untrusted, false},
		{"MUTUAL with an expired certificate", "mutual.example.com", expired, false},
		{"OPTIONAL_MUTUAL without certificate", "optional.example.com", nil, true},
		{"OPTIONAL_MUTUAL with a trusted certificate", "optional.example.com", good, true},
		{"OPTIONAL_MUTUAL with an untrusted certificate", "optional.example.com", untrusted, false},
		{"subjectAltNames: a trusted certificate with the name", "pinned.example.com", good, true},
		{"subjectAltNames: a trusted certificate with another name", "pinned.example.com", stranger, false},
		{"subjectAltNames: no certificate", "pinned.example.com", nil, false},
	} {
		err := handshake(addr, cfg(tc.sni, tc.client))
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.what, err)
		}
		if !tc.ok && err == nil {
			t.Errorf("%s: accepted, want the handshake refused", tc.what)
		}
	}

	// Each server routes only its own hosts, as Istio's route
	// configuration per HTTPS server: the MUTUAL server's host is not
	// reachable through the OPTIONAL_MUTUAL server's handshake.
	a, _, _, err := tlsGet(t, addr, "https://mutual.example.com/status/200", cfg("mutual.example.com", good))
	if err != nil || a.Status != http.StatusOK || a.Reply == nil {
		t.Errorf("Host mutual.example.com with a client certificate: %v %v, want 200 from httpbin", a, err)
	}
	a, _, _, err = tlsGet(t, addr, "https://mutual.example.com/status/200", cfg("optional.example.com", nil))
	if err != nil || a.Status != http.StatusNotFound || a.Reply != nil {
		t.Errorf("Host mutual.example.com over SNI optional.example.com: %v %v, want 404 from the gateway", a, err)
	}

	// minProtocolVersion TLSV1_3.
	tls12 := cfg("modern.example.com", nil)
	tls12.MaxVersion = tls.VersionTLS12
	if err := handshake(addr, tls12); err == nil {
		t.Error("TLSV1_3 server: a TLS 1.2 client was accepted")
	}
	if err := handshake(addr, cfg("modern.example.com", nil)); err != nil {
		t.Errorf("TLSV1_3 server: a TLS 1.3 client: %v", err)
	}
	// The default minimum is TLS 1.2: a TLS 1.2 client is served.
	tls12 = cfg("optional.example.com", nil)
	tls12.MaxVersion = tls.VersionTLS12
	if err := handshake(addr, tls12); err != nil {
		t.Errorf("default minimum: a TLS 1.2 client: %v", err)
	}
}

// The istio.io secure-ingress task, "mutual TLS": credentialName whose
// secret also carries ca.crt (kubectl create secret generic ... --from-file
// tls.crt --from-file tls.key --from-file ca.crt), here in the Gateway's
// own namespace. A client without certificate fails the handshake; with a
// certificate signed by the CA, /status/418 is a teapot.
func TestGatewayTLSMutualCredential(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "httpbin/v1")
	dir := t.TempDir()
	ca := newTestCA(t, "example.com root")
	secret := filepath.Join(dir, "credentials", "default", "httpbin-credential")
	ca.issueValid(t, secret, "tls", "httpbin.example.com")
	writeFile(t, filepath.Join(secret, "ca.crt"), ca.certPEM)
	client := ca.issueValid(t, dir, "client", "client.example.com")

	port := freePort(t)
	const task = "istio-samples/istio.io/tasks/traffic-management/ingress/secure-ingress/"
	config := joinDocs(corpus(t, "istio-samples/httpbin/httpbin.yaml"),
		withGatewayPort(t, corpus(t, task+"snip_configure_a_mutual_tls_ingress_gateway_2.yaml"), 443, port),
		corpus(t, task+"snip_configure_a_tls_ingress_gateway_for_a_single_host_3.yaml"),
		workloadEntries(t, b))
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startCaddyIn(t, dir, config, addr)

	if err := handshake(addr, &tls.Config{RootCAs: ca.pool(), ServerName: "httpbin.example.com"}); err == nil {
		t.Error("no client certificate: accepted, want the handshake refused")
	}
	a, _, _, err := tlsGet(t, addr, "https://httpbin.example.com/status/418",
		&tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{client.tls}})
	if err != nil || a.Status != http.StatusTeapot || a.Reply == nil {
		t.Errorf("with a client certificate: %v %v, want 418 from httpbin", a, err)
	}
}

// httpsRedirect on the HTTP server: every request for its hosts is a 301
// to https, same host and path (the port is kept unless it is 80, as
// Envoy's redirect). Other hosts of the port are routed.
func TestGatewayTLSHTTPSRedirect(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "httpbin/v1")
	port := freePort(t)
	config := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  servers:
  - port: {number: %[1]d, name: http, protocol: HTTP}
    hosts: [secure.example.com]
    tls: {httpsRedirect: true}
  - port: {number: %[1]d, name: http-plain, protocol: HTTP}
    hosts: [plain.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts: [secure.example.com, plain.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {host: httpbin, port: {number: 8000}}
`, port)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startCaddy(t, joinDocs(corpus(t, "istio-samples/httpbin/httpbin.yaml"), config, workloadEntries(t, b)), addr)

	client := hostClient(t, addr)
	hostport := "secure.example.com:" + strconv.Itoa(port)
	a := get(t, client, "http://"+hostport+"/status/200?x=1")
	if want := "https://" + hostport + "/status/200?x=1"; a.Status != http.StatusMovedPermanently || a.Header.Get("Location") != want {
		t.Errorf("secure.example.com: %v Location %q, want 301 to %s", a, a.Header.Get("Location"), want)
	}
	expectBackend(t, "plain.example.com", get(t, client, "http://plain.example.com/status/200"), "httpbin", "")
}

// Beyond Istio: a SIMPLE server whose credentialName is not in the
// credential directory gets its certificate from Caddy's automatic HTTPS;
// for a local name that is Caddy's internal CA (never a public one, and
// its root is not installed in the system trust store).
func TestGatewayTLSAutomaticInternal(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "httpbin/v1")
	dir := t.TempDir()
	port := freePort(t)
	config := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  servers:
  - port: {number: %d, name: https, protocol: HTTPS}
    hosts: [httpbin.internal]
    tls: {mode: SIMPLE, credentialName: not-there}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts: [httpbin.internal]
  gateways: [gw]
  http:
  - route:
    - destination: {host: httpbin, port: {number: 8000}}
`, port)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	_, home := startCaddyIn(t, dir, joinDocs(corpus(t, "istio-samples/httpbin/httpbin.yaml"), config, workloadEntries(t, b)), addr)

	rootFile := filepath.Join(home, "data", "caddy", "pki", "authorities", "local", "root.crt")
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		rootPEM, err := os.ReadFile(rootFile)
		if err != nil {
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(rootPEM)
		a, _, peer, err := tlsGet(t, addr, "https://httpbin.internal/status/200", &tls.Config{RootCAs: roots})
		if err != nil {
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		expectBackend(t, "httpbin.internal", a, "httpbin", "")
		if peer == nil || !strings.Contains(peer.Issuer.CommonName, "Caddy Local Authority") {
			t.Errorf("certificate issued by %v, want Caddy's internal CA", peer.Issuer)
		}
		return
	}
	var unknownAuthority x509.UnknownAuthorityError
	if errors.As(lastErr, &unknownAuthority) {
		t.Fatalf("the certificate is not from the internal CA: %v", lastErr)
	}
	t.Fatalf("no certificate for httpbin.internal within %v: %v", startTimeout, lastErr)
}
