package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Layer-4 servers of the istio adapter (caddy-l4's layer4 app): TCP
// Gateway servers with VirtualService tcp routes, TLS PASSTHROUGH Gateway
// servers with tls routes on SNI, AUTO_PASSTHROUGH, and Sidecar TLS
// egress listeners.

// startEchoBackend runs a TCP server on loopback that answers each line
// with "name line", like the tcp-echo sample (which prefixes its version).
func startEchoBackend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveLines(t, ln, name)
	return ln.Addr().String()
}

// startTLSEchoBackend is startEchoBackend behind TLS with cert: the
// backend, not the gateway, terminates TLS.
func startTLSEchoBackend(t *testing.T, name string, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	serveLines(t, ln, name)
	return ln.Addr().String()
}

func serveLines(t *testing.T, ln net.Listener, name string) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(requestTimeout))
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					if _, err := fmt.Fprintf(conn, "%s %s\n", name, sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// echo sends line over conn and returns the answer line.
func echo(conn net.Conn, line string) (string, error) {
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := fmt.Fprintf(conn, "%s\n", line); err != nil {
		return "", err
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSuffix(answer, "\n"), err
}

// tcpEcho dials addr, sends line and returns the answer.
func tcpEcho(t *testing.T, addr, line string) (string, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return echo(conn, line)
}

// tcpEchoWorkloads are the tcp-echo Service (port 9000, named tcp) and one
// WorkloadEntry per version, at the given backend addresses.
func tcpEchoWorkloads(t *testing.T, versions map[string]string) string {
	t.Helper()
	docs := []string{`apiVersion: v1
kind: Service
metadata:
  name: tcp-echo
spec:
  selector:
    app: tcp-echo
  ports:
  - name: tcp
    port: 9000`}
	for _, v := range []string{"v1", "v2"} {
		host, port := balancerSplitAddr(t, versions[v])
		docs = append(docs, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: tcp-echo-%s
spec:
  address: %s
  ports:
    tcp: %s
  labels:
    app: tcp-echo
    version: %s`, v, host, port, v))
	}
	return joinDocs(docs...)
}

// TestLayer4TCPEcho runs the tcp-echo sample: the TCP Gateway server on
// 31400 (rewritten to a free port) with all connections to v1, then the
// 80/20 split of tcp-echo-20-v2.yaml, per connection.
func TestLayer4TCPEcho(t *testing.T) {
	requireBinaries(t)
	versions := map[string]string{"v1": startEchoBackend(t, "v1"), "v2": startEchoBackend(t, "v2")}
	port := strconv.Itoa(freePort(t))
	addr := "127.0.0.1:" + port
	allV1 := strings.ReplaceAll(corpus(t, "istio-samples/tcp-echo/tcp-echo-all-v1.yaml"), "31400", port)

	t.Run("all-v1", func(t *testing.T) {
		startCaddy(t, joinDocs(allV1, tcpEchoWorkloads(t, versions)), addr)
		for i := range 20 {
			got, err := tcpEcho(t, addr, fmt.Sprintf("hello %d", i))
			if want := fmt.Sprintf("v1 hello %d", i); err != nil || got != want {
				t.Fatalf("connection %d: got %q, %v; want %q", i, got, err, want)
			}
		}
	})

	t.Run("20-v2", func(t *testing.T) {
		split := strings.ReplaceAll(corpus(t, "istio-samples/tcp-echo/tcp-echo-20-v2.yaml"), "31400", port)
		startCaddy(t, joinDocs(allV1, split, tcpEchoWorkloads(t, versions)), addr)
		const n = 500
		counts := map[string]int{}
		for i := range n {
			got, err := tcpEcho(t, addr, "x")
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			version, _, _ := strings.Cut(got, " ")
			counts[version]++
		}
		if counts["v1"]+counts["v2"] != n {
			t.Fatalf("answers %v, want only v1 and v2", counts)
		}
		if share := float64(counts["v2"]) / n; share < 0.15 || share > 0.25 {
			t.Errorf("v2 got %.1f%% of %d connections (%v), want 20%% within 5 points", 100*share, n, counts)
		}
	})
}

// passthroughConfig is a Gateway with a PASSTHROUGH server on tlsPort for
// a.example.com and b.example.com (tls routes on SNI to services a and b)
// and an AUTO_PASSTHROUGH server on autoPort for *.internal, with the
// services a.internal and b.internal at the backends.
func passthroughConfig(t *testing.T, tlsPort, autoPort int, a, b string) string {
	t.Helper()
	aHost, aPort := balancerSplitAddr(t, a)
	bHost, bPort := balancerSplitAddr(t, b)
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: passthrough
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: %[1]d
      name: tls
      protocol: TLS
    bind: 127.0.0.1
    hosts:
    - a.example.com
    - b.example.com
    tls:
      mode: PASSTHROUGH
  - port:
      number: %[2]d
      name: tls-auto
      protocol: TLS
    bind: 127.0.0.1
    hosts:
    - "*.internal"
    tls:
      mode: AUTO_PASSTHROUGH
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: sni
spec:
  hosts:
  - a.example.com
  - b.example.com
  gateways:
  - passthrough
  tls:
  - match:
    - port: %[1]d
      sniHosts:
      - a.example.com
    route:
    - destination:
        host: a.internal
        port:
          number: 443
  - match:
    - sniHosts:
      - b.example.com
    route:
    - destination:
        host: b.internal
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: a
spec:
  hosts:
  - a.internal
  ports:
  - number: 443
    name: tls
    protocol: TLS
    targetPort: %[4]s
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: %[3]s
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: b
spec:
  hosts:
  - b.internal
  ports:
  - number: 443
    name: tls
    protocol: TLS
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: %[5]s
    ports:
      tls: %[6]s
`, tlsPort, autoPort, aHost, aPort, bHost, bPort)
}

// tlsEcho dials addr with SNI serverName, verifies the certificate the
// other end presents for verifyName against roots, and exchanges one line.
func tlsEcho(addr, serverName, verifyName string, roots *x509.CertPool, line string) (string, error) {
	cfg := &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // verified below, for verifyName
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: verifyName, Roots: roots, Intermediates: inter})
			return err
		},
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return echo(conn, line)
}

// TestLayer4TLSPassthrough: connections to the PASSTHROUGH server are
// routed on SNI, TLS untouched (the client verifies the backend's own
// certificate); an SNI no route claims is refused; AUTO_PASSTHROUGH routes
// Istio's outbound_.PORT_.SUBSET_.HOST SNI without a VirtualService.
func TestLayer4TLSPassthrough(t *testing.T) {
	requireBinaries(t)
	dir := t.TempDir()
	ca := newTestCA(t, "backend CA")
	a := startTLSEchoBackend(t, "A", ca.issueValid(t, filepath.Join(dir, "certs"), "a", "a.example.com", "a.internal").tls)
	b := startTLSEchoBackend(t, "B", ca.issueValid(t, filepath.Join(dir, "certs"), "b", "b.example.com", "b.internal").tls)
	tlsPort, autoPort := freePort(t), freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(tlsPort)
	autoAddr := "127.0.0.1:" + strconv.Itoa(autoPort)
	startCaddy(t, passthroughConfig(t, tlsPort, autoPort, a, b), addr, autoAddr)

	for _, tc := range []struct {
		addr, sni, verify, want string
	}{
		{addr, "a.example.com", "a.example.com", "A"},
		{addr, "b.example.com", "b.example.com", "B"},
		{addr, "A.Example.Com", "a.example.com", "A"}, // server names ignore case
		{autoAddr, "outbound_.443_._.a.internal", "a.internal", "A"},
		{autoAddr, "outbound_.443_._.b.internal", "b.internal", "B"},
	} {
		got, err := tlsEcho(tc.addr, tc.sni, tc.verify, ca.pool(), "ping")
		if want := tc.want + " ping"; err != nil || got != want {
			t.Errorf("%s SNI %s: got %q, %v; want %q", tc.addr, tc.sni, got, err, want)
		}
	}

	// Refused: an SNI no route claims, the plain service name on the
	// AUTO_PASSTHROUGH port, a port no service has, no SNI at all.
	for _, tc := range []struct{ addr, sni string }{
		{addr, "c.example.com"},
		{addr, "a.internal"},
		{autoAddr, "a.internal"},
		{autoAddr, "outbound_.8443_._.a.internal"},
		{autoAddr, "outbound_.443_._.a.example.com"},
		{addr, ""},
	} {
		got, err := tlsEcho(tc.addr, tc.sni, "a.example.com", ca.pool(), "ping")
		if err == nil {
			t.Errorf("%s SNI %q: got %q, want the connection refused", tc.addr, tc.sni, got)
		}
	}

	// Not TLS at all: no route either.
	if got, err := tcpEcho(t, addr, "plain"); err == nil && got != "" {
		t.Errorf("plaintext to the passthrough port: got %q, want nothing", got)
	}
}

// TestLayer4EgressGatewayTLS runs the egress gateway HTTPS pattern of the
// istio.io task (snip_egress_gateway_for_https_traffic_3.yaml) in one
// Caddy: a Sidecar TLS egress listener routes SNI edition.cnn.com to the
// egress gateway service, whose PASSTHROUGH server (this Caddy again)
// passes it to edition.cnn.com, mapped to a local backend with a
// WorkloadEntry-like endpoint (never public DNS).
func TestLayer4EgressGatewayTLS(t *testing.T) {
	requireBinaries(t)
	dir := t.TempDir()
	ca := newTestCA(t, "cnn CA")
	backend := startTLSEchoBackend(t, "cnn", ca.issueValid(t, filepath.Join(dir, "certs"), "cnn", "edition.cnn.com").tls)
	backendHost, backendPort := balancerSplitAddr(t, backend)
	gatewayPort, meshPort := freePort(t), freePort(t)
	task := corpus(t, "istio-samples/istio.io/tasks/traffic-management/egress/egress-gateway/snip_egress_gateway_for_https_traffic_3.yaml")
	task = strings.ReplaceAll(task, "number: 443", "number: "+strconv.Itoa(gatewayPort))
	task = strings.ReplaceAll(task, "port: 443", "port: "+strconv.Itoa(gatewayPort))
	task = strings.Replace(task, "      protocol: TLS\n", "      protocol: TLS\n    bind: 127.0.0.1\n", 1)
	config := joinDocs(task, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: %[1]d
    name: tls
    protocol: TLS
  resolution: STATIC
  endpoints:
  - address: %[2]s
    ports:
      tls: %[3]s
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: istio-egressgateway
spec:
  hosts:
  - istio-egressgateway.istio-system.svc.cluster.local
  ports:
  - number: %[1]d
    name: tls
    protocol: TLS
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - port:
      number: %[4]d
      name: tls
      protocol: TLS
    hosts:
    - "*/edition.cnn.com"
`, gatewayPort, backendHost, backendPort, meshPort))
	// The mesh's tls route matches port 443 of the task; here the mesh
	// listener is meshPort, so the route's match.port is gatewayPort and
	// only the gateway's route applies there: rewrite the mesh match.
	config = strings.Replace(config, "      - mesh\n      port: "+strconv.Itoa(gatewayPort), "      - mesh\n      port: "+strconv.Itoa(meshPort), 1)
	gatewayAddr := "127.0.0.1:" + strconv.Itoa(gatewayPort)
	meshAddr := "127.0.0.1:" + strconv.Itoa(meshPort)
	startCaddy(t, config, gatewayAddr, meshAddr)

	for _, addr := range []string{meshAddr, gatewayAddr} {
		got, err := tlsEcho(addr, "edition.cnn.com", "edition.cnn.com", ca.pool(), "hi")
		if err != nil || got != "cnn hi" {
			t.Errorf("%s SNI edition.cnn.com: got %q, %v; want %q", addr, got, err, "cnn hi")
		}
	}
	if got, err := tlsEcho(meshAddr, "other.example.com", "edition.cnn.com", ca.pool(), "hi"); err == nil {
		t.Errorf("mesh SNI other.example.com: got %q, want the connection refused", got)
	}
}

// TestLayer4SidecarTCPServerFirst: a Sidecar TCP egress listener sends
// connections to the only service of its port without a VirtualService,
// and a protocol where the server speaks first (MySQL, SMTP) works: the
// route does not wait for client bytes.
func TestLayer4SidecarTCPServerFirst(t *testing.T) {
	requireBinaries(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(conn, "220 greeter ready\n")
			conn.Close()
		}
	}()
	host, backendPort := balancerSplitAddr(t, ln.Addr().String())
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startCaddy(t, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: greeter
spec:
  hosts: [greeter.internal]
  ports: [{number: %[1]d, name: tcp, protocol: TCP, targetPort: %[3]s}]
  resolution: STATIC
  endpoints: [{address: %[2]s}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - port: {number: %[1]d, name: tcp, protocol: TCP}
    hosts: ["*/greeter.internal"]
`, port, host, backendPort), addr)

	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second)) // well below the 3s matching timeout
	greeting, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || greeting != "220 greeter ready\n" {
		t.Errorf("greeting: %q, %v; want %q", greeting, err, "220 greeter ready\n")
	}
}
