package integration

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

const trafficTasks = "istio-samples/istio.io/tasks/traffic-management/"

// request-timeouts/snip_request_timeouts_{1,2,3}.yaml, applied in the
// task's order (3 replaces 1: both are the VirtualService "reviews"). Our
// backends do not call each other, so the parts are tested directly:
// ratings is delayed 2 s by a fault written with the deprecated integer
// `percent: 100` (still honoured), and reviews v2 with `timeout: 0.5s`
// answers 504 after about 0.5 s when it takes 2 s.
func TestVSFieldRequestTimeoutsCorpus(t *testing.T) {
	requireBinaries(t)
	base := func(t *testing.T, b backends) string {
		return joinDocs(corpus(t, kubeBookinfo), corpus(t, destinationRuleAll), workloadEntries(t, b))
	}

	t.Run("1+2", func(t *testing.T) {
		b := startBackends(t, bookinfoVersions...)
		config := joinDocs(base(t, b),
			corpus(t, trafficTasks+"request-timeouts/snip_request_timeouts_1.yaml"),
			corpus(t, trafficTasks+"request-timeouts/snip_request_timeouts_2.yaml"))
		client := hostClient(t, meshAddr(startVSMesh(t, config)))
		for i := 0; i < 5; i++ {
			expectBackend(t, "reviews", get(t, client, "http://reviews:9080/reviews/0"), "reviews", "v2")
		}
		start := time.Now()
		expectBackend(t, "ratings", get(t, client, "http://ratings:9080/ratings/0"), "ratings", "v1")
		if elapsed := time.Since(start); elapsed < 1900*time.Millisecond {
			t.Errorf("ratings answered after %v, want the 2s delay of `percent: 100` first", elapsed)
		}
	})

	t.Run("2+3", func(t *testing.T) {
		b := startBackends(t, bookinfoVersions...)
		config := joinDocs(base(t, b),
			corpus(t, trafficTasks+"request-timeouts/snip_request_timeouts_2.yaml"),
			corpus(t, trafficTasks+"request-timeouts/snip_request_timeouts_3.yaml"))
		client := hostClient(t, meshAddr(startVSMesh(t, config)))
		expectBackend(t, "reviews (fast)", get(t, client, "http://reviews:9080/reviews/0"), "reviews", "v2")
		for i := 0; i < 3; i++ {
			start := time.Now()
			a := get(t, client, "http://reviews:9080/delay/2s")
			elapsed := time.Since(start)
			expectNoBackend(t, "reviews taking 2s", a, http.StatusGatewayTimeout)
			if !strings.Contains(a.Body, "upstream request timeout") {
				t.Errorf("504 body %q, want Envoy's \"upstream request timeout\"", a.Body)
			}
			// Generous bounds: the timeout is 0.5s, the backend takes 2s.
			if elapsed < 450*time.Millisecond || elapsed > 1900*time.Millisecond {
				t.Errorf("504 after %v, want about 0.5s", elapsed)
			}
		}
		start := time.Now()
		expectBackend(t, "ratings", get(t, client, "http://ratings:9080/ratings/0"), "ratings", "v1")
		if elapsed := time.Since(start); elapsed < 1900*time.Millisecond {
			t.Errorf("ratings answered after %v, want the 2s delay first", elapsed)
		}
	})
}

// egress-control/snip_manage_traffic_to_external_services_2.yaml (the
// VirtualService, unmodified): `timeout: 3s` on httpbin.org. Its
// ServiceEntry (snip_access_an_external_http_service_1.yaml) resolves
// httpbin.org by DNS; these tests never look up public names, so the copy
// below adds an endpoint: with resolution DNS Istio (Envoy's STRICT_DNS)
// resolves the endpoint addresses instead of the host, and an IP literal
// resolves to itself, so httpbin.org is served by the local backend. The
// endpoint maps the port name "http" to the backend's port. httpbin's
// /delay/5 (seconds) is /delay/5s on our backend.
func TestVSFieldEgressTimeoutCorpus(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "httpbin/v1")
	serviceEntry := corpus(t, trafficTasks+"egress/egress-control/snip_access_an_external_http_service_1.yaml")
	_, port, _ := strings.Cut(b["httpbin/v1"], ":")
	if !strings.Contains(serviceEntry, "  location: MESH_EXTERNAL") {
		t.Fatal("the corpus ServiceEntry changed; update this test")
	}
	serviceEntry = strings.TrimRight(serviceEntry, "\n") + fmt.Sprintf("\n  endpoints:\n  - address: 127.0.0.1\n    ports:\n      http: %s\n", port)
	config := joinDocs(serviceEntry, corpus(t, trafficTasks+"egress/egress-control/snip_manage_traffic_to_external_services_2.yaml"))
	// The ServiceEntry's port 80 is the listener's port: it needs root or
	// CAP_NET_BIND_SERVICE (or a low net.ipv4.ip_unprivileged_port_start).
	if probe, err := net.Listen("tcp", randomLoopback()+":80"); err == nil {
		probe.Close()
	} else if errors.Is(err, syscall.EACCES) {
		t.Skipf("cannot listen on port 80: %v", err)
	}
	bind := startVSMesh(t, config, 80)
	client := hostClient(t, bind+":80")
	client.Timeout = 20 * time.Second

	expectBackend(t, "httpbin.org/delay/1s", get(t, client, "http://httpbin.org/delay/1s"), "httpbin", "v1")
	start := time.Now()
	a := get(t, client, "http://httpbin.org/delay/5s")
	elapsed := time.Since(start)
	expectNoBackend(t, "httpbin.org/delay/5s", a, http.StatusGatewayTimeout)
	if elapsed < 2900*time.Millisecond || elapsed > 4900*time.Millisecond {
		t.Errorf("504 after %v, want about 3s", elapsed)
	}
	// The same with curl, as the task runs it (-o /dev/null -w code).
	out := curl(t, "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: httpbin.org", "http://"+bind+":80/delay/5s")
	if out != "504" {
		t.Errorf("curl /delay/5s: status %q, want 504", out)
	}
}

// httpbinService is the Service of samples/httpbin/httpbin.yaml (port 8000
// "http", selector app: httpbin), which the mirroring task uses.
const httpbinService = `apiVersion: v1
kind: Service
metadata:
  name: httpbin
  labels:
    app: httpbin
    service: httpbin
spec:
  ports:
  - name: http
    port: 8000
    targetPort: 8080
  selector:
    app: httpbin
`

// mirroring/snip_mirroring_traffic_to_v2_1.yaml and its legacy form with
// `mirrorPercent: 100`: the client sees v1's answers only, v2 receives a
// copy of every request, with the Host unchanged (no -shadow suffix since
// Istio 1.28). The DestinationRule is the one of
// snip_creating_a_default_routing_policy_1.yaml.
func TestVSFieldMirroringCorpus(t *testing.T) {
	requireBinaries(t)
	var rule string
	for _, doc := range documentSeparator.Split(corpus(t, trafficTasks+"mirroring/snip_creating_a_default_routing_policy_1.yaml"), -1) {
		if strings.Contains(doc, "kind: DestinationRule") {
			rule = doc
		}
	}
	if rule == "" {
		t.Fatal("no DestinationRule in snip_creating_a_default_routing_policy_1.yaml")
	}
	for _, file := range []string{"mirroring/snip_mirroring_traffic_to_v2_1.yaml", "mirroring/legacy-0691334/snip_mirroring_traffic_to_v2_1.yaml"} {
		t.Run(file, func(t *testing.T) {
			v1 := startRecorder(t, "httpbin-v1", http.StatusOK, 0)
			v2 := startRecorder(t, "httpbin-v2", http.StatusOK, 0)
			entries := workloadEntries(t, recorderBackends("httpbin", map[string]*recorder{"v1": v1, "v2": v2}))
			config := joinDocs(httpbinService, rule, corpus(t, trafficTasks+file), entries)
			client := hostClient(t, startVSMesh(t, config, 8000)+":8000")

			const requests = 10
			for i := 0; i < requests; i++ {
				a := get(t, client, fmt.Sprintf("http://httpbin:8000/headers?i=%d", i), "x-trace", "mirror-test")
				if a.Status != http.StatusOK || a.Header.Get("x-recorder") != "httpbin-v1" {
					t.Errorf("request %d: status %d from %q, want 200 from httpbin-v1", i, a.Status, a.Header.Get("x-recorder"))
				}
			}
			if got := v2.waitForCount(requests, 5*time.Second); got != requests {
				t.Errorf("v2 received %d mirrored requests, want %d", got, requests)
			}
			if got := v1.count(); got != requests {
				t.Errorf("v1 received %d requests, want %d", got, requests)
			}
			for i, r := range v2.requests() {
				if r.Host != "httpbin:8000" || r.Method != http.MethodGet || !strings.HasPrefix(r.Path, "/headers?i=") || r.Header.Get("x-trace") != "mirror-test" {
					t.Errorf("mirrored request %d: %s %s Host %q x-trace %q; want the client's GET /headers with Host httpbin:8000", i, r.Method, r.Path, r.Host, r.Header.Get("x-trace"))
				}
			}
		})
	}
}
