package istioroute

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// benchmarkHandler is the route configuration of the benchmark protocol:
// a VirtualService of 10 routes (header exact, prefix and regex matches,
// URI matches, a query and a method match) ending in a 90/10 split.
func benchmarkHandler(tb testing.TB) *Handler {
	tb.Helper()
	ctx := newContext(tb, reviewsApp(newBackend(tb, "v1"), newBackend(tb, "v2")))
	v1 := []*Destination{{Cluster: cluster(9080, "v1", reviewsHost)}}
	v2 := []*Destination{{Cluster: cluster(9080, "v2", reviewsHost)}}
	return provisionHandler(tb, ctx,
		&VirtualHost{Name: "ratings", Domains: []string{"ratings", "ratings:9080", "*.ratings.example.com"}},
		&VirtualHost{
			Name:    reviewsHost + ":9080",
			Domains: []string{"reviews", "reviews:9080", reviewsHost, reviewsHost + ":9080", "*.reviews.example.com"},
			Routes: []*Route{
				{Match: []*Match{{Headers: map[string]*StringMatch{"end-user": exact("jason")}}}, Route: v2},
				{Match: []*Match{{Headers: map[string]*StringMatch{"x-canary": exact("1")}}}, Route: v2},
				{Match: []*Match{{Headers: map[string]*StringMatch{"user-agent": prefix("Mobile")}}}, Route: v1},
				{Match: []*Match{{Headers: map[string]*StringMatch{"x-version": regex(`v[0-9]+\.beta`)}}}, Route: v2},
				{Match: []*Match{{URI: prefix("/api/v2")}}, Route: v2},
				{Match: []*Match{{URI: exact("/login")}, {URI: exact("/logout")}}, Route: v1},
				{Match: []*Match{{URI: regex("/products/[0-9]+")}}, Route: v1},
				{Match: []*Match{{QueryParams: map[string]*StringMatch{"debug": exact("true")}}}, Route: v1},
				{Match: []*Match{{Method: exact("POST"), URI: prefix("/admin")}}, Route: v1},
				{Route: []*Destination{
					{Cluster: cluster(9080, "v1", reviewsHost), Weight: 90},
					{Cluster: cluster(9080, "v2", reviewsHost), Weight: 10},
				}},
			},
		})
}

// benchmarkRequests are requests that end on different routes.
func benchmarkRequests() map[string]*http.Request {
	newReq := func(target string, header ...string) *http.Request {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = reviewsHost + ":9080"
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
		req.Header.Set("Accept", "text/html")
		for i := 0; i < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return req
	}
	return map[string]*http.Request{
		"header-exact-first-route": newReq("/", "End-User", "jason"),
		"header-regex":             newReq("/", "X-Version", "v3.beta"),
		"uri-prefix":               newReq("/api/v2/items"),
		"uri-regex":                newReq("/products/12345"),
		"default-weighted-route":   newReq("/productpage?u=normal"),
	}
}

// decide is the routing decision of ServeHTTP: path normalization, host
// lookup, first matching route, weighted destination.
func decide(h *Handler, r *http.Request) *destination {
	path, err := h.normalizeRequestPath(r)
	if err != nil {
		return nil
	}
	ri := requestInfoFor(r, path)
	_, rt, _ := h.findRoute(&ri)
	if rt == nil || len(rt.destinations) == 0 {
		return nil
	}
	return rt.pick()
}

func BenchmarkRoute(b *testing.B) {
	h := benchmarkHandler(b)
	for name, req := range benchmarkRequests() {
		b.Run(name, func(b *testing.B) {
			if decide(h, req) == nil {
				b.Fatal("no destination")
			}
			b.ReportAllocs()
			for b.Loop() {
				decide(h, req)
			}
		})
	}
}

func BenchmarkSelectWeighted(b *testing.B) {
	rt := new(route)
	if err := rt.setDestinations([]*destination{{cluster: "a", weight: 90}, {cluster: "b", weight: 10}}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rt.pick()
	}
}

// TestRouteDecisionDoesNotAllocate keeps the hot path allocation-free.
func TestRouteDecisionDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	h := benchmarkHandler(t)
	for name, req := range benchmarkRequests() {
		if decide(h, req) == nil {
			t.Fatalf("%s: no destination", name)
		}
		if allocs := testing.AllocsPerRun(200, func() { decide(h, req) }); allocs != 0 {
			t.Errorf("%s: %.1f allocations per decision, want 0", name, allocs)
		}
	}
}

// BenchmarkServe proxies through a plain route and through routes with
// the features the adapter commonly emits (Istio's default retry policy;
// a timeout and header operations), to a loopback backend.
func BenchmarkServe(b *testing.B) {
	app := new(istioapp.App)
	c := addService(app, "a.test", newBackend(b, "a").endpoint(nil))
	to := []*Destination{{Cluster: c}}
	h := provisionHandler(b, newContext(b, app),
		single("plain.test", &Route{Route: to}),
		single("retries.test", &Route{Route: to, Retries: &RetryPolicy{Attempts: 2}}),
		single("full.test", &Route{Route: to, Retries: &RetryPolicy{Attempts: 2}, Timeout: caddy.Duration(time.Minute),
			Headers: &Headers{Request: &HeaderOperations{Set: map[string]string{"x-a": "1"}}, Response: &HeaderOperations{Remove: []string{"server"}}}}),
	)
	for _, host := range []string{"plain.test", "retries.test", "full.test"} {
		b.Run(host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				req.Host = host
				if res := serve(b, h, req); res.code != 200 {
					b.Fatalf("status %d", res.code)
				}
			}
		})
	}
}
