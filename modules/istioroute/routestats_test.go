package istioroute

import (
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// routeStat returns the value of an envoy_vhost_route_* counter of ctx's
// registry for the labels given (all of them must match).
func routeStat(t *testing.T, ctx caddy.Context, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := make(map[string]string)
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if hist := m.GetHistogram(); hist != nil {
				sum += float64(hist.GetSampleCount())
			}
		}
	}
	return sum
}

// TestStatPrefix: requests that a match alternative with a stat prefix
// selects count in Envoy's route statistics under that prefix (by
// response code, attempts, retries); the other alternative's do not.
func TestStatPrefix(t *testing.T) {
	ok := newBackend(t, "ok")
	busy := funcBackend(t, "busy", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	app := new(istioapp.App)
	okCluster := addService(app, "ok.test", ok.endpoint(nil))
	busyCluster := addService(app, "busy.test", busy.endpoint(nil))
	ctx := newContext(t, app)
	prefix := "checkout"
	h := provisionHandler(t, ctx, &VirtualHost{Name: "shop:80", Domains: []string{"shop"}, Routes: []*Route{
		{Name: "busy", Match: []*Match{{URI: &StringMatch{Prefix: ptr("/busy")}, StatPrefix: "busy"}},
			Route: []*Destination{{Cluster: busyCluster}}, Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}}},
		{Name: "shop", Match: []*Match{
			{URI: &StringMatch{Prefix: ptr("/checkout")}, StatPrefix: prefix},
			{URI: &StringMatch{Prefix: ptr("/")}},
		}, Route: []*Destination{{Cluster: okCluster}}},
	}})
	srv := front(t, h)
	for range 3 {
		send(t, srv, "GET", "/checkout/cart", "shop", "")
	}
	send(t, srv, "GET", "/other", "shop", "")
	send(t, srv, "GET", "/busy", "shop", "")

	route := map[string]string{"envoy_virtual_host": "shop:80", "envoy_route": prefix}
	for name, want := range map[string]float64{
		"envoy_vhost_route_upstream_rq_total":     3,
		"envoy_vhost_route_upstream_rq_completed": 3,
		"envoy_vhost_route_upstream_rq_retry":     0,
		"envoy_vhost_route_upstream_rq_time":      3,
	} {
		if got := routeStat(t, ctx, name, route); got != want {
			t.Errorf("%s{%v} = %v, want %v", name, route, got, want)
		}
	}
	if got := routeStat(t, ctx, "envoy_vhost_route_upstream_rq", map[string]string{"envoy_route": prefix, "envoy_response_code": "200"}); got != 3 {
		t.Errorf("200 responses of %s = %v, want 3 (the /other request has no stat prefix)", prefix, got)
	}
	busyRoute := map[string]string{"envoy_virtual_host": "shop:80", "envoy_route": "busy"}
	if got := routeStat(t, ctx, "envoy_vhost_route_upstream_rq_total", busyRoute); got != 3 {
		t.Errorf("attempts of the busy route = %v, want 3 (2 retries)", got)
	}
	if got := routeStat(t, ctx, "envoy_vhost_route_upstream_rq_retry", busyRoute); got != 2 {
		t.Errorf("retries of the busy route = %v, want 2", got)
	}
	if got := routeStat(t, ctx, "envoy_vhost_route_upstream_rq", map[string]string{"envoy_route": "busy", "envoy_response_code": "503"}); got != 1 {
		t.Errorf("503 responses of the busy route = %v, want 1", got)
	}
}
