//go:build bench

// Package handlerbench compares, in one process, the cost of a request through
// plain Caddy reverse_proxy and through the istio_route handler (and variants
// that turn one feature off), each proxying to the same loopback backend.
// The HTTP servers' handlers are called directly, so the client connection is
// not measured; the upstream connection is. allocs/op and B/op are
// deterministic; ns/op is indicative on a shared machine.
//
//	go test -tags bench -run '^$' -bench . -benchmem -count 5 ./bench/handlerbench
//
// The build tag keeps it out of the test suite.
package handlerbench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-istio/caddy-istio"
)

// variant is one istio service: the VirtualService and DestinationRule
// around the bench.yaml of bench/run.sh with one thing changed.
type variant struct {
	name   string // service name and Host header
	lb     string // DestinationRule loadBalancer.simple; "" is Istio's default, LEAST_REQUEST
	match  bool   // header match x-bench: "1"
	split  bool   // 90/10 between subsets v1 and v2; otherwise all to v1
	noRety bool   // retries: {attempts: 0} instead of Istio's default policy
}

var variants = []variant{
	{name: "istio", match: true, split: true},                          // what bench/run.sh measures
	{name: "istio-no-retries", match: true, split: true, noRety: true}, // without Istio's default retry policy
	{name: "istio-round-robin", lb: "ROUND_ROBIN", match: true, split: true},
	{name: "istio-single", noRety: true, lb: "RANDOM"}, // one route, one destination, Caddy's default policy
}

func (v variant) yaml(port int, v1, v2 string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata:
  name: %[1]s
spec:
  ports:
  - port: %[2]d
    name: http
  selector:
    app: %[1]s
---
`, v.name, port)
	for i, addr := range []string{v1, v2} {
		host, p, _ := net.SplitHostPort(addr)
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: %[1]s-v%[2]d
spec:
  address: %[3]s
  labels:
    app: %[1]s
    version: v%[2]d
  ports:
    http: %[4]s
---
`, v.name, i+1, host, p)
	}
	lb := ""
	if v.lb != "" {
		lb = "  trafficPolicy:\n    loadBalancer:\n      simple: " + v.lb + "\n"
	}
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: %[1]s
spec:
  host: %[1]s
%[2]s  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %[1]s
spec:
  hosts:
  - %[1]s
  http:
  - `, v.name, lb)
	if v.match {
		b.WriteString("match:\n    - headers:\n        x-bench:\n          exact: \"1\"\n    ")
	}
	if v.noRety {
		b.WriteString("retries:\n      attempts: 0\n    ")
	}
	fmt.Fprintf(&b, "route:\n    - destination:\n        host: %s\n        subset: v1\n", v.name)
	if v.split {
		fmt.Fprintf(&b, "      weight: 90\n    - destination:\n        host: %s\n        subset: v2\n      weight: 10\n", v.name)
	}
	b.WriteString("---\n")
	return b.String()
}

func backend(b *testing.B) string {
	body := bytes.Repeat([]byte("x"), 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func freePort(b *testing.B) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// load runs one Caddy config holding the plain server and the istio mesh
// listener with every variant, and returns the servers by name.
func load(b *testing.B) map[string]*caddyhttp.Server {
	v1, v2 := backend(b), backend(b)
	meshPort, plainPort := freePort(b), freePort(b)

	var y strings.Builder
	for _, v := range variants {
		y.WriteString(v.yaml(meshPort, v1, v2))
	}
	fmt.Fprintf(&y, `apiVersion: networking.istio.io/v1
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
`, meshPort)
	adapted, warnings, err := caddyconfig.GetAdapter("istio").Adapt([]byte(y.String()), nil)
	if err != nil {
		b.Fatalf("adapt: %v\n%s", err, y.String())
	}
	if len(warnings) > 0 {
		b.Logf("adapt warnings: %v", warnings)
	}
	var cfg map[string]any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		b.Fatal(err)
	}
	// No admin endpoint, no autosave, storage and logs kept to the benchmark.
	cfg["admin"] = map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	cfg["storage"] = map[string]any{"module": "file_system", "root": b.TempDir()}
	cfg["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}}
	servers := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	servers["plain"] = map[string]any{
		"listen":          []string{fmt.Sprintf("127.0.0.1:%d", plainPort)},
		"automatic_https": map[string]any{"disable": true},
		"routes": []any{map[string]any{"handle": []any{map[string]any{
			"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": v1}},
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
	byName := map[string]*caddyhttp.Server{"plain": app.(*caddyhttp.App).Servers["plain"]}
	mesh := app.(*caddyhttp.App).Servers[fmt.Sprintf("mesh-127.0.0.1-%d", meshPort)]
	if mesh == nil || byName["plain"] == nil {
		b.Fatalf("servers not found: %v", app.(*caddyhttp.App).Servers)
	}
	for _, v := range variants {
		byName[v.name] = mesh
	}
	return byName
}

func BenchmarkProxy(b *testing.B) {
	servers := load(b)
	for _, name := range append([]string{"plain"}, names()...) {
		srv := servers[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "http://"+name+"/", nil)
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

func names() []string {
	out := make([]string, len(variants))
	for i, v := range variants {
		out[i] = v.name
	}
	return out
}
