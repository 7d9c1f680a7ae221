package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTelemetry runs the bookinfo mesh (reviews-test-v2: end-user jason
// goes to reviews v2, everyone else to v1) adapted by `caddy adapt
// --adapter istio`, with the servers' access logs on and Caddy's tracing
// handler in front, then checks Istio's metrics on the admin /metrics
// endpoint, the access log fields, and the trace headers the backends got.
func TestTelemetry(t *testing.T) {
	requireBinaries(t)
	requireFree(t, meshListener)
	b := startBackends(t, bookinfoVersions...)
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(yamlFile, []byte(meshConfig(t, b, "virtual-service-reviews-test-v2.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(jsonFile, withAccessLogsAndTracing(t, adaptToJSON(t, yamlFile)), 0o644); err != nil {
		t.Fatal(err)
	}

	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	env := childEnv(filepath.Join(dir, "home"), "CADDY_ADMIN="+admin, "OTEL_TRACES_EXPORTER=none")
	p := startProcess(t, "caddy", caddyBin, []string{"run", "--config", jsonFile}, env, nil)
	t.Cleanup(func() { stopAndCheckRaces(t, p, "caddy") })
	waitListening(t, p, meshListener)

	client := hostClient(t, meshListener)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	b3 := []string{
		"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7",
		"x-b3-spanid", "e457b5a2e4d86bd1",
		"x-b3-parentspanid", "05e3ac9a4f6e3b90",
		"x-b3-sampled", "1",
	}
	for i := 0; i < 3; i++ {
		headers := append([]string{"end-user", "jason", "traceparent", "00-" + traceID + "-00f067aa0ba902b7-01", "x-request-id", "jason-" + strconv.Itoa(i)}, b3...)
		a := get(t, client, "http://reviews:9080/", headers...)
		expectBackend(t, "jason", a, "reviews", "v2")
		if a.Reply == nil {
			continue
		}
		// The tracing handler continues the client's trace: same trace
		// id, its own span id.
		if tp := a.Reply.Headers["traceparent"]; !strings.HasPrefix(tp, "00-"+traceID+"-") || strings.Contains(tp, "00f067aa0ba902b7") {
			t.Errorf("backend got traceparent %q, want trace %s with the tracing handler's span", tp, traceID)
		}
		if id := a.Reply.Headers["x-request-id"]; id != "jason-"+strconv.Itoa(i) {
			t.Errorf("backend got x-request-id %q, want the client's", id)
		}
		for j := 0; j < len(b3); j += 2 {
			if v := a.Reply.Headers[b3[j]]; v != b3[j+1] {
				t.Errorf("backend got %s %q, want %q", b3[j], v, b3[j+1])
			}
		}
	}
	uuidV4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for i := 0; i < 2; i++ {
		a := get(t, client, "http://reviews:9080/")
		expectBackend(t, "anonymous", a, "reviews", "v1")
		if a.Reply == nil {
			continue
		}
		if id := a.Reply.Headers["x-request-id"]; !uuidV4.MatchString(id) {
			t.Errorf("backend got x-request-id %q, want a generated UUID", id)
		}
		if tp := a.Reply.Headers["traceparent"]; !regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$`).MatchString(tp) {
			t.Errorf("backend got traceparent %q, want one the tracing handler started", tp)
		}
	}
	if a := get(t, client, "http://reviews:9080/", "end-user", "jason"); a.Status != 200 {
		t.Errorf("jason: %v", a)
	}

	metrics := scrape(t, "http://"+admin+"/metrics")
	count := func(labels map[string]string) float64 {
		var n float64
	lines:
		for _, line := range strings.Split(metrics, "\n") {
			if !strings.HasPrefix(line, "istio_requests_total{") {
				continue
			}
			for k, v := range labels {
				if !strings.Contains(line, k+`="`+v+`"`) {
					continue lines
				}
			}
			f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			n += f
		}
		return n
	}
	reviews := map[string]string{
		"reporter":                      "source",
		"destination_service":           "reviews.default.svc.cluster.local",
		"destination_service_name":      "reviews",
		"destination_service_namespace": "default",
		"destination_app":               "reviews",
		"destination_workload":          "reviews-v2",
		"destination_version":           "v2",
		"destination_canonical_service": "reviews",
		"request_protocol":              "http",
		"response_code":                 "200",
		"response_flags":                "-",
	}
	if n := count(reviews); n != 4 {
		t.Errorf("istio_requests_total%v = %v, want 4; metrics:\n%s", reviews, n, grepLines(metrics, "istio_requests_total"))
	}
	reviews["destination_version"], reviews["destination_workload"] = "v1", "reviews-v1"
	if n := count(reviews); n != 2 {
		t.Errorf("istio_requests_total%v = %v, want 2", reviews, n)
	}
	for _, name := range []string{"istio_request_duration_milliseconds_bucket", "istio_request_bytes_bucket", "istio_response_bytes_bucket"} {
		if !strings.Contains(metrics, name+"{") {
			t.Errorf("%s missing from /metrics", name)
		}
	}

	// The access log lines of the requests carry the route's fields.
	var entries []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for len(entries) < 6 && time.Now().Before(deadline) {
		entries = accessLogEntries(p.output.String())
		time.Sleep(50 * time.Millisecond)
	}
	byID := map[string]map[string]any{}
	for _, e := range entries {
		if id, _ := e["request_id"].(string); id != "" {
			byID[id] = e
		}
	}
	e := byID["jason-1"]
	if e == nil {
		t.Fatalf("no access log entry with request_id jason-1 in:\n%s", tail(p.output.String(), 4000))
	}
	if c, _ := e["upstream_cluster"].(string); c != "outbound|9080|v2|reviews.default.svc.cluster.local" {
		t.Errorf("upstream_cluster %q", c)
	}
	if h, _ := e["upstream_host"].(string); h != b["reviews/v2"] {
		t.Errorf("upstream_host %q, want %s", h, b["reviews/v2"])
	}
	if f, _ := e["response_flags"].(string); f != "-" {
		t.Errorf("response_flags %q, want -", f)
	}
	if n, ok := e["retry_count"].(float64); !ok || n != 0 {
		t.Errorf("retry_count %v, want 0", e["retry_count"])
	}
	if _, ok := e["route_name"]; !ok {
		t.Logf("no route_name (the route has no name): %v", e)
	}
}

// TestTelemetryResponseFlags checks the flags in metrics and logs of
// requests that do not reach a backend: no route (NR) and a subset
// without endpoints (UH).
func TestTelemetryResponseFlags(t *testing.T) {
	requireBinaries(t)
	requireFree(t, meshListener)
	// reviews v3 has no backend: all-v1 sends to v1, which is missing too.
	b := startBackends(t, "productpage/v1", "details/v1", "ratings/v1")
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(yamlFile, []byte(meshConfig(t, b, "virtual-service-all-v1.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(jsonFile, withAccessLogsAndTracing(t, adaptToJSON(t, yamlFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	env := childEnv(filepath.Join(dir, "home"), "CADDY_ADMIN="+admin, "OTEL_TRACES_EXPORTER=none")
	p := startProcess(t, "caddy", caddyBin, []string{"run", "--config", jsonFile}, env, nil)
	t.Cleanup(p.stop)
	waitListening(t, p, meshListener)

	client := hostClient(t, meshListener)
	if a := get(t, client, "http://reviews:9080/", "x-request-id", "uh-1"); a.Status != http.StatusServiceUnavailable {
		t.Errorf("reviews without endpoints: %v, want 503", a)
	}
	if a := get(t, client, "http://details:9080/", "x-request-id", "ok-1"); a.Status != http.StatusOK {
		t.Errorf("details: %v", a)
	}
	metrics := scrape(t, "http://"+admin+"/metrics")
	lines := grepLines(metrics, "istio_requests_total{")
	if !strings.Contains(lines, `destination_service="reviews.default.svc.cluster.local"`) ||
		!regexp.MustCompile(`istio_requests_total\{[^}]*destination_service="reviews.default.svc.cluster.local"[^}]*response_code="503"[^}]*response_flags="UH"[^}]*\} 1`).MatchString(lines) {
		t.Errorf("no UH series for reviews:\n%s", lines)
	}
	var uh map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for uh == nil && time.Now().Before(deadline) {
		for _, e := range accessLogEntries(p.output.String()) {
			if e["request_id"] == "uh-1" {
				uh = e
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if uh == nil || uh["response_flags"] != "UH" || uh["upstream_cluster"] != "outbound|9080|v1|reviews.default.svc.cluster.local" {
		t.Errorf("access log entry of the UH request: %v", uh)
	}
}

// adaptToJSON runs `caddy adapt --adapter istio` on file.
func adaptToJSON(t *testing.T, file string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, adaptBin, "adapt", "--adapter", "istio", "--config", file)
	cmd.Env = childEnv(t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s", err, stderr.String())
	}
	return out
}

// withAccessLogsAndTracing turns on every HTTP server's access log and
// puts Caddy's tracing handler in front of its routes.
func withAccessLogsAndTracing(t *testing.T, config []byte) []byte {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(config, &cfg); err != nil {
		t.Fatal(err)
	}
	apps, _ := cfg["apps"].(map[string]any)
	httpApp, _ := apps["http"].(map[string]any)
	servers, _ := httpApp["servers"].(map[string]any)
	if len(servers) == 0 {
		t.Fatalf("no HTTP servers in the adapted configuration:\n%s", config)
	}
	for _, s := range servers {
		srv := s.(map[string]any)
		srv["logs"] = map[string]any{}
		routes, _ := srv["routes"].([]any)
		tracing := map[string]any{"handle": []any{map[string]any{"handler": "tracing", "span": "mesh"}}}
		srv["routes"] = append([]any{tracing}, routes...)
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, p *process, addr string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if p.exited() {
			t.Fatalf("caddy exited before listening on %s:\n%s", addr, tail(p.output.String(), 4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not listen on %s within %v", addr, startTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape fetches a metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: requestTimeout}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// accessLogEntries are the JSON access log lines of Caddy's output.
func accessLogEntries(output string) []map[string]any {
	var entries []map[string]any
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `"http.log.access`) {
			continue
		}
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil {
			entries = append(entries, e)
		}
	}
	return entries
}
