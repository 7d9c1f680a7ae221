package istioapp

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func TestUpstreamsUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		input   string
		want    Upstreams
		wantErr string
	}{
		{input: `istio reviews.default.svc.cluster.local 9080`, want: Upstreams{Service: "reviews.default.svc.cluster.local", Port: 9080}},
		{input: `istio reviews.default.svc.cluster.local 9080 v1`, want: Upstreams{Service: "reviews.default.svc.cluster.local", Port: 9080, Subset: "v1"}},
		{input: "istio {\n cluster outbound|9080|v1|reviews\n}", want: Upstreams{Cluster: "outbound|9080|v1|reviews"}},
		{input: "istio {\n service reviews\n port 9080\n subset v2\n}", want: Upstreams{Service: "reviews", Port: 9080, Subset: "v2"}},
		{input: `istio reviews`, wantErr: "wrong argument count"},
		{input: `istio reviews http`, wantErr: "bad port"},
		{input: `istio reviews 0`, wantErr: "bad port"},
		{input: "istio {\n cluster a\n cluster b\n}", wantErr: "already been specified"},
		{input: "istio {\n cluster\n}", wantErr: "wrong argument count"},
		{input: "istio {\n cluster a b\n}", wantErr: "wrong argument count"},
		{input: "istio {\n hosts a\n}", wantErr: "unrecognized istio upstreams option 'hosts'"},
	} {
		t.Run(tc.input, func(t *testing.T) {
			var got Upstreams
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Cluster != tc.want.Cluster || got.Service != tc.want.Service || got.Port != tc.want.Port || got.Subset != tc.want.Subset {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestUpstreamsValidate(t *testing.T) {
	for _, tc := range []struct {
		u  Upstreams
		ok bool
	}{
		{Upstreams{Cluster: "c"}, true},
		{Upstreams{Service: "s", Port: 80}, true},
		{Upstreams{Service: "s", Port: 80, Subset: "v1"}, true},
		{Upstreams{}, false},
		{Upstreams{Service: "s"}, false},
		{Upstreams{Cluster: "c", Subset: "v1"}, false},
	} {
		if err := tc.u.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.u, err, tc.ok)
		}
	}
}

// registryApp is an app with one service of two labelled endpoints and a
// cluster for subset v1.
const registryApp = `{
	"services": [{"hostname": "reviews.default.svc.cluster.local", "namespace": "default", "resolution": "STATIC",
		"ports": [{"number": 9080, "name": "http"}],
		"endpoints": [
			{"address": "10.0.0.1", "labels": {"version": "v1"}},
			{"address": "10.0.0.2", "labels": {"version": "v2"}}]}],
	"clusters": [{"name": "outbound|9080|v1|reviews.default.svc.cluster.local",
		"service": "reviews.default.svc.cluster.local", "port": 9080, "subset": "v1", "labels": {"version": "v1"}}]
}`

func TestUpstreamsGetUpstreams(t *testing.T) {
	_, ctx := provisionApp(t, registryApp)
	for _, tc := range []struct {
		name    string
		u       Upstreams
		want    string
		wantErr string
	}{
		{"cluster", Upstreams{Cluster: "outbound|9080|v1|reviews.default.svc.cluster.local"}, "10.0.0.1:9080", ""},
		{"service port subset", Upstreams{Service: "reviews.default.svc.cluster.local", Port: 9080, Subset: "v1"}, "10.0.0.1:9080", ""},
		{"service port", Upstreams{Service: "reviews.default.svc.cluster.local", Port: 9080}, "10.0.0.1:9080 10.0.0.2:9080", ""},
		{"unknown cluster", Upstreams{Cluster: "outbound|9080|v3|reviews.default.svc.cluster.local"}, "", "no cluster"},
		{"unknown subset", Upstreams{Service: "reviews.default.svc.cluster.local", Port: 9080, Subset: "v3"}, "", "no cluster for service"},
		{"unknown service", Upstreams{Service: "ratings.default.svc.cluster.local", Port: 9080}, "", "no service"},
		{"unknown port", Upstreams{Service: "reviews.default.svc.cluster.local", Port: 80}, "", "has no port 80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.u
			if err := u.Provision(ctx); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second call uses the cached lookup
				ups, err := u.GetUpstreams(httptest.NewRequest(http.MethodGet, "/", nil))
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("error = %v, want %q", err, tc.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				dials := make([]string, len(ups))
				for i, up := range ups {
					dials[i] = up.Dial
				}
				if got := strings.Join(dials, " "); got != tc.want {
					t.Errorf("dials = %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func TestUpstreamsWithoutApp(t *testing.T) {
	ctx, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	u := Upstreams{Cluster: "c"}
	if err := u.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := u.GetUpstreams(httptest.NewRequest(http.MethodGet, "/", nil)); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("error = %v, want the istio app not configured", err)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestUpstreamsInCaddyfile runs a plain Caddyfile reverse_proxy whose
// upstreams come from the istio app, through a real Caddy and client.
func TestUpstreamsInCaddyfile(t *testing.T) {
	v1 := newBackend(t, "v1")
	v2 := newBackend(t, "v2")
	port := freePort(t)

	caddyfileText := `{
	admin off
	persist_config off
}
http://127.0.0.1:` + strconv.Itoa(port) + ` {
	bind 127.0.0.1
	reverse_proxy {
		dynamic istio reviews.default.svc.cluster.local 9080 v2
	}
}
`
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), nil)
	if err != nil {
		t.Fatalf("adapting: %v (warnings %v)", err, warnings)
	}
	if !strings.Contains(string(adapted), `"source":"istio"`) {
		t.Fatalf("adapted config has no istio source: %s", adapted)
	}

	var cfg map[string]any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	app := &App{
		Services: []*Service{{
			Hostname: "reviews.default.svc.cluster.local", Namespace: "default", Resolution: "STATIC",
			Ports: []*ServicePort{{Number: 9080, Name: "http"}},
			Endpoints: []*Workload{
				{Address: v1.ip(), Ports: map[string]uint32{"http": v1.port()}, Labels: map[string]string{"version": "v1"}},
				{Address: v2.ip(), Ports: map[string]uint32{"http": v2.port()}, Labels: map[string]string{"version": "v2"}},
			},
		}},
		Clusters: []*Cluster{{
			Name:    "outbound|9080|v2|reviews.default.svc.cluster.local",
			Service: "reviews.default.svc.cluster.local", Port: 9080, Subset: "v2", Labels: map[string]string{"version": "v2"},
		}},
	}
	cfg["apps"].(map[string]any)["istio"] = app
	if err := caddy.Load([]byte(mustJSON(t, cfg)), true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	client := &http.Client{Timeout: 5 * time.Second}
	for range 10 {
		resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "v2" {
			t.Fatalf("status %d body %q, want 200 v2", resp.StatusCode, body)
		}
	}
}

func TestUpstreamHints(t *testing.T) {
	set := &endpointSet{dials: []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}}
	dials := func(hints *UpstreamHints) []string {
		t.Helper()
		r := httptest.NewRequest("GET", "http://reviews/", nil)
		if hints != nil {
			r = r.WithContext(WithUpstreamHints(r.Context(), hints))
		}
		ups, err := set.GetUpstreams(r)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, u := range ups {
			out = append(out, u.Dial)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		hints *UpstreamHints
		want  string
	}{
		{"no hints", nil, "10.0.0.1:80 10.0.0.2:80 10.0.0.3:80"},
		{"nothing tried", &UpstreamHints{}, "10.0.0.1:80 10.0.0.2:80 10.0.0.3:80"},
		{"one tried", &UpstreamHints{Tried: []string{"10.0.0.2:80"}}, "10.0.0.1:80 10.0.0.3:80"},
		{"two tried", &UpstreamHints{Tried: []string{"10.0.0.1:80", "10.0.0.3:80"}}, "10.0.0.2:80"},
		{"all tried", &UpstreamHints{Tried: []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}}, "10.0.0.1:80 10.0.0.2:80 10.0.0.3:80"},
		{"unknown tried", &UpstreamHints{Tried: []string{"10.9.9.9:80"}}, "10.0.0.1:80 10.0.0.2:80 10.0.0.3:80"},
	} {
		if got := strings.Join(dials(tc.hints), " "); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}

	t.Run("forwarded host", func(t *testing.T) {
		r := httptest.NewRequest("GET", "http://new-host/", nil)
		r.Header.Set("X-Forwarded-Host", "new-host")
		r = r.WithContext(WithUpstreamHints(r.Context(), &UpstreamHints{ForwardedHost: "old-host:8080"}))
		if _, err := set.GetUpstreams(r); err != nil {
			t.Fatal(err)
		}
		if got := r.Header.Get("X-Forwarded-Host"); got != "old-host:8080" {
			t.Errorf("X-Forwarded-Host %q, want old-host:8080", got)
		}
		r.Header["X-Forwarded-Host"] = nil // omitted by reverse_proxy configuration
		if _, err := set.GetUpstreams(r); err != nil {
			t.Fatal(err)
		}
		if v, ok := r.Header["X-Forwarded-Host"]; !ok || v != nil {
			t.Errorf("omitted X-Forwarded-Host became %q", v)
		}
	})
}

// freshUpstreams gives new, distinct values on every call (reverse_proxy
// sets their fields), in dial order, in one allocation for small sets.
func TestFreshUpstreams(t *testing.T) {
	for _, tc := range []struct {
		n      int
		allocs float64
	}{{1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 2}, {9, 2}} {
		t.Run(strconv.Itoa(tc.n), func(t *testing.T) {
			dials := make([]string, tc.n)
			for i := range dials {
				dials[i] = "10.0.0." + strconv.Itoa(i+1) + ":80"
			}
			first, second := freshUpstreams(dials), freshUpstreams(dials)
			if len(first) != tc.n || cap(first) != tc.n {
				t.Fatalf("len %d cap %d, want %d", len(first), cap(first), tc.n)
			}
			seen := make(map[*reverseproxy.Upstream]bool)
			for i := range first {
				if first[i].Dial != dials[i] || second[i].Dial != dials[i] {
					t.Errorf("upstream %d: dials %q %q, want %q", i, first[i].Dial, second[i].Dial, dials[i])
				}
				if seen[first[i]] || seen[second[i]] || first[i] == second[i] {
					t.Errorf("upstream %d shared", i)
				}
				seen[first[i]], seen[second[i]] = true, true
			}
			if got := testing.AllocsPerRun(100, func() { _ = freshUpstreams(dials) }); got != tc.allocs {
				t.Errorf("%v allocations, want %v", got, tc.allocs)
			}
		})
	}
}

func TestOriginalDestinationIgnoresEndpoints(t *testing.T) {
	srv := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "original "+r.Host) })
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	target, _ := parsePort(port)
	cfg := &App{
		Services: []*Service{{
			Hostname: "svc.example", Resolution: "STATIC",
			Ports: []*ServicePort{{Number: 80, Name: "http", TargetPort: target}},
			// an endpoint nothing listens on: it must not be dialled
			Endpoints: []*Workload{{Address: "127.0.0.1", Ports: map[string]uint32{"http": 1}}},
		}},
		Clusters: []*Cluster{{Name: "outbound|80||svc.example", Service: "svc.example", Port: 80, OriginalDestination: true}},
	}
	app, _ := provisionApp(t, mustJSON(t, cfg))
	ch := app.ClusterHandler("outbound|80||svc.example")
	code, body := serve(t, ch, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/", nil))
	if code != http.StatusOK || body != "original 127.0.0.1:8080" {
		t.Errorf("got %d %q, want 200 from the request's host on the target port", code, body)
	}
}
