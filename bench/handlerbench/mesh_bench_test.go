//go:build bench

package handlerbench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// BenchmarkMesh compares, apples to apples, plain reverse_proxy to the two
// backends with round_robin against the adapter's whole mesh listener for
// bench/run.sh's istio.yaml: istio_egress in front, istio_route with
// telemetry and Istio's default retry policy, and the cluster's
// reverse_proxy with least_request and the istio upstream source. The
// mesh-no-telemetry variant turns istio_route's metrics off. (The adapter
// puts the listener's two handlers in one Caddy route: a route each cost
// 4 more allocations per request.)
//
//	go test -tags bench -run '^$' -bench Mesh -benchmem -cpu 1 ./bench/handlerbench
//
// HANDLERBENCH_DUMP=1 logs the adapted mesh server.
func BenchmarkMesh(b *testing.B) {
	servers := loadMesh(b)
	for _, name := range []string{"plain-rr", "mesh", "mesh-no-telemetry"} {
		srv := servers[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "http://bench/", nil)
				req.Header.Set("x-bench", "1")
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || rec.Body.Len() != 1024 {
					b.Fatalf("%s: status %d, %d bytes: %s", name, rec.Code, rec.Body.Len(), rec.Body.String())
				}
			}
			cpu.report(b)
		})
	}
}

// loadMesh runs the plain round_robin server and two mesh listeners, one
// with telemetry and one without, and returns them by name.
func loadMesh(b *testing.B) map[string]*caddyhttp.Server {
	v1, v2 := backend(b), backend(b)
	meshPort, quietPort, plainPort := freePort(b), freePort(b), freePort(b)
	bench := variant{name: "bench", match: true, split: true}

	adapt := func(port int) map[string]any {
		y := bench.yaml(port, v1, v2) + fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - port:
      number: %d
      protocol: HTTP
      name: http
    bind: 127.0.0.1
    hosts:
    - "./*"
`, port)
		adapted, warnings, err := caddyconfig.GetAdapter("istio").Adapt([]byte(y), nil)
		if err != nil {
			b.Fatalf("adapt: %v\n%s", err, y)
		}
		if len(warnings) > 0 {
			b.Logf("adapt warnings: %v", warnings)
		}
		var cfg map[string]any
		if err := json.Unmarshal(adapted, &cfg); err != nil {
			b.Fatal(err)
		}
		return cfg
	}
	cfg := adapt(meshPort)
	meshName := fmt.Sprintf("mesh-127.0.0.1-%d", meshPort)
	servers := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	// the same listener on another port, with istio_route's metrics off
	var quiet map[string]any
	raw, _ := json.Marshal(servers[meshName])
	if err := json.Unmarshal(raw, &quiet); err != nil {
		b.Fatal(err)
	}
	quiet["listen"] = []string{fmt.Sprintf("tcp/127.0.0.1:%d", quietPort)}
	disableTelemetry(quiet)
	servers["mesh-no-telemetry"] = quiet
	if os.Getenv("HANDLERBENCH_DUMP") != "" {
		out, _ := json.MarshalIndent(servers[meshName], "", "  ")
		b.Logf("mesh server:\n%s", out)
	}

	cfg["admin"] = map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	cfg["storage"] = map[string]any{"module": "file_system", "root": b.TempDir()}
	cfg["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}}
	servers["plain-rr"] = map[string]any{
		"listen":          []string{fmt.Sprintf("127.0.0.1:%d", plainPort)},
		"automatic_https": map[string]any{"disable": true},
		"routes": []any{map[string]any{"handle": []any{map[string]any{
			"handler":        "reverse_proxy",
			"upstreams":      []any{map[string]any{"dial": v1}, map[string]any{"dial": v2}},
			"load_balancing": map[string]any{"selection_policy": map[string]any{"policy": "round_robin"}},
		}}}},
	}
	full, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := caddy.Load(full, true); err != nil {
		b.Fatalf("load: %v", err)
	}
	b.Cleanup(func() { _ = caddy.Stop() })

	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	all := app.(*caddyhttp.App).Servers
	byName := map[string]*caddyhttp.Server{"plain-rr": all["plain-rr"], "mesh": all[meshName], "mesh-no-telemetry": all["mesh-no-telemetry"]}
	for name, srv := range byName {
		if srv == nil {
			b.Fatalf("server %s not found among %v", name, all)
		}
	}
	return byName
}

// disableTelemetry turns off the metrics of every istio_route handler in v.
func disableTelemetry(v any) {
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == "istio_route" {
			v["telemetry"] = map[string]any{"disabled": true}
		}
		for _, c := range v {
			disableTelemetry(c)
		}
	case []any:
		for _, c := range v {
			disableTelemetry(c)
		}
	}
}
