package integration

import (
	"fmt"
	"net"
	"net/http"
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
