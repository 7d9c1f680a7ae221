package istioapp

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// fakeClock is a settable clock for outlier detection.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// newTestDetector returns a detector over dials driven by a fake clock.
func newTestDetector(cfg OutlierDetection, dials ...string) (*outlierDetector, *fakeClock) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	d := newOutlierDetector(cfg, dials)
	d.now = clock.now
	return d, clock
}

func ejectedList(d *outlierDetector) string {
	var out []string
	for dial := range d.ejected() {
		out = append(out, dial)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	d, clock := newTestDetector(OutlierDetection{
		Consecutive5xxErrors: 3,
		Interval:             caddy.Duration(time.Second),
		BaseEjectionTime:     caddy.Duration(10 * time.Second),
		MaxEjectionPercent:   100,
	}, "a", "b", "c")

	// two errors, a success, two errors: no ejection (a success resets)
	for _, status := range []int{503, 500, 200, 503, 503} {
		d.record("a", resultResponse, status)
	}
	if got := ejectedList(d); got != "" {
		t.Fatalf("ejected %q after interleaved success, want none", got)
	}
	d.record("a", resultResponse, 503)
	if got := ejectedList(d); got != "a" {
		t.Fatalf("ejected %q after three consecutive 5xx, want a", got)
	}
	pool := &endpointPool{dials: []string{"a", "b", "c"}, outlier: d}
	if got := strings.Join(pool.available(), " "); got != "b c" {
		t.Errorf("available %q, want b c", got)
	}

	// the first ejection lasts the base time, returned by a sweep
	clock.advance(9 * time.Second)
	d.sweep()
	if got := ejectedList(d); got != "a" {
		t.Fatalf("after 9s: ejected %q, want a", got)
	}
	clock.advance(time.Second)
	d.sweep()
	if got := ejectedList(d); got != "" {
		t.Fatalf("after 10s: ejected %q, want none", got)
	}

	// ejected again at once: twice the base time
	for range 3 {
		d.record("a", resultResponse, 502)
	}
	clock.advance(10 * time.Second)
	d.sweep()
	if got := ejectedList(d); got != "a" {
		t.Fatalf("second ejection after 10s: ejected %q, want a", got)
	}
	clock.advance(10 * time.Second)
	d.sweep()
	if got := ejectedList(d); got != "" {
		t.Fatalf("second ejection after 20s: ejected %q, want none", got)
	}

	// a healthy sweep lowers the multiplier: the next ejection is 1x again
	d.sweep()
	d.sweep()
	for range 3 {
		d.record("a", resultResponse, 500)
	}
	clock.advance(10 * time.Second)
	d.sweep()
	if got := ejectedList(d); got != "" {
		t.Fatalf("after the multiplier decayed: ejected %q, want none after 10s", got)
	}
}

func TestOutlierCounters(t *testing.T) {
	type event struct {
		res    attemptResult
		status int
	}
	resp := func(status int) event { return event{resultResponse, status} }
	connectFailed := event{resultConnectFailed, 0}
	timeout := event{resultTimeout, 0}
	reset := event{resultReset, 0}
	for _, tc := range []struct {
		name   string
		cfg    OutlierDetection
		events []event
		eject  bool
	}{
		{"5xx reaches threshold", OutlierDetection{Consecutive5xxErrors: 2}, []event{resp(500), resp(501)}, true},
		{"4xx is a success", OutlierDetection{Consecutive5xxErrors: 2}, []event{resp(500), resp(404), resp(500)}, false},
		{"gateway errors", OutlierDetection{ConsecutiveGatewayErrors: 2}, []event{resp(502), resp(504)}, true},
		{"500 is not a gateway error", OutlierDetection{ConsecutiveGatewayErrors: 2}, []event{resp(502), resp(500), resp(503)}, false},
		{"local origin counts as gateway error", OutlierDetection{ConsecutiveGatewayErrors: 3}, []event{connectFailed, timeout, reset}, true},
		{"local origin counts as 5xx", OutlierDetection{Consecutive5xxErrors: 2}, []event{connectFailed, resp(500)}, true},
		{"split: local origin not 5xx", OutlierDetection{Consecutive5xxErrors: 2, SplitExternalLocalOriginErrors: true}, []event{connectFailed, connectFailed, connectFailed}, false},
		{"split: local origin counter", OutlierDetection{Consecutive5xxErrors: 5, SplitExternalLocalOriginErrors: true, ConsecutiveLocalOriginFailures: 2}, []event{connectFailed, timeout}, true},
		{"split: a response resets local origin", OutlierDetection{SplitExternalLocalOriginErrors: true, ConsecutiveLocalOriginFailures: 2}, []event{connectFailed, resp(500), connectFailed}, false},
		{"split: 5xx still counted", OutlierDetection{Consecutive5xxErrors: 2, SplitExternalLocalOriginErrors: true, ConsecutiveLocalOriginFailures: 5}, []event{resp(500), connectFailed, resp(503)}, true},
		{"error codes replace 5xx", OutlierDetection{Consecutive5xxErrors: 2, ErrorStatusCodes: []int{404}}, []event{resp(404), resp(404)}, true},
		{"error codes: 500 not an error", OutlierDetection{Consecutive5xxErrors: 2, ErrorStatusCodes: []int{404}}, []event{resp(500), resp(500)}, false},
		{"off", OutlierDetection{}, []event{resp(500), resp(500), resp(500), connectFailed}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newTestDetector(tc.cfg, "a", "b")
			for _, e := range tc.events {
				d.record("a", e.res, e.status)
			}
			if got := ejectedList(d) == "a"; got != tc.eject {
				t.Errorf("ejected = %v, want %v", got, tc.eject)
			}
		})
	}
}

func TestOutlierMaxEjectionAndPanic(t *testing.T) {
	ejectAll := func(d *outlierDetector, dials ...string) {
		for _, dial := range dials {
			d.record(dial, resultResponse, 503)
		}
	}
	for _, tc := range []struct {
		name          string
		maxPercent    uint32
		minHealth     uint32
		wantEjected   string
		wantAvailable string
	}{
		// at least one endpoint can always be ejected, even over 10%
		{"default max ejection", 0, 0, "a", "b c"},
		{"max ejection 67", 67, 0, "a b", "c"},
		{"all ejected, no panic", 100, 0, "a b c", ""},
		{"panic below min health", 100, 50, "a b c", "a b c"},
		{"above min health", 50, 30, "a", "b c"},
		{"panic at 2 of 3 ejected", 70, 50, "a b", "a b c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newTestDetector(OutlierDetection{Consecutive5xxErrors: 1, MaxEjectionPercent: tc.maxPercent}, "a", "b", "c")
			ejectAll(d, "a", "b", "c")
			if got := ejectedList(d); got != tc.wantEjected {
				t.Errorf("ejected %q, want %q", got, tc.wantEjected)
			}
			pool := &endpointPool{dials: []string{"a", "b", "c"}, outlier: d, minHealthPercent: tc.minHealth}
			if got := strings.Join(pool.available(), " "); got != tc.wantAvailable {
				t.Errorf("available %q, want %q", got, tc.wantAvailable)
			}
		})
	}
}

func TestOutlierSetHostsKeepsState(t *testing.T) {
	d, _ := newTestDetector(OutlierDetection{Consecutive5xxErrors: 1}, "a", "b")
	d.record("a", resultResponse, 500)
	d.setHosts([]string{"a", "c"})
	if got := ejectedList(d); got != "a" {
		t.Errorf("ejected %q after the endpoints changed, want a", got)
	}
	d.setHosts([]string{"c"})
	if got := ejectedList(d); got != "" {
		t.Errorf("ejected %q after a was removed, want none", got)
	}
}

func TestClusterStateAcrossReloads(t *testing.T) {
	od := &OutlierDetection{Consecutive5xxErrors: 1, Interval: caddy.Duration(time.Hour)}
	c := &Cluster{Name: "outbound|80||state-test.example", OutlierDetection: od}
	t0 := time.Unix(100, 0)
	added1, lease1 := acquireClusterState(c, []string{"a:80", "b:80"}, t0)
	lease1.outlier.record("a:80", resultResponse, 500)
	if !added1["a:80"].IsZero() || !added1["b:80"].IsZero() {
		t.Errorf("added at %v, want the zero time (no slow start) for a new cluster's endpoints", added1)
	}

	// a reload: the new config is provisioned before the old is cleaned up
	added2, lease2 := acquireClusterState(c, []string{"a:80", "c:80"}, t0.Add(time.Minute))
	lease1.release()
	if lease2.outlier != lease1.outlier {
		t.Fatal("the reload made a new outlier detector for unchanged settings")
	}
	if got := ejectedList(lease2.outlier); got != "a:80" {
		t.Errorf("ejected after reload %q, want a:80", got)
	}
	if !added2["a:80"].IsZero() || !added2["c:80"].Equal(t0.Add(time.Minute)) {
		t.Errorf("added at %v, want a:80 kept at the zero time and c:80 new", added2)
	}
	// a later endpoint keeps its first-seen time over the next reload
	added3, lease4 := acquireClusterState(c, []string{"a:80", "c:80"}, t0.Add(2*time.Minute))
	if !added3["a:80"].IsZero() || !added3["c:80"].Equal(t0.Add(time.Minute)) {
		t.Errorf("added at %v after a second reload, want a:80 zero and c:80 from the first reload", added3)
	}
	lease4.release()

	// changed settings start afresh
	c2 := &Cluster{Name: c.Name, OutlierDetection: &OutlierDetection{Consecutive5xxErrors: 2, Interval: caddy.Duration(time.Hour)}}
	_, lease3 := acquireClusterState(c2, []string{"a:80"}, t0)
	if lease3.outlier == lease2.outlier || ejectedList(lease3.outlier) != "" {
		t.Error("changed outlier settings kept the old state")
	}
	lease2.release()
	lease3.release()
	clusterStates.Lock()
	defer clusterStates.Unlock()
	if _, ok := clusterStates.byName[c.Name]; ok {
		t.Error("state kept after its last user released it")
	}
}

func TestPlanEndpointsLocality(t *testing.T) {
	ep := func(loc string, labels map[string]string) *Workload {
		return &Workload{Locality: loc, Labels: labels}
	}
	dials := []string{"a", "b", "c", "d", "e"}
	eps := []*Workload{
		ep("us-east/z1/s1", nil),
		ep("us-east/z1/s2", nil),
		ep("us-east/z2/s1", nil),
		ep("eu-west/z1/s1", nil),
		ep("ap-south/z1/s1", nil),
	}
	mesh := &Mesh{Locality: "us-east/z1/s1"}
	labelled := []*Workload{
		ep("us-east/z1/s1", map[string]string{"net": "n2"}),
		ep("eu-west/z1/s1", map[string]string{"net": "n1"}),
		ep("us-east/z1/s1", map[string]string{"net": "n1"}),
		ep("us-east/z1/s1", nil),
		ep("eu-west/z1/s1", nil),
	}
	priorities := func(plan *endpointPlan) string {
		var groups []string
		for _, g := range plan.priorities {
			groups = append(groups, strings.Join(g, ","))
		}
		return strings.Join(groups, " | ")
	}
	for _, tc := range []struct {
		name string
		lb   *LocalityLB
		mesh *Mesh
		eps  []*Workload
		want string
	}{
		{"failover by locality", &LocalityLB{}, mesh, eps, "a | b | c | d,e"},
		{"failover region", &LocalityLB{Failover: []*LocalityFailover{{From: "us-east", To: "ap-south"}}}, mesh, eps, "a | b | c | e | d"},
		{"no proxy locality", &LocalityLB{}, &Mesh{}, eps, ""},
		{"no locality lb", nil, mesh, eps, ""},
		{"failover priority labels alone", &LocalityLB{FailoverPriority: []string{"net"}},
			&Mesh{Locality: "us-east/z1/s1", Labels: map[string]string{"net": "n1"}}, labelled, "b,c | a,d,e"},
		{"failover priority labels and failover", &LocalityLB{FailoverPriority: []string{"net"}, Failover: []*LocalityFailover{{From: "us-east", To: "eu-west"}}},
			&Mesh{Locality: "us-east/z1/s1", Labels: map[string]string{"net": "n1"}}, labelled, "c | b | a,d | e"},
		{"failover priority key=value", &LocalityLB{FailoverPriority: []string{"net=n2"}},
			&Mesh{Labels: map[string]string{"net": "n1"}}, labelled, "a | b,c,d,e"},
		{"distribute without a matching rule", &LocalityLB{Distribute: []*LocalityDistribute{{From: "eu-west/*", To: map[string]uint32{"eu-west/*": 100}}}}, mesh, eps, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := planEndpoints(tc.lb, tc.mesh, dials, tc.eps)
			if got := priorities(plan); got != tc.want {
				t.Errorf("priorities %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlanEndpointsDistribute(t *testing.T) {
	dials := []string{"a", "b", "c", "d"}
	eps := []*Workload{
		{Locality: "us-east/z1/s1", Weight: 1},
		{Locality: "us-east/z1/s1", Weight: 3},
		{Locality: "us-east/z2/s1"},
		{Locality: "eu-west/z1/s1"},
	}
	lb := &LocalityLB{Distribute: []*LocalityDistribute{
		{From: "eu-west/*", To: map[string]uint32{"eu-west/*": 100}},
		{From: "us-east/z1/*", To: map[string]uint32{"us-east/z1/*": 80, "us-east/z2/*": 20}},
	}}
	plan := planEndpoints(lb, &Mesh{Locality: "us-east/z1/s1"}, dials, eps)
	if !plan.excluded["d"] || len(plan.excluded) != 1 {
		t.Errorf("excluded %v, want d only", plan.excluded)
	}
	info := &endpointInfo{weights: plan.weights}
	// 80% split 1:3 over a and b, 20% for c: in units of 1/1000 percent
	for dial, want := range map[string]uint32{"a": 20000, "b": 60000, "c": 20000} {
		if got := info.EndpointWeight(dial); got != want {
			t.Errorf("weight of %s = %d, want %d", dial, got, want)
		}
	}
	if got := info.EndpointWeight("unknown"); got != 1 {
		t.Errorf("weight of an unknown endpoint = %d, want 1", got)
	}

	// without distribution: the workload weights, 0 counting as 1
	plan = planEndpoints(nil, nil, dials, eps)
	for dial, want := range map[string]uint32{"a": 1, "b": 3, "c": 1, "d": 1} {
		if got := plan.weights[dial]; got != want {
			t.Errorf("plain weight of %s = %d, want %d", dial, got, want)
		}
	}
}

// TestPlanEndpointsDistributeNoMatch: distribute rules none of which
// matches this proxy (or a proxy without locality) apply no locality
// weighting and no failover, as Istio's applyLocalityWeights: every
// endpoint keeps its own weight, none is excluded, one priority.
func TestPlanEndpointsDistributeNoMatch(t *testing.T) {
	dials := []string{"a", "b", "c"}
	eps := []*Workload{
		{Locality: "us-east/z1/s1", Weight: 2},
		{Locality: "us-east/z2/s1"},
		{Locality: "eu-west/z1/s1", Weight: 5},
	}
	lb := &LocalityLB{
		Distribute: []*LocalityDistribute{{From: "ap-south/*", To: map[string]uint32{"ap-south/*": 100}}},
		Failover:   []*LocalityFailover{{From: "us-east", To: "eu-west"}},
	}
	for _, mesh := range []*Mesh{{Locality: "us-east/z1/s1"}, {}, nil} {
		plan := planEndpoints(lb, mesh, dials, eps)
		if plan.priorities != nil || len(plan.excluded) != 0 {
			t.Errorf("mesh %+v: priorities %v excluded %v, want none", mesh, plan.priorities, plan.excluded)
		}
		for dial, want := range map[string]uint32{"a": 2, "b": 1, "c": 5} {
			if got := plan.weights[dial]; got != want {
				t.Errorf("mesh %+v: weight of %s = %d, want %d", mesh, dial, got, want)
			}
		}
	}
}

func TestPoolPriorityFailover(t *testing.T) {
	d, _ := newTestDetector(OutlierDetection{Consecutive5xxErrors: 1, MaxEjectionPercent: 100}, "a", "b", "c", "d")
	pool := &endpointPool{dials: []string{"a", "b", "c", "d"}, priorities: [][]string{{"a", "b"}, {"c"}, {"d"}}, outlier: d}
	draw := func() map[string]int {
		seen := map[string]int{}
		for range 400 {
			for _, dial := range pool.available() {
				seen[dial]++
			}
		}
		return seen
	}
	if got := draw(); got["c"] != 0 || got["d"] != 0 || got["a"] != 400 {
		t.Errorf("all healthy: offered %v, want priority 0 only", got)
	}
	// half of priority 0 healthy: 50% x 1.4 = 70% stays, 30% spills to c
	d.record("a", resultResponse, 500)
	got := draw()
	if got["a"] != 0 || got["b"] == 0 || got["c"] == 0 || got["d"] != 0 || got["b"] < got["c"] {
		t.Errorf("a ejected: offered %v, want mostly b, some c, no d", got)
	}
	d.record("b", resultResponse, 500)
	if got := draw(); got["c"] != 400 {
		t.Errorf("priority 0 ejected: offered %v, want c always", got)
	}
	d.record("c", resultResponse, 500)
	d.record("d", resultResponse, 500)
	if got := pool.available(); len(got) != 0 {
		t.Errorf("all ejected: offered %v, want none", got)
	}
	pool.minHealthPercent = 50
	if got := strings.Join(pool.available(), " "); got != "a b" {
		t.Errorf("panic: offered %q, want priority 0", got)
	}
}

func TestLocalityMatch(t *testing.T) {
	l := parseLocality("us-east/z1/s1")
	for rule, want := range map[string]bool{
		"*": true, "us-east": true, "us-east/*": true, "us-east/z1": true, "us-east/z1/*": true,
		"us-east/z1/s1": true, "us-east/z2": false, "us-west/*": false, "us-east/z1/s2": false,
	} {
		if got := localityMatch(l, rule); got != want {
			t.Errorf("localityMatch(%q) = %v, want %v", rule, got, want)
		}
	}
}

func TestLocalityFailoverThroughProxy(t *testing.T) {
	var localFailing atomic.Bool
	local := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if localFailing.Load() {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "local")
	})
	remote := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "remote") })
	localEP := serverEndpoint(t, local.Listener.Addr().String())
	localEP.Locality = "us-east/z1/s1"
	remoteEP := serverEndpoint(t, remote.Listener.Addr().String())
	remoteEP.Locality = "eu-west/z1/s1"
	cfg := &App{
		Services: []*Service{{
			Hostname: "svc.example", Resolution: "STATIC",
			Ports:     []*ServicePort{{Number: 80, Name: "http"}},
			Endpoints: []*Workload{remoteEP, localEP},
		}},
		Clusters: []*Cluster{{
			Name: "outbound|80||locality.example", Service: "svc.example", Port: 80,
			OutlierDetection: &OutlierDetection{Consecutive5xxErrors: 1, Interval: caddy.Duration(time.Hour)},
			Locality:         &LocalityLB{},
		}},
		Mesh: &Mesh{Locality: "us-east/z1/s1"},
	}
	app, _ := provisionApp(t, mustJSON(t, cfg))
	ch := app.ClusterHandler("outbound|80||locality.example")
	for range 10 {
		if r := do(ch, "/"); r.body != "local" {
			t.Fatalf("healthy local endpoint: %+v, want local only", r)
		}
	}
	localFailing.Store(true)
	do(ch, "/") // the local endpoint's 503 ejects it
	for range 10 {
		if r := do(ch, "/"); r.body != "remote" {
			t.Fatalf("local endpoint ejected: %+v, want remote", r)
		}
	}
}

func TestPlanEndpointsWithoutWorkloads(t *testing.T) {
	plan := planEndpoints(&LocalityLB{}, &Mesh{Locality: "r/z/s"}, []string{"a:80"}, nil)
	if plan.weights["a:80"] != 1 || plan.priorities != nil {
		t.Errorf("plan %+v, want weight 1 and no priorities", plan)
	}
}
