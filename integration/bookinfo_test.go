package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// The bookinfo tests load the Istio sample files from ../shared/corpus
// unmodified, together with platform/kube/bookinfo.yaml (its Services give the
// hosts and port 9080 "http"; its Deployments and ServiceAccounts must be
// skipped by the adapter) and generated WorkloadEntries that place each
// version's "pod" on a local backend. Gateways are the only thing rewritten:
// their port number becomes a free port (withGatewayPort), so the tests do
// not need 8080 or 80.

// bookinfoVersions are the versions of destination-rule-all.yaml that have a
// backend in these tests (ratings v2-mysql and v2-mysql-vm have none).
var bookinfoVersions = []string{
	"productpage/v1",
	"details/v1", "details/v2",
	"reviews/v1", "reviews/v2", "reviews/v3",
	"ratings/v1", "ratings/v2",
}

var bookinfoServices = []string{"productpage", "details", "reviews", "ratings"}

const (
	kubeBookinfo       = "istio-samples/bookinfo/platform/kube/bookinfo.yaml"
	destinationRuleAll = "istio-samples/bookinfo/networking/destination-rule-all.yaml"
	networking         = "istio-samples/bookinfo/networking/"
)

// meshConfig is bookinfo.yaml + destination-rule-all.yaml + the given
// networking files + WorkloadEntries for b.
func meshConfig(t *testing.T, b backends, networkingFiles ...string) string {
	t.Helper()
	parts := []string{corpus(t, kubeBookinfo), corpus(t, destinationRuleAll)}
	for _, f := range networkingFiles {
		parts = append(parts, corpus(t, networking+f))
	}
	parts = append(parts, workloadEntries(t, b))
	return joinDocs(parts...)
}

// virtual-service-all-v1.yaml: every service -> v1, through the mesh listener
// both by Host header and as an HTTP proxy (absolute-form requests).
func TestVirtualServiceAllV1(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, bookinfoVersions...)
	startCaddy(t, meshConfig(t, b, "virtual-service-all-v1.yaml"), meshListener)

	byHost := hostClient(t, meshListener)
	byProxy := proxyClient(t, meshListener)
	// Ten requests each: with two or three versions running, a route that
	// ignored the subset would show another version almost surely.
	const requests = 10
	for _, service := range bookinfoServices {
		for _, host := range []string{service + ":9080", service + ".default.svc.cluster.local:9080"} {
			for i := 0; i < requests; i++ {
				u := "http://" + host + "/" + service + "/" + strconv.Itoa(i) + "?q=1"
				a := get(t, byHost, u)
				expectBackend(t, "Host "+host, a, service, "v1")
				if a.Reply != nil && (a.Reply.Host != host || a.Reply.Path != "/"+service+"/"+strconv.Itoa(i) || a.Reply.Query != "q=1") {
					t.Errorf("Host %s: backend saw host %q path %q query %q; want the request's own", host, a.Reply.Host, a.Reply.Path, a.Reply.Query)
				}
				a = get(t, byProxy, u)
				expectBackend(t, "proxy "+u, a, service, "v1")
			}
		}
	}

	// The same with curl, as the demo prints it.
	var r backendReply
	out := curl(t, "-x", "http://"+meshListener, "http://reviews:9080/")
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Service != "reviews" || r.Version != "v1" {
		t.Errorf("curl -x: got %q", out)
	}
	out = curl(t, "-H", "Host: reviews:9080", "http://"+meshListener+"/")
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Service != "reviews" || r.Version != "v1" {
		t.Errorf("curl -H Host: got %q", out)
	}
}

// virtual-service-reviews-test-v2.yaml: end-user: jason (exact and
// case-sensitive value; the header name is case-insensitive) -> reviews v2,
// everyone else -> v1.
func TestVirtualServiceReviewsTestV2(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, bookinfoVersions...)
	startCaddy(t, meshConfig(t, b, "virtual-service-reviews-test-v2.yaml"), meshListener)

	byHost := hostClient(t, meshListener)
	byProxy := proxyClient(t, meshListener)
	for _, tc := range []struct {
		headers []string
		want    string
	}{
		{[]string{"end-user", "jason"}, "v2"},
		{[]string{"End-User", "jason"}, "v2"},
		{nil, "v1"},
		{[]string{"end-user", "Jason"}, "v1"},
		{[]string{"end-user", "JASON"}, "v1"},
		{[]string{"end-user", "jason2"}, "v1"},
		{[]string{"end-user", "jaso"}, "v1"},
		{[]string{"end-user", ""}, "v1"},
		{[]string{"x-end-user", "jason"}, "v1"},
	} {
		for i := 0; i < 5; i++ {
			what := fmt.Sprintf("reviews with %q", tc.headers)
			expectBackend(t, what, get(t, byHost, "http://reviews:9080/reviews/0", tc.headers...), "reviews", tc.want)
			expectBackend(t, what+" (proxy)", get(t, byProxy, "http://reviews:9080/reviews/0", tc.headers...), "reviews", tc.want)
		}
	}

	// The other services have no VirtualService: every request still
	// reaches the service (any version).
	for _, service := range []string{"productpage", "details", "ratings"} {
		expectBackend(t, service, get(t, byHost, "http://"+service+":9080/", "end-user", "jason"), service, "")
	}

	var r backendReply
	out := curl(t, "-H", "Host: reviews:9080", "-H", "end-user: jason", "http://"+meshListener+"/")
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Version != "v2" {
		t.Errorf("curl with end-user: jason: got %q", out)
	}
}

// virtual-service-reviews-90-10.yaml: 2000 requests split within 3 points of
// 90/10 (the bound is 4.5 standard deviations of a fair 90/10 split).
func TestVirtualServiceReviews9010(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, bookinfoVersions...)
	startCaddy(t, meshConfig(t, b, "virtual-service-reviews-90-10.yaml"), meshListener)

	client := hostClient(t, meshListener)
	const requests = 2000
	counts := map[string]int{}
	for i := 0; i < requests; i++ {
		a := get(t, client, "http://reviews:9080/reviews/"+strconv.Itoa(i))
		if a.Status != http.StatusOK || a.Reply == nil || a.Reply.Service != "reviews" {
			t.Fatalf("request %d: got %v, want 200 from reviews", i, a)
		}
		counts[a.Reply.Version]++
	}
	t.Logf("reviews versions over %d requests: %v", requests, counts)
	if counts["v3"] != 0 || counts["v1"]+counts["v2"] != requests {
		t.Errorf("got %v, want only v1 and v2", counts)
	}
	if pct := 100 * float64(counts["v2"]) / requests; pct < 7 || pct > 13 {
		t.Errorf("v2 got %.1f%% of requests, want 10%% +- 3", pct)
	}
}

// bookinfo-gateway.yaml: the ingress gateway routes exact /productpage,
// prefix /static, exact /login, exact /logout and prefix /api/v1/products to
// productpage; every other path is 404 (no route). The Gateway's port 8080
// is rewritten to a free port.
func TestBookinfoGateway(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, bookinfoVersions...)
	port := freePort(t)
	gateway := withGatewayPort(t, corpus(t, networking+"bookinfo-gateway.yaml"), 8080, port)
	config := joinDocs(corpus(t, kubeBookinfo), corpus(t, destinationRuleAll), gateway, workloadEntries(t, b))
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startCaddy(t, config, addr)

	client := hostClient(t, addr)
	for _, tc := range []struct {
		path  string
		route bool
	}{
		{"/productpage", true},
		{"/productpage?u=normal", true}, // the query is not part of the path
		{"/productpage/", false},        // exact
		{"/productpagex", false},
		{"/static", true},
		{"/static/bootstrap/css/bootstrap.min.css", true},
		{"/staticfoo", true}, // prefix is a raw string prefix
		{"/login", true},
		{"/login/", false},
		{"/logout", true},
		{"/logouts", false},
		{"/api/v1/products", true},
		{"/api/v1/products/0/reviews", true},
		{"/api/v1/product", false},
		{"/api/v2/products", false},
		{"/", false},
		{"/reviews/0", false},
		{"/Productpage", false}, // case-sensitive without ignoreUriCase
	} {
		for _, host := range []string{"bookinfo.example.com", "127.0.0.1:" + strconv.Itoa(port)} {
			a := get(t, client, "http://"+host+tc.path)
			what := "GET " + tc.path + " Host " + host
			if !tc.route {
				expectNoBackend(t, what, a, http.StatusNotFound)
				continue
			}
			expectBackend(t, what, a, "productpage", "v1")
			path, query, _ := strings.Cut(tc.path, "?")
			if a.Reply != nil && (a.Reply.Path != path || a.Reply.Query != query || a.Reply.Host != host) {
				t.Errorf("%s: backend saw path %q query %q host %q", what, a.Reply.Path, a.Reply.Query, a.Reply.Host)
			}
		}
	}

	out := curl(t, "-o", "/dev/null", "-w", "%{http_code}", "http://"+addr+"/productpage")
	if out != "200" {
		t.Errorf("curl /productpage: status %s, want 200", out)
	}
}

// A route to a DestinationRule subset that has no endpoints answers 503 (as
// Envoy's "no healthy upstream", UH). virtual-service-ratings-mysql.yaml
// sends ratings to subset v2-mysql, which no workload carries, and reviews to
// v3, which has one.
func TestSubsetWithoutEndpoints(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, bookinfoVersions...)
	startCaddy(t, meshConfig(t, b, "virtual-service-ratings-mysql.yaml"), meshListener)

	byHost := hostClient(t, meshListener)
	byProxy := proxyClient(t, meshListener)
	for i := 0; i < 3; i++ {
		expectNoBackend(t, "ratings -> v2-mysql", get(t, byHost, "http://ratings:9080/ratings/0"), http.StatusServiceUnavailable)
		expectNoBackend(t, "ratings -> v2-mysql (proxy)", get(t, byProxy, "http://ratings:9080/ratings/0"), http.StatusServiceUnavailable)
		expectBackend(t, "reviews -> v3", get(t, byHost, "http://reviews:9080/reviews/0"), "reviews", "v3")
	}
}

// A route whose destination host is in no registry answers 503 (Envoy's
// "no cluster", NC): a VirtualService written for this test on the mesh,
// and certmanager-gateway.yaml, whose cert-manager-resolver service
// (istio-system) is not defined anywhere, on a gateway (port 80 rewritten).
func TestUnknownDestination(t *testing.T) {
	requireBinaries(t)

	t.Run("mesh", func(t *testing.T) {
		b := startBackends(t, bookinfoVersions...)
		const unknownHostVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - uri:
        prefix: /nowhere
    route:
    - destination:
        host: nosuchservice
        port:
          number: 9080
  - route:
    - destination:
        host: reviews
        subset: v1
`
		startCaddy(t, joinDocs(meshConfig(t, b), unknownHostVS), meshListener)
		client := hostClient(t, meshListener)
		expectNoBackend(t, "reviews /nowhere -> nosuchservice", get(t, client, "http://reviews:9080/nowhere"), http.StatusServiceUnavailable)
		expectBackend(t, "reviews /", get(t, client, "http://reviews:9080/"), "reviews", "v1")
	})

	t.Run("gateway", func(t *testing.T) {
		port := freePort(t)
		config := withGatewayPort(t, corpus(t, networking+"certmanager-gateway.yaml"), 80, port)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		startCaddy(t, config, addr)
		client := hostClient(t, addr)
		expectNoBackend(t, "acme challenge -> cert-manager-resolver", get(t, client, "http://example.com/.well-known/acme-challenge/token"), http.StatusServiceUnavailable)
		expectNoBackend(t, "no route", get(t, client, "http://example.com/"), http.StatusNotFound)
	})
}

// A service without a VirtualService gets Istio's default route: every
// request to the whole service, balanced over all its endpoints by the
// default LEAST_REQUEST policy. With one request at a time every endpoint
// has zero active requests, and Envoy's power-of-two-choices then picks
// uniformly at random, so each version gets its fair share: checked within
// 10 points (at least 4.5 standard deviations) over sequential requests.
func TestServiceWithoutVirtualServiceUsesAllVersions(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, bookinfoVersions...)
	startCaddy(t, meshConfig(t, b), meshListener)

	client := hostClient(t, meshListener)
	for _, tc := range []struct {
		service  string
		versions []string
		requests int
	}{
		{"details", []string{"v1", "v2"}, 400},
		{"reviews", []string{"v1", "v2", "v3"}, 600},
	} {
		counts := map[string]int{}
		for i := 0; i < tc.requests; i++ {
			a := get(t, client, "http://"+tc.service+":9080/")
			if a.Status != http.StatusOK || a.Reply == nil || a.Reply.Service != tc.service {
				t.Fatalf("%s request %d: got %v", tc.service, i, a)
			}
			counts[a.Reply.Version]++
		}
		t.Logf("%s versions over %d requests: %v", tc.service, tc.requests, counts)
		fair := 100 / float64(len(tc.versions))
		for _, v := range tc.versions {
			if pct := 100 * float64(counts[v]) / float64(tc.requests); pct < fair-10 || pct > fair+10 {
				t.Errorf("%s %s got %.1f%% of requests, want %.1f%% +- 10 (all: %v)", tc.service, v, pct, fair, counts)
			}
		}
	}
}
