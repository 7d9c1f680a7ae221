package istioroute

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// closingEndpoint is a workload on a loopback port that accepts
// connections and closes them without answering.
func closingEndpoint(t testing.TB) *istioapp.Workload {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			_, _ = conn.Read(buf) // the request line, so the close is after it
			conn.Close()
		}
	}()
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	return &istioapp.Workload{Address: "127.0.0.1", Ports: map[string]uint32{"http": port}}
}

const (
	connectFailureBody = "upstream connect error or disconnect/reset before headers. " +
		"reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"
	retriedConnectFailureBody = "upstream connect error or disconnect/reset before headers. " +
		"retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"
	terminationBody = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
)

// Upstream failures get Envoy's local replies: status, text/plain body.
func TestUpstreamFailureLocalReplies(t *testing.T) {
	app := new(istioapp.App)
	empty := addService(app, "empty.test")
	dead := addService(app, "dead.test", deadEndpoint(t))
	closing := addService(app, "closing.test", closingEndpoint(t))
	fast := caddy.Duration(time.Millisecond)
	h := provisionHandler(t, newContext(t, app),
		single("empty.test", &Route{Route: []*Destination{{Cluster: empty}}}),
		single("empty-retries.test", &Route{Route: []*Destination{{Cluster: empty}}, Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}}}),
		single("dead.test", &Route{Route: []*Destination{{Cluster: dead}}}),
		single("dead-timeout.test", &Route{Route: []*Destination{{Cluster: dead}}, Timeout: caddy.Duration(5 * time.Second)}),
		single("dead-retries.test", &Route{Route: []*Destination{{Cluster: dead}}, Retries: &RetryPolicy{Attempts: 2, Backoff: fast}}),
		single("closing.test", &Route{Route: []*Destination{{Cluster: closing}}}),
		single("closing-retries.test", &Route{Route: []*Destination{{Cluster: closing}}, Retries: &RetryPolicy{Attempts: 1, RetryOn: []string{"reset"}, Backoff: fast}}),
		single("closing-no-retry.test", &Route{Route: []*Destination{{Cluster: closing}}, Retries: &RetryPolicy{Attempts: 1, RetryOn: []string{"connect-failure"}, Backoff: fast}}),
		single("missing.test", &Route{Route: []*Destination{{Cluster: "outbound|80||missing.test"}}}),
	)
	srv := front(t, h)
	for _, tc := range []struct {
		host string
		code int
		body string
	}{
		{"empty.test", 503, noHealthyUpstreamBody},
		{"empty-retries.test", 503, noHealthyUpstreamBody},
		{"dead.test", 503, connectFailureBody},
		{"dead-timeout.test", 503, connectFailureBody},
		{"dead-retries.test", 503, retriedConnectFailureBody},
		{"closing.test", 503, terminationBody},
		{"closing-retries.test", 503, "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection termination"},
		{"closing-no-retry.test", 503, terminationBody},
		{"missing.test", 503, ""}, // Envoy's NC: no body
	} {
		t.Run(tc.host, func(t *testing.T) {
			got := send(t, srv, "GET", "/", tc.host, "")
			if got.code != tc.code || got.body != tc.body {
				t.Errorf("got %d %q, want %d %q", got.code, got.body, tc.code, tc.body)
			}
			if tc.body != "" && got.header.Get("Content-Type") != "text/plain" {
				t.Errorf("Content-Type %q, want text/plain", got.header.Get("Content-Type"))
			}
		})
	}
}

// A per-try timeout is retried only when retry_on has 5xx, gateway-error
// or reset; when no attempt is left, the client gets 504 "upstream request
// timeout", not reverse_proxy's 499 for the cancelled attempt.
func TestPerTryTimeoutExhausted(t *testing.T) {
	var hits atomic.Int32
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hang := funcBackend(t, "hang", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	app := new(istioapp.App)
	hangCluster := addService(app, "hang.test", hang.endpoint(nil))
	perTry := func(on string) *RetryPolicy {
		return &RetryPolicy{Attempts: 2, RetryOn: []string{on}, PerTryTimeout: caddy.Duration(100 * time.Millisecond), Backoff: caddy.Duration(time.Millisecond)}
	}
	var vhosts []*VirtualHost
	for _, on := range []string{"5xx", "gateway-error", "reset", "connect-failure", "retriable-status-codes"} {
		vhosts = append(vhosts, single(on+".test", &Route{Route: []*Destination{{Cluster: hangCluster}}, Retries: perTry(on)}))
	}
	srv := front(t, provisionHandler(t, newContext(t, app), vhosts...))
	for _, tc := range []struct {
		retryOn  string
		attempts int32
	}{
		{"5xx", 3},
		{"gateway-error", 3},
		{"reset", 3},
		{"connect-failure", 1},
		{"retriable-status-codes", 1},
	} {
		t.Run(tc.retryOn, func(t *testing.T) {
			hits.Store(0)
			got := send(t, srv, "GET", "/", tc.retryOn+".test", "")
			if got.code != 504 || got.body != upstreamTimeoutBody || got.header.Get("Content-Type") != "text/plain" {
				t.Errorf("got %d %q %q, want 504 %q text/plain", got.code, got.body, got.header.Get("Content-Type"), upstreamTimeoutBody)
			}
			if n := hits.Load(); n != tc.attempts {
				t.Errorf("%d attempts, want %d", n, tc.attempts)
			}
		})
	}
}

// A response arriving after the per-try timeout, and reverse_proxy's 499
// for the cancelled attempt, are not responses: the timeout decides.
func TestAttemptWriterAfterTimeout(t *testing.T) {
	for _, code := range []int{499, 200, 503} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			rec := &recordingWriter{header: make(http.Header)}
			aw := newAttemptWriter(rec, &retryPolicy{on: condStatus5xx})
			aw.perTryTimeout()
			aw.WriteHeader(code)
			_, _ = io.WriteString(aw, "late")
			if aw.committed || aw.discarded || !aw.dropped || rec.code != 0 || rec.written != 0 {
				t.Errorf("committed %v discarded %v dropped %v; client got %d and %d bytes",
					aw.committed, aw.discarded, aw.dropped, rec.code, rec.written)
			}
		})
	}
}

// recordingWriter records what reaches the client.
type recordingWriter struct {
	header  http.Header
	code    int
	written int
}

func (w *recordingWriter) Header() http.Header { return w.header }
func (w *recordingWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.written += len(p)
	return len(p), nil
}

func TestClassifyUpstreamError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name string
		err  error
		ok   bool
		code int
		body string
	}{
		{"nil", nil, false, 0, ""},
		{"not a handler error", errors.New("making dial info"), false, 0, ""},
		{"no upstreams", caddyhttp.Error(503, errors.New("no upstreams available")), true, 503, noHealthyUpstreamBody},
		{"refused", caddyhttp.Error(502, reverseproxy.NewDialError(refused)), true, 503, connectFailureBody},
		{"unresolvable name", caddyhttp.Error(502, reverseproxy.NewDialError(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}})), true, 503, noHealthyUpstreamBody},
		{"dial timeout", caddyhttp.Error(504, reverseproxy.NewDialError(&net.OpError{Op: "dial", Err: timeoutError{}})), true, 503,
			"upstream connect error or disconnect/reset before headers. reset reason: connection timeout"},
		{"closed before headers", caddyhttp.Error(502, io.EOF), true, 503, terminationBody},
		{"refused stream", caddyhttp.Error(502, errors.New("stream error: stream ID 3; REFUSED_STREAM")), true, 503,
			"upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset"},
		{"h2 reset", caddyhttp.Error(502, errors.New("stream error: stream ID 3; INTERNAL_ERROR; received from peer")), true, 503,
			"upstream connect error or disconnect/reset before headers. reset reason: remote reset"},
		{"malformed", caddyhttp.Error(502, errors.New(`net/http: HTTP/1.x transport connection broken: malformed HTTP response "x"`)), true, 502,
			"upstream connect error or disconnect/reset before headers. reset reason: protocol error"},
		{"header timeout", caddyhttp.Error(504, timeoutError{}), true, 504, upstreamTimeoutBody},
		{"client gone", caddyhttp.Error(499, errors.New("operation was canceled")), false, 0, ""},
		{"nested handler error", caddyhttp.Error(502, caddyhttp.Error(501, errors.New("refused"))), false, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := classifyUpstreamError(tc.err)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v (%+v)", ok, tc.ok, f)
			}
			if !ok {
				return
			}
			body := upstreamTimeoutBody
			if f.status != http.StatusGatewayTimeout {
				body = f.body(false)
			}
			if f.status != tc.code || body != tc.body {
				t.Errorf("got %d %q, want %d %q", f.status, body, tc.code, tc.body)
			}
		})
	}
}

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
