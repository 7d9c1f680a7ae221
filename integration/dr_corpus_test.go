package integration

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/modules/istiomesh"
)

// The sample DestinationRules of the corpus, unmodified, through the real
// binary: the circuit-breaking task's pool overflows as the task shows,
// and destination-rule-reviews.yaml's RANDOM spreads over every version.

const circuitBreakingRule = "istio-samples/istio.io/tasks/traffic-management/circuit-breaking/snip_configuring_the_circuit_breaker_1.yaml"

// TestDRCorpusCircuitBreaking: the task's DestinationRule (maxConnections
// 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1) with three
// concurrent clients: some requests overflow with Envoy's 503 and
// x-envoy-overloaded: true, the others succeed. Overflows are not upstream
// errors, so outlier detection (consecutive5xxErrors 1) never ejects the
// only endpoint, which would turn every later answer into a plain 503.
func TestDRCorpusCircuitBreaking(t *testing.T) {
	requireBinaries(t)
	// A slow endpoint keeps the single connection busy, so concurrent
	// requests queue and overflow.
	httpbin := startRecorder(t, "httpbin", http.StatusOK, 50*time.Millisecond)
	config := joinDocs(
		corpus(t, "istio-samples/httpbin/httpbin.yaml"),
		corpus(t, circuitBreakingRule),
		workloadEntries(t, backends{"httpbin/v1": httpbin.addr}),
	)
	addr := net.JoinHostPort(startVSMesh(t, config, 8000), "8000")

	const clients, perClient = 3, 20
	var (
		mu         sync.Mutex
		ok, over   int
		unexpected []string
		wg         sync.WaitGroup
	)
	for c := 0; c < clients; c++ {
		client := hostClient(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				resp, err := client.Get("http://httpbin:8000/get")
				if err != nil {
					mu.Lock()
					unexpected = append(unexpected, err.Error())
					mu.Unlock()
					return
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
				resp.Body.Close()
				mu.Lock()
				switch {
				case resp.StatusCode == http.StatusOK && resp.Header.Get("x-recorder") == "httpbin":
					ok++
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("x-envoy-overloaded") == "true":
					over++
				default:
					unexpected = append(unexpected, fmt.Sprintf("%d %v %q", resp.StatusCode, resp.Header, body))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests: %d succeeded, %d overflowed", clients*perClient, ok, over)
	if len(unexpected) > 0 {
		t.Errorf("%d unexpected answers, e.g. %s", len(unexpected), unexpected[0])
	}
	if ok == 0 {
		t.Errorf("no request succeeded")
	}
	if over == 0 {
		t.Errorf("no request overflowed the connection pool (503 with x-envoy-overloaded)")
	}
}

// TestDRCorpusReviewsRandom: destination-rule-reviews.yaml (RANDOM at the
// host level) without a VirtualService: requests to reviews spread over
// v1, v2 and v3.
func TestDRCorpusReviewsRandom(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "reviews/v1", "reviews/v2", "reviews/v3")
	config := joinDocs(
		corpus(t, kubeBookinfo),
		corpus(t, networking+"destination-rule-reviews.yaml"),
		workloadEntries(t, b),
	)
	client := hostClient(t, meshAddr(startVSMesh(t, config)))

	// 60 random picks miss one of three versions with probability
	// 3*(2/3)^60, about 1e-10.
	seen := map[string]int{}
	for i := 0; i < 60; i++ {
		a := get(t, client, fmt.Sprintf("http://reviews:%d/", vsPort))
		expectBackend(t, "reviews", a, "reviews", "")
		if a.Reply != nil {
			seen[a.Reply.Version]++
		}
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		if seen[v] == 0 {
			t.Errorf("version %s got no request: %v", v, seen)
		}
	}
}

// TestDRCorpusSimpleTLS: a DestinationRule with tls.mode SIMPLE
// (caCertificates, sni) originates TLS to the endpoint, which verifies its
// certificate, and forwards the client's Host unchanged, as Envoy does
// (Caddy's transport alone would send the endpoint's address).
func TestDRCorpusSimpleTLS(t *testing.T) {
	requireBinaries(t)
	var (
		mu    sync.Mutex
		hosts []string
		tlsOn []bool
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		tlsOn = append(tlsOn, r.TLS != nil)
		mu.Unlock()
		io.WriteString(w, "secure")
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemCert, 0o644); err != nil {
		t.Fatal(err)
	}
	dr := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: shop
spec:
  host: shop
  trafficPolicy:
    tls:
      mode: SIMPLE
      caCertificates: %s
      sni: example.com
`, caFile)
	config := joinDocs(kubeService("shop", vsPort), dr, workloadEntries(t, backends{"shop/v1": srv.Listener.Addr().String()}))
	client := hostClient(t, meshAddr(startVSMesh(t, config)))

	resp, err := client.Get(fmt.Sprintf("http://shop:%d/", vsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "secure" {
		t.Fatalf("got %d %q, want 200 from the TLS endpoint", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	want := fmt.Sprintf("shop:%d", vsPort)
	if len(hosts) != 1 || hosts[0] != want || !tlsOn[0] {
		t.Errorf("endpoint saw hosts %q (TLS %v), want one TLS request with Host %s", hosts, tlsOn, want)
	}
}

// TestDRCorpusGatewayIstioMutual: a Gateway HTTPS server with tls.mode
// ISTIO_MUTUAL terminates mesh mTLS with this proxy's identity (the
// WorkloadEntry its selector picks: serviceAccount ingress in
// istio-system) and routes by its VirtualService; a mesh client that
// expects that identity is answered, and a plaintext client is not.
func TestDRCorpusGatewayIstioMutual(t *testing.T) {
	requireBinaries(t)
	const ingressID = "spiffe://cluster.local/ns/istio-system/sa/ingress"
	web := startRecorder(t, "web", http.StatusOK, 0)
	bind := randomLoopback()
	port := freePort(t)
	gateway := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: mesh-ingress
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: %d
      name: https-mesh
      protocol: HTTPS
    bind: %s
    hosts:
    - "*"
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ingress
  namespace: istio-system
spec:
  address: 127.0.0.1
  labels:
    istio: ingressgateway
  serviceAccount: ingress
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
spec:
  hosts:
  - "*"
  gateways:
  - mesh-ingress
  http:
  - route:
    - destination:
        host: web
`, port, bind)
	addr := net.JoinHostPort(bind, strconv.Itoa(port))
	g := startCaddy(t, joinDocs(kubeService("web", vsPort), workloadEntries(t, backends{"web/v1": web.addr}), gateway), addr)

	// The test process joins the mesh through the gateway's storage, where
	// the gateway created the mesh CA.
	storage := filepath.Join(filepath.Dir(g.configFile), "home", "data", "caddy")
	cfg := meshStorageConfig(storage)
	cfg["admin"] = map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	cfg["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(raw, true); err != nil {
		t.Fatalf("loading the client's caddy config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	client, err := istiomesh.NewIdentity(caddy.ActiveContext(), "istio", productpageID)
	if err != nil {
		t.Fatal(err)
	}

	resp, body, err := mtlsGet(t, "https://"+addr+"/", client, []string{ingressID}, false)
	if err != nil {
		t.Fatalf("mesh client expecting %s: %v", ingressID, err)
	}
	if resp.StatusCode != http.StatusOK || body != "web" {
		t.Errorf("got %d %q, want 200 from web", resp.StatusCode, body)
	}
	if _, _, err := mtlsGet(t, "https://"+addr+"/", client, []string{reviewsID}, false); err == nil {
		t.Errorf("a client expecting %s accepted the gateway", reviewsID)
	}
	plain := hostClient(t, addr)
	if resp, err := plain.Get("http://web/"); err == nil {
		resp.Body.Close()
		t.Errorf("plaintext request answered %d", resp.StatusCode)
	}
}
