package istioapp

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestSnapshotClustersAndEndpoints(t *testing.T) {
	v1 := newBackend(t, "v1")
	v2 := newBackend(t, "v2")
	app, _ := provisionApp(t, mustJSON(t, App{
		Services: []*Service{{
			Hostname:  "reviews.default.svc.cluster.local",
			Namespace: "default",
			Ports:     []*ServicePort{{Number: 9080, Name: "http"}},
			Selector:  map[string]string{"app": "reviews"},
		}},
		Workloads: []*Workload{
			{Name: "reviews-v1", Namespace: "default", Address: v1.ip(), Ports: map[string]uint32{"http": v1.port()},
				Labels: map[string]string{"app": "reviews", "version": "v1"}, Locality: "us/east", Weight: 3},
			{Name: "reviews-v2", Namespace: "default", Address: v2.ip(), Ports: map[string]uint32{"http": v2.port()},
				Labels: map[string]string{"app": "reviews", "version": "v2"}},
		},
		Clusters: []*Cluster{
			{
				Name: "outbound|9080||reviews.default.svc.cluster.local", Service: "reviews.default.svc.cluster.local", Port: 9080,
				Proxy:            []byte(`{"load_balancing":{"selection_policy":{"policy":"least_request"}},"transport":{"protocol":"http","tls":{}}}`),
				ConnectionPool:   &ConnectionPool{MaxRequests: 7},
				OutlierDetection: &OutlierDetection{Consecutive5xxErrors: 2},
			},
			{
				Name: "outbound|9080|v2|reviews.default.svc.cluster.local", Service: "reviews.default.svc.cluster.local", Port: 9080,
				Subset: "v2", Labels: map[string]string{"version": "v2"},
			},
			{
				Name: "outbound|9080|passthrough|reviews.default.svc.cluster.local", Service: "reviews.default.svc.cluster.local", Port: 9080,
				OriginalDestination: true,
			},
		},
	}))

	snap := app.Snapshot()
	if len(snap) != 3 {
		t.Fatalf("got %d clusters, want 3", len(snap))
	}
	all, v2Only, passthrough := snap[0], snap[1], snap[2]

	tests := []struct {
		name      string
		got, want any
	}{
		{"all: lb", all.Policy.LoadBalancer, "LEAST_REQUEST"},
		{"all: selection policy", all.Policy.SelectionPolicy, "least_request"},
		{"all: tls", all.Policy.TLSMode, "SIMPLE"},
		{"all: max requests", all.Policy.ConnectionPool.MaxRequests, uint32(7)},
		{"all: outlier default interval", time.Duration(all.Policy.OutlierDetection.Interval), 10 * time.Second},
		{"all: outlier default base", time.Duration(all.Policy.OutlierDetection.BaseEjectionTime), 30 * time.Second},
		{"all: outlier default max percent", all.Policy.OutlierDetection.MaxEjectionPercent, uint32(10)},
		{"all: tracked", all.Tracked, true},
		{"all: endpoints", len(all.Endpoints), 2},
		{"all: workload", all.Endpoints[0].Workload, "default/reviews-v1"},
		{"all: weight", all.Endpoints[0].Weight, uint32(3)},
		{"all: default weight", all.Endpoints[1].Weight, uint32(1)},
		{"all: locality", all.Endpoints[0].Locality, "us/east"},
		{"all: health", all.Endpoints[1].Health, EndpointHealthy},
		{"v2: lb (Caddy's default)", v2Only.Policy.LoadBalancer, "RANDOM"},
		{"v2: tls", v2Only.Policy.TLSMode, "DISABLE"},
		{"v2: not tracked", v2Only.Tracked, false},
		{"v2: endpoints", len(v2Only.Endpoints), 1},
		{"v2: address", v2Only.Endpoints[0].Address, v2.srv.Listener.Addr().String()},
		{"passthrough: lb", passthrough.Policy.LoadBalancer, "PASSTHROUGH"},
		{"passthrough: tls", passthrough.Policy.TLSMode, "DISABLE"},
		{"passthrough: no endpoints", len(passthrough.Endpoints), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestSnapshotOutlierEjection(t *testing.T) {
	good := newBackend(t, "good")
	app, _ := provisionApp(t, mustJSON(t, App{
		Services: []*Service{{
			Hostname: "svc", Ports: []*ServicePort{{Number: 80, Name: "http"}}, Resolution: "STATIC",
			Endpoints: []*Workload{
				{Address: good.ip(), Ports: map[string]uint32{"http": good.port()}},
				// nothing listens on port 1: a connect failure
				{Address: "127.0.0.1", Ports: map[string]uint32{"http": 1}},
			},
		}},
		Clusters: []*Cluster{{
			Name: "outbound|80||svc", Service: "svc", Port: 80,
			OutlierDetection: &OutlierDetection{Consecutive5xxErrors: 1, MaxEjectionPercent: 100, BaseEjectionTime: 30_000_000_000},
		}},
	}))
	ch := app.ClusterHandler("outbound|80||svc")
	// connect failures to 127.0.0.1:1 count as 503 and eject it; the good
	// endpoint answers 200 and stays
	start := time.Now()
	for range 6 {
		serve(t, ch, httptest.NewRequest("GET", "http://svc/", nil))
	}
	snap := app.Snapshot()[0]
	if got := snap.Endpoints[0].Health; got != EndpointHealthy {
		t.Errorf("good endpoint: health %s, want %s", got, EndpointHealthy)
	}
	dead := snap.Endpoints[1]
	if dead.Health != EndpointEjected || dead.Ejections != 1 || dead.EjectedUntil == nil {
		t.Fatalf("dead endpoint: %+v, want ejected once with an end time", dead)
	}
	if until := dead.EjectedUntil.Sub(start); until < 29*time.Second || until > 31*time.Second+time.Since(start) {
		t.Errorf("dead endpoint ejected until %v after the first request, want about 30s", until)
	}
}

func TestSnapshotLocalityExcluded(t *testing.T) {
	a := newBackend(t, "a")
	b := newBackend(t, "b")
	app, _ := provisionApp(t, mustJSON(t, App{
		Mesh: &Mesh{Locality: "us/east"},
		Services: []*Service{{
			Hostname: "svc", Ports: []*ServicePort{{Number: 80, Name: "http"}}, Resolution: "STATIC",
			Endpoints: []*Workload{
				{Address: a.ip(), Ports: map[string]uint32{"http": a.port()}, Locality: "us/east"},
				{Address: b.ip(), Ports: map[string]uint32{"http": b.port()}, Locality: "eu/west"},
			},
		}},
		Clusters: []*Cluster{{
			Name: "outbound|80||svc", Service: "svc", Port: 80,
			Locality: &LocalityLB{Distribute: []*LocalityDistribute{{From: "us/east/*", To: map[string]uint32{"us/east/*": 100}}}},
		}},
	}))
	eps := app.Snapshot()[0].Endpoints
	if eps[0].Health != EndpointHealthy || eps[1].Health != EndpointExcluded {
		t.Errorf("health %s, %s; want %s, %s", eps[0].Health, eps[1].Health, EndpointHealthy, EndpointExcluded)
	}
}

func TestPolicySummary(t *testing.T) {
	tests := []struct {
		name    string
		cluster Cluster
		lb, tls string
	}{
		{"defaults", Cluster{}, "RANDOM", "DISABLE"},
		{"round robin", Cluster{Proxy: []byte(`{"load_balancing":{"selection_policy":{"policy":"istio_round_robin"}}}`)}, "ROUND_ROBIN", "DISABLE"},
		{"ring hash", Cluster{Proxy: []byte(`{"load_balancing":{"selection_policy":{"policy":"ring_hash"}}}`)}, "RING_HASH", "DISABLE"},
		{"maglev", Cluster{Proxy: []byte(`{"load_balancing":{"selection_policy":{"policy":"maglev"}}}`)}, "MAGLEV", "DISABLE"},
		{"other policy keeps its name", Cluster{Proxy: []byte(`{"load_balancing":{"selection_policy":{"policy":"first"}}}`)}, "first", "DISABLE"},
		{"simple", Cluster{Proxy: []byte(`{"transport":{"protocol":"http","tls":{"server_name":"x"}}}`)}, "RANDOM", "SIMPLE"},
		{"mutual", Cluster{Proxy: []byte(`{"transport":{"protocol":"http","tls":{"client_certificate_file":"c.pem"}}}`)}, "RANDOM", "MUTUAL"},
		{"istio mutual", Cluster{Proxy: []byte(`{"transport":{"protocol":"http","tls":{}}}`), TLS: &UpstreamTLS{IstioMutual: true}}, "RANDOM", "ISTIO_MUTUAL"},
		{"passthrough", Cluster{OriginalDestination: true}, "PASSTHROUGH", "DISABLE"},
	}
	for _, tt := range tests {
		p := policySummary(&tt.cluster)
		if p.LoadBalancer != tt.lb || p.TLSMode != tt.tls {
			t.Errorf("%s: got lb %s tls %s, want %s %s", tt.name, p.LoadBalancer, p.TLSMode, tt.lb, tt.tls)
		}
	}
}

func TestSnapshotNilApp(t *testing.T) {
	var app *App
	if got := app.Snapshot(); got != nil {
		t.Errorf("nil app: got %v", got)
	}
}
