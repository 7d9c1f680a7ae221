package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// DestinationRule follow-ups: PASSTHROUGH (original destination), Host and
// SNI kept over TLS after an authority rewrite, HTTP/2 to HTTP2 and GRPC
// service ports.

// TestDRFollowPassthrough: loadBalancer PASSTHROUGH forwards to the host
// the client asked for (localhost, from /etc/hosts) on the service's
// target port, and never to the ServiceEntry's endpoint. The rule's host
// is "*": a short name would be read as localhost.default.svc.cluster.local.
func TestDRFollowPassthrough(t *testing.T) {
	requireBinaries(t)
	original := startRecorder(t, "original", http.StatusOK, 0)
	_, targetPort, _ := net.SplitHostPort(original.addr)
	unused := closedPort(t)
	unusedHost, unusedPort, _ := net.SplitHostPort(unused)
	config := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: local
spec:
  hosts:
  - localhost
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - number: %d
    name: http
    protocol: HTTP
    targetPort: %s
  endpoints:
  - address: %s
    ports:
      http: %s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: local
spec:
  host: "*"
  trafficPolicy:
    loadBalancer:
      simple: PASSTHROUGH
`, vsPort, targetPort, unusedHost, unusedPort)
	client := hostClient(t, meshAddr(startVSMesh(t, config)))
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://localhost:%d/pass", vsPort), nil)
	if r := do(t, client, req); r.Status != http.StatusOK || r.Body != "original" {
		t.Fatalf("PASSTHROUGH: %v %q, want 200 from the original destination", r, r.Body)
	}
	seen := original.requests()
	if len(seen) != 1 || seen[0].Path != "/pass" || seen[0].Host != fmt.Sprintf("localhost:%d", vsPort) {
		t.Errorf("the original destination saw %+v, want one GET /pass with Host localhost:%d", seen, vsPort)
	}
}

// TestDRFollowTLSRewrittenAuthority: a route's authority rewrite to a
// SIMPLE TLS destination without sni reaches the endpoint as the Host and
// as the SNI (Istio's auto-SNI from the request sent upstream), and a
// request without rewrite keeps its own Host and SNI.
func TestDRFollowTLSRewrittenAuthority(t *testing.T) {
	requireBinaries(t)
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+" "+r.TLS.ServerName)
		mu.Unlock()
		io.WriteString(w, "secure")
	}))
	t.Cleanup(srv.Close)
	vs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: secure
spec:
  hosts:
  - secure
  http:
  - match:
    - uri:
        prefix: /rewrite
    rewrite:
      authority: rewritten.example
    route:
    - destination:
        host: secure
  - route:
    - destination:
        host: secure
`
	dr := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: secure
spec:
  host: secure
  trafficPolicy:
    tls:
      mode: SIMPLE
      insecureSkipVerify: true
`
	config := joinDocs(kubeService("secure", vsPort), vs, dr, workloadEntries(t, backends{"secure/v1": srv.Listener.Addr().String()}))
	client := hostClient(t, meshAddr(startVSMesh(t, config)))
	for _, path := range []string{"/rewrite", "/plain", "/rewrite"} {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://secure:%d%s", vsPort, path), nil)
		if r := do(t, client, req); r.Status != http.StatusOK || r.Body != "secure" {
			t.Fatalf("GET %s: %v %q, want 200 from the TLS endpoint", path, r, r.Body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"rewritten.example rewritten.example", fmt.Sprintf("secure:%d secure", vsPort), "rewritten.example rewritten.example"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("the endpoint saw Host and SNI %q, want %q", seen, want)
	}
}

// TestDRFollowGRPCPortSpeaksHTTP2: a service port named grpc (protocol
// GRPC) reaches its endpoint over HTTP/2 with prior knowledge, as Envoy
// does, so an endpoint that speaks h2c only answers, trailers included;
// h2UpgradePolicy DO_NOT_UPGRADE does not apply to such a port.
func TestDRFollowGRPCPortSpeaksHTTP2(t *testing.T) {
	requireBinaries(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("x-upstream-proto", r.Proto)
		w.Write([]byte{0, 0, 0, 0, 0})
		w.Header().Set("Grpc-Status", "0")
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	config := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: greeter
spec:
  ports:
  - port: %d
    name: grpc
  selector:
    app: greeter
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: greeter-v1
spec:
  address: %s
  labels:
    app: greeter
  ports:
    grpc: %s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: greeter
spec:
  host: greeter
  trafficPolicy:
    connectionPool:
      http:
        h2UpgradePolicy: DO_NOT_UPGRADE
`, vsPort, host, port)
	client := h2cClient(t, meshAddr(startVSMesh(t, config)))
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://greeter:%d/helloworld.Greeter/SayHello", vsPort), bytes.NewReader([]byte{0, 0, 0, 0, 0}))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("x-upstream-proto") != "HTTP/2.0" || resp.Trailer.Get("Grpc-Status") != "0" {
			t.Errorf("call %d: %d, upstream %q, grpc-status %q; want 200 over HTTP/2.0 with grpc-status 0",
				i, resp.StatusCode, resp.Header.Get("x-upstream-proto"), resp.Trailer.Get("Grpc-Status"))
		}
	}
}
