package integration

import (
	"net/http"
	"strconv"
	"testing"
)

// The istio.io "Ingress Gateways" task (ingress-control snippets 1 and 2)
// with httpbin/httpbin.yaml: the gateway serves only host
// httpbin.example.com, and its VirtualService routes prefix /status and
// prefix /delay to httpbin:8000. /status/200 is 200, /headers is 404, and
// another Host is 404 too. The Gateway's port 80 is rewritten to a free port.
func TestIngressGatewayHost(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "httpbin/v1")
	port := freePort(t)
	const task = "istio-samples/istio.io/tasks/traffic-management/ingress/ingress-control/"
	gateway := withGatewayPort(t, corpus(t, task+"snip_configuring_ingress_using_a_gateway_1.yaml"), 80, port)
	config := joinDocs(corpus(t, "istio-samples/httpbin/httpbin.yaml"), gateway,
		corpus(t, task+"snip_configuring_ingress_using_a_gateway_2.yaml"), workloadEntries(t, b))
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startCaddy(t, config, addr)

	client := hostClient(t, addr)
	for _, tc := range []struct {
		host, path string
		status     int
		backend    bool
	}{
		{"httpbin.example.com", "/status/200", http.StatusOK, true},
		{"httpbin.example.com", "/status/418", http.StatusTeapot, true},
		{"httpbin.example.com", "/delay/10ms", http.StatusOK, true},
		{"HTTPBIN.example.com", "/status/200", http.StatusOK, true}, // hosts are case-insensitive
		{"httpbin.example.com", "/headers", http.StatusNotFound, false},
		{"other.example.com", "/status/200", http.StatusNotFound, false},
		{"example.com", "/status/200", http.StatusNotFound, false},
	} {
		a := get(t, client, "http://"+tc.host+tc.path)
		what := "GET " + tc.path + " Host " + tc.host
		if !tc.backend {
			expectNoBackend(t, what, a, tc.status)
			continue
		}
		if a.Status != tc.status || a.Reply == nil || a.Reply.Service != "httpbin" {
			t.Errorf("%s: got %v, want %d from httpbin", what, a, tc.status)
		}
	}
}
