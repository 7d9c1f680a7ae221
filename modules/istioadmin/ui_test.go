package istioadmin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestPageRequestRates runs the page in headless chromium against fake
// admin answers whose istio_requests_total grows by 30 per scrape while
// the server's clock advances 1.5 s, and checks the rate the page computes
// from two scrapes: 20/s. Skipped without chromium.
func TestPageRequestRates(t *testing.T) {
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			chromium = path
			break
		}
	}
	if chromium == "" {
		t.Skip("chromium is not installed (apt-get install -y chromium)")
	}

	var scrapes, clusterReads atomic.Int64
	// the fake server's clock advances 1.5 s per read of /istio/clusters,
	// which times the scrapes
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	answers := map[string]string{
		"/istio/routes":    `{"servers":[]}`,
		"/istio/endpoints": `{"clusters":[]}`,
		"/istio/clusters": `{"time":"TIME","clusters":[
			{"name":"outbound|9080|v1|reviews","service":"reviews","port":9080,"subset":"v1","labels":{"version":"v1"},
			 "policy":{"load_balancer":"LEAST_REQUEST","tls_mode":"DISABLE"},"endpoints":1,"healthy":1,"in_flight":0},
			{"name":"outbound|9080||ratings","service":"ratings","port":9080,
			 "policy":{"load_balancer":"RANDOM","tls_mode":"DISABLE"},"endpoints":1,"healthy":1,"in_flight":0}]}`,
	}
	get := func(path string) (*http.Response, error) {
		body, ok := answers[path]
		if path == "/istio/clusters" {
			now := start.Add(time.Duration(clusterReads.Add(1)) * 1500 * time.Millisecond)
			body = strings.Replace(body, "TIME", now.Format(time.RFC3339Nano), 1)
		}
		if path == "/metrics" {
			n := scrapes.Add(1) * 30
			body = "# TYPE istio_requests_total counter\n" +
				`istio_requests_total{reporter="source",destination_service="reviews",destination_version="v1",response_code="200"} ` + strconv.FormatInt(n/3*2, 10) + "\n" +
				`istio_requests_total{reporter="source",destination_service="reviews",destination_version="v1",response_code="503"} ` + strconv.FormatInt(n/3, 10) + "\n" +
				`istio_requests_total{reporter="source",destination_service="reviews",destination_version="v2",response_code="200"} 5` + "\n"
			ok = true
		}
		if !ok {
			return nil, fmt.Errorf("unexpected path %s", path)
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}, nil
	}
	srv := httptest.NewServer(newUIHandler(get))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir="+filepath.Join(dir, "profile"), "--virtual-time-budget=4000",
		"--dump-dom", srv.URL+"/istio/ui")
	cmd.Env = append(cmd.Environ(), "HOME="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	dom := string(out)
	if !strings.Contains(dom, "requests/s from istio_requests_total") {
		t.Fatalf("the page did not read the request counters:\n%s", dom)
	}
	// the reviews v1 row: 30 more requests per 1.5 s scrape; ratings has
	// no series and shows 0
	rate := regexp.MustCompile(`outbound\|9080\|v1\|reviews</td>(?:<td[^>]*>[^<]*</td>){6}<td class="num">([0-9.]+)</td>`).FindStringSubmatch(dom)
	if rate == nil {
		t.Fatalf("no rate for the v1 cluster in:\n%s", dom)
	}
	if r, _ := strconv.ParseFloat(rate[1], 64); r < 15 || r > 25 {
		t.Errorf("v1 rate %s/s, want about 20", rate[1])
	}
	if !regexp.MustCompile(`outbound\|9080\|\|ratings</td>(?:<td[^>]*>[^<]*</td>){6}<td class="num">0\.0</td>`).MatchString(dom) {
		t.Errorf("ratings rate: want 0.0 in:\n%s", dom)
	}
}
