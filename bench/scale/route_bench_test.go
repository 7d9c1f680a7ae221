//go:build bench

package main

// The request routing cost of istio_route with 10 to 10,000 virtual hosts,
// through the handler's public config and ServeHTTP, in one process (no
// connection, no upstream):
//
//	go test -tags bench -run '^$' -bench RouteHosts -benchmem ./bench/scale
//
// Every virtual host is what the adapter makes of one generated
// VirtualService (see generate): the domains host and host:port, a route
// with the header match x-bench: "1", then a default route. The routes
// answer with a direct response, so that the figure is the routing
// decision (host lookup, path normalization, match) plus writing a
// 200 with no body into a reused ResponseWriter, not a proxied request;
// modules/istioroute's own BenchmarkRoute measures the decision alone.
// The asked host is the middle one of the set, and one not in the set
// (404) shows the miss. With "telemetry" the handler also counts the
// request in Istio's metrics, as it does by default.
//
// The build tag keeps it out of the test suite.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// routeHandler provisions an istio_route handler with n virtual hosts.
func routeHandler(tb testing.TB, n int, telemetry bool) *istioroute.Handler {
	tb.Helper()
	exact := func(s string) *istioroute.StringMatch { return &istioroute.StringMatch{Exact: &s} }
	cfg := istioroute.Handler{}
	if !telemetry {
		cfg.Telemetry = &istioroute.Telemetry{Disabled: true}
	}
	for i := range n {
		host := HostName(i)
		cfg.VirtualHosts = append(cfg.VirtualHosts, &istioroute.VirtualHost{
			Name:    host + ":18200",
			Domains: []string{host, host + ":18200"},
			Routes: []*istioroute.Route{
				{
					Name:           "matched",
					VirtualService: host,
					Match:          []*istioroute.Match{{Headers: map[string]*istioroute.StringMatch{"x-bench": exact("1")}}},
					DirectResponse: &istioroute.DirectResponse{Status: http.StatusOK},
				},
				{Name: "default", VirtualService: host, DirectResponse: &istioroute.DirectResponse{Status: http.StatusNoContent}},
			},
		})
	}
	// Through JSON, as Caddy provisions the adapter's output.
	raw, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	h := new(istioroute.Handler)
	if err := json.Unmarshal(raw, h); err != nil {
		tb.Fatal(err)
	}
	root, err := caddy.ProvisionContext(&caddy.Config{AppsRaw: caddy.ModuleMap{}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(root)
	tb.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	return h
}

// discardWriter is a ResponseWriter that keeps only the status; its
// header map is cleared, not reallocated, between requests.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

func BenchmarkRouteHosts(b *testing.B) {
	for _, telemetry := range []bool{false, true} {
		for _, n := range []int{10, 1000, 10000} {
			h := routeHandler(b, n, telemetry)
			for _, tc := range []struct {
				name, host string
				want       int
			}{
				{"middle", HostName(n / 2), http.StatusOK},
				{"middle-with-port", HostName(n/2) + ":18200", http.StatusOK},
				{"miss", "unknown.bench", 0},
			} {
				name := fmt.Sprintf("telemetry=%v/hosts=%d/%s", telemetry, n, tc.name)
				b.Run(name, func(b *testing.B) {
					req := httptest.NewRequest(http.MethodGet, "/productpage", nil)
					req.Host = tc.host
					req.Header.Set("x-bench", "1")
					// present, so that the handler does not generate one
					req.Header.Set("x-request-id", "bench")
					w := &discardWriter{header: make(http.Header)}
					serve := func() {
						clear(w.header)
						w.status = 0
						err := h.ServeHTTP(w, req, nil)
						if tc.want != 0 && (err != nil || w.status != tc.want) {
							b.Fatalf("%s: status %d, error %v; want %d", tc.host, w.status, err, tc.want)
						}
						if tc.want == 0 && err == nil {
							b.Fatalf("%s: routed, want no virtual host", tc.host)
						}
					}
					serve()
					b.ReportAllocs()
					for b.Loop() {
						serve()
					}
				})
			}
		}
	}
}
