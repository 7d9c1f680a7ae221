package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDRConnPoolUseClientProtocol: with useClientProtocol the endpoint
// gets a request over the HTTP version its client used: HTTP/2 from an
// h2c client, HTTP/1.1 from an HTTP/1.1 one, on one cluster.
func TestDRConnPoolUseClientProtocol(t *testing.T) {
	requireBinaries(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	config := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  ports:
  - port: %d
    name: http
  selector:
    app: echo
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: echo-v1
spec:
  address: %s
  labels:
    app: echo
  ports:
    http: %s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo
spec:
  host: echo
  trafficPolicy:
    connectionPool:
      http:
        useClientProtocol: true
`, vsPort, host, port)
	addr := meshAddr(startVSMesh(t, config))
	url := fmt.Sprintf("http://echo:%d/", vsPort)
	for _, tc := range []struct {
		client *http.Client
		want   string
	}{
		{h2cClient(t, addr), "HTTP/2.0"},
		{hostClient(t, addr), "HTTP/1.1"},
		{h2cClient(t, addr), "HTTP/2.0"},
	} {
		resp, err := tc.client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != tc.want {
			t.Errorf("client over %s: %d %q, want 200 and an upstream request over %s", resp.Proto, resp.StatusCode, body, tc.want)
		}
	}
}
