package istioroute

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

const reviewsHost = "reviews.default.svc.cluster.local"

// reviewsApp is an istio app with the reviews service, whose v1 and v2
// endpoints are the given backends, and clusters for the service and each
// subset (v3 has no endpoint).
func reviewsApp(v1, v2 *backend) *istioapp.App {
	return &istioapp.App{
		Services: []*istioapp.Service{{
			Hostname: reviewsHost, Namespace: "default", Resolution: "STATIC",
			Ports:     []*istioapp.ServicePort{{Number: 9080, Name: "http", Protocol: "HTTP"}},
			Endpoints: []*istioapp.Workload{v1.endpoint(map[string]string{"version": "v1"}), v2.endpoint(map[string]string{"version": "v2"})},
		}},
		Clusters: []*istioapp.Cluster{
			{Name: cluster(9080, "", reviewsHost), Service: reviewsHost, Port: 9080},
			{Name: cluster(9080, "v1", reviewsHost), Service: reviewsHost, Port: 9080, Subset: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: cluster(9080, "v2", reviewsHost), Service: reviewsHost, Port: 9080, Subset: "v2", Labels: map[string]string{"version": "v2"}},
			{Name: cluster(9080, "v3", reviewsHost), Service: reviewsHost, Port: 9080, Subset: "v3", Labels: map[string]string{"version": "v3"}},
		},
	}
}

// reviewsRoutes is the virtual host of the reviews routing tests.
func reviewsRoutes() *VirtualHost {
	to := func(subset string) []*Destination {
		return []*Destination{{Cluster: cluster(9080, subset, reviewsHost)}}
	}
	return &VirtualHost{
		Name:    reviewsHost + ":9080",
		Domains: []string{"reviews", "reviews:9080", reviewsHost, reviewsHost + ":9080"},
		Routes: []*Route{
			{Name: "jason", Match: []*Match{{Headers: map[string]*StringMatch{"end-user": exact("jason")}}}, Route: to("v2")},
			{Name: "v1-paths", Match: []*Match{{URI: prefix("/v1")}, {URI: exact("/legacy")}}, Route: to("v1")},
			{Name: "empty-subset", Match: []*Match{{URI: prefix("/v3")}}, Route: to("v3")},
			{Name: "missing-cluster", Match: []*Match{{URI: prefix("/v9")}}, Route: to("v9")},
			{Name: "moved", Match: []*Match{{URI: prefix("/old")}}, Redirect: &Redirect{PrefixRewrite: "/new", RedirectCode: 308}},
			{Name: "teapot", Match: []*Match{{URI: exact("/teapot")}}, DirectResponse: &DirectResponse{Status: 418, Body: []byte("short and stout")}},
			{Name: "only-get", Match: []*Match{{Method: exact("GET")}}, Route: []*Destination{
				{Cluster: cluster(9080, "v1", reviewsHost), Weight: 0},
				{Cluster: cluster(9080, "v2", reviewsHost), Weight: 100},
			}},
		},
	}
}

func TestHandlerRouting(t *testing.T) {
	v1 := newBackend(t, "v1")
	v2 := newBackend(t, "v2")
	ctx := newContext(t, reviewsApp(v1, v2))
	h := provisionHandler(t, ctx, reviewsRoutes(),
		&VirtualHost{Name: "ratings", Domains: []string{"ratings"}, Routes: []*Route{
			{Match: []*Match{{URI: exact("/only")}}, DirectResponse: &DirectResponse{Status: 200}},
		}})

	request := func(method, target, host string, header ...string) *http.Request {
		req := httptest.NewRequest(method, target, nil)
		req.Host = host
		for i := 0; i < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return req
	}
	for _, tc := range []struct {
		name     string
		req      *http.Request
		code     int
		body     string
		location string
	}{
		{"header route", request("GET", "/", "reviews:9080", "end-user", "jason"), 200, "v2", ""},
		{"header route wins over later path route", request("GET", "/v1/x", "reviews", "end-user", "jason"), 200, "v2", ""},
		{"first alternative", request("GET", "/v1/x", "reviews:9080"), 200, "v1", ""},
		{"second alternative", request("POST", "/legacy", reviewsHost), 200, "v1", ""},
		{"weight 0 among several gets nothing", request("GET", "/", "reviews"), 200, "v2", ""},
		{"host lookup is case-insensitive", request("GET", "/v1", "Reviews.Default.svc.cluster.local:9080"), 200, "v1", ""},
		{"subset without endpoints: 503 (UH)", request("GET", "/v3", "reviews"), 503, "no healthy upstream", ""},
		{"missing cluster: 503 (NC)", request("GET", "/v9", "reviews"), 503, "", ""},
		{"redirect", request("GET", "/old/page?a=1", "reviews:9080"), 308, "", "http://reviews:9080/new/page?a=1"},
		{"direct response", request("GET", "/teapot", "reviews"), 418, "short and stout", ""},
		{"no matching route: 404 (NR)", request("POST", "/", "reviews"), 404, "", ""},
		{"no virtual host: 404 (NR)", request("GET", "/", "details"), 404, "", ""},
		{"other virtual host", request("GET", "/only", "ratings:9080"), 200, "", ""},
		{"other virtual host, no route", request("GET", "/v1", "ratings"), 404, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serve(t, h, tc.req)
			if got.code != tc.code || got.body != tc.body {
				t.Errorf("got %d %q, want %d %q", got.code, got.body, tc.code, tc.body)
			}
			if tc.location != "" && got.header.Get("Location") != tc.location {
				t.Errorf("Location %q, want %q", got.header.Get("Location"), tc.location)
			}
		})
	}
}

func TestHandlerWeightedSplitThroughClusters(t *testing.T) {
	v1 := newBackend(t, "v1")
	v2 := newBackend(t, "v2")
	ctx := newContext(t, reviewsApp(v1, v2))
	h := provisionHandler(t, ctx, &VirtualHost{Name: "reviews", Domains: []string{"*"}, Routes: []*Route{{
		Route: []*Destination{
			{Cluster: cluster(9080, "v1", reviewsHost), Weight: 75},
			{Cluster: cluster(9080, "v2", reviewsHost), Weight: 25},
		},
	}}})
	const n = 400
	counts := map[string]int{}
	for range n {
		got := serve(t, h, httptest.NewRequest("GET", "http://anything/", nil))
		if got.code != 200 {
			t.Fatalf("status %d", got.code)
		}
		counts[got.body]++
	}
	// 400 proxied requests: v2's share is 25% ± 7 points (over 3 sigma).
	if share := float64(counts["v2"]) / n; share < 0.18 || share > 0.32 {
		t.Errorf("v2 share %.3f over %d requests, want about 0.25 (counts %v)", share, n, counts)
	}
}

func TestHandlerWithoutIstioApp(t *testing.T) {
	ctx := newContext(t, nil)
	h := provisionHandler(t, ctx, &VirtualHost{Name: "x", Domains: []string{"*"}, Routes: []*Route{
		{Match: []*Match{{URI: prefix("/redirect")}}, Redirect: &Redirect{Authority: "elsewhere"}},
		{Route: []*Destination{{Cluster: cluster(80, "", "x.example")}}},
	}})
	if got := serve(t, h, httptest.NewRequest("GET", "http://x/", nil)); got.code != 503 {
		t.Errorf("destination without the istio app: status %d, want 503", got.code)
	}
	if got := serve(t, h, httptest.NewRequest("GET", "http://x/redirect", nil)); got.code != 301 || got.header.Get("Location") != "http://elsewhere/redirect" {
		t.Errorf("redirect without the istio app: %d %q", got.code, got.header.Get("Location"))
	}
}

func TestHandlerProvisionErrors(t *testing.T) {
	ctx := newContext(t, nil)
	dest := []*Destination{{Cluster: "c"}}
	for _, tc := range []struct {
		name   string
		vhosts []*VirtualHost
		want   string
	}{
		{"duplicate domain across virtual hosts", []*VirtualHost{
			{Name: "a", Domains: []string{"reviews"}}, {Name: "b", Domains: []string{"Reviews"}},
		}, `domain "reviews" is already served by virtual host "a"`},
		{"bad regex", []*VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []*Route{
			{Match: []*Match{{URI: regex("(")}}, Route: dest},
		}}}, `virtual host "a": route 0: match 0: uri: regex`},
		{"no action", []*VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []*Route{{}}}}, "exactly one of route, redirect and direct_response"},
		{"two actions", []*VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []*Route{
			{Route: dest, DirectResponse: &DirectResponse{Status: 200}},
		}}}, "exactly one of"},
		{"bad redirect", []*VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []*Route{
			{Redirect: &Redirect{URI: "/x", RedirectCode: 305}},
		}}}, "redirect: redirect_code 305"},
		{"bad direct response status", []*VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []*Route{
			{DirectResponse: &DirectResponse{Status: 99}},
		}}}, "status 99"},
		{"zero total weight", []*VirtualHost{{Name: "a", Domains: []string{"a"}, Routes: []*Route{
			{Route: []*Destination{{Cluster: "a"}, {Cluster: "b"}}},
		}}}, "total destination weight is 0"},
		{"bad wildcard", []*VirtualHost{{Name: "a", Domains: []string{"a.*"}}}, "wildcard"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{VirtualHosts: tc.vhosts}
			err := h.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestHandlerModule checks that the handler is registered under its ID.
func TestHandlerModule(t *testing.T) {
	mod, err := caddy.GetModule("http.handlers.istio_route")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mod.New().(*Handler); !ok {
		t.Errorf("module value is %T, want *Handler", mod.New())
	}
}
