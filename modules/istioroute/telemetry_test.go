package istioroute

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
	"github.com/caddy-istio/caddy-istio/modules/istiofault"
)

// istioSeries returns the istio_requests_total series of ctx's metrics
// registry whose labels contain want, as label sets with their counts.
func istioSeries(t *testing.T, ctx caddy.Context, want map[string]string) map[string]float64 {
	t.Helper()
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range families {
		if mf.GetName() != "istio_requests_total" {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := make(map[string]string)
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			var parts []string
			for k, v := range labels {
				parts = append(parts, k+"="+v)
			}
			sort.Strings(parts)
			out[strings.Join(parts, ",")] += m.GetCounter().GetValue()
		}
	}
	return out
}

// istioCount sums istio_requests_total over the series whose labels
// contain want.
func istioCount(t *testing.T, ctx caddy.Context, want map[string]string) float64 {
	t.Helper()
	var n float64
	for _, v := range istioSeries(t, ctx, want) {
		n += v
	}
	return n
}

func TestMetricsLabels(t *testing.T) {
	b := newBackend(t, "reviews-v2")
	ep := b.endpoint(map[string]string{"app": "reviews", "version": "v2"})
	ep.Name, ep.Namespace, ep.ServiceAccount = "reviews-v2", "shop", "bookinfo-reviews"
	host := "reviews.shop.svc.cluster.local"
	app := &istioapp.App{
		Services: []*istioapp.Service{{
			Hostname: host, Namespace: "shop", Resolution: "STATIC",
			Ports:     []*istioapp.ServicePort{{Number: 9080, Name: "http"}},
			Endpoints: []*istioapp.Workload{ep},
		}},
		Clusters: []*istioapp.Cluster{{
			Name: cluster(9080, "v2", host), Service: host, Port: 9080, Subset: "v2",
			Labels: map[string]string{"version": "v2"},
		}},
		Mesh: &istioapp.Mesh{
			Identity: "spiffe://cluster.local/ns/shop/sa/bookinfo-productpage",
			Labels:   map[string]string{"app": "productpage", "version": "v1"},
		},
	}
	ctx := newContext(t, app)
	h := provisionHandler(t, ctx, &VirtualHost{Name: "reviews", Domains: []string{"reviews"},
		Routes: []*Route{{Name: "r", Route: []*Destination{{Cluster: cluster(9080, "v2", host)}}}}})
	srv := front(t, h)
	for range 3 {
		if got := send(t, srv, "POST", "/", "reviews", "hello"); got.code != 200 {
			t.Fatalf("status %d", got.code)
		}
	}
	series := istioSeries(t, ctx, map[string]string{"destination_service": host})
	want := strings.Join([]string{
		"connection_security_policy=unknown",
		"destination_app=reviews",
		"destination_canonical_revision=v2",
		"destination_canonical_service=reviews",
		"destination_cluster=Kubernetes",
		"destination_principal=unknown",
		"destination_service=" + host,
		"destination_service_name=reviews",
		"destination_service_namespace=shop",
		"destination_version=v2",
		"destination_workload=reviews-v2",
		"destination_workload_namespace=shop",
		"grpc_response_status=",
		"reporter=source",
		"request_protocol=http",
		"response_code=200",
		"response_flags=-",
		"source_app=productpage",
		"source_canonical_revision=v1",
		"source_canonical_service=productpage",
		"source_cluster=Kubernetes",
		"source_principal=unknown",
		"source_version=v1",
		"source_workload=productpage",
		"source_workload_namespace=shop",
	}, ",")
	if len(series) != 1 || series[want] != 3 {
		t.Errorf("series:\n%v\nwant 3 of\n%s", series, want)
	}

	// The histograms observe the same requests: sizes in bytes, the
	// duration in milliseconds, with Istio's buckets.
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			if m.GetHistogram() == nil || !hasLabel(m.GetLabel(), "destination_service", host) {
				continue
			}
			hist := m.GetHistogram()
			seen[mf.GetName()] = true
			if hist.GetSampleCount() != 3 {
				t.Errorf("%s: %d samples, want 3", mf.GetName(), hist.GetSampleCount())
			}
			switch mf.GetName() {
			case "istio_request_bytes":
				if hist.GetSampleSum() != 15 {
					t.Errorf("request bytes sum %v, want 15", hist.GetSampleSum())
				}
			case "istio_response_bytes":
				if hist.GetSampleSum() != 3*float64(len("reviews-v2")) {
					t.Errorf("response bytes sum %v, want %d", hist.GetSampleSum(), 3*len("reviews-v2"))
				}
				if n := len(hist.GetBucket()); n != 10 {
					t.Errorf("response bytes: %d buckets, want 10", n)
				}
			case "istio_request_duration_milliseconds":
				if n := len(hist.GetBucket()); n != 19 {
					t.Errorf("duration: %d buckets, want 19", n)
				}
				if b := hist.GetBucket()[0].GetUpperBound(); b != 0.5 {
					t.Errorf("duration: first bucket %v, want 0.5", b)
				}
			}
		}
	}
	for _, name := range []string{"istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"} {
		if !seen[name] {
			t.Errorf("%s not found", name)
		}
	}

	// A second handler in the same configuration, and a new configuration,
	// register the collectors again without error.
	provisionHandler(t, ctx, single("x", &Route{DirectResponse: &DirectResponse{Status: 200}}))
	ctx2 := newContext(t, app)
	provisionHandler(t, ctx2, single("x", &Route{DirectResponse: &DirectResponse{Status: 200}}))
	if n := istioCount(t, ctx2, map[string]string{"destination_service": host}); n != 3 {
		t.Errorf("after a reload: %v requests, want the 3 counted before", n)
	}
}

func hasLabel[L interface {
	GetName() string
	GetValue() string
}](labels []L, name, value string) bool {
	for _, l := range labels {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func TestResponseFlags(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce func()
	releaseOnce = func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}
	t.Cleanup(releaseOnce)
	arrived := make(chan struct{}, 1)
	blocking := funcBackend(t, "blocking", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "late")
	})
	busy := funcBackend(t, "busy", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	slow := funcBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})

	app := new(istioapp.App)
	healthy := addService(app, "flags-ok.test", newBackend(t, "ok").endpoint(nil))
	empty := addService(app, "flags-empty.test")
	dead := addService(app, "flags-dead.test", deadEndpoint(t))
	busyCluster := addService(app, "flags-busy.test", busy.endpoint(nil))
	slowCluster := addService(app, "flags-slow.test", slow.endpoint(nil))
	limited := addService(app, "flags-limited.test", blocking.endpoint(nil))
	app.Clusters[len(app.Clusters)-1].ConnectionPool = &istioapp.ConnectionPool{MaxRequests: 1}

	ctx := newContext(t, app)
	fault := func(f *istiofault.Fault) *Route {
		return &Route{Route: []*Destination{{Cluster: healthy}}, Fault: f}
	}
	h := provisionHandler(t, ctx,
		single("ok.test", &Route{Name: "ok", Route: []*Destination{{Cluster: healthy}}}),
		&VirtualHost{Name: "noroute", Domains: []string{"noroute.test"}, Routes: []*Route{{
			Match: []*Match{{URI: exact("/only")}}, Route: []*Destination{{Cluster: healthy}}}}},
		single("nocluster.test", &Route{Route: []*Destination{{Cluster: "outbound|80||missing.test"}}}),
		single("empty.test", &Route{Route: []*Destination{{Cluster: empty}}}),
		single("dead.test", &Route{Route: []*Destination{{Cluster: dead}}}),
		single("dead-retries.test", &Route{Route: []*Destination{{Cluster: dead}},
			Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"connect-failure"}, Backoff: caddy.Duration(time.Millisecond)}}),
		single("busy-retries.test", &Route{Route: []*Destination{{Cluster: busyCluster}},
			Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}, Backoff: caddy.Duration(time.Millisecond)}}),
		single("busy.test", &Route{Route: []*Destination{{Cluster: busyCluster}}}),
		single("timeout.test", &Route{Route: []*Destination{{Cluster: slowCluster}}, Timeout: caddy.Duration(50 * time.Millisecond)}),
		single("pertry.test", &Route{Route: []*Destination{{Cluster: slowCluster}},
			Retries: &RetryPolicy{Attempts: 1, PerTryTimeout: caddy.Duration(30 * time.Millisecond), RetryOn: []string{"5xx"}, Backoff: caddy.Duration(time.Millisecond)}}),
		single("limited.test", &Route{Route: []*Destination{{Cluster: limited}}}),
		single("delay.test", fault(&istiofault.Fault{Delay: &istiofault.Delay{FixedDelay: caddy.Duration(5 * time.Millisecond), Percentage: 100}})),
		single("abort.test", fault(&istiofault.Fault{Abort: &istiofault.Abort{HTTPStatus: 418, Percentage: 100}})),
		single("delay-abort.test", fault(&istiofault.Fault{
			Delay: &istiofault.Delay{FixedDelay: caddy.Duration(5 * time.Millisecond), Percentage: 100},
			Abort: &istiofault.Abort{HTTPStatus: 503, Percentage: 100}})),
	)
	srv := front(t, h)

	// The overflow: one request holds the cluster's only slot.
	held := make(chan response, 1)
	go func() { held <- send(t, srv, "GET", "/", "limited.test", "") }()
	<-arrived

	tests := []struct {
		host, path string
		code       int
		flags      string
		service    string
	}{
		{host: "ok.test", code: 200, flags: "-", service: "flags-ok.test"},
		{host: "noroute.test", path: "/other", code: 404, flags: "NR", service: "unknown"},
		{host: "unknown-host.test", code: 404, flags: "NR", service: "unknown"},
		{host: "nocluster.test", code: 503, flags: "NC", service: "missing.test"},
		{host: "empty.test", code: 503, flags: "UH", service: "flags-empty.test"},
		{host: "dead.test", code: 503, flags: "UF", service: "flags-dead.test"},
		{host: "dead-retries.test", code: 503, flags: "UF,URX", service: "flags-dead.test"},
		{host: "busy-retries.test", code: 503, flags: "URX", service: "flags-busy.test"},
		{host: "busy.test", code: 503, flags: "-", service: "flags-busy.test"},
		{host: "timeout.test", code: 504, flags: "UT", service: "flags-slow.test"},
		{host: "pertry.test", code: 504, flags: "UT,URX", service: "flags-slow.test"},
		{host: "limited.test", code: 503, flags: "UO", service: "flags-limited.test"},
		{host: "delay.test", code: 200, flags: "DI", service: "flags-ok.test"},
		{host: "abort.test", code: 418, flags: "FI", service: "flags-ok.test"},
		{host: "delay-abort.test", code: 503, flags: "DI,FI", service: "flags-ok.test"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			labels := map[string]string{"response_flags": tc.flags, "destination_service": tc.service,
				"response_code": strconv.Itoa(tc.code)}
			before := istioCount(t, ctx, labels)
			got := send(t, srv, "GET", orString(tc.path, "/"), tc.host, "")
			if got.code != tc.code {
				t.Errorf("status %d, want %d (%q)", got.code, tc.code, got.body)
			}
			if after := istioCount(t, ctx, labels); after != before+1 {
				t.Errorf("istio_requests_total%v went from %v to %v; series of the host: %v", labels, before, after,
					istioSeries(t, ctx, map[string]string{"destination_service": tc.service}))
			}
		})
	}
	releaseOnce()
	if got := <-held; got.code != 200 {
		t.Errorf("held request: %d", got.code)
	}
}

func TestResponseFlagsString(t *testing.T) {
	tests := []struct {
		flags responseFlags
		want  string
	}{
		{0, "-"},
		{flagNoRouteFound, "NR"},
		{flagUpstreamConnectionFailure | flagUpstreamRetryLimitExceeded, "UF,URX"},
		{flagFaultInjected | flagDelayInjected, "DI,FI"},
		{flagNoClusterFound | flagNoHealthyUpstream | flagUpstreamOverflow, "UH,UO,NC"},
	}
	for _, tc := range tests {
		if got := tc.flags.String(); got != tc.want {
			t.Errorf("%b: %q, want %q", tc.flags, got, tc.want)
		}
	}
}

func TestAccessLogFields(t *testing.T) {
	enc := zapcore.NewMapObjectEncoder()
	f := &accessLogFields{route: "r1", virtualService: "default/reviews", cluster: "outbound|9080|v1|reviews",
		upstreamHost: "127.0.0.1:9080", requestID: "id", flags: flagUpstreamConnectionFailure | flagUpstreamRetryLimitExceeded, retries: 2}
	if err := f.MarshalLogObject(enc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"route_name": "r1", "virtual_service": "default/reviews", "upstream_cluster": "outbound|9080|v1|reviews",
		"upstream_host": "127.0.0.1:9080", "request_id": "id", "response_flags": "UF,URX", "retry_count": 2,
	}
	for k, v := range want {
		if enc.Fields[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, enc.Fields[k], enc.Fields[k], v)
		}
	}
}

func TestRequestIDAndTraceHeaders(t *testing.T) {
	echo := headerEchoBackend(t, "echo")
	mirrored := make(chan http.Header, 4)
	mirror := funcBackend(t, "mirror", func(w http.ResponseWriter, r *http.Request) {
		mirrored <- r.Header.Clone()
	})
	var attempts atomic.Int32
	flaky := funcBackend(t, "flaky", func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		for k, v := range r.Header {
			w.Header()["X-Got-"+k] = v
		}
	})
	app := new(istioapp.App)
	e := addService(app, "echo.test", echo.endpoint(nil))
	m := addService(app, "mirror.test", mirror.endpoint(nil))
	f := addService(app, "flaky.test", flaky.endpoint(nil))
	h := provisionHandler(t, newContext(t, app),
		single("plain.test", &Route{Route: []*Destination{{Cluster: e}}}),
		single("mirrored.test", &Route{Route: []*Destination{{Cluster: e}}, Mirrors: []*Mirror{{Cluster: m, Percentage: 100}}}),
		single("retried.test", &Route{Route: []*Destination{{Cluster: f}},
			Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}, Backoff: caddy.Duration(time.Millisecond)}}),
	)
	srv := front(t, h)

	uuidV4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	got := send(t, srv, "GET", "/", "plain.test", "")
	if id := got.header.Get("X-Got-X-Request-Id"); !uuidV4.MatchString(id) {
		t.Errorf("generated x-request-id %q is not a UUID v4", id)
	}
	second := send(t, srv, "GET", "/", "plain.test", "")
	if second.header.Get("X-Got-X-Request-Id") == got.header.Get("X-Got-X-Request-Id") {
		t.Error("two requests got the same x-request-id")
	}

	trace := []string{
		"X-Request-Id", "req-1",
		"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Tracestate", "congo=t61rcWkgMzE",
		"X-B3-Traceid", "80f198ee56343ba864fe8b2a57d3eff7",
		"X-B3-Spanid", "e457b5a2e4d86bd1",
		"X-B3-Parentspanid", "05e3ac9a4f6e3b90",
		"X-B3-Sampled", "1",
		"X-B3-Flags", "1",
		"B3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
	}
	check := func(name string, h http.Header, prefix string) {
		t.Helper()
		for i := 0; i < len(trace); i += 2 {
			if v := h.Get(prefix + trace[i]); v != trace[i+1] {
				t.Errorf("%s: %s = %q, want %q", name, trace[i], v, trace[i+1])
			}
		}
	}
	check("plain", send(t, srv, "GET", "/", "plain.test", "", trace...).header, "X-Got-")
	check("retried", send(t, srv, "GET", "/", "retried.test", "", trace...).header, "X-Got-")
	check("mirrored", send(t, srv, "GET", "/", "mirrored.test", "", trace...).header, "X-Got-")
	select {
	case mh := <-mirrored:
		check("mirror", mh, "")
	case <-time.After(5 * time.Second):
		t.Error("mirror got no request")
	}
	// A generated id goes to the mirror too.
	send(t, srv, "GET", "/", "mirrored.test", "")
	select {
	case mh := <-mirrored:
		if !uuidV4.MatchString(mh.Get("X-Request-Id")) {
			t.Errorf("mirror: x-request-id %q", mh.Get("X-Request-Id"))
		}
	case <-time.After(5 * time.Second):
		t.Error("mirror got no request")
	}
}

// TestTelemetryAllocations keeps the per-request cost of telemetry in
// check: a request with an x-request-id, whose series exists, allocates
// nothing for the metrics, and only the access log fields when the server
// writes access logs.
func TestTelemetryAllocations(t *testing.T) {
	ctx := newContext(t, nil)
	h := provisionHandler(t, ctx, single("x.test", &Route{DirectResponse: &DirectResponse{Status: 204}}))
	for _, tc := range []struct {
		name   string
		server *caddyhttp.Server
		max    float64
	}{
		{"no access log", &caddyhttp.Server{}, 0},
		// the fields object, its zap.Inline boxing, the fields slice and
		// ExtraLogFields' handler cache
		{"access log", &caddyhttp.Server{Logs: &caddyhttp.ServerLogConfig{}}, 5},
	} {
		req := httptest.NewRequest("GET", "http://x.test/", nil)
		req.Header.Set("X-Request-Id", "fixed")
		rec := httptest.NewRecorder()
		req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), rec, tc.server)
		serve := func() {
			if err := h.ServeHTTP(rec, req, nil); err != nil {
				t.Fatal(err)
			}
		}
		serve()
		if n := testing.AllocsPerRun(100, serve); n > tc.max {
			t.Errorf("%s: %v allocations per request, want at most %v", tc.name, n, tc.max)
		}
	}
}

func TestLabelValues(t *testing.T) {
	tel, err := compileTelemetry(newContext(t, nil), &Telemetry{SourceWorkload: "productpage-v1", ClusterID: "east"}, &istioapp.App{
		Mesh: &istioapp.Mesh{TrustDomain: "example.org", Identity: "spiffe://example.org/ns/shop/sa/productpage",
			Labels: map[string]string{"app": "productpage", "service.istio.io/canonical-revision": "r7"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mutual := &destination{telemetry: &destinationTelemetry{service: "reviews.shop.svc.cluster.local", serviceName: "reviews", serviceNamespace: "shop", istioMutual: true}}
	ep := &istioapp.Workload{ServiceAccount: "reviews", Labels: map[string]string{"app.kubernetes.io/name": "reviews", "version": "v3"}}
	tests := []struct {
		name string
		key  seriesKey
		want map[string]string
	}{
		{"istio mutual, grpc", seriesKey{d: mutual, endpoint: ep, code: 200, grpc: true, grpcStatus: "14", flags: flagUpstreamRetryLimitExceeded}, map[string]string{
			"source_workload": "productpage-v1", "source_canonical_service": "productpage", "source_canonical_revision": "r7",
			"source_workload_namespace": "shop", "source_principal": "spiffe://example.org/ns/shop/sa/productpage",
			"source_app": "productpage", "source_version": "unknown", "source_cluster": "east",
			"destination_workload": "reviews", "destination_workload_namespace": "shop",
			"destination_principal": "spiffe://example.org/ns/shop/sa/reviews",
			"destination_app":       "unknown", "destination_version": "v3", "destination_canonical_service": "reviews",
			"destination_canonical_revision": "v3", "destination_cluster": "east",
			"request_protocol": "grpc", "response_code": "200", "grpc_response_status": "14", "response_flags": "URX",
			"connection_security_policy": "unknown",
		}},
		{"no route", seriesKey{code: 404, flags: flagNoRouteFound}, map[string]string{
			"source_principal": "unknown", "destination_service": "unknown", "destination_workload": "unknown",
			"destination_principal": "unknown", "destination_canonical_revision": "latest", "destination_cluster": "unknown",
			"request_protocol": "http", "response_code": "404", "response_flags": "NR",
		}},
	}
	for _, tc := range tests {
		values := tel.labelValues(tc.key)
		if len(values) != len(istioLabels) {
			t.Fatalf("%s: %d values for %d labels", tc.name, len(values), len(istioLabels))
		}
		for i, name := range istioLabels {
			if want, ok := tc.want[name]; ok && values[i] != want {
				t.Errorf("%s: %s = %q, want %q", tc.name, name, values[i], want)
			}
		}
	}
	if _, err := compileTelemetry(newContext(t, nil), &Telemetry{Reporter: "destination"}, nil); err == nil {
		t.Error("reporter destination accepted")
	}
}

func TestDestinationTelemetry(t *testing.T) {
	app := &istioapp.App{
		Services: []*istioapp.Service{
			{Hostname: "reviews.shop.svc.cluster.local", Namespace: "shop"},
			{Hostname: "api.example.com", Namespace: "shop"},
		},
		Clusters: []*istioapp.Cluster{
			{Name: "outbound|9080|v1|reviews.shop.svc.cluster.local", Service: "reviews.shop.svc.cluster.local", TLS: &istioapp.UpstreamTLS{IstioMutual: true}},
			{Name: "outbound|443||api.example.com", Service: "api.example.com"},
		},
	}
	tests := []struct {
		cluster string
		want    destinationTelemetry
	}{
		{"outbound|9080|v1|reviews.shop.svc.cluster.local", destinationTelemetry{"reviews.shop.svc.cluster.local", "reviews", "shop", true}},
		{"outbound|443||api.example.com", destinationTelemetry{"api.example.com", "api.example.com", "shop", false}},
		{"outbound|80||missing.test", destinationTelemetry{"missing.test", "missing.test", "unknown", false}},
		{"weird", destinationTelemetry{"unknown", "unknown", "unknown", false}},
	}
	for _, tc := range tests {
		if got := destinationTelemetryOf(tc.cluster, app); *got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.cluster, *got, tc.want)
		}
	}
}
