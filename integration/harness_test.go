package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// meshListener is where the adapter puts the mesh (sidecar outbound)
// listener when the configuration has no Sidecar: the address the demo
// prints. Tests that use it run one at a time (none calls t.Parallel) and
// fail fast when something else holds the port.
const meshListener = "127.0.0.1:15001"

// Deadlines of the harness. Every wait is bounded.
const (
	startTimeout   = 60 * time.Second // caddy (race build) or backends ready
	stopTimeout    = 5 * time.Second  // graceful stop before SIGKILL
	requestTimeout = 10 * time.Second // one HTTP request
	commandTimeout = 60 * time.Second // one `caddy adapt` or curl
)

// lockedBuffer collects a child's output while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a child process stopped in t.Cleanup.
type process struct {
	name   string
	cmd    *exec.Cmd
	output *lockedBuffer // stdout and stderr
	done   chan struct{} // closed when the process has exited
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after stopTimeout, and waits for exit.
func (p *process) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
	}
}

// childEnv is the environment of every child: no proxy settings (Caddy's
// reverse_proxy and curl would honour them), no inherited Caddy or XDG
// settings, and a private home so that Caddy's storage stays in the test's
// temporary directory.
func childEnv(home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch upper := strings.ToUpper(name); {
		case strings.HasSuffix(upper, "_PROXY"),
			strings.HasPrefix(upper, "CADDY"),
			strings.HasPrefix(upper, "XDG_"),
			upper == "HOME":
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"HOME="+home,
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
	)
	return append(env, extra...)
}

// startProcess starts bin and registers its stop (and, on failure, a dump of
// its output) in t.Cleanup. When stdoutLines is not nil it receives every
// stdout line.
func startProcess(t *testing.T, name, bin string, args, env []string, stdoutLines chan<- string) *process {
	t.Helper()
	p := &process{name: name, output: new(lockedBuffer), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stderr = p.output
	var stdout io.ReadCloser
	if stdoutLines == nil {
		p.cmd.Stdout = p.output
	} else {
		var err error
		if stdout, err = p.cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var readers sync.WaitGroup
	if stdout != nil {
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer close(stdoutLines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				fmt.Fprintln(p.output, sc.Text())
				select {
				case stdoutLines <- sc.Text():
				default: // nobody listens any more
				}
			}
		}()
	}
	go func() {
		readers.Wait() // StdoutPipe must be drained before Wait
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output (last 4 KiB):\n%s", name, tail(p.output.String(), 4096))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// backends maps "service/version" to the address its backend listens on.
type backends map[string]string

// startBackends runs the bookinfo backend with one listener on a free
// 127.0.0.1 port per "service/version".
func startBackends(t *testing.T, instances ...string) backends {
	t.Helper()
	args := make([]string, 0, len(instances))
	for _, in := range instances {
		args = append(args, "-listen", in+"=127.0.0.1:0")
	}
	lines := make(chan string, len(instances)+1)
	p := startProcess(t, "backend", backendBin, args, childEnv(t.TempDir()), lines)
	got := backends{}
	deadline := time.After(startTimeout)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("backend exited before it was ready:\n%s", p.output.String())
			}
			if line == "ready" {
				if len(got) != len(instances) {
					t.Fatalf("backend ready with %d listeners, want %d", len(got), len(instances))
				}
				return got
			}
			var service, version, addr string
			if _, err := fmt.Sscanf(line, "listening %s %s %s", &service, &version, &addr); err == nil {
				got[service+"/"+version] = addr
			}
		case <-deadline:
			t.Fatalf("backend not ready after %v", startTimeout)
		}
	}
}

// workloadEntries writes one WorkloadEntry per backend, as a Kubernetes pod
// of that version would be: labels app and version, address 127.0.0.1, and
// the bookinfo Services' port name "http" mapped to the backend's port.
func workloadEntries(t *testing.T, b backends) string {
	t.Helper()
	keys := make([]string, 0, len(b))
	for k := range b {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var docs []string
	for _, k := range keys {
		service, version, _ := strings.Cut(k, "/")
		host, port, err := net.SplitHostPort(b[k])
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: %s-%s
spec:
  address: %s
  labels:
    app: %s
    version: %s
  ports:
    http: %s
`, service, version, host, service, version, port))
	}
	return strings.Join(docs, "---\n")
}

// corpus returns a file of ../shared/corpus, unmodified.
func corpus(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(corpusDir, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// joinDocs concatenates YAML streams into one multi-document file.
func joinDocs(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString("\n---\n")
		}
		b.WriteString(p)
	}
	return b.String()
}

var (
	documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)
	gatewayKind       = regexp.MustCompile(`(?m)^kind:[ \t]*Gateway[ \t]*$`)
)

// withGatewayPort returns yaml with the port number `from` replaced by `to`
// in the "number:" lines of its Gateway documents only. Tests use it so that
// gateways listen on free ports instead of the samples' 80 or 8080; nothing
// else of the sample changes.
func withGatewayPort(t *testing.T, yaml string, from, to int) string {
	t.Helper()
	numberLine := regexp.MustCompile(`(?m)^([ \t]+number:[ \t]*)` + strconv.Itoa(from) + `([ \t]*)$`)
	docs := documentSeparator.Split(yaml, -1)
	replaced := 0
	for i, doc := range docs {
		if !gatewayKind.MatchString(doc) {
			continue
		}
		replaced += len(numberLine.FindAllString(doc, -1))
		docs[i] = numberLine.ReplaceAllString(doc, "${1}"+strconv.Itoa(to)+"${2}")
	}
	if replaced == 0 {
		t.Fatalf("no Gateway port %d to rewrite", from)
	}
	return strings.Join(docs, "---\n")
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// requireFree fails the test when addr is already taken, naming it.
func requireFree(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s is in use by another process; these tests need it free: %v", addr, err)
	}
	ln.Close()
}

// caddyProcess is a running `caddy run --adapter istio`.
type caddyProcess struct {
	*process
	configFile string
	adminAddr  string
}

// startCaddy writes config to a file and runs `caddy run --adapter istio
// --config FILE` with a private admin address and home, then waits until
// every address in listeners accepts connections.
func startCaddy(t *testing.T, config string, listeners ...string) *caddyProcess {
	t.Helper()
	requireBinaries(t)
	for _, addr := range listeners {
		requireFree(t, addr)
	}
	dir := t.TempDir()
	configFile := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	env := childEnv(filepath.Join(dir, "home"), "CADDY_ADMIN="+admin)
	p := startProcess(t, "caddy", caddyBin, []string{"run", "--adapter", "istio", "--config", configFile}, env, nil)
	c := &caddyProcess{process: p, configFile: configFile, adminAddr: admin}

	// Registered after startProcess's cleanup, so it runs first (LIFO): a
	// race report is only complete once the process has exited.
	t.Cleanup(func() { stopAndCheckRaces(t, c.process, "caddy") })

	deadline := time.Now().Add(startTimeout)
	for _, addr := range listeners {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if c.exited() {
				t.Fatalf("caddy exited before listening on %s (its output follows)", addr)
			}
			if time.Now().After(deadline) {
				t.Fatalf("caddy did not listen on %s within %v", addr, startTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// hostClient sends every request to addr whatever the URL's host, so the
// URL's host:port becomes the Host header of an origin-form request, as
// `curl -H 'Host: reviews:9080' 127.0.0.1:15001/` does. No DNS lookups.
func hostClient(t *testing.T, addr string) *http.Client {
	t.Helper()
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 4,
	}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: requestTimeout, CheckRedirect: noRedirects}
}

// proxyClient uses addr as an HTTP proxy: requests go out in absolute form
// (GET http://reviews:9080/ HTTP/1.1), as `curl -x http://addr` does.
func proxyClient(t *testing.T, addr string) *http.Client {
	t.Helper()
	transport := &http.Transport{
		Proxy:               http.ProxyURL(&url.URL{Scheme: "http", Host: addr}),
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
	}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: requestTimeout, CheckRedirect: noRedirects}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// backendReply is the JSON body of examples/bookinfo/backend.
type backendReply struct {
	Service string            `json:"service"`
	Version string            `json:"version"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   string            `json:"query"`
	Host    string            `json:"host"`
	Headers map[string]string `json:"headers"`
}

// answer is what a client saw.
type answer struct {
	Status int
	Header http.Header
	Body   string
	Reply  *backendReply // nil unless a backend answered
}

// String names who answered, for messages.
func (a answer) String() string {
	if a.Reply != nil {
		return fmt.Sprintf("%d from %s %s", a.Status, a.Reply.Service, a.Reply.Version)
	}
	return fmt.Sprintf("%d (no backend: %q)", a.Status, tail(a.Body, 200))
}

// get sends a GET with the given header pairs ("name", "value", ...).
func get(t *testing.T, client *http.Client, rawURL string, headerPairs ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headerPairs); i += 2 {
		req.Header.Add(headerPairs[i], headerPairs[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s %v: %v", rawURL, headerPairs, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", rawURL, err)
	}
	return newAnswer(resp.StatusCode, resp.Header, body)
}

// newAnswer recognises a backend's reply by its x-bookinfo-version header.
func newAnswer(status int, header http.Header, body []byte) answer {
	a := answer{Status: status, Header: header, Body: string(body)}
	if header.Get("x-bookinfo-version") != "" {
		var r backendReply
		if json.Unmarshal(body, &r) == nil {
			a.Reply = &r
		}
	}
	return a
}

// expectBackend fails unless a is a 200 from service at version (any
// version when version is "").
func expectBackend(t *testing.T, what string, a answer, service, version string) {
	t.Helper()
	if a.Status != http.StatusOK || a.Reply == nil || a.Reply.Service != service ||
		(version != "" && a.Reply.Version != version) {
		want := service
		if version != "" {
			want += " " + version
		}
		t.Errorf("%s: got %v, want 200 from %s", what, a, want)
	}
}

// expectNoBackend fails unless a has the given status and came from Caddy
// itself, not from a backend.
func expectNoBackend(t *testing.T, what string, a answer, status int) {
	t.Helper()
	if a.Status != status || a.Reply != nil || a.Header.Get("x-bookinfo-version") != "" {
		t.Errorf("%s: got %v, want %d from the proxy itself", what, a, status)
	}
}

// curl runs curl with args (bounded) and returns what it printed; it skips
// the test when curl is not installed.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-sS", "--max-time", "10"}, args...)...)
	cmd.Env = childEnv(t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	return string(out)
}

// stopAndCheckRaces stops p (a race-built caddy) and fails t if the race
// detector reported a race in it. Register it with t.Cleanup after
// startProcess, so it runs first: a race report is only complete once the
// process has exited.
func stopAndCheckRaces(t *testing.T, p *process, name string) {
	t.Helper()
	p.stop()
	out := p.output.String()
	races, upstream := raceReports(out)
	if races > upstream {
		t.Errorf("the race detector reported a data race in %s:\n%s", name, tail(out, 16384))
	} else if upstream > 0 {
		t.Logf("%s: ignored %d report(s) of Caddy v2.11.9's own race in reverseproxy.bodyNopCloserIfNotRead (see raceReports)", name, upstream)
	}
}

// raceReports counts the race detector's reports in a process's output,
// and among them those of one known race in Caddy v2.11.9 itself, not in
// this project: reverse_proxy wraps every request body in
// bodyNopCloserIfNotRead, whose Read and Close use an unsynchronised
// field, and the HTTP/2 client transport may close a request body while
// its writer goroutine still reads it (golang/go#73522 describes that
// transport behaviour). Any plain Caddy proxying a request body to an h2
// upstream has it; a report with any other frames still fails the test.
func raceReports(out string) (races, upstream int) {
	reports := strings.Split(out, "WARNING: DATA RACE")[1:]
	for _, r := range reports {
		if end := strings.Index(r, "=================="); end >= 0 {
			r = r[:end]
		}
		races++
		if strings.Contains(r, "reverseproxy.(*bodyNopCloserIfNotRead).Read") &&
			strings.Contains(r, "reverseproxy.(*bodyNopCloserIfNotRead).Close") {
			upstream++
		}
	}
	return races, upstream
}
