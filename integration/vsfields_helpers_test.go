package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Helpers of the vsfields_*_test.go files: end-to-end tests of every
// VirtualService HTTPRoute field. Each test serves its mesh on a Sidecar
// egress listener bound to a random 127.0.0.0/8 address (startVSMesh), so
// it neither needs nor blocks 127.0.0.1:15001.

// vsPort is the port of the services these tests declare.
const vsPort = 9080

// randomLoopback returns a random address in 127.0.0.0/8 other than
// 127.0.0.1.
func randomLoopback() string {
	return fmt.Sprintf("127.%d.%d.%d", rand.IntN(250)+1, rand.IntN(250)+1, rand.IntN(250)+2)
}

// vsSidecar is a Sidecar whose egress listeners serve every host on the
// given ports at bind, with the given workloadSelector labels (none when
// empty), named name.
func vsSidecar(name, bind string, selector map[string]string, ports ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: %s\nspec:\n", name)
	if len(selector) > 0 {
		b.WriteString("  workloadSelector:\n    labels:\n")
		for k, v := range selector {
			fmt.Fprintf(&b, "      %s: %s\n", k, v)
		}
	}
	b.WriteString("  egress:\n")
	for _, p := range ports {
		fmt.Fprintf(&b, "  - port:\n      number: %d\n      protocol: HTTP\n      name: http-%d\n    bind: %s\n    hosts:\n    - \"*/*\"\n", p, p, bind)
	}
	return b.String()
}

// startVSMesh starts caddy with config plus a Sidecar serving ports
// (vsPort when none) on a random loopback address, and returns that
// address.
func startVSMesh(t *testing.T, config string, ports ...int) string {
	t.Helper()
	if len(ports) == 0 {
		ports = []int{vsPort}
	}
	bind := randomLoopback()
	listeners := make([]string, len(ports))
	for i, p := range ports {
		listeners[i] = net.JoinHostPort(bind, fmt.Sprint(p))
	}
	startCaddy(t, joinDocs(config, vsSidecar("vsfields", bind, nil, ports...)), listeners...)
	return bind
}

// meshAddr is bind:vsPort.
func meshAddr(bind string) string { return net.JoinHostPort(bind, fmt.Sprint(vsPort)) }

// kubeService is a Kubernetes Service name (namespace default) with one
// port "http" selecting app: name, as bookinfo.yaml writes them.
func kubeService(name string, port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  labels:
    app: %s
spec:
  ports:
  - port: %d
    name: http
  selector:
    app: %s
`, name, name, port, name)
}

// subsetsRule is a DestinationRule for host with one subset per version
// (label version: V).
func subsetsRule(host string, versions ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: %s\nspec:\n  host: %s\n  subsets:\n", host, host)
	for _, v := range versions {
		fmt.Fprintf(&b, "  - name: %s\n    labels:\n      version: %s\n", v, v)
	}
	return b.String()
}

// recordedRequest is what a recorder saw.
type recordedRequest struct {
	Method string
	Path   string
	Host   string
	Header http.Header
	Body   string
}

// recorder is an HTTP server in the test process that keeps every request
// it receives, so tests can see mirrored copies and retried attempts that
// never reach the client. It answers status (after delay, cut short when
// the request is cancelled) with the header x-recorder and its name as
// the body.
type recorder struct {
	name   string
	addr   string
	status int
	delay  time.Duration

	mu   sync.Mutex
	seen []recordedRequest
}

func startRecorder(t *testing.T, name string, status int, delay time.Duration) *recorder {
	t.Helper()
	r := &recorder{name: name, status: status, delay: delay}
	srv := httptest.NewUnstartedServer(r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	r.addr = ln.Addr().String()
	return r
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 4<<20))
	r.mu.Lock()
	r.seen = append(r.seen, recordedRequest{Method: req.Method, Path: req.URL.RequestURI(), Host: req.Host, Header: req.Header.Clone(), Body: string(body)})
	r.mu.Unlock()
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-req.Context().Done():
			return
		}
	}
	w.Header().Set("x-recorder", r.name)
	w.WriteHeader(r.status)
	io.WriteString(w, r.name)
}

// requests returns a copy of what the recorder saw so far.
func (r *recorder) requests() []recordedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordedRequest(nil), r.seen...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// waitForCount waits (at most timeout) until r has seen n requests and
// returns the count it saw.
func (r *recorder) waitForCount(n int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		c := r.count()
		if c >= n || time.Now().After(deadline) {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recorderBackends maps "service/version" to recorder addresses, for
// workloadEntries.
func recorderBackends(service string, byVersion map[string]*recorder) backends {
	b := backends{}
	for version, r := range byVersion {
		b[service+"/"+version] = r.addr
	}
	return b
}

// mergeBackends joins backend maps.
func mergeBackends(all ...backends) backends {
	out := backends{}
	for _, b := range all {
		for k, v := range b {
			out[k] = v
		}
	}
	return out
}

// do sends req with client and returns what came back (body capped).
func do(t *testing.T, client *http.Client, req *http.Request) answer {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return newAnswer(resp.StatusCode, resp.Header, body)
}

// h2cClient speaks HTTP/2 with prior knowledge (no upgrade, no TLS) to
// addr whatever the URL's host, as `curl --http2-prior-knowledge` does.
func h2cClient(t *testing.T, addr string) *http.Client {
	t.Helper()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{
		Protocols: protocols,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: requestTimeout, CheckRedirect: noRedirects}
}

// closedPort returns an address on 127.0.0.1 where nothing listens (a
// port that was free a moment ago): connections to it are refused.
func closedPort(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(freePort(t)))
}
