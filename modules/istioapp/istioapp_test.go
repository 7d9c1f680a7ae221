package istioapp

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// backend is a loopback HTTP server that answers with its name.
type backend struct {
	name string
	srv  *httptest.Server
}

// ip is the address the backend listens on.
func (b *backend) ip() string { return "127.0.0.1" }

// port is the backend's port number.
func (b *backend) port() uint32 {
	_, p, _ := net.SplitHostPort(b.srv.Listener.Addr().String())
	n, _ := parsePort(p)
	return n
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return &backend{name: name, srv: srv}
}

// provisionApp provisions an istio app from its JSON configuration in a
// Caddy context where the app is configured, as Caddy would.
func provisionApp(t *testing.T, appJSON string) (*App, caddy.Context) {
	t.Helper()
	ctx, err := caddy.ProvisionContext(&caddy.Config{
		AppsRaw: caddy.ModuleMap{"istio": json.RawMessage(appJSON)},
	})
	if err != nil {
		t.Fatalf("provisioning istio app: %v", err)
	}
	appIface, err := ctx.App("istio")
	if err != nil {
		t.Fatal(err)
	}
	app := appIface.(*App)
	t.Cleanup(func() {
		if err := app.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return app, ctx
}

// serve runs one request through the cluster and returns the response, or
// the status of the handler error when the handler wrote nothing.
func serve(t *testing.T, ch *ClusterHandler, req *http.Request) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), rec, &caddyhttp.Server{})
	err := ch.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	if err != nil {
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) {
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
		return he.StatusCode, ""
	}
	return rec.Code, rec.Body.String()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSubsetEndpointSelection(t *testing.T) {
	v1 := newBackend(t, "v1")
	v2 := newBackend(t, "v2")
	otherNS := newBackend(t, "other-namespace")
	otherApp := newBackend(t, "other-app")

	workload := func(name, ns string, b *backend, labels map[string]string) *Workload {
		return &Workload{Name: name, Namespace: ns, Address: b.ip(), Ports: map[string]uint32{"http": b.port()}, Labels: labels}
	}
	cfg := &App{
		Services: []*Service{{
			Hostname:   "reviews.default.svc.cluster.local",
			Namespace:  "default",
			Resolution: "STATIC",
			Ports:      []*ServicePort{{Number: 9080, Name: "http", Protocol: "HTTP"}},
			Selector:   map[string]string{"app": "reviews"},
		}},
		Workloads: []*Workload{
			workload("reviews-v1", "default", v1, map[string]string{"app": "reviews", "version": "v1"}),
			workload("reviews-v2", "default", v2, map[string]string{"app": "reviews", "version": "v2"}),
			workload("reviews-v1-elsewhere", "other", otherNS, map[string]string{"app": "reviews", "version": "v1"}),
			workload("ratings-v1", "default", otherApp, map[string]string{"app": "ratings", "version": "v1"}),
		},
		Clusters: []*Cluster{
			{Name: "outbound|9080||reviews.default.svc.cluster.local", Service: "reviews.default.svc.cluster.local", Port: 9080},
			{Name: "outbound|9080|v1|reviews.default.svc.cluster.local", Service: "reviews.default.svc.cluster.local", Port: 9080, Subset: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: "outbound|9080|v3|reviews.default.svc.cluster.local", Service: "reviews.default.svc.cluster.local", Port: 9080, Subset: "v3", Labels: map[string]string{"version": "v3"}},
		},
	}
	app, _ := provisionApp(t, mustJSON(t, cfg))

	for _, tc := range []struct {
		cluster string
		want    map[string]bool
	}{
		{"outbound|9080||reviews.default.svc.cluster.local", map[string]bool{"v1": true, "v2": true}},
		{"outbound|9080|v1|reviews.default.svc.cluster.local", map[string]bool{"v1": true}},
	} {
		ch := app.ClusterHandler(tc.cluster)
		if ch == nil {
			t.Fatalf("cluster %q not found", tc.cluster)
		}
		if _, lazy := (*proxyLogger(t, ch.proxy)).Core().(lazyFieldsCore); !lazy {
			t.Errorf("%s: the proxy's log fields are not lazy", tc.cluster)
		}
		seen := map[string]bool{}
		for range 60 {
			code, body := serve(t, ch, httptest.NewRequest(http.MethodGet, "http://reviews:9080/", nil))
			if code != http.StatusOK {
				t.Fatalf("%s: status %d", tc.cluster, code)
			}
			if !tc.want[body] {
				t.Fatalf("%s: reached backend %q, want one of %v", tc.cluster, body, tc.want)
			}
			seen[body] = true
		}
		if len(seen) != len(tc.want) {
			t.Errorf("%s: reached %v over 60 requests, want all of %v", tc.cluster, seen, tc.want)
		}
	}

	// A subset no endpoint has: no upstream, 503 (Envoy UH).
	code, _ := serve(t, app.ClusterHandler("outbound|9080|v3|reviews.default.svc.cluster.local"),
		httptest.NewRequest(http.MethodGet, "http://reviews:9080/", nil))
	if code != http.StatusServiceUnavailable {
		t.Errorf("empty subset: status %d, want 503", code)
	}
	if app.ClusterHandler("outbound|9080|v9|reviews.default.svc.cluster.local") != nil {
		t.Error("unknown cluster: want nil")
	}
}

func TestEndpointDialAddresses(t *testing.T) {
	httpPort := &ServicePort{Number: 80, Name: "http"}
	httpTarget := &ServicePort{Number: 80, Name: "http", TargetPort: 8080}
	for _, tc := range []struct {
		name   string
		svc    *Service
		port   *ServicePort
		subset map[string]string
		want   []string
		orig   string // originalDestinationPort
	}{
		{
			name: "endpoint names the port",
			svc:  &Service{Resolution: "STATIC", Endpoints: []*Workload{{Address: "10.0.0.1", Ports: map[string]uint32{"http": 9000}}}},
			port: httpTarget,
			want: []string{"10.0.0.1:9000"},
		},
		{
			name: "endpoint names another port: target port",
			svc:  &Service{Resolution: "STATIC", Endpoints: []*Workload{{Address: "10.0.0.1", Ports: map[string]uint32{"grpc": 9000}}}},
			port: httpTarget,
			want: []string{"10.0.0.1:8080"},
		},
		{
			name: "no target port: service port number",
			svc:  &Service{Resolution: "STATIC", Endpoints: []*Workload{{Address: "10.0.0.1"}}},
			port: httpPort,
			want: []string{"10.0.0.1:80"},
		},
		{
			name: "ipv6 endpoint",
			svc:  &Service{Resolution: "STATIC", Endpoints: []*Workload{{Address: "::1"}}},
			port: httpPort,
			want: []string{"[::1]:80"},
		},
		{
			name: "dns endpoint is dialled by name",
			svc:  &Service{Resolution: "DNS", Endpoints: []*Workload{{Address: "backend.internal"}}},
			port: httpTarget,
			want: []string{"backend.internal:8080"},
		},
		{
			name: "unix socket",
			svc:  &Service{Resolution: "STATIC", Endpoints: []*Workload{{Address: "unix:///var/run/app.sock"}}},
			port: httpPort,
			want: []string{"unix//var/run/app.sock"},
		},
		{
			name: "endpoint without address is skipped",
			svc:  &Service{Resolution: "STATIC", Endpoints: []*Workload{{Network: "remote"}, {Address: "10.0.0.2"}}},
			port: httpPort,
			want: []string{"10.0.0.2:80"},
		},
		{
			name:   "subset narrows by labels",
			svc:    &Service{Resolution: "STATIC", Endpoints: []*Workload{{Address: "10.0.0.1", Labels: map[string]string{"v": "1", "x": "y"}}, {Address: "10.0.0.2", Labels: map[string]string{"v": "2"}}}},
			port:   httpPort,
			subset: map[string]string{"v": "1"},
			want:   []string{"10.0.0.1:80"},
		},
		{
			name: "dns without endpoints dials the hostname on the target port",
			svc:  &Service{Hostname: "api.example.com", Resolution: "DNS"},
			port: httpTarget,
			want: []string{"api.example.com:8080"},
		},
		{
			name: "dns round robin without endpoints dials the hostname",
			svc:  &Service{Hostname: "api.example.com", Resolution: "DNS_ROUND_ROBIN"},
			port: httpPort,
			want: []string{"api.example.com:80"},
		},
		{
			name: "dns wildcard without endpoints has nothing to dial",
			svc:  &Service{Hostname: "*.example.com", Resolution: "DNS"},
			port: httpPort,
		},
		{
			name: "static without endpoints has nothing to dial",
			svc:  &Service{Hostname: "api.example.com", Resolution: "STATIC"},
			port: httpPort,
		},
		{
			name: "none without endpoints is the original destination",
			svc:  &Service{Hostname: "api.example.com"},
			port: httpTarget,
			orig: "8080",
		},
		{
			name:   "subset of an original destination service",
			svc:    &Service{Hostname: "api.example.com", Resolution: "NONE"},
			port:   httpPort,
			subset: map[string]string{"v": "1"},
			orig:   "80",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.svc.Ports = []*ServicePort{tc.port}
			if tc.svc.Hostname == "" {
				tc.svc.Hostname = "svc.example"
			}
			reg, err := newRegistry([]*Service{tc.svc}, nil)
			if err != nil {
				t.Fatal(err)
			}
			set := reg.endpointSet(tc.svc, tc.port, tc.subset)
			if strings.Join(set.dials, " ") != strings.Join(tc.want, " ") {
				t.Errorf("dials = %q, want %q", set.dials, tc.want)
			}
			if set.originalDestinationPort != tc.orig {
				t.Errorf("original destination port = %q, want %q", set.originalDestinationPort, tc.orig)
			}
		})
	}
}

func TestSelectorSemantics(t *testing.T) {
	workloads := []*Workload{
		{Name: "a", Namespace: "ns", Address: "10.0.0.1", Labels: map[string]string{"app": "x"}},
		{Name: "b", Namespace: "ns", Address: "10.0.0.2", Labels: map[string]string{"app": "y"}},
		{Name: "c", Namespace: "other", Address: "10.0.0.3", Labels: map[string]string{"app": "x"}},
	}
	port := &ServicePort{Number: 80, Name: "http"}
	for _, tc := range []struct {
		name     string
		selector map[string]string
		inline   []*Workload
		want     string
	}{
		{"nil selector selects nothing", nil, nil, ""},
		{"selector matches labels in the namespace", map[string]string{"app": "x"}, nil, "10.0.0.1:80"},
		{"empty selector selects the whole namespace", map[string]string{}, nil, "10.0.0.1:80 10.0.0.2:80"},
		{"inline endpoints come first", map[string]string{"app": "y"}, []*Workload{{Address: "10.0.0.9"}}, "10.0.0.9:80 10.0.0.2:80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &Service{Hostname: "s.ns.svc.cluster.local", Namespace: "ns", Resolution: "STATIC", Ports: []*ServicePort{port}, Selector: tc.selector, Endpoints: tc.inline}
			reg, err := newRegistry([]*Service{svc}, workloads)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(reg.endpointSet(svc, port, nil).dials, " "); got != tc.want {
				t.Errorf("dials = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGetUpstreamsFreshAndStable(t *testing.T) {
	set := &endpointSet{dials: []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	first, err := set.GetUpstreams(req)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := set.GetUpstreams(req)
	for i := range first {
		if first[i] == second[i] {
			t.Errorf("upstream %d: same pointer returned twice", i)
		}
		if first[i].Dial != set.dials[i] || second[i].Dial != set.dials[i] {
			t.Errorf("upstream %d: dial %q / %q, want %q", i, first[i].Dial, second[i].Dial, set.dials[i])
		}
	}
	empty, err := (&endpointSet{}).GetUpstreams(req)
	if err != nil || len(empty) != 0 {
		t.Errorf("empty set: %v, %v", empty, err)
	}
}

func TestOriginalHost(t *testing.T) {
	for _, tc := range []struct{ host, want string }{
		{"api.example.com", "api.example.com"},
		{"api.example.com:8080", "api.example.com"},
		{"127.0.0.1:80", "127.0.0.1"},
		{"[::1]:80", "::1"},
		{"[::1]", "::1"},
		{"", ""},
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Host = tc.host
		if got := originalHost(req); got != tc.want {
			t.Errorf("originalHost(%q) = %q, want %q", tc.host, got, tc.want)
		}
	}
}

func TestOriginalDestination(t *testing.T) {
	b := newBackend(t, "external")
	cfg := &App{
		Services: []*Service{{
			Hostname: "*.example.test",
			Ports:    []*ServicePort{{Number: 80, Name: "http", TargetPort: b.port()}},
		}},
		Clusters: []*Cluster{{Name: "outbound|80||*.example.test", Service: "*.example.test", Port: 80}},
	}
	app, _ := provisionApp(t, mustJSON(t, cfg))
	ch := app.ClusterHandler("outbound|80||*.example.test")

	// The Host names the destination; its port is replaced by the target port.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "127.0.0.1:80"
	if code, body := serve(t, ch, req); code != http.StatusOK || body != "external" {
		t.Errorf("status %d body %q, want 200 external", code, body)
	}
	req = httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = ""
	if code, _ := serve(t, ch, req); code != http.StatusServiceUnavailable {
		t.Errorf("no host: status %d, want 503", code)
	}
}

func TestUnixSocketEndpoint(t *testing.T) {
	dir, err := os.MkdirTemp("", "istio")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "unix")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	cfg := &App{
		Services: []*Service{{
			Hostname: "local.example", Resolution: "STATIC",
			Ports:     []*ServicePort{{Number: 80, Name: "http"}},
			Endpoints: []*Workload{{Address: "unix://" + sock}},
		}},
		Clusters: []*Cluster{{Name: "outbound|80||local.example", Service: "local.example", Port: 80}},
	}
	app, _ := provisionApp(t, mustJSON(t, cfg))
	code, body := serve(t, app.ClusterHandler("outbound|80||local.example"), httptest.NewRequest(http.MethodGet, "http://local.example/", nil))
	if code != http.StatusOK || body != "unix" {
		t.Errorf("status %d body %q, want 200 unix", code, body)
	}
}

func TestClusterProxyConfig(t *testing.T) {
	b := newBackend(t, "b")
	cfg := &App{
		Services: []*Service{{
			Hostname: "s.example", Resolution: "STATIC",
			Ports:     []*ServicePort{{Number: 80, Name: "http"}},
			Endpoints: []*Workload{{Address: b.ip(), Ports: map[string]uint32{"http": b.port()}}},
		}},
		Clusters: []*Cluster{{
			Name: "outbound|80||s.example", Service: "s.example", Port: 80,
			Proxy: json.RawMessage(`{"load_balancing":{"selection_policy":{"policy":"round_robin"}},"headers":{"response":{"set":{"X-Cluster":["s"]}}}}`),
		}},
	}
	app, _ := provisionApp(t, mustJSON(t, cfg))
	rec := httptest.NewRecorder()
	req := caddyhttp.PrepareRequest(httptest.NewRequest(http.MethodGet, "http://s.example/", nil), caddy.NewReplacer(), rec, &caddyhttp.Server{})
	if err := app.ClusterHandler("outbound|80||s.example").ServeHTTP(rec, req, nil); err != nil {
		t.Fatal(err)
	}
	if rec.Header().Get("X-Cluster") != "s" || rec.Body.String() != "b" {
		t.Errorf("headers %v body %q: the cluster's proxy configuration was not applied", rec.Header(), rec.Body.String())
	}
}

func TestProvisionErrors(t *testing.T) {
	svc := `{"hostname":"s.example","resolution":"STATIC","ports":[{"number":80,"name":"http"}]}`
	for _, tc := range []struct {
		name, config, want string
	}{
		{"unknown service", `{"services":[` + svc + `],"clusters":[{"name":"c","service":"t.example","port":80}]}`, `unknown service "t.example"`},
		{"unknown port", `{"services":[` + svc + `],"clusters":[{"name":"c","service":"s.example","port":81}]}`, "has no port 81"},
		{"duplicate cluster", `{"services":[` + svc + `],"clusters":[{"name":"c","service":"s.example","port":80},{"name":"c","service":"s.example","port":80}]}`, "defined more than once"},
		{"unnamed cluster", `{"services":[` + svc + `],"clusters":[{"service":"s.example","port":80}]}`, "missing name"},
		{"duplicate service", `{"services":[` + svc + `,` + svc + `]}`, `service "s.example": defined more than once`},
		{"bad resolution", `{"services":[{"hostname":"s.example","resolution":"static"}]}`, `unknown resolution "static"`},
		{"duplicate port", `{"services":[{"hostname":"s.example","ports":[{"number":80},{"number":80}]}]}`, "port 80: defined more than once"},
		{"port zero", `{"services":[{"hostname":"s.example","ports":[{"number":0}]}]}`, "number must be in 1..65535"},
		{"proxy sets upstreams", `{"services":[` + svc + `],"clusters":[{"name":"c","service":"s.example","port":80,"proxy":{"upstreams":[{"dial":"10.0.0.1:80"}]}}]}`, "upstreams are taken from the registry"},
		{"proxy sets dynamic upstreams", `{"services":[` + svc + `],"clusters":[{"name":"c","service":"s.example","port":80,"proxy":{"dynamic_upstreams":{"source":"a","name":"x"}}}]}`, "dynamic_upstreams are taken from the registry"},
		{"proxy unknown field", `{"services":[` + svc + `],"clusters":[{"name":"c","service":"s.example","port":80,"proxy":{"upstream":[]}}]}`, "unknown field"},
		{"proxy bad module", `{"services":[` + svc + `],"clusters":[{"name":"c","service":"s.example","port":80,"proxy":{"transport":{"protocol":"nope"}}}]}`, "provisioning reverse_proxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := caddy.ProvisionContext(&caddy.Config{AppsRaw: caddy.ModuleMap{"istio": json.RawMessage(tc.config)}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
