package istioroute

import (
	"context"
	"errors"
	"fmt"
	weakrand "math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// Envoy's retry_on conditions.
const (
	retryOn5xx                  = "5xx"
	retryOnGatewayError         = "gateway-error"
	retryOnReset                = "reset"
	retryOnResetBeforeRequest   = "reset-before-request"
	retryOnConnectFailure       = "connect-failure"
	retryOnEnvoyRateLimited     = "envoy-ratelimited"
	retryOnRetriable4xx         = "retriable-4xx"
	retryOnRefusedStream        = "refused-stream"
	retryOnRetriableStatusCodes = "retriable-status-codes"
	retryOnRetriableHeaders     = "retriable-headers"
	retryOnHTTP3PostConnect     = "http3-post-connect-failure"
	retryOnCancelled            = "cancelled"
	retryOnDeadlineExceeded     = "deadline-exceeded"
	retryOnInternal             = "internal"
	retryOnResourceExhausted    = "resource-exhausted"
	retryOnUnavailable          = "unavailable"
)

// retryCondition is a set of retry_on conditions.
type retryCondition uint32

const (
	condStatus5xx retryCondition = 1 << iota
	condGatewayError
	condReset
	condResetBeforeRequest
	condConnectFailure
	condEnvoyRateLimited
	condRetriable4xx
	condRefusedStream
	condRetriableStatusCodes
	condGRPCCancelled
	condGRPCDeadlineExceeded
	condGRPCInternal
	condGRPCResourceExhausted
	condGRPCUnavailable
)

var retryConditions = map[string]retryCondition{
	retryOn5xx:                  condStatus5xx,
	retryOnGatewayError:         condGatewayError,
	retryOnReset:                condReset,
	retryOnResetBeforeRequest:   condResetBeforeRequest,
	retryOnConnectFailure:       condConnectFailure,
	retryOnEnvoyRateLimited:     condEnvoyRateLimited,
	retryOnRetriable4xx:         condRetriable4xx,
	retryOnRefusedStream:        condRefusedStream,
	retryOnRetriableStatusCodes: condRetriableStatusCodes,
	// retriable-headers needs Envoy's retriable_headers list, which Istio
	// does not expose, so it never matches; HTTP/3 is not proxied.
	retryOnRetriableHeaders:  0,
	retryOnHTTP3PostConnect:  0,
	retryOnCancelled:         condGRPCCancelled,
	retryOnDeadlineExceeded:  condGRPCDeadlineExceeded,
	retryOnInternal:          condGRPCInternal,
	retryOnResourceExhausted: condGRPCResourceExhausted,
	retryOnUnavailable:       condGRPCUnavailable,
}

// grpcStatusConditions maps grpc-status codes to their condition.
var grpcStatusConditions = map[string]retryCondition{
	"1":  condGRPCCancelled,
	"4":  condGRPCDeadlineExceeded,
	"8":  condGRPCResourceExhausted,
	"13": condGRPCInternal,
	"14": condGRPCUnavailable,
}

// defaultRetryOn is Istio's retry_on when a policy has none.
var defaultRetryOn = []string{retryOnConnectFailure, retryOnRefusedStream, retryOnUnavailable, retryOnCancelled, retryOnRetriableStatusCodes}

// defaultRetryBackoff is Envoy's default base interval.
const defaultRetryBackoff = 25 * time.Millisecond

// retryBodyLimit is how much of a request body is kept to replay it on a
// retry (or send it to mirrors), as Envoy's default buffer limit; a larger
// body is sent once and not mirrored.
const retryBodyLimit = 1 << 20

// retryPolicy is a compiled RetryPolicy.
type retryPolicy struct {
	attempts       int // retries after the first try
	perTryTimeout  time.Duration
	on             retryCondition
	statusCodes    []int
	allowPrevious  bool
	backoffBase    time.Duration
	backoffMaximum time.Duration
}

// compileRetryPolicy checks p; nil or no attempts gives nil (no retries).
func compileRetryPolicy(p *RetryPolicy) (*retryPolicy, error) {
	if p == nil {
		return nil, nil
	}
	if p.Attempts < 0 {
		return nil, fmt.Errorf("attempts %d: must not be negative", p.Attempts)
	}
	if p.PerTryTimeout < 0 || p.Backoff < 0 {
		return nil, fmt.Errorf("per_try_timeout and backoff must not be negative")
	}
	if p.Attempts == 0 {
		return nil, nil
	}
	c := &retryPolicy{
		attempts:      p.Attempts,
		perTryTimeout: time.Duration(p.PerTryTimeout),
		allowPrevious: p.AllowPreviousHosts,
		backoffBase:   time.Duration(p.Backoff),
	}
	if c.backoffBase == 0 {
		c.backoffBase = defaultRetryBackoff
	}
	c.backoffMaximum = 10 * c.backoffBase
	on := p.RetryOn
	if len(on) == 0 {
		on = defaultRetryOn
	}
	for _, name := range on {
		cond, ok := retryConditions[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("unknown retry_on condition %q", name)
		}
		c.on |= cond
	}
	for _, code := range p.RetriableStatusCodes {
		if code < 100 || code > 599 {
			return nil, fmt.Errorf("retriable status code %d: must be in 100..599", code)
		}
	}
	c.statusCodes = slices.Clone(p.RetriableStatusCodes)
	return c, nil
}

// retriableResponse reports whether a response with this status and these
// headers is retried, as Envoy's retry state does on upstream headers.
func (p *retryPolicy) retriableResponse(code int, h http.Header) bool {
	// Envoy never retries a response marked overloaded: the 503 of a
	// circuit breaker (its own or an upstream Envoy's).
	if _, overloaded := h["X-Envoy-Overloaded"]; overloaded {
		return false
	}
	switch {
	case p.on&condStatus5xx != 0 && code >= 500:
		return true
	case p.on&condGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case p.on&condRetriable4xx != 0 && code == http.StatusConflict:
		return true
	case p.on&condRetriableStatusCodes != 0 && slices.Contains(p.statusCodes, code):
		return true
	case p.on&condEnvoyRateLimited != 0 && h.Get("X-Envoy-Ratelimited") != "":
		return true
	}
	// gRPC conditions are read from a trailers-only response, whose
	// grpc-status comes with the headers.
	if p.on&(condGRPCCancelled|condGRPCDeadlineExceeded|condGRPCInternal|condGRPCResourceExhausted|condGRPCUnavailable) != 0 {
		if v := h.Get("Grpc-Status"); v != "" {
			return p.on&grpcStatusConditions[v] != 0
		}
	}
	return false
}

// retriableError reports whether an attempt that ended with err, and no
// response, is retried. The proxy's DialError is Envoy's connection
// failure, which nothing reached the upstream before; other transport
// errors are resets after the request was (maybe) sent.
func (p *retryPolicy) retriableError(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false // the client went away
	}
	var dialErr reverseproxy.DialError
	if errors.As(err, &dialErr) {
		return p.on&(condAny5xx|condConnectFailure|condResetBeforeRequest) != 0
	}
	if p.on&condRefusedStream != 0 && strings.Contains(err.Error(), "REFUSED_STREAM") {
		return true
	}
	return p.on&condAny5xx != 0
}

// retriesPerTryTimeout reports whether an attempt cut by the per-try
// timeout is retried: Envoy counts it as a 5xx and a reset, and retries
// it only for 5xx, gateway-error or reset.
func (p *retryPolicy) retriesPerTryTimeout() bool {
	return p.on&condAny5xx != 0
}

// condAny5xx are the conditions that cover a reset and a timeout.
const condAny5xx = condStatus5xx | condGatewayError | condReset

// backoff is the wait before retry number n (1 for the first retry):
// Envoy's jittered exponential back-off, a random duration below
// (2^n - 1) times the base, capped at the maximum.
func (p *retryPolicy) backoff(n int) time.Duration {
	limit := p.backoffMaximum
	if n < 8 {
		limit = min(limit, time.Duration((1<<n)-1)*p.backoffBase)
	}
	if limit <= 0 {
		return 0
	}
	return time.Duration(weakrand.Int64N(int64(limit)))
}

// attemptWriter receives one attempt's response. While more attempts may
// follow, a retriable response is discarded instead of written, so the
// next attempt can answer; anything else goes through to the client
// untouched, as it streams. The upstream's headers are kept apart until
// the response is accepted, so a discarded one leaves nothing behind.
type attemptWriter struct {
	w      http.ResponseWriter
	header http.Header
	// policy decides which responses are discarded; nil discards none.
	policy *retryPolicy

	// cancel, when set, ends the attempt at its per-try timeout.
	cancel context.CancelFunc
	// discardedBytes counts a discarded body; past discardLimit, Write
	// fails, which cuts the attempt (Envoy resets the upstream stream at
	// once; a short body is read so the connection can be reused).
	discardedBytes int
	// replayable, if set, says whether the request body can still be sent
	// again; when it cannot, no response is discarded.
	replayable func() bool

	// state is attemptPending until the response is accepted
	// (attemptCommitted) or the per-try timeout fires first
	// (attemptTimedOut); the timeout runs on another goroutine.
	state atomic.Int32
	// routeCtx is the route timeout's context, if any.
	routeCtx context.Context

	committed bool // the response went to the client
	// committedStatus is the status of the response that went to the client.
	committedStatus int
	discarded       bool // the response was retriable and dropped
	status          int  // of a discarded response
	// dropped means the per-try or route timeout ended the attempt before
	// a response was accepted: whatever comes after (a late upstream
	// response, or the 499 reverse_proxy writes for a cancelled request)
	// is not a response, and the timeout decides.
	dropped bool
}

// attemptWriter states.
const (
	attemptPending int32 = iota
	attemptCommitted
	attemptTimedOut
)

// perTryTimeout ends an attempt whose response has not started; as in
// Envoy, a response already going to the client is not cut (only the
// route timeout bounds it).
func (a *attemptWriter) perTryTimeout() {
	if a.state.CompareAndSwap(attemptPending, attemptTimedOut) && a.cancel != nil {
		a.cancel()
	}
}

// timedOut reports whether the per-try timeout ended the attempt.
func (a *attemptWriter) timedOut() bool { return a.state.Load() == attemptTimedOut }

// discardLimit is how much of a discarded response body is read before
// the attempt is cut.
const discardLimit = 64 << 10

// errDiscardLimit fails the Write that takes a discarded response body
// past discardLimit: reverse_proxy then stops copying and closes the
// upstream body.
var errDiscardLimit = errors.New("discarded response body too long")

func newAttemptWriter(w http.ResponseWriter, policy *retryPolicy) *attemptWriter {
	return &attemptWriter{w: w, header: make(http.Header), policy: policy}
}

// attemptWriters recycles attempt writers and their header maps, which
// every proxied request under a retry policy needs.
var attemptWriters = sync.Pool{New: func() any { return &attemptWriter{header: make(http.Header)} }}

// getAttemptWriter returns a pooled attempt writer, as newAttemptWriter.
func getAttemptWriter(w http.ResponseWriter, policy *retryPolicy) *attemptWriter {
	a := attemptWriters.Get().(*attemptWriter)
	a.w, a.policy = w, policy
	return a
}

// putAttemptWriter clears a and returns it to the pool when reusable,
// i.e. when nothing (such as a per-try timer) can still use it.
func putAttemptWriter(a *attemptWriter, reusable bool) {
	if !reusable {
		return
	}
	header := a.header
	clear(header)
	// state is atomic and must not be copied; it is reset on its own.
	a.w, a.policy, a.cancel, a.replayable, a.routeCtx = nil, nil, nil, nil, nil
	a.discardedBytes, a.committed, a.discarded, a.status, a.dropped = 0, false, false, 0, false
	a.committedStatus = 0
	a.state.Store(attemptPending)
	a.header = header
	attemptWriters.Put(a)
}

// Header is the attempt's own header map until the response is accepted,
// and then the client's (reverse_proxy sets trailers there after the body).
func (a *attemptWriter) Header() http.Header {
	if a.committed {
		return a.w.Header()
	}
	return a.header
}

func (a *attemptWriter) WriteHeader(code int) {
	if a.committed {
		a.w.WriteHeader(code) // a misbehaving caller; let the real writer complain
		return
	}
	if a.discarded || a.dropped {
		return
	}
	if a.timedOut() || a.routeCtx != nil && errors.Is(a.routeCtx.Err(), context.DeadlineExceeded) {
		a.dropped = true
		return
	}
	h := a.w.Header()
	if code < 200 && code != http.StatusSwitchingProtocols {
		// 1xx: forward, without keeping its headers for the final response.
		for k, v := range a.header {
			h[k] = v
		}
		a.w.WriteHeader(code)
		for k := range a.header {
			delete(h, k)
		}
		return
	}
	if a.policy != nil && a.policy.retriableResponse(code, a.header) && (a.replayable == nil || a.replayable()) {
		a.discarded, a.status = true, code
		return
	}
	if !a.state.CompareAndSwap(attemptPending, attemptCommitted) {
		a.dropped = true // the per-try timeout came first
		return
	}
	a.copyHeader(h)
	a.committed, a.committedStatus = true, code
	a.w.WriteHeader(code)
}

// writeDiscarded sends the discarded response's status and headers, for
// when no other attempt can be made after all; its body is gone.
func (a *attemptWriter) writeDiscarded() error {
	h := a.w.Header()
	a.copyHeader(h)
	delete(h, "Content-Length")
	a.w.WriteHeader(a.status)
	return nil
}

// copyHeader puts the attempt's response header into h, the client's, for
// a final response. reverse_proxy takes the server's own Server header
// out of a response it relays (and sends the upstream's, if any); it did
// so on the attempt's header map, so it is done here too, or the client
// would get the "Server: Caddy" the direct path does not send.
func (a *attemptWriter) copyHeader(h http.Header) {
	if _, ok := a.header["Server"]; !ok {
		delete(h, "Server")
	}
	for k, v := range a.header {
		h[k] = v
	}
}

func (a *attemptWriter) Write(p []byte) (int, error) {
	if !a.committed && !a.discarded && !a.dropped {
		a.WriteHeader(http.StatusOK)
	}
	if a.discarded || a.dropped {
		a.discardedBytes += len(p)
		if a.discardedBytes > discardLimit {
			return 0, errDiscardLimit
		}
		return len(p), nil
	}
	return a.w.Write(p)
}

// FlushError flushes an accepted response; there is nothing to flush
// before, and a discarded one is never flushed.
func (a *attemptWriter) FlushError() error {
	if !a.committed {
		return nil
	}
	return http.NewResponseController(a.w).Flush()
}

// Flush implements http.Flusher.
func (a *attemptWriter) Flush() { _ = a.FlushError() }

// Unwrap lets http.ResponseController reach the connection, e.g. to
// hijack it after a 101 Switching Protocols.
func (a *attemptWriter) Unwrap() http.ResponseWriter { return a.w }

// Interface guards
var (
	_ http.ResponseWriter = (*attemptWriter)(nil)
	_ http.Flusher        = (*attemptWriter)(nil)
)
