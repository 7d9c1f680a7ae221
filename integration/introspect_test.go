package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tests of the live introspection (admin.api.istio, `caddy istio`, the
// web page) against the real binary with a bookinfo-like mesh: reviews v1
// and v2 backends, a dead v2 endpoint that outlier detection ejects, a
// header match to v2 and a 90/10 split.

// introspectChromiumInstall is how CI installs the browser of the page test.
const introspectChromiumInstall = "apt-get install -y chromium"

// introspectMesh is a running scenario: caddy's admin address and the
// mesh listener.
type introspectMesh struct {
	caddy *caddyProcess
	mesh  string
	dead  string // the dial address of the dead v2 endpoint
}

// startIntrospectMesh runs the scenario and sends traffic until outlier
// detection has ejected the dead endpoint from the v2 cluster.
func startIntrospectMesh(t *testing.T) *introspectMesh {
	t.Helper()
	requireBinaries(t)
	b := startBackends(t, "reviews/v1", "reviews/v2")
	dead := net.JoinHostPort("127.0.0.1", fmt.Sprint(freePort(t)))
	bind := randomLoopback()
	mesh := net.JoinHostPort(bind, fmt.Sprint(vsPort))
	config := joinDocs(
		kubeService("reviews", vsPort),
		workloadEntries(t, b),
		fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v2-dead
spec:
  address: 127.0.0.1
  labels:
    app: reviews
    version: v2
  ports:
    http: %s
`, portOf(t, dead)),
		`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    connectionPool:
      http:
        http2MaxRequests: 100
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 300s
      maxEjectionPercent: 100
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`,
		`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - name: jason
    match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - name: split
    route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
`,
		vsSidecar("introspect", bind, nil, vsPort),
	)
	c := startCaddy(t, config, mesh)
	m := &introspectMesh{caddy: c, mesh: mesh, dead: dead}

	// jason's requests go to v2; each attempt at the dead endpoint is a
	// connect failure, which ejects it (the route's default retries hide
	// it from the client)
	client := hostClient(t, mesh)
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := get(t, client, "http://reviews:9080/", "end-user", "jason")
		expectBackend(t, "jason", a, "reviews", "v2")
		var eps introspectEndpoints
		m.adminJSON(t, "/istio/endpoints", &eps)
		if ep := eps.find("outbound|9080|v2|reviews.default.svc.cluster.local", dead); ep != nil && ep.Health == "EJECTED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead endpoint %s was not ejected: %+v", dead, eps)
		}
	}
	for range 10 {
		get(t, client, "http://reviews:9080/")
	}
	return m
}

// adminJSON GETs an admin path as a program does (no browser headers) and
// decodes its JSON.
func (m *introspectMesh) adminJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: requestTimeout}).Get("http://" + m.caddy.adminAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %d %s\n%s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}

// The JSON of the endpoints, as much as the tests read.
type (
	introspectRoutes struct {
		Servers []struct {
			Server   string   `json:"server"`
			Listen   []string `json:"listen"`
			Handlers []struct {
				VirtualHosts []struct {
					Name    string   `json:"name"`
					Domains []string `json:"domains"`
					Routes  []struct {
						Name           string   `json:"name"`
						VirtualService string   `json:"virtual_service"`
						Match          []string `json:"match"`
						Action         string   `json:"action"`
						Destinations   []struct {
							Cluster string  `json:"cluster"`
							Weight  int     `json:"weight"`
							Percent float64 `json:"percent"`
							Found   bool    `json:"found"`
						} `json:"destinations"`
					} `json:"routes"`
				} `json:"virtual_hosts"`
			} `json:"handlers"`
		} `json:"servers"`
	}
	introspectClusters struct {
		Clusters []struct {
			Name    string `json:"name"`
			Service string `json:"service"`
			Port    int    `json:"port"`
			Subset  string `json:"subset"`
			Policy  struct {
				LoadBalancer   string `json:"load_balancer"`
				TLSMode        string `json:"tls_mode"`
				ConnectionPool *struct {
					MaxRequests int `json:"max_requests"`
				} `json:"connection_pool"`
				OutlierDetection *struct {
					Consecutive5xxErrors int `json:"consecutive_5xx_errors"`
				} `json:"outlier_detection"`
			} `json:"policy"`
			Endpoints int `json:"endpoints"`
			Healthy   int `json:"healthy"`
			Ejected   int `json:"ejected"`
		} `json:"clusters"`
	}
	introspectEndpoint struct {
		Address      string            `json:"address"`
		Workload     string            `json:"workload"`
		Labels       map[string]string `json:"labels"`
		Health       string            `json:"health"`
		EjectedUntil *time.Time        `json:"ejected_until"`
		Ejections    int               `json:"ejections"`
		InFlight     *int              `json:"in_flight"`
	}
	introspectEndpoints struct {
		Clusters []struct {
			Cluster   string               `json:"cluster"`
			Endpoints []introspectEndpoint `json:"endpoints"`
		} `json:"clusters"`
	}
)

// find returns the endpoint of a cluster at address, or nil.
func (e introspectEndpoints) find(cluster, address string) *introspectEndpoint {
	for _, c := range e.Clusters {
		if c.Cluster != cluster {
			continue
		}
		for i := range c.Endpoints {
			if c.Endpoints[i].Address == address {
				return &c.Endpoints[i]
			}
		}
	}
	return nil
}

const (
	introspectV1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
	introspectV2 = "outbound|9080|v2|reviews.default.svc.cluster.local"
)

func TestIntrospectAdminEndpoints(t *testing.T) {
	m := startIntrospectMesh(t)

	var routes introspectRoutes
	m.adminJSON(t, "/istio/routes", &routes)
	if len(routes.Servers) != 1 || len(routes.Servers[0].Handlers) != 1 {
		t.Fatalf("routes: want one server with one istio_route handler: %+v", routes)
	}
	if srv := routes.Servers[0]; !strings.Contains(strings.Join(srv.Listen, " "), m.mesh) {
		t.Errorf("listener %v, want %s", srv.Listen, m.mesh)
	}
	vhs := routes.Servers[0].Handlers[0].VirtualHosts
	if len(vhs) != 1 || vhs[0].Name != "reviews.default.svc.cluster.local:9080" || !strings.Contains(strings.Join(vhs[0].Domains, " "), "reviews:9080") {
		t.Fatalf("virtual hosts: %+v", vhs)
	}
	rts := vhs[0].Routes
	if len(rts) != 2 {
		t.Fatalf("routes: %+v", rts)
	}
	if rts[0].Name != "jason" || rts[0].VirtualService != "default/reviews" || len(rts[0].Match) != 1 ||
		rts[0].Match[0] != `headers[end-user] exact "jason"` || len(rts[0].Destinations) != 1 ||
		rts[0].Destinations[0].Cluster != introspectV2 || rts[0].Destinations[0].Percent != 100 {
		t.Errorf("route jason: %+v", rts[0])
	}
	split := rts[1].Destinations
	if rts[1].Name != "split" || len(rts[1].Match) != 0 || len(split) != 2 ||
		split[0].Cluster != introspectV1 || split[0].Weight != 90 || split[0].Percent != 90 || !split[0].Found ||
		split[1].Cluster != introspectV2 || split[1].Weight != 10 || split[1].Percent != 10 || !split[1].Found {
		t.Errorf("route split: %+v", rts[1])
	}

	var clusters introspectClusters
	m.adminJSON(t, "/istio/clusters", &clusters)
	byName := map[string]int{}
	for i, c := range clusters.Clusters {
		byName[c.Name] = i
	}
	for _, name := range []string{"outbound|9080||reviews.default.svc.cluster.local", introspectV1, introspectV2} {
		i, ok := byName[name]
		if !ok {
			t.Errorf("cluster %s missing: %+v", name, clusters)
			continue
		}
		c := clusters.Clusters[i]
		if c.Service != "reviews.default.svc.cluster.local" || c.Port != vsPort || c.Policy.LoadBalancer != "ROUND_ROBIN" ||
			c.Policy.TLSMode != "DISABLE" || c.Policy.ConnectionPool == nil || c.Policy.ConnectionPool.MaxRequests != 100 ||
			c.Policy.OutlierDetection == nil || c.Policy.OutlierDetection.Consecutive5xxErrors != 1 {
			t.Errorf("cluster %s policy: %+v", name, c)
		}
	}
	if c := clusters.Clusters[byName[introspectV2]]; c.Subset != "v2" || c.Endpoints != 2 || c.Healthy != 1 || c.Ejected != 1 {
		t.Errorf("v2 cluster: %+v, want 2 endpoints, 1 healthy, 1 ejected", c)
	}

	var eps introspectEndpoints
	m.adminJSON(t, "/istio/endpoints", &eps)
	dead := eps.find(introspectV2, m.dead)
	if dead == nil || dead.Health != "EJECTED" || dead.Ejections != 1 || dead.EjectedUntil == nil ||
		time.Until(*dead.EjectedUntil) < 200*time.Second || dead.Workload != "default/reviews-v2-dead" ||
		dead.Labels["version"] != "v2" || dead.InFlight == nil {
		t.Errorf("dead endpoint: %+v, want ejected once for 300s", dead)
	}
	for _, c := range eps.Clusters {
		for _, ep := range c.Endpoints {
			if ep.Address != m.dead && ep.Health != "HEALTHY" {
				t.Errorf("%s %s: %s, want HEALTHY", c.Cluster, ep.Address, ep.Health)
			}
		}
	}

	var config struct {
		Objects []struct{ Kind, Namespace, Name string } `json:"objects"`
	}
	m.adminJSON(t, "/istio/config", &config)
	got := fmt.Sprint(config.Objects)
	for _, want := range []string{"{VirtualService default reviews}", "{WorkloadEntry default reviews-v2-dead}", "{Service default reviews.default.svc.cluster.local}"} {
		if !strings.Contains(got, want) {
			t.Errorf("config objects %s lack %s", got, want)
		}
	}
}

// TestIntrospectAdminOriginChecks shows what a browser meets on the admin
// endpoint: the page's own fetches (same origin, Referer the page) pass
// Caddy's origin check, a fetch from another origin does not, and a typed
// navigation to a loopback admin address is refused by Caddy before the
// module runs, which is why `caddy istio ui` exists.
func TestIntrospectAdminOriginChecks(t *testing.T) {
	m := startIntrospectMesh(t)
	admin := "http://" + m.caddy.adminAddr
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		status  int
	}{
		{"page fetch, same origin", "/istio/routes", map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin", "Referer": admin + "/istio/ui"}, 200},
		{"page fetch of /metrics", "/metrics", map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin", "Referer": admin + "/istio/ui"}, 200},
		{"fetch from another origin", "/istio/routes", map[string]string{"Sec-Fetch-Mode": "cors", "Origin": "http://evil.example"}, 403},
		{"typed navigation", "/istio/ui", map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "none"}, 403},
		{"program", "/istio/ui", nil, 200},
	}
	client := &http.Client{Timeout: requestTimeout}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, admin+tt.path, nil)
		for k, v := range tt.headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s: GET %s: %d, want %d", tt.name, tt.path, resp.StatusCode, tt.status)
		}
	}
}

// runCaddyCommand runs the caddy binary with args (bounded) and returns
// its standard output.
func runCaddyCommand(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, args...)
	cmd.Env = childEnv(t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func TestIntrospectCommand(t *testing.T) {
	m := startIntrospectMesh(t)
	address := "--address=" + m.caddy.adminAddr

	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"istio", address}, []string{"LISTENER", "VIRTUAL HOST", "reviews.default.svc.cluster.local:9080",
			`headers[end-user] exact "jason"`, introspectV2 + " 100%", introspectV1 + " 90%, " + introspectV2 + " 10%", "default/reviews"}},
		{[]string{"istio", "routes", address}, []string{"LISTENER", introspectV1 + " 90%"}},
		{[]string{"istio", "clusters", address}, []string{"CLUSTER", introspectV1, introspectV2, "ROUND_ROBIN", "DISABLE", "1/2", "5xx=1", "maxRequests=100"}},
		{[]string{"istio", "endpoints", address}, []string{"ENDPOINT", "HEALTH", m.dead, "EJECTED", "HEALTHY", "default/reviews-v1", introspectV2}},
		{[]string{"istio", "config", address}, []string{"KIND", "VirtualService", "WorkloadEntry", "reviews-v2-dead"}},
	}
	for _, tt := range tests {
		out := runCaddyCommand(t, tt.args...)
		for _, want := range tt.want {
			if !strings.Contains(out, want) {
				t.Errorf("caddy %s: output lacks %q:\n%s", strings.Join(tt.args, " "), want, out)
			}
		}
	}

	// --json prints the admin endpoint's JSON
	var clusters introspectClusters
	if err := json.Unmarshal([]byte(runCaddyCommand(t, "istio", "clusters", "--json", address)), &clusters); err != nil || len(clusters.Clusters) != 3 {
		t.Errorf("caddy istio clusters --json: %v, %+v", err, clusters)
	}

	// the admin address also comes from CADDY_ADMIN, as for caddy reload
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, "istio", "endpoints")
	cmd.Env = childEnv(t.TempDir(), "CADDY_ADMIN="+m.caddy.adminAddr)
	if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), m.dead) {
		t.Errorf("caddy istio endpoints with CADDY_ADMIN: %v\n%s", err, out)
	}

	// an unknown view fails
	cmd = exec.CommandContext(ctx, caddyBin, "istio", "listeners", address)
	cmd.Env = childEnv(t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "unknown view") {
		t.Errorf("caddy istio listeners: %v\n%s", err, out)
	}
}

// chromiumPath finds Debian's chromium, skipping the test without it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skipf("chromium is not installed (%s); the page is not tested", introspectChromiumInstall)
	return ""
}

// runChromium runs headless chromium with args (bounded) and returns its
// standard output. Virtual time lets the page's fetches and its refresh
// timer run before the DOM or screenshot is taken.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	home := t.TempDir()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--no-first-run", "--user-data-dir=" + filepath.Join(home, "profile"), "--virtual-time-budget=5000"}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	cmd.Env = childEnv(home)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, tail(stderr.String(), 4096))
	}
	return string(out)
}

func TestIntrospectPageInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	m := startIntrospectMesh(t)

	// Caddy's admin refuses a browser's typed navigation to a loopback
	// admin address (TestIntrospectAdminOriginChecks), so the page is
	// opened as users do: through `caddy istio ui`, which serves it and
	// forwards its reads to the admin API.
	ui := net.JoinHostPort("127.0.0.1", fmt.Sprint(freePort(t)))
	p := startProcess(t, "caddy istio ui", caddyBin, []string{"istio", "ui", "--listen", ui, "--address", m.caddy.adminAddr},
		childEnv(t.TempDir()), nil)
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.DialTimeout("tcp", ui, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("caddy istio ui is not listening on %s:\n%s", ui, p.output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	pageURL := "http://" + ui + "/istio/ui"

	dom := runChromium(t, chromium, "--dump-dom", pageURL)
	for _, want := range []string{
		`data-loaded="true"`, `<span id="status">live</span>`,
		// routes with their split
		`headers[end-user] exact "jason"`, introspectV1 + " 90%", introspectV2 + " 10%", introspectV2 + " 100%",
		// clusters and endpoint health
		"ROUND_ROBIN", "1 healthy, 1 ejected", m.dead, `class="EJECTED">EJECTED<`, `class="HEALTHY">HEALTHY<`, "default/reviews-v2-dead",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page's DOM lacks %q", want)
		}
	}
	// request rates come from istio_requests_total on the admin /metrics
	// (istio_route's telemetry); the page computes them from two scrapes
	if !strings.Contains(dom, "requests/s from istio_requests_total") {
		t.Errorf("the page did not find istio_requests_total on /metrics")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", tail(dom, 8192))
	}

	shot := filepath.Join(t.TempDir(), "ui.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1200,800", pageURL)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 800 {
		t.Errorf("screenshot is %dx%d, want 1200x800", b.Dx(), b.Dy())
	}
	// a blank or single-colour page has no variance; the page has text,
	// a dark header and coloured health badges
	var n, sum, sumSq float64
	colours := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			lum := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
			n++
			sum += lum
			sumSq += lum * lum
			if len(colours) < 1000 {
				colours[(r>>8)<<16|(g>>8)<<8|bl>>8] = true
			}
		}
	}
	mean := sum / n
	variance := sumSq/n - mean*mean
	if variance < 100 || len(colours) < 20 {
		t.Errorf("screenshot looks blank: luminance variance %.1f, %d colours", variance, len(colours))
	}
}
