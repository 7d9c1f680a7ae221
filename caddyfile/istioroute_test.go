package caddyfile_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	// The `istio` global option and the istio_route directive.
	_ "github.com/caddy-istio/caddy-istio/adapters/istio"
	_ "github.com/caddy-istio/caddy-istio/modules/istioapp"
	_ "github.com/caddy-istio/caddy-istio/modules/istiolb"
	_ "github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// TestIstioAdapt runs the golden tests of the `istio` global option and
// the istio_route directive.
func TestIstioAdapt(t *testing.T) {
	for _, pattern := range []string{"testdata/istio_app*.caddyfiletest", "testdata/istio_route*.caddyfiletest"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no %s files", pattern)
		}
		for _, file := range files {
			t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
				checkAdapt(t, file)
			})
		}
	}
}

// checkAdapt adapts the Caddyfile of file and compares the result with
// its expected JSON or error substring.
func checkAdapt(t *testing.T, file string) {
	t.Helper()
	input, expected := readAdaptCase(t, file)
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": file})
	if !strings.HasPrefix(expected, "{") {
		if err == nil {
			t.Fatalf("adapt succeeded with %s, want an error containing %q", adapted, expected)
		}
		if !strings.Contains(err.Error(), expected) {
			t.Fatalf("adapt error = %q, want it to contain %q", err, expected)
		}
		return
	}
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	var got, want any
	if err := json.Unmarshal(adapted, &got); err != nil {
		t.Fatalf("adapted JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(expected), &want); err != nil {
		t.Fatalf("expected JSON in %s: %v", file, err)
	}
	if !reflect.DeepEqual(got, want) {
		if *update {
			writeAdaptCase(t, file, input, adapted)
			return
		}
		t.Fatalf("adapted:\n%s\nwant:\n%s (go test ./caddyfile -update rewrites the expected JSON)", adapted, expected)
	}
}

// TestIstioCaddyfileServes loads a Caddyfile into Caddy: the istio app
// from inline YAML whose WorkloadEntries are two real backends, a mesh
// site and a gateway site, and checks the routing end to end.
func TestIstioCaddyfileServes(t *testing.T) {
	v1, v2 := versionBackend(t, "v1"), versionBackend(t, "v2")
	meshPort, gatewayPort := freeLoopbackPort(t), freeLoopbackPort(t)
	meshAddr, gatewayAddr := "127.0.0.1:"+meshPort, "127.0.0.1:"+gatewayPort

	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	istio {
		yaml <<YAML
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v1
spec:
  address: 127.0.0.1
  ports:
    http: %s
  labels:
    app: reviews
    version: v1
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v2
spec:
  address: 127.0.0.1
  ports:
    http: %s
  labels:
    app: reviews
    version: v2
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
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
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 70
    - destination:
        host: reviews
        subset: v2
      weight: 30
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
  namespace: istio-system
spec:
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - "*/*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - bookinfo.example.com
  gateways:
  - istio-system/bookinfo-gateway
  http:
  - match:
    - uri:
        prefix: /reviews
    route:
    - destination:
        host: reviews
        subset: v1
YAML
	}
}
http://:%s {
	bind 127.0.0.1
	istio_route
}
http://:%s {
	bind 127.0.0.1
	istio_route gateway istio-system/bookinfo-gateway
}
`, backendPort(t, v1), backendPort(t, v2), meshPort, gatewayPort)

	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	if len(warnings) > 0 {
		t.Fatalf("adapt warnings: %v", warnings)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("load: %v\n%s", err, cfg)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(addr, host, path string, header http.Header) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s (Host %s): status %d, body %q", path, host, resp.StatusCode, body)
		}
		return string(body)
	}

	// The header-matched route always goes to v2.
	for range 20 {
		if got := get(meshAddr, "reviews:9080", "/", http.Header{"End-User": {"jason"}}); got != "v2" {
			t.Fatalf("end-user: jason went to %s, want v2", got)
		}
	}

	// The 70/30 split: both subsets get requests, v1 more of them. Over 200
	// requests, v1 getting no more than v2 has a probability below 1e-9.
	counts := make(map[string]int)
	for range 200 {
		counts[get(meshAddr, "reviews.default.svc.cluster.local", "/", nil)]++
	}
	if counts["v1"]+counts["v2"] != 200 || counts["v2"] == 0 || counts["v1"] <= counts["v2"] {
		t.Fatalf("weighted split: %v, want about 140 v1 and 60 v2", counts)
	}

	// The gateway site serves the VirtualService bound to the Gateway.
	if got := get(gatewayAddr, "bookinfo.example.com", "/reviews/1", nil); got != "v1" {
		t.Fatalf("gateway route went to %s, want v1", got)
	}
}

// versionBackend answers every request with its version.
func versionBackend(t *testing.T, version string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, version)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func backendPort(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// freeLoopbackPort returns a loopback port that was free a moment ago.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}
