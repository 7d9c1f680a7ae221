package integration

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// A Sidecar egress listener with a port and a bind address is served on that
// address: here port 9080 (the bookinfo services' port) on a loopback
// address of its own, routed by virtual-service-reviews-test-v2.yaml. The
// address is chosen at random in 127.0.0.0/8, so this test does not need
// 127.0.0.1:15001.
func TestSidecarEgressListener(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, bookinfoVersions...)
	bind := fmt.Sprintf("127.0.%d.%d", rand.IntN(250)+1, rand.IntN(250)+2)
	listener := bind + ":9080"
	sidecar := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - port:
      number: 9080
      protocol: HTTP
      name: http
    bind: %s
    hosts:
    - "./*"
`, bind)
	startCaddy(t, joinDocs(meshConfig(t, b, "virtual-service-reviews-test-v2.yaml"), sidecar), listener)

	byHost := hostClient(t, listener)
	byProxy := proxyClient(t, listener)
	for i := 0; i < 5; i++ {
		expectBackend(t, "reviews, jason", get(t, byHost, "http://reviews:9080/", "end-user", "jason"), "reviews", "v2")
		expectBackend(t, "reviews", get(t, byHost, "http://reviews:9080/"), "reviews", "v1")
		expectBackend(t, "reviews, jason (proxy)", get(t, byProxy, "http://reviews:9080/", "end-user", "jason"), "reviews", "v2")
		expectBackend(t, "productpage", get(t, byHost, "http://productpage:9080/"), "productpage", "v1")
	}
}
