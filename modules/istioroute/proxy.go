package istioroute

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// upstreamHostportPlaceholder is where reverse_proxy leaves the address
// of the endpoint an attempt went to.
const upstreamHostportPlaceholder = "http.reverse_proxy.upstream.hostport"

// serveRoute answers a request whose route has more than a plain action:
// CORS, a fault, header operations, a rewrite, a timeout, retries or
// mirrors. The order is Istio's filter chain: CORS, then fault, then the
// router (redirect, direct response or proxy).
func (h *Handler) serveRoute(w http.ResponseWriter, r *http.Request, ri *requestInfo, vh *virtualHost, rt *route, m *match, next caddyhttp.Handler, t *requestTelemetry) error {
	var corsOrigin string
	if rt.cors != nil {
		origin, done := rt.cors.handle(w, r)
		if done {
			return nil
		}
		corsOrigin = origin
	}

	var d *destination
	responseOps := rt.responseOps
	if len(rt.destinations) > 0 {
		d = rt.pick()
		responseOps = d.responseOps
	}
	if len(responseOps) > 0 || corsOrigin != "" {
		w = &responseEditor{
			ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
			ops:                   responseOps,
			cors:                  rt.cors,
			corsOrigin:            corsOrigin,
		}
	}

	t.routed(vh, rt, d)
	if rt.fault != nil {
		start := time.Now()
		aborted, err := rt.fault.Apply(w, r)
		if rt.fault.Delay != nil && rt.fault.Delay.FixedDelay > 0 && time.Since(start) >= time.Duration(rt.fault.Delay.FixedDelay) {
			t.set(flagDelayInjected)
		}
		if aborted {
			t.set(flagFaultInjected)
		}
		if err != nil || aborted {
			return err
		}
	}

	switch {
	case rt.directResponse != nil:
		serveDirectResponse(w, rt.directResponse)
		return nil
	case rt.redirect != nil:
		rt.redirect.serve(w, ri, m.matchedPrefixLen(ri.path))
		return nil
	}
	h.logRouted(vh, rt, d)
	if d.handler == nil {
		t.set(flagNoClusterFound)
		return caddyhttp.Error(http.StatusServiceUnavailable, d.notFound)
	}
	return h.proxy(w, r, ri, rt, m, d, next, t)
}

// logRouted logs the routing decision at debug level.
func (h *Handler) logRouted(vh *virtualHost, rt *route, d *destination) {
	if c := h.logger.Check(zapcore.DebugLevel, "routed"); c != nil {
		c.Write(
			zap.String("virtual_host", vh.name),
			zap.String("route", rt.name),
			zap.String("virtual_service", rt.virtualService),
			zap.String("cluster", d.cluster))
	}
}

// proxy sends the request to d's cluster: the request header operations
// and the rewrite change a copy of r, mirrors get copies of that, and the
// attempts run under the route timeout with the retry policy.
//
// The common case, one attempt that succeeds, is kept cheap: at most one
// copy of r, and a context of its own only for a route or per-try
// timeout. The hints naming the endpoints already tried, and a new copy
// of the request, are made only when a retry happens.
func (h *Handler) proxy(w http.ResponseWriter, r *http.Request, ri *requestInfo, rt *route, m *match, d *destination, next caddyhttp.Handler, t *requestTelemetry) error {
	policy := rt.retry
	timeout := rt.timeout
	upgrade := isUpgrade(r) // r's header is not changed below: up gets a copy
	if upgrade {
		policy = nil // a hijacked connection cannot be replayed
		// The exchange of an upgraded connection lasts as long as the
		// connection; a route timeout would cut it.
		timeout = 0
	}
	// The body is kept for retries and mirrors as it streams to the
	// first attempt (see replayBody).
	var body *replayBody
	if (policy != nil || len(rt.mirrors) > 0) && hasBody(r) && !upgrade {
		body = newReplayBody(r.Body, r.ContentLength, retryBodyLimit)
		defer body.close()
		if !body.replayable() {
			policy = nil // as Envoy, a body beyond the buffer limit is not retried
		}
	}

	// ctx is the context of every attempt: the route timeout's, with the
	// hints for the cluster's upstream source.
	ctx := r.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	routeCtx := ctx
	var hints *istioapp.UpstreamHints
	if rt.rewrite != nil && rt.rewrite.authority != "" {
		hints = &istioapp.UpstreamHints{ForwardedHost: r.Host}
		ctx = istioapp.WithUpstreamHints(ctx, hints)
	}
	perTryTimeout := time.Duration(0)
	if policy != nil {
		perTryTimeout = policy.perTryTimeout
	}
	// The first attempt's context is set on the copy that the header
	// operations and the rewrite change, so that copy is the only one.
	attemptCtx, cancelAttempt := ctx, context.CancelFunc(nil)
	if perTryTimeout > 0 {
		attemptCtx, cancelAttempt = context.WithCancel(ctx)
	}
	up := r
	if attemptCtx != r.Context() || len(d.requestOps) > 0 || rt.rewrite != nil || body != nil {
		// A shallow copy: the rewrite replaces URL and Host rather than
		// changing them, and the header map is copied only when it changes.
		up = r.WithContext(attemptCtx)
	}
	if len(d.requestOps) > 0 {
		up.Header = r.Header.Clone()
		d.requestOps.apply(up.Header)
	}
	if rt.rewrite != nil {
		rt.rewrite.apply(up, ri.path, m.matchedPrefixLen(ri.path))
	}

	if !upgrade && (body == nil || body.replayable()) {
		for _, mr := range rt.mirrors {
			if mr.handler != nil && mr.drawn() {
				h.sendMirror(mr, up, r.Context(), body, orDefault(rt.timeout, defaultMirrorTimeout))
			}
		}
	}

	if policy == nil && timeout == 0 {
		if body != nil {
			up.Body, _ = body.nextAttempt()
		}
		t.attempt()
		return h.answerUpstreamError(w, d.handler.ServeHTTP(w, up, next), false, d.cluster, t)
	}

	repl := t.replacer(r)

	// giveUp answers as the previous attempt ended, when the next cannot
	// start.
	var giveUp func() error
	// retryDone ends the admission of the retry in progress, if any.
	var retryDone func()
	defer func() {
		if retryDone != nil {
			retryDone()
		}
	}()
	for attempt := 0; ; attempt++ {
		last := policy == nil || attempt >= policy.attempts
		ar := up
		if attempt > 0 {
			attemptCtx, cancelAttempt = ctx, nil
			if perTryTimeout > 0 {
				attemptCtx, cancelAttempt = context.WithCancel(ctx)
			}
			ar = up.WithContext(attemptCtx)
		}
		if body != nil {
			var ok bool
			if ar.Body, ok = body.nextAttempt(); !ok {
				if cancelAttempt != nil {
					cancelAttempt()
				}
				return giveUp() // the body grew too large to be sent again
			}
		}
		aw := getAttemptWriter(w, policy)
		aw.cancel = cancelAttempt
		aw.routeCtx = routeCtx
		if body != nil {
			aw.replayable = body.replayable
		}
		if last {
			aw.policy = nil // the last response goes to the client, as in Envoy
		}
		var perTry *time.Timer
		if perTryTimeout > 0 {
			perTry = time.AfterFunc(perTryTimeout, aw.perTryTimeout)
		}
		if repl != nil {
			repl.Delete(upstreamHostportPlaceholder)
		}
		t.attempt()
		err := serveAttempt(d.handler, aw, ar, next)
		// A per-try timer that could not be stopped may still be using aw,
		// which then must not be reused.
		reusable := perTry == nil || perTry.Stop()
		perTryTimedOut := aw.timedOut() && routeCtx.Err() == nil
		if cancelAttempt != nil {
			cancelAttempt()
		}
		if aw.committed {
			// Envoy flags a retriable response that no retry was left for.
			if policy != nil && last && policy.retriableResponse(aw.committedStatus, w.Header()) {
				t.set(flagUpstreamRetryLimitExceeded)
			}
			putAttemptWriter(aw, reusable)
			return err
		}
		if errors.Is(routeCtx.Err(), context.DeadlineExceeded) && r.Context().Err() == nil {
			putAttemptWriter(aw, reusable)
			t.set(flagUpstreamRequestTimeout)
			return writeUpstreamTimeout(w)
		}
		if r.Context().Err() != nil {
			putAttemptWriter(aw, reusable)
			return err // the client went away
		}
		// A retriable response was discarded; else the per-try timeout,
		// then the error, decide. A timed-out attempt's own end (e.g.
		// reverse_proxy's 499 for its cancelled request) does not count.
		var retriable bool
		switch {
		case aw.discarded:
			retriable = true
		case perTryTimedOut:
			retriable = policy != nil && policy.retriesPerTryTimeout()
		case err != nil:
			retriable = policy != nil && policy.retriableError(err) && !isNoUpstream(err)
		}
		retry := !last && retriable && (body == nil || !body.clientFailed())
		retried := attempt > 0
		if retryDone != nil {
			retryDone()
			retryDone = nil
		}
		if retry {
			// The cluster's circuit breaker caps the retries in progress
			// (maxRetries, retryBudget); over it, Envoy gives up.
			retryDone, retry = admitRetry(d.handler)
			if !retry {
				t.set(flagUpstreamOverflow)
			}
		}
		if !retry {
			if last && retriable && policy != nil {
				t.set(flagUpstreamRetryLimitExceeded)
			}
			defer putAttemptWriter(aw, reusable)
			switch {
			case aw.discarded:
				return aw.writeDiscarded()
			case perTryTimedOut:
				t.set(flagUpstreamRequestTimeout)
				return writeUpstreamTimeout(w)
			}
			return h.answerUpstreamError(w, err, retried, d.cluster, t)
		}
		if !policy.allowPrevious {
			// The hints exist from the first retry on: the first attempt
			// has no previous host.
			if hints == nil {
				hints = new(istioapp.UpstreamHints)
				ctx = istioapp.WithUpstreamHints(ctx, hints)
			}
			if repl != nil {
				if addr, _ := repl.GetString(upstreamHostportPlaceholder); addr != "" {
					hints.Tried = append(hints.Tried, addr)
				}
			}
		}
		if c := h.logger.Check(zapcore.DebugLevel, "retrying"); c != nil {
			c.Write(zap.String("cluster", d.cluster), zap.Int("attempt", attempt+1),
				zap.Int("discarded_status", aw.status), zap.Error(err))
		}
		switch {
		case aw.discarded:
			// aw is not reused: it holds the response to give up with.
			giveUp = aw.writeDiscarded
		case perTryTimedOut:
			putAttemptWriter(aw, reusable)
			giveUp = func() error {
				t.set(flagUpstreamRequestTimeout)
				return writeUpstreamTimeout(w)
			}
		default:
			putAttemptWriter(aw, reusable)
			giveUp = func() error { return h.answerUpstreamError(w, err, retried, d.cluster, t) }
		}
		timer := time.NewTimer(policy.backoff(attempt + 1))
		select {
		case <-timer.C:
		case <-routeCtx.Done():
			timer.Stop()
			if r.Context().Err() == nil {
				t.set(flagUpstreamRequestTimeout)
				return writeUpstreamTimeout(w)
			}
			return caddyhttp.Error(499, r.Context().Err())
		}
	}
}

// serveAttempt runs one attempt. A response that was being discarded and
// whose body copy failed makes reverse_proxy panic with
// http.ErrAbortHandler; that only ends the attempt.
func serveAttempt(ch *istioapp.ClusterHandler, aw *attemptWriter, r *http.Request, next caddyhttp.Handler) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			if rec == http.ErrAbortHandler && (aw.discarded || aw.dropped) {
				err = errDiscardedResponseAborted
				return
			}
			panic(rec)
		}
	}()
	return ch.ServeHTTP(aw, r, next)
}

var errDiscardedResponseAborted = errors.New("discarded retriable response aborted")

// retryAdmitter is a cluster that caps the retries in progress.
type retryAdmitter interface {
	AdmitRetry() (done func(), ok bool)
}

// admitRetry asks ch whether one more retry may start; done, when not
// nil, must be called once the retry is over.
func admitRetry(ch *istioapp.ClusterHandler) (done func(), ok bool) {
	if a, is := any(ch).(retryAdmitter); is {
		return a.AdmitRetry()
	}
	return nil, true
}

// hasBody reports whether r may have a body.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// isUpgrade reports a protocol upgrade (e.g. websocket).
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" || r.Method == http.MethodConnect
}

// orDefault returns d if set, otherwise fallback.
func orDefault(d, fallback time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return fallback
}
