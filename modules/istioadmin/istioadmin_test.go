package istioadmin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
	"github.com/caddy-istio/caddy-istio/modules/istiokube"
	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// portOf is the port number of a host:port address.
func portOf(t *testing.T, addr string) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	fmt.Sscan(p, &n)
	return n
}

// scenario is a running Caddy configuration (caddy.Load) with an istio
// app of one service with two endpoints (v1 answers at once, v2 waits for
// release) and an istio_route handler that splits 75/25.
type scenario struct {
	listen  string
	v1, v2  string // backend addresses
	release chan struct{}
	arrived chan struct{}
	once    sync.Once
}

// releaseAll lets the requests waiting in v2 finish.
func (s *scenario) releaseAll() { s.once.Do(func() { close(s.release) }) }

const host = "reviews.default.svc.cluster.local"

func startScenario(t *testing.T) *scenario {
	t.Helper()
	s := &scenario{release: make(chan struct{}), arrived: make(chan struct{}, 16)}
	v1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "v1") }))
	t.Cleanup(v1.Close)
	v2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.arrived <- struct{}{}
		select {
		case <-s.release:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "v2")
	}))
	t.Cleanup(v2.Close)
	t.Cleanup(s.releaseAll)
	s.v1, s.v2 = v1.Listener.Addr().String(), v2.Listener.Addr().String()
	s.listen = freeAddr(t)

	app := istioapp.App{
		Services: []*istioapp.Service{{
			Hostname: host, Namespace: "default", Resolution: "STATIC",
			Ports: []*istioapp.ServicePort{{Number: 9080, Name: "http"}},
			Endpoints: []*istioapp.Workload{
				{Name: "reviews-v1", Address: "127.0.0.1", Ports: map[string]uint32{"http": portOf(t, s.v1)}, Labels: map[string]string{"version": "v1"}},
				{Name: "reviews-v2", Address: "127.0.0.1", Ports: map[string]uint32{"http": portOf(t, s.v2)}, Labels: map[string]string{"version": "v2"}},
			},
		}},
		Clusters: []*istioapp.Cluster{
			{Name: "outbound|9080|v1|" + host, Service: host, Port: 9080, Subset: "v1", Labels: map[string]string{"version": "v1"},
				Proxy: json.RawMessage(`{"load_balancing":{"selection_policy":{"policy":"least_request"}}}`)},
			{Name: "outbound|9080|v2|" + host, Service: host, Port: 9080, Subset: "v2", Labels: map[string]string{"version": "v2"},
				OutlierDetection: &istioapp.OutlierDetection{Consecutive5xxErrors: 5}},
		},
	}
	route := istioroute.Handler{VirtualHosts: []*istioroute.VirtualHost{{
		Name: host + ":9080", Domains: []string{"reviews", "reviews:9080"},
		Routes: []*istioroute.Route{
			{Name: "v2-only", VirtualService: "default/reviews", Match: []*istioroute.Match{{Headers: map[string]*istioroute.StringMatch{"end-user": {Exact: ptr("jason")}}}},
				Route: []*istioroute.Destination{{Cluster: "outbound|9080|v2|" + host}}},
			{Name: "split", VirtualService: "default/reviews", Route: []*istioroute.Destination{
				{Cluster: "outbound|9080|v1|" + host, Weight: 75}, {Cluster: "outbound|9080|v2|" + host, Weight: 25}}},
		},
	}}}
	routeJSON, _ := json.Marshal(route)
	var handler map[string]any
	_ = json.Unmarshal(routeJSON, &handler)
	handler["handler"] = "istio_route"
	cfg := map[string]any{
		"admin": map[string]any{"disabled": true},
		"apps": map[string]any{
			"istio": app,
			"http": map[string]any{"servers": map[string]any{"mesh": map[string]any{
				"listen": []string{s.listen},
				"routes": []any{map[string]any{"handle": []any{handler}}},
			}}},
		},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		s.releaseAll()
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	return s
}

func ptr(s string) *string { return &s }

// get runs an admin route of a and decodes its JSON into v.
func get(t *testing.T, a *Admin, path string, v any) {
	t.Helper()
	for _, r := range a.Routes() {
		if r.Pattern != path {
			continue
		}
		rec := httptest.NewRecorder()
		if err := r.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil)); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: content type %q", path, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, rec.Body.String())
		}
		return
	}
	t.Fatalf("no route %s", path)
}

func TestAdminEndpointsOfRunningConfig(t *testing.T) {
	s := startScenario(t)
	a := new(Admin)

	var routes RoutesResponse
	get(t, a, "/istio/routes", &routes)
	if len(routes.Servers) != 1 || routes.Servers[0].Server != "mesh" || routes.Servers[0].Listen[0] != s.listen {
		t.Fatalf("routes servers: %+v", routes.Servers)
	}
	vh := routes.Servers[0].Handlers[0].VirtualHosts[0]
	if len(vh.Routes) != 2 || vh.Routes[0].Match[0] != `headers[end-user] exact "jason"` {
		t.Fatalf("routes: %+v", vh.Routes)
	}
	split := vh.Routes[1].Destinations
	if len(split) != 2 || split[0].Percent != 75 || split[1].Percent != 25 || !split[0].Found || !split[1].Found {
		t.Errorf("split: %+v", split)
	}

	// a request waiting in v2 is in flight in both views
	client := &http.Client{Timeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.listen+"/", nil)
		req.Host = "reviews"
		req.Header.Set("end-user", "jason")
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-s.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach v2")
	}

	var clusters ClustersResponse
	get(t, a, "/istio/clusters", &clusters)
	if len(clusters.Clusters) != 2 {
		t.Fatalf("clusters: %+v", clusters.Clusters)
	}
	c1, c2 := clusters.Clusters[0], clusters.Clusters[1]
	if c1.Policy.LoadBalancer != "LEAST_REQUEST" || c1.InFlight != 0 || c1.Healthy != 1 || c1.Endpoints != 1 {
		t.Errorf("v1 cluster: %+v", c1)
	}
	if c2.Policy.LoadBalancer != "RANDOM" || c2.InFlight != 1 || !c2.Tracked || c2.ActiveRequests != 1 ||
		c2.Policy.OutlierDetection == nil || c2.Policy.OutlierDetection.Consecutive5xxErrors != 5 {
		t.Errorf("v2 cluster: %+v", c2)
	}

	var endpoints EndpointsResponse
	get(t, a, "/istio/endpoints", &endpoints)
	if len(endpoints.Clusters) != 2 {
		t.Fatalf("endpoints: %+v", endpoints.Clusters)
	}
	ep := endpoints.Clusters[1].Endpoints[0]
	if ep.Address != s.v2 || ep.InFlight != 1 || ep.Health != istioapp.EndpointHealthy || ep.Workload != "default/reviews-v2" && ep.Workload != "/reviews-v2" {
		t.Errorf("v2 endpoint: %+v", ep)
	}

	s.releaseAll()
	if err := <-done; err != nil {
		t.Errorf("request: %v", err)
	}

	var config ConfigResponse
	get(t, a, "/istio/config", &config)
	want := []ObjectRef{
		{Kind: "Service", Namespace: "default", Name: host},
		{Kind: "VirtualService", Namespace: "default", Name: "reviews"},
		{Kind: "WorkloadEntry", Namespace: "default", Name: "reviews-v1"},
		{Kind: "WorkloadEntry", Namespace: "default", Name: "reviews-v2"},
	}
	if fmt.Sprint(config.Objects) != fmt.Sprint(want) {
		t.Errorf("config objects:\n got %v\nwant %v", config.Objects, want)
	}
}

func TestAdminWithoutConfig(t *testing.T) {
	a := &Admin{apps: func() (*caddyhttp.App, *istioapp.App) { return nil, nil }, inFlight: func() map[string]int { return nil },
		runningObjects: func() []istiokube.ObjectStatus { return nil }}
	var routes RoutesResponse
	get(t, a, "/istio/routes", &routes)
	var clusters ClustersResponse
	get(t, a, "/istio/clusters", &clusters)
	var config ConfigResponse
	get(t, a, "/istio/config", &config)
	if routes.Servers == nil || clusters.Clusters == nil || config.Objects == nil {
		t.Errorf("empty lists must be [], not null: %+v %+v %+v", routes, clusters, config)
	}
}

func TestAdminConfigFromKubernetes(t *testing.T) {
	running := []istiokube.ObjectStatus{
		{Kind: "DestinationRule", Namespace: "default", Name: "reviews", ResourceVersion: "12"},
		{Kind: "VirtualService", Namespace: "default", Name: "bad", ResourceVersion: "31", Problems: []string{"spec.hosts[0]: invalid"}},
		{Kind: "VirtualService", Namespace: "default", Name: "reviews", ResourceVersion: "20", RejectedVersion: "25",
			Problems: []string{"spec.hosts[1]: wildcard", "spec.http[0]: empty"}},
	}
	recorded := &istioapp.App{Services: []*istioapp.Service{{Hostname: host, Namespace: "default"}}}
	a := &Admin{apps: func() (*caddyhttp.App, *istioapp.App) { return nil, recorded }, inFlight: func() map[string]int { return nil },
		runningObjects: func() []istiokube.ObjectStatus { return running }}

	var config ConfigResponse
	get(t, a, "/istio/config", &config)
	want := []ObjectRef{
		{Kind: "DestinationRule", Namespace: "default", Name: "reviews", ResourceVersion: "12"},
		{Kind: "VirtualService", Namespace: "default", Name: "bad", ResourceVersion: "31", Problems: []string{"spec.hosts[0]: invalid"}},
		{Kind: "VirtualService", Namespace: "default", Name: "reviews", ResourceVersion: "20", RejectedVersion: "25",
			Problems: []string{"spec.hosts[1]: wildcard", "spec.http[0]: empty"}},
	}
	if config.Source != SourceKubernetes || config.NotRecorded == nil || len(config.NotRecorded) != 0 {
		t.Errorf("source %q, not recorded %v: want kubernetes and []", config.Source, config.NotRecorded)
	}
	if fmt.Sprint(config.Objects) != fmt.Sprint(want) {
		t.Errorf("config objects:\n got %+v\nwant %+v", config.Objects, want)
	}

	// without watchers: what the configuration records
	a.runningObjects = func() []istiokube.ObjectStatus { return nil }
	var recordedConfig ConfigResponse
	get(t, a, "/istio/config", &recordedConfig)
	if recordedConfig.Source != SourceConfig || fmt.Sprint(recordedConfig.Objects) != fmt.Sprint([]ObjectRef{{Kind: "Service", Namespace: "default", Name: host}}) {
		t.Errorf("without watchers: %+v", recordedConfig)
	}
}

func TestObjectRefStatus(t *testing.T) {
	tests := []struct {
		ref  ObjectRef
		want string
	}{
		{ObjectRef{Kind: "Service", Name: host}, "-"},
		{ObjectRef{Kind: "Gateway", ResourceVersion: "3"}, "applied"},
		{ObjectRef{ResourceVersion: "3", RejectedVersion: "4", Problems: []string{"a: b", "c\nd"}}, "rejected 4: a: b; c d"},
		{ObjectRef{ResourceVersion: "5", Problems: []string{"a"}}, "invalid, not applied: a"},
	}
	for _, tt := range tests {
		if got := tt.ref.Status(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.ref, got, tt.want)
		}
	}
}

func TestAdminMethodNotAllowed(t *testing.T) {
	for _, r := range new(Admin).Routes() {
		err := r.Handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, r.Pattern, nil))
		var apiErr caddy.APIError
		if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %v, want 405", r.Pattern, err)
		}
	}
}

func TestUIPage(t *testing.T) {
	var page *Admin
	for _, r := range page.Routes() {
		if r.Pattern != "/istio/ui" {
			continue
		}
		rec := httptest.NewRecorder()
		if err := r.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/istio/ui", nil)); err != nil {
			t.Fatal(err)
		}
		body := rec.Body.String()
		for _, want := range []string{`<table id="routes">`, `<table id="clusters">`, `<table id="endpoints">`, `fetch(path`, `"/istio/routes"`} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		for _, external := range []string{"http://", "https://", "//cdn"} {
			if strings.Contains(body, external) {
				t.Errorf("page refers to an external asset (%q)", external)
			}
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("content type %q", ct)
		}
	}
}

func TestUIHandlerForwardsToAdmin(t *testing.T) {
	var asked []string
	h := newUIHandler(func(path string) (*http.Response, error) {
		asked = append(asked, path)
		if path == "/metrics" {
			return nil, errors.New("caddy responded with error: HTTP 403")
		}
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(`{"clusters":[]}`))}, nil
	})
	tests := []struct {
		path     string
		status   int
		contains string
	}{
		{"/", 200, `<table id="routes">`},
		{"/istio/ui", 200, `<table id="routes">`},
		{"/istio/clusters", 200, `{"clusters":[]}`},
		{"/metrics", 502, "HTTP 403"},
		{"/other", 404, ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.contains) {
			t.Errorf("GET %s: %d %q, want %d with %q", tt.path, rec.Code, rec.Body.String(), tt.status, tt.contains)
		}
	}
	if strings.Join(asked, " ") != "/istio/clusters /metrics" {
		t.Errorf("asked the admin for %q", asked)
	}
}

func TestPrintTables(t *testing.T) {
	until := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	routes := RoutesResponse{Servers: []istioroute.ServerRoutes{{Server: "mesh", Listen: []string{"127.0.0.1:9080"},
		Handlers: []istioroute.HandlerSnapshot{{VirtualHosts: []istioroute.VirtualHostSnapshot{{
			Name: "reviews:9080", Domains: []string{"reviews", "reviews:9080", "reviews.default"},
			Routes: []istioroute.RouteSnapshot{
				{Match: []string{`uri prefix "/a"`, `method exact "GET"`}, Action: "route", VirtualService: "default/reviews",
					Destinations: []istioroute.DestinationSnapshot{{Cluster: "c1", Percent: 90, Found: true}, {Cluster: "c2", Percent: 10}}},
				{Match: []string{}, Action: "redirect", Redirect: "301 uri=/b", Features: []string{"cors"}},
			}}}}}}}}
	clusters := ClustersResponse{Clusters: []ClusterStatus{{Name: "outbound|9080|v1|reviews", Service: "reviews", Port: 9080, Subset: "v1",
		Policy: istioapp.PolicySummary{LoadBalancer: "LEAST_REQUEST", TLSMode: "ISTIO_MUTUAL",
			ConnectionPool:   &istioapp.ConnectionPool{MaxRequests: 10, MaxConnections: 2},
			OutlierDetection: &istioapp.OutlierDetection{Consecutive5xxErrors: 3, Interval: caddy.Duration(time.Second), BaseEjectionTime: caddy.Duration(30 * time.Second), MaxEjectionPercent: 10}},
		Endpoints: 2, Healthy: 1, Ejected: 1, InFlight: 4}}}
	endpoints := EndpointsResponse{Clusters: []ClusterEndpoints{{Cluster: "outbound|9080|v1|reviews", Endpoints: []EndpointStatus{
		{EndpointSnapshot: istioapp.EndpointSnapshot{Address: "127.0.0.1:1", Health: "EJECTED", EjectedUntil: &until, Ejections: 2, Weight: 1, Workload: "default/r1"}, InFlight: 0},
		{EndpointSnapshot: istioapp.EndpointSnapshot{Address: "127.0.0.1:2", Health: "HEALTHY", Weight: 5, Locality: "us/east"}, InFlight: 3},
	}}}}
	config := ConfigResponse{Source: SourceConfig, Objects: []ObjectRef{{Kind: "VirtualService", Namespace: "default", Name: "reviews"}}, NotRecorded: notRecorded}
	kubeConfig := ConfigResponse{Source: SourceKubernetes, NotRecorded: []string{}, Objects: []ObjectRef{
		{Kind: "Gateway", Namespace: "istio-system", Name: "ingress", ResourceVersion: "1041"},
		{Kind: "VirtualService", Namespace: "default", Name: "reviews", ResourceVersion: "1077", RejectedVersion: "1102", Problems: []string{"spec.hosts[1]: wildcard"}},
	}}

	tests := []struct {
		view string
		v    any
		want []string
	}{
		{"routes", routes, []string{
			"LISTENER", "mesh 127.0.0.1:9080", "reviews,reviews:9080 +1 more",
			`uri prefix "/a" || method exact "GET"`, "c1 90%, c2 10% (no cluster)", "default/reviews",
			"redirect 301 uri=/b [cors]"}},
		{"clusters", clusters, []string{"CLUSTER", "outbound|9080|v1|reviews", "LEAST_REQUEST", "ISTIO_MUTUAL", "1/2",
			"5xx=3 interval=1s base=30s max=10%", "maxConnections=2 maxRequests=10"}},
		{"endpoints", endpoints, []string{"ENDPOINT", "127.0.0.1:1", "EJECTED", "03:04:05", "default/r1", "127.0.0.1:2", "HEALTHY", "us/east"}},
		{"config", config, []string{"KIND", "RESOURCEVERSION", "STATUS", "VirtualService", "reviews", "not recorded", "DestinationRule"}},
		{"config", kubeConfig, []string{"KIND  ", "NAMESPACE  ", "NAME  ", "RESOURCEVERSION  ", "STATUS\n",
			"istio-system", "1041", "applied", "1077", "rejected 1102: spec.hosts[1]: wildcard"}},
	}
	for _, tt := range tests {
		body, _ := json.Marshal(tt.v)
		var out bytes.Buffer
		if err := printTable(&out, tt.view, body); err != nil {
			t.Fatalf("%s: %v", tt.view, err)
		}
		for _, want := range tt.want {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s table lacks %q:\n%s", tt.view, want, out.String())
			}
		}
	}
	if err := printTable(io.Discard, "routes", []byte("not json")); err == nil {
		t.Error("bad JSON: want an error")
	}
}
