package istioapp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// overflowBody is Envoy's local reply to a request over a circuit breaker.
const overflowBody = "upstream connect error or disconnect/reset before headers. reset reason: overflow"

// clusterTransport wraps the transport of a cluster's reverse_proxy: it
// enforces the cluster's circuit breakers (ConnectionPool) and tells the
// outlier detector the outcome of every attempt.
type clusterTransport struct {
	next http.RoundTripper

	// maxRequests caps the active requests; 0: no cap.
	maxRequests int64
	// connSlots holds one token per HTTP/1 connection in use, so its
	// capacity is MaxConnections; nil: no cap (or HTTP/2, which
	// multiplexes requests on its connections).
	connSlots chan struct{}
	// maxPending caps the requests waiting for a connection slot; 0: no
	// cap.
	maxPending int64

	// active counts the requests on a connection, pending those waiting
	// for one.
	active  atomic.Int64
	pending atomic.Int64

	// perConnection, when set, limits the life of each connection.
	perConnection *connLimits

	// clientProtocol is set when the request goes upstream in its
	// client's HTTP version (UseClientProtocol): only HTTP/1 requests then
	// take a connection slot.
	clientProtocol bool

	outlier *outlierDetector
}

// connLimits are the per-connection limits of a cluster.
type connLimits struct {
	maxRequests uint32
	maxDuration time.Duration

	// tlsConns holds the state of the TLS connections that Caddy's own
	// TLS dialer made, by weak.Pointer[tls.Conn].
	tlsConns sync.Map
}

// newClusterTransport wraps next for cluster c. http1 tells whether the
// upstream connections carry one request at a time.
func newClusterTransport(next http.RoundTripper, c *Cluster, http1 bool, outlier *outlierDetector, limits *connLimits) *clusterTransport {
	t := &clusterTransport{next: next, outlier: outlier, perConnection: limits}
	if cp := c.ConnectionPool; cp != nil {
		t.maxRequests = int64(cp.MaxRequests)
		if http1 && cp.MaxConnections > 0 {
			t.connSlots = make(chan struct{}, cp.MaxConnections)
			t.maxPending = int64(cp.MaxPendingRequests)
		}
	}
	return t
}

// connLimitsOf returns the per-connection limits of cp, nil for none.
func connLimitsOf(cp *ConnectionPool) *connLimits {
	if cp == nil || (cp.MaxRequestsPerConnection == 0 && cp.MaxConnectionDuration <= 0) {
		return nil
	}
	return &connLimits{
		maxRequests: cp.MaxRequestsPerConnection,
		maxDuration: time.Duration(cp.MaxConnectionDuration),
	}
}

// RoundTrip sends req to the endpoint reverse_proxy chose, within the
// cluster's limits. A request over a limit gets Envoy's overflow 503
// without reaching an endpoint.
func (t *clusterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// Envoy checks the active requests when a request arrives and again
	// when it gets a connection; only requests on a connection are active
	if t.maxRequests > 0 && t.active.Load() >= t.maxRequests {
		return overflowResponse(req), nil
	}
	releaseSlot := func() {}
	if t.connSlots != nil && !(t.clientProtocol && clientSpokeHTTP2(req)) {
		select {
		case t.connSlots <- struct{}{}:
		default:
			if n := t.pending.Add(1); t.maxPending > 0 && n > t.maxPending {
				t.pending.Add(-1)
				return overflowResponse(req), nil
			}
			select {
			case t.connSlots <- struct{}{}:
				t.pending.Add(-1)
			case <-req.Context().Done():
				t.pending.Add(-1)
				return nil, req.Context().Err()
			}
		}
		releaseSlot = func() { <-t.connSlots }
	}
	if n := t.active.Add(1); t.maxRequests > 0 && n > t.maxRequests {
		t.active.Add(-1)
		releaseSlot()
		return overflowResponse(req), nil
	}
	release := func() {
		t.active.Add(-1)
		releaseSlot()
	}

	var tracked *connState
	if t.perConnection != nil {
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if tracked != nil {
					// the transport retried on another connection
					tracked.done()
				}
				tracked = t.perConnection.use(req, info.Conn)
			},
		}))
	}

	resp, err := t.next.RoundTrip(req)
	if t.outlier != nil {
		t.recordOutcome(req, resp, err)
	}
	if err != nil {
		if tracked != nil {
			tracked.done()
		}
		release()
		return nil, err
	}
	resp.Body = newReleasingBody(resp.Body, func() {
		if tracked != nil {
			tracked.done()
		}
		release()
	})
	return resp, nil
}

// recordOutcome tells the outlier detector how the attempt at the endpoint
// went. A request the client (or the route) cancelled says nothing about
// the endpoint.
func (t *clusterTransport) recordOutcome(req *http.Request, resp *http.Response, err error) {
	di, ok := reverseproxy.GetDialInfo(req.Context())
	if !ok || di.Upstream == nil {
		return
	}
	if err == nil {
		t.outlier.record(di.Upstream.Dial, resultResponse, resp.StatusCode)
		return
	}
	var dialErr reverseproxy.DialError
	var netErr net.Error
	switch {
	case errors.As(err, &dialErr):
		t.outlier.record(di.Upstream.Dial, resultConnectFailed, 0)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		t.outlier.record(di.Upstream.Dial, resultTimeout, 0)
	case errors.Is(err, context.Canceled):
	default:
		t.outlier.record(di.Upstream.Dial, resultReset, 0)
	}
}

// activeRequests returns the number of requests in flight or waiting for
// a connection, as Envoy's retry budget counts them.
func (t *clusterTransport) activeRequests() int64 { return t.active.Load() + t.pending.Load() }

// overflowResponse is Envoy's reply to a request over a circuit breaker: a
// 503 marked x-envoy-overloaded, which the route does not retry and
// outlier detection does not count.
func overflowResponse(req *http.Request) *http.Response {
	return &http.Response{
		Status:     "503 Service Unavailable",
		StatusCode: http.StatusServiceUnavailable,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":       {"text/plain"},
			"Content-Length":     {strconv.Itoa(len(overflowBody))},
			"X-Envoy-Overloaded": {"true"},
		},
		Body:          io.NopCloser(strings.NewReader(overflowBody)),
		ContentLength: int64(len(overflowBody)),
		Request:       req,
	}
}

// ProxyProtocolEnabled forwards to the wrapped transport, which
// reverse_proxy asks at request time.
func (t *clusterTransport) ProxyProtocolEnabled() bool {
	ppt, ok := t.next.(reverseproxy.ProxyProtocolTransport)
	return ok && ppt.ProxyProtocolEnabled()
}

// RequiresContentLength forwards to the wrapped transport.
func (t *clusterTransport) RequiresContentLength() bool {
	clt, ok := t.next.(reverseproxy.ContentLengthRequiredTransport)
	return ok && clt.RequiresContentLength()
}

// OverrideHealthCheckScheme forwards to the wrapped transport.
func (t *clusterTransport) OverrideHealthCheckScheme(base *url.URL, port string) {
	if o, ok := t.next.(reverseproxy.HealthCheckSchemeOverriderTransport); ok {
		o.OverrideHealthCheckScheme(base, port)
	}
}

// releasingBody calls release once, when the body is closed. It keeps the
// io.Writer of a switched-protocol (101) body, which reverse_proxy needs.
type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// releasingReadWriteBody is a releasingBody whose body is writable.
type releasingReadWriteBody struct {
	*releasingBody
	w io.Writer
}

func (b releasingReadWriteBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// newReleasingBody wraps body so that release runs when it is closed.
func newReleasingBody(body io.ReadCloser, release func()) io.ReadCloser {
	if body == nil {
		release()
		return nil
	}
	rb := &releasingBody{ReadCloser: body, release: release}
	if w, ok := body.(io.ReadWriteCloser); ok {
		return releasingReadWriteBody{releasingBody: rb, w: w}
	}
	return rb
}

// wrapDial makes the transport's connections go through the cluster's
// tunnel and carry the per-connection limits. ht.Transport must be built
// (after Provision).
func wrapDial(ht *reverseproxy.HTTPTransport, tunnel *Tunnel, limits *connLimits) error {
	if tunnel == nil && limits == nil {
		return nil
	}
	rt := ht.Transport
	if rt == nil || rt.DialContext == nil {
		return fmt.Errorf("transport has no dialer to wrap")
	}
	if tunnel != nil {
		if tunnel.TargetHost == "" || tunnel.TargetPort == 0 || tunnel.TargetPort > 65535 {
			return fmt.Errorf("tunnel: target_host and target_port (1..65535) are required")
		}
		if ht.ProxyProtocol != "" {
			return fmt.Errorf("tunnel: not supported with proxy_protocol")
		}
		target := net.JoinHostPort(tunnel.TargetHost, strconv.FormatUint(uint64(tunnel.TargetPort), 10))
		dial := rt.DialContext
		rt.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn, err = connectTunnel(ctx, conn, target)
			if err != nil {
				return nil, reverseproxy.NewDialError(err)
			}
			return conn, nil
		}
		if rt.DialTLSContext != nil {
			// Caddy's TLS dialer dials without the transport's
			// DialContext: replace it by one that does the same
			// handshake over the tunnel
			rt.DialTLSContext = tlsDialer(rt)
		}
	}
	if limits == nil {
		return nil
	}
	if dialTLS := rt.DialTLSContext; dialTLS != nil {
		rt.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialTLS(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if tlsConn, ok := conn.(*tls.Conn); ok {
				// wrapping would hide the *tls.Conn the transport looks for
				limits.trackTLS(tlsConn)
			}
			return conn, nil
		}
	}
	dial := rt.DialContext
	rt.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return limits.track(conn), nil
	}
	return nil
}

// tlsDialer returns a DialTLSContext for rt that dials with rt.DialContext
// and makes the handshake as Caddy's does: the server name's placeholders
// replaced for the request (the auto-SNI name of the request sent, when
// set), no ALPN for a request that must use HTTP/1.
func tlsDialer(rt *http.Transport) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := rt.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := rt.TLSClientConfig.Clone()
		if cfg == nil {
			cfg = new(tls.Config)
		}
		if sni, ok := autoSNIOf(addr); ok {
			cfg.ServerName = sni // auto-SNI (tlsTransport)
		} else if strings.Contains(cfg.ServerName, "{") {
			if repl, ok := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
				cfg.ServerName = repl.ReplaceAll(cfg.ServerName, "")
			}
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		if caddyhttp.GetVar(ctx, "reverse_proxy.tls_h1_only") == true {
			cfg.NextProtos = nil
		}
		if rt.TLSHandshakeTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, rt.TLSHandshakeTimeout)
			defer cancel()
		}
		tlsConn := tls.Client(conn, cfg)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			_ = tlsConn.Close()
			return nil, err
		}
		return tlsConn, nil
	}
}

// connectTunnel asks the proxy at the other end of conn for a tunnel to
// target with HTTP CONNECT, and returns the tunnel; conn is closed when it
// fails.
func connectTunnel(ctx context.Context, conn net.Conn, target string) (net.Conn, error) {
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	tunnel, err := func() (net.Conn, error) {
		if _, err := io.WriteString(conn, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
			return nil, err
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return nil, err
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return nil, fmt.Errorf("tunnel to %s refused: %s", target, resp.Status)
		}
		if br.Buffered() > 0 {
			return &bufferedConn{Conn: conn, r: br}, nil
		}
		return conn, nil
	}()
	if !stop() || err != nil {
		_ = conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("connect tunnel: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return tunnel, nil
}

// bufferedConn is a connection whose first bytes were read ahead.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connState counts the requests of one connection and knows its age.
type connState struct {
	requests atomic.Uint32
	busy     atomic.Int32
	expired  atomic.Bool
	timer    *time.Timer
	close    func()
}

// trackedConn is a connection with its state.
type trackedConn struct {
	net.Conn
	state *connState
}

// Close closes the connection and stops its age timer.
func (tc *trackedConn) Close() error {
	if tc.state.timer != nil {
		tc.state.timer.Stop()
	}
	return tc.Conn.Close()
}

// newConnState returns the state of a new connection that close closes.
func (l *connLimits) newConnState(close func()) *connState {
	st := &connState{close: close}
	if l.maxDuration > 0 {
		st.timer = time.AfterFunc(l.maxDuration, func() {
			st.expired.Store(true)
			if st.busy.Load() == 0 {
				st.close()
			}
		})
	}
	return st
}

// track wraps conn to apply the limits.
func (l *connLimits) track(conn net.Conn) net.Conn {
	return &trackedConn{Conn: conn, state: l.newConnState(func() { _ = conn.Close() })}
}

// trackTLS applies the limits to a TLS connection that cannot be wrapped:
// its state is found by the connection, which is held weakly so that a
// connection the transport dropped is forgotten.
func (l *connLimits) trackTLS(conn *tls.Conn) {
	key := weak.Make(conn)
	st := l.newConnState(func() {
		if c := key.Value(); c != nil {
			_ = c.Close()
		}
	})
	l.tlsConns.Store(key, st)
	runtime.AddCleanup(conn, func(key weak.Pointer[tls.Conn]) {
		if old, ok := l.tlsConns.LoadAndDelete(key); ok && old.(*connState).timer != nil {
			old.(*connState).timer.Stop()
		}
	}, key)
}

// stateOf returns the state of a connection the transport got, nil when
// it is not tracked.
func (l *connLimits) stateOf(conn net.Conn) *connState {
	if tlsConn, ok := conn.(*tls.Conn); ok {
		if st, ok := l.tlsConns.Load(weak.Make(tlsConn)); ok {
			return st.(*connState)
		}
		conn = tlsConn.NetConn()
	}
	if tc, ok := conn.(*trackedConn); ok {
		return tc.state
	}
	return nil
}

// use notes that req got conn; a connection at its request cap or past
// its age carries this request as its last one.
func (l *connLimits) use(req *http.Request, conn net.Conn) *connState {
	st := l.stateOf(conn)
	if st == nil {
		return nil
	}
	st.busy.Add(1)
	n := st.requests.Add(1)
	if (l.maxRequests > 0 && n >= l.maxRequests) || st.expired.Load() {
		// the transport reads Close after GotConn, in this goroutine
		req.Close = true
	}
	return st
}

// done ends a request on the connection; one that outlived its duration
// closes once idle.
func (st *connState) done() {
	if st.busy.Add(-1) == 0 && st.expired.Load() {
		st.close()
	}
}

// Interface guards
var (
	_ http.RoundTripper                                = (*clusterTransport)(nil)
	_ reverseproxy.ProxyProtocolTransport              = (*clusterTransport)(nil)
	_ reverseproxy.ContentLengthRequiredTransport      = (*clusterTransport)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*clusterTransport)(nil)
	_ io.ReadWriteCloser                               = releasingReadWriteBody{}
)
