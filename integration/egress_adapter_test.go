package integration

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests of this file run the istio adapter's egress translation with
// the real binary: Sidecar outboundTrafficPolicy on the mesh listeners,
// TLS origination by DestinationRules, and the egress gateway pattern with
// two Caddy processes. "External" hosts are mapped to servers on 127.0.0.x
// by ServiceEntry endpoints; no name is looked up in DNS.

// egressServer is an "external" server on ip:port (port 0: any) that
// answers "NAME host=HOST tls=SNI client=CN path=PATH"; with tlsConfig it
// serves HTTPS. /delay/N waits N seconds first (or until the client
// leaves).
func egressServer(t *testing.T, name, ip string, port int, tlsConfig *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen on %s:%d: %v", ip, port, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, ok := strings.CutPrefix(r.URL.Path, "/delay/"); ok {
			secs, _ := strconv.Atoi(n)
			select {
			case <-time.After(time.Duration(secs) * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		sni, client := "-", "-"
		if r.TLS != nil {
			sni = r.TLS.ServerName
			if len(r.TLS.PeerCertificates) > 0 {
				client = r.TLS.PeerCertificates[0].Subject.CommonName
			}
		}
		fmt.Fprintf(w, "%s host=%s tls=%s client=%s path=%s", name, r.Host, sni, client, r.URL.Path)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	if tlsConfig != nil {
		srv.TLS = tlsConfig
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return ln.Addr().String()
}

// startEgressAdapterCaddy runs `caddy run --adapter istio` with config
// written to dir/mesh.yaml (credentials/ next to it is the credentials
// directory) and extra environment, and waits for listeners.
func startEgressAdapterCaddy(t *testing.T, name, dir, config string, env []string, listeners ...string) *process {
	t.Helper()
	requireBinaries(t)
	for _, addr := range listeners {
		requireFree(t, addr)
	}
	configFile := filepath.Join(dir, "mesh.yaml")
	writeFile(t, configFile, []byte(config))
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	env = append([]string{"CADDY_ADMIN=" + admin}, env...)
	p := startProcess(t, name, caddyBin, []string{"run", "--adapter", "istio", "--config", configFile}, childEnv(filepath.Join(dir, "home"), env...), nil)
	t.Cleanup(func() { stopAndCheckRaces(t, p, name) })
	deadline := time.Now().Add(startTimeout)
	for _, addr := range listeners {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if p.exited() {
				t.Fatalf("%s exited before listening on %s:\n%s", name, addr, tail(p.output.String(), 4096))
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not listen on %s within %v", name, addr, startTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return p
}

// withEndpoint adds an endpoint at address (with the named ports mapped,
// if any) to the ServiceEntry documents of yaml that have resolution DNS
// or STATIC and no endpoints: the sample's host now goes to a local server.
func withEndpoint(t *testing.T, yaml, address string, ports map[string]int) string {
	t.Helper()
	endpoint := "  endpoints:\n  - address: " + address + "\n"
	if len(ports) > 0 {
		endpoint += "    ports:\n"
		for name, p := range ports {
			endpoint += fmt.Sprintf("      %s: %d\n", name, p)
		}
	}
	docs := documentSeparator.Split(yaml, -1)
	n := 0
	for i, doc := range docs {
		if !strings.Contains(doc, "kind: ServiceEntry") || strings.Contains(doc, "endpoints:") {
			continue
		}
		docs[i] = strings.TrimRight(doc, "\n") + "\n" + endpoint
		n++
	}
	if n == 0 {
		t.Fatal("no ServiceEntry to add an endpoint to")
	}
	return strings.Join(docs, "---\n")
}

// docsOfKind returns the documents of yaml of the given kind.
func docsOfKind(yaml, kind string) string {
	var out []string
	for _, doc := range documentSeparator.Split(yaml, -1) {
		if strings.Contains(doc, "\nkind: "+kind+"\n") || strings.HasPrefix(strings.TrimSpace(doc), "apiVersion") && strings.Contains(doc, "kind: "+kind+"\n") {
			out = append(out, strings.Trim(doc, "\n"))
		}
	}
	return strings.Join(out, "\n---\n")
}

// egressSidecar is a Sidecar with an HTTP egress listener on bind:port
// for every host per port, the given outboundTrafficPolicy lines ("" for
// none) and workloadSelector labels.
func egressSidecar(name, bind, policy string, labels map[string]string, ports ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: %s\nspec:\n", name)
	if len(labels) > 0 {
		b.WriteString("  workloadSelector:\n    labels:\n")
		for k, v := range labels {
			fmt.Fprintf(&b, "      %s: %s\n", k, v)
		}
	}
	b.WriteString("  egress:\n")
	for _, port := range ports {
		fmt.Fprintf(&b, "  - port:\n      number: %d\n      protocol: HTTP\n      name: http-%d\n    bind: %s\n    hosts:\n    - \"*/*\"\n", port, port, bind)
	}
	b.WriteString(policy)
	return b.String()
}

// distinctLoopbacks returns n different random 127.x.y.z addresses.
func distinctLoopbacks(n int) []string {
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		ip := randomLoopback()
		if !seen[ip] {
			seen[ip] = true
			out = append(out, ip)
		}
	}
	return out
}

// TestEgressAdapterPolicy: Sidecar outboundTrafficPolicy on three mesh
// listeners of one Caddy. REGISTRY_ONLY (by mode, and by an empty policy)
// refuses hosts outside the registry with 502 (HTTP) and 403 (CONNECT);
// ALLOW_ANY passes them on to the private address check (the only thing
// that stops a loopback destination); registry hosts go out on all three,
// plain HTTP through the VirtualService routing, CONNECT as a tunnel to the
// ServiceEntry endpoint (the egress-control task's https service).
func TestEgressAdapterPolicy(t *testing.T) {
	ips := distinctLoopbacks(7)
	strict, empty, open, extIP, tlsIP, proxied, squidIP := ips[0], ips[1], ips[2], ips[3], ips[4], ips[5], ips[6]
	ca := newTestCA(t, "external CA")
	dir := t.TempDir()
	cert := ca.issueValid(t, dir, "google", "www.google.com")
	httpbin := egressServer(t, "httpbin", extIP, 0, nil)
	egressServer(t, "google", tlsIP, 443, &tls.Config{Certificates: []tls.Certificate{cert.tls}})
	_, httpbinPort, _ := net.SplitHostPort(httpbin)
	httpbinPortN, _ := strconv.Atoi(httpbinPort)
	squid := egressServer(t, "squid", squidIP, 0, nil)
	_, squidPort, _ := net.SplitHostPort(squid)
	squidPortN, _ := strconv.Atoi(squidPort)

	config := joinDocs(
		withEndpoint(t, corpus(t, "istio-samples/istio.io/tasks/traffic-management/egress/egress-control/snip_access_an_external_http_service_1.yaml"), extIP, map[string]int{"http": httpbinPortN}),
		withEndpoint(t, corpus(t, "istio-samples/istio.io/tasks/traffic-management/egress/egress-control/snip_access_an_external_https_service_1.yaml"), tlsIP, nil),
		withEndpoint(t, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: single
spec:
  hosts:
  - single.example.test
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  resolution: STATIC
`, extIP, map[string]int{"http": httpbinPortN}),
		egressSidecar("strict", strict, "  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n", nil, 80, 8080),
		egressSidecar("empty", empty, "  outboundTrafficPolicy: {}\n", nil, 80),
		egressSidecar("open", open, "", nil, 80),
		// ALLOW_ANY with an egress proxy: the squid service.
		withEndpoint(t, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: squid
spec:
  hosts:
  - squid.example.test
  ports:
  - number: 3128
    name: http
    protocol: HTTP
  resolution: STATIC
`, squidIP, map[string]int{"http": squidPortN}),
		egressSidecar("proxied", proxied, "  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n    egressProxy:\n      host: squid.example.test\n      port:\n        number: 3128\n", nil, 80),
	)
	startEgressAdapterCaddy(t, "caddy", dir, config, nil, strict+":80", empty+":80", open+":80", strict+":8080", proxied+":80")

	// egressProxy: plain HTTP for hosts outside the registry goes to the
	// egress proxy's endpoints, Host kept; registry hosts do not.
	if got := curlProxy(t, nil, "-x", "http://"+proxied+":80", "http://unknown.example.test/x"); got.status != 200 || got.body != "squid host=unknown.example.test tls=- client=- path=/x" {
		t.Errorf("egressProxy, http://unknown.example.test/x: got %d %q, want 200 from squid", got.status, got.body)
	}
	if got := curlProxy(t, nil, "-x", "http://"+proxied+":80", "http://httpbin.org/"); got.status != 200 || !strings.HasPrefix(got.body, "httpbin host=httpbin.org") {
		t.Errorf("egressProxy, http://httpbin.org/: got %d %q, want 200 from httpbin", got.status, got.body)
	}

	// A single-port service answers a Host without port on the listener of
	// its port (origin form, as `curl -H Host:`), and its host:port in
	// absolute form, under REGISTRY_ONLY.
	if got := get(t, hostClient(t, strict+":8080"), "http://single.example.test/"); got.Status != 200 || !strings.HasPrefix(got.Body, "httpbin host=single.example.test") {
		t.Errorf("origin form, Host single.example.test: got %d %q, want 200", got.Status, got.Body)
	}
	if got := curlProxy(t, nil, "-x", "http://"+strict+":8080", "http://single.example.test:8080/"); got.status != 200 || !strings.HasPrefix(got.body, "httpbin host=single.example.test:8080") {
		t.Errorf("http://single.example.test:8080/: got %d %q, want 200", got.status, got.body)
	}

	for _, l := range []struct {
		name, addr   string
		registryOnly bool
	}{
		{"REGISTRY_ONLY", strict, true},
		{"outboundTrafficPolicy {}", empty, true},
		{"no outboundTrafficPolicy (ALLOW_ANY)", open, false},
	} {
		t.Run(l.name, func(t *testing.T) {
			proxy := "http://" + l.addr + ":80"
			// The registry: plain HTTP through istio_route, to the endpoint.
			got := curlProxy(t, nil, "-x", proxy, "http://httpbin.org/headers")
			if got.status != 200 || !strings.HasPrefix(got.body, "httpbin host=httpbin.org") {
				t.Errorf("http://httpbin.org/headers: got %d %q, want 200 from the ServiceEntry endpoint", got.status, got.body)
			}
			// The registry over CONNECT: a tunnel to the endpoint, TLS end
			// to end (curl verifies the external server).
			got = curlProxy(t, nil, "-x", proxy, "--cacert", writeTemp(t, ca.certPEM), "https://www.google.com/")
			if got.status != 200 || got.connectStatus != 200 || !strings.HasPrefix(got.body, "google host=www.google.com tls=www.google.com") {
				t.Errorf("https://www.google.com/ through CONNECT: got %d (CONNECT %d) %q, want 200", got.status, got.connectStatus, got.body)
			}
			// Outside the registry.
			got = curlProxy(t, nil, "-x", proxy, "http://unknown.example.test/")
			if l.registryOnly {
				if got.status != http.StatusBadGateway || got.body != "" {
					t.Errorf("http://unknown.example.test/: got %d %q, want 502 with an empty body (block_all)", got.status, got.body)
				}
				got = curlProxy(t, nil, "-x", proxy, "--proxytunnel", "http://unknown.example.test:443/")
				if got.connectStatus != http.StatusForbidden && got.status != http.StatusForbidden {
					t.Errorf("CONNECT unknown.example.test:443: got %d (CONNECT %d), want 403", got.status, got.connectStatus)
				}
				got = curlProxy(t, nil, "-x", proxy, "http://httpbin.org:8080/")
				if got.status != http.StatusBadGateway {
					t.Errorf("http://httpbin.org:8080/ (undeclared port): got %d %q, want 502", got.status, got.body)
				}
			}
			// A loopback address: REGISTRY_ONLY refuses it as unknown,
			// ALLOW_ANY lets it through the policy and the private address
			// check refuses it (the reason says which).
			got = curlProxy(t, nil, "-x", proxy, "-p", "http://"+httpbin+"/")
			if got.connectStatus != http.StatusForbidden && got.status != http.StatusForbidden {
				t.Errorf("CONNECT %s: got %d (CONNECT %d), want 403", httpbin, got.status, got.connectStatus)
			}
			reason := connectReason(t, l.addr+":80", httpbin)
			want := "not in the registry (REGISTRY_ONLY)"
			if !l.registryOnly {
				want = "loopback"
			}
			if !strings.Contains(reason, want) {
				t.Errorf("CONNECT %s: reason %q, want it to say %q", httpbin, reason, want)
			}
		})
	}
}

// connectReason sends CONNECT target to proxy and returns the status line
// and body of the answer.
func connectReason(t *testing.T, proxy, target string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(requestTimeout))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	buf := make([]byte, 4096)
	var all []byte
	for {
		n, err := conn.Read(buf)
		all = append(all, buf[:n]...)
		if err != nil || strings.Contains(string(all), "\r\n\r\n") && !strings.HasSuffix(string(all), "\r\n\r\n") {
			break
		}
	}
	return string(all)
}

// writeTemp writes data to a new temporary file and returns its path.
func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "file.pem")
	writeFile(t, f, data)
	return f
}

// TestEgressAdapterTLSOrigination: an application's plain HTTP request
// leaves as HTTPS where a DestinationRule says so. The egress TLS
// origination task (SE port 80 with targetPort 443, port-level SIMPLE)
// verifies the server against the system roots (SSL_CERT_FILE here) with
// SNI from the Host; the mutual TLS origination task's DestinationRule
// (MUTUAL, credentialName, sni) takes the client certificate and CA from
// credentials/default/client-credential next to the config.
func TestEgressAdapterTLSOrigination(t *testing.T) {
	ips := distinctLoopbacks(4)
	mesh, cnnIP, nginxIP, timeoutIP := ips[0], ips[1], ips[2], ips[3]
	dir := t.TempDir()
	serverCA := newTestCA(t, "external server CA")
	clientCA := newTestCA(t, "client CA")
	cnnCert := serverCA.issueValid(t, dir, "cnn", "edition.cnn.com")
	nginxCert := serverCA.issueValid(t, dir, "nginx", "my-nginx.mesh-external.svc.cluster.local")
	client := clientCA.issueValid(t, dir, "client", "sleep.default")
	egressServer(t, "cnn", cnnIP, 443, &tls.Config{Certificates: []tls.Certificate{cnnCert.tls}})
	nginx := egressServer(t, "nginx", nginxIP, 0, &tls.Config{
		Certificates: []tls.Certificate{nginxCert.tls},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.pool(),
	})
	delaying := egressServer(t, "httpbin", timeoutIP, 0, nil)
	_, nginxPort, _ := net.SplitHostPort(nginx)
	_, delayPort, _ := net.SplitHostPort(delaying)
	delayPortN, _ := strconv.Atoi(delayPort)

	// The client-credential secret: the client certificate and key, and
	// the CA that verifies the server.
	secret := filepath.Join(dir, "credentials", "default", "client-credential")
	writeFile(t, filepath.Join(secret, "tls.crt"), client.certPEM)
	writeFile(t, filepath.Join(secret, "tls.key"), client.keyPEM)
	writeFile(t, filepath.Join(secret, "ca.crt"), serverCA.certPEM)
	// The system roots of the process: the server CA.
	roots := filepath.Join(dir, "roots.pem")
	writeFile(t, roots, serverCA.certPEM)

	const egressDir = "istio-samples/istio.io/tasks/traffic-management/egress/"
	nginxEntry := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: my-nginx
  namespace: mesh-external
spec:
  hosts:
  - my-nginx.mesh-external.svc.cluster.local
  ports:
  - number: 443
    name: http
    protocol: HTTP
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints:
  - address: ` + nginxIP + `
    ports:
      http: ` + nginxPort + `
`
	// A host whose server presents another name's certificate: the
	// origination verifies it, so the request fails (503).
	wrongName := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: wrong-name
spec:
  hosts:
  - wrong.example.test
  ports:
  - number: 80
    name: http
    protocol: HTTP
    targetPort: 443
  resolution: STATIC
  endpoints:
  - address: ` + cnnIP + `
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: wrong-name
spec:
  host: wrong.example.test
  trafficPolicy:
    tls:
      mode: SIMPLE
`
	// MUTUAL with the certificate files named in the DestinationRule.
	serverCAFile := filepath.Join(dir, "server-ca.pem")
	writeFile(t, serverCAFile, serverCA.certPEM)
	mutualFiles := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: files
spec:
  hosts:
  - files.example.test
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: ` + nginxIP + `
    ports:
      http: ` + nginxPort + `
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: files
spec:
  host: files.example.test
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: ` + client.certFile + `
      privateKey: ` + client.keyFile + `
      caCertificates: ` + serverCAFile + `
      sni: my-nginx.mesh-external.svc.cluster.local
`
	config := joinDocs(
		wrongName,
		mutualFiles,
		withEndpoint(t, corpus(t, egressDir+"egress-tls-origination/snip_apply_origination.yaml"), cnnIP, nil),
		nginxEntry,
		corpus(t, egressDir+"egress-tls-origination/snip_configure_mutual_tls_origination_for_egress_traffic_at_sidecar_1.yaml"),
		withEndpoint(t, corpus(t, egressDir+"egress-control/snip_access_an_external_http_service_1.yaml"), timeoutIP, map[string]int{"http": delayPortN}),
		corpus(t, egressDir+"egress-control/snip_manage_traffic_to_external_services_2.yaml"),
		// The DestinationRule of the mTLS task selects app: sleep: this
		// proxy is that workload.
		egressSidecar("sleep", mesh, "  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n", map[string]string{"app": "sleep"}, 80, 443),
	)
	startEgressAdapterCaddy(t, "caddy", dir, config, []string{"SSL_CERT_FILE=" + roots}, mesh+":80", mesh+":443")

	t.Run("SIMPLE, port 80 to target port 443", func(t *testing.T) {
		got := curlProxy(t, nil, "-x", "http://"+mesh+":80", "http://edition.cnn.com/politics")
		if want := "cnn host=edition.cnn.com tls=edition.cnn.com client=- path=/politics"; got.status != 200 || got.body != want {
			t.Errorf("got %d %q, want 200 %q", got.status, got.body, want)
		}
	})
	t.Run("SIMPLE verifies the server name", func(t *testing.T) {
		got := curlProxy(t, nil, "-x", "http://"+mesh+":80", "http://wrong.example.test/")
		if got.status != http.StatusServiceUnavailable || strings.Contains(got.body, "cnn") {
			t.Errorf("got %d %q, want 503 (the certificate is for edition.cnn.com)", got.status, got.body)
		}
	})
	t.Run("MUTUAL with credentialName", func(t *testing.T) {
		got := curlProxy(t, nil, "-x", "http://"+mesh+":443", "http://my-nginx.mesh-external.svc.cluster.local:443/")
		if want := "nginx host=my-nginx.mesh-external.svc.cluster.local:443 tls=my-nginx.mesh-external.svc.cluster.local client=sleep.default path=/"; got.status != 200 || got.body != want {
			t.Errorf("got %d %q, want 200 %q", got.status, got.body, want)
		}
	})
	t.Run("MUTUAL with certificate files", func(t *testing.T) {
		got := curlProxy(t, nil, "-x", "http://"+mesh+":80", "http://files.example.test/")
		if want := "nginx host=files.example.test tls=my-nginx.mesh-external.svc.cluster.local client=sleep.default path=/"; got.status != 200 || got.body != want {
			t.Errorf("got %d %q, want 200 %q", got.status, got.body, want)
		}
	})
	t.Run("timeout 3s on an external host", func(t *testing.T) {
		got := curlProxy(t, nil, "-x", "http://"+mesh+":80", "http://httpbin.org/delay/1")
		if got.status != 200 || !strings.HasPrefix(got.body, "httpbin host=httpbin.org") {
			t.Errorf("/delay/1: got %d %q, want 200", got.status, got.body)
		}
		start := time.Now()
		got = curlProxy(t, nil, "-x", "http://"+mesh+":80", "http://httpbin.org/delay/5")
		t.Logf("/delay/5 answered after %v", time.Since(start).Round(100*time.Millisecond))
		if got.status != http.StatusGatewayTimeout || got.body != "upstream request timeout" {
			t.Errorf("/delay/5: got %d %q, want 504 upstream request timeout", got.status, got.body)
		}
	})
}

// TestEgressAdapterGateway: the egress gateway task with two Caddy
// processes. The sidecar (mesh listener, REGISTRY_ONLY) sends port 80
// traffic for edition.cnn.com to the egress gateway service subset cnn
// (a ServiceEntry whose endpoint is the second process); the gateway (the
// Gateway with selector istio: egressgateway and the same VirtualService)
// sends it on to edition.cnn.com, a local server. A variant does the same
// with ISTIO_MUTUAL between sidecar and gateway (the processes share the
// mesh CA through their storage).
func TestEgressAdapterGateway(t *testing.T) {
	ips := distinctLoopbacks(5)
	sidecarIP, gatewayIP, gatewayMeshIP, cnnIP, directIP := ips[0], ips[1], ips[2], ips[3], ips[4]
	cnn := egressServer(t, "cnn", cnnIP, 0, nil)
	direct := egressServer(t, "direct", directIP, 0, nil)
	_, cnnPort, _ := net.SplitHostPort(cnn)
	_, directPort, _ := net.SplitHostPort(direct)
	cnnPortN, _ := strconv.Atoi(cnnPort)
	directPortN, _ := strconv.Atoi(directPort)

	const gwDir = "istio-samples/istio.io/tasks/traffic-management/egress/egress-gateway/"
	entry := corpus(t, gwDir+"snip_egress_gateway_for_http_traffic_1.yaml")
	gatewayAndRule := corpus(t, gwDir+"snip_egress_gateway_for_http_traffic_3.yaml")
	routes := corpus(t, gwDir+"snip_egress_gateway_for_http_traffic_5.yaml")
	// The gateway's server listens on its own loopback address.
	gatewayDoc := strings.Replace(docsOfKind(gatewayAndRule, "Gateway"), "  - port:\n      number: 80", "  - bind: "+gatewayIP+"\n    port:\n      number: 80", 1)
	if !strings.Contains(gatewayDoc, "bind: ") {
		t.Fatal("could not bind the sample Gateway")
	}

	// The ISTIO_MUTUAL variant: its own host, gateway service and Gateway
	// server (HTTPS ISTIO_MUTUAL on 443).
	mtlsGateway := `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway-mtls
spec:
  selector:
    istio: egressgateway
  servers:
  - bind: ` + gatewayIP + `
    port:
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - api.mtls.test
    tls:
      mode: ISTIO_MUTUAL
`
	mtlsEntry := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api-mtls
spec:
  hosts:
  - api.mtls.test
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  location: MESH_EXTERNAL
`
	mtlsRoutes := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api-mtls-through-egress-gateway
spec:
  hosts:
  - api.mtls.test
  gateways:
  - istio-egressgateway-mtls
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway-mtls.istio-system.svc.cluster.local
        subset: api
        port:
          number: 443
  - match:
    - gateways:
      - istio-egressgateway-mtls
      port: 443
    route:
    - destination:
        host: api.mtls.test
        port:
          number: 80
`
	mtlsRule := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-mtls
spec:
  host: istio-egressgateway-mtls.istio-system.svc.cluster.local
  subsets:
  - name: api
    trafficPolicy:
      tls:
        mode: ISTIO_MUTUAL
`
	// The egress gateway services, as seen by the sidecar: the second
	// process.
	gatewayServices := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: istio-egressgateway
  namespace: istio-system
spec:
  hosts:
  - istio-egressgateway.istio-system.svc.cluster.local
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 80
    name: http
    protocol: HTTP
  endpoints:
  - address: ` + gatewayIP + `
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: istio-egressgateway-mtls
  namespace: istio-system
spec:
  hosts:
  - istio-egressgateway-mtls.istio-system.svc.cluster.local
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 443
    name: https
    protocol: HTTPS
  endpoints:
  - address: ` + gatewayIP + `
`
	storage := filepath.Join(t.TempDir(), "mesh-data")
	if err := os.MkdirAll(storage, 0o700); err != nil {
		t.Fatal(err)
	}
	shared := []string{"XDG_DATA_HOME=" + storage}

	gatewayConfig := joinDocs(
		withEndpoint(t, entry, cnnIP, map[string]int{"http-port": cnnPortN}),
		gatewayDoc,
		routes,
		withEndpoint(t, mtlsEntry, cnnIP, map[string]int{"http": cnnPortN}),
		mtlsGateway,
		mtlsRoutes,
		// The gateway's own mesh listener, out of the sidecar's way.
		egressSidecar("gateway", gatewayMeshIP, "", nil, 80),
	)
	startEgressAdapterCaddy(t, "egress-gateway", t.TempDir(), gatewayConfig, shared, gatewayIP+":80", gatewayIP+":443")

	sidecarConfig := joinDocs(
		// Direct traffic would reach "direct": the answer says which way
		// the request went.
		withEndpoint(t, entry, directIP, map[string]int{"http-port": directPortN}),
		docsOfKind(gatewayAndRule, "DestinationRule"),
		routes,
		withEndpoint(t, mtlsEntry, directIP, map[string]int{"http": directPortN}),
		mtlsRoutes,
		mtlsRule,
		gatewayServices,
		egressSidecar("sleep", sidecarIP, "  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n", nil, 80),
	)
	startEgressAdapterCaddy(t, "sidecar", t.TempDir(), sidecarConfig, shared, sidecarIP+":80")

	for _, tc := range []struct{ name, url, want string }{
		{"plain HTTP to the gateway", "http://edition.cnn.com/politics", "cnn host=edition.cnn.com tls=- client=- path=/politics"},
		{"ISTIO_MUTUAL to the gateway", "http://api.mtls.test/v1", "cnn host=api.mtls.test tls=- client=- path=/v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := curlProxy(t, nil, "-x", "http://"+sidecarIP+":80", tc.url)
			if got.status != 200 || got.body != tc.want {
				t.Errorf("%s: got %d %q, want 200 %q (through the egress gateway)", tc.url, got.status, got.body, tc.want)
			}
		})
	}
	// The gateway's 443 server speaks the mesh's mTLS only.
	t.Run("the mTLS gateway refuses plaintext", func(t *testing.T) {
		got := curlProxy(t, nil, "http://"+gatewayIP+":443/", "-H", "Host: api.mtls.test")
		if got.status == 200 {
			t.Errorf("plain HTTP to the ISTIO_MUTUAL gateway server: got %d %q, want a failure", got.status, got.body)
		}
	})
	// Go's client with HTTP_PROXY, as applications use the mesh listener.
	t.Run("Go client with HTTP_PROXY", func(t *testing.T) {
		got := get(t, proxyClient(t, sidecarIP+":80"), "http://edition.cnn.com/")
		if got.Status != 200 || !strings.HasPrefix(got.Body, "cnn host=edition.cnn.com") {
			t.Errorf("got %d %q, want 200 from cnn through the gateway", got.Status, got.Body)
		}
	})
}
