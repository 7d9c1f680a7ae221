package istioroute

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// Envoy's router local reply bodies, for a request that got no upstream
// response.
const (
	// upstreamTimeoutBody answers the route timeout or the last per-try
	// timeout, with 504.
	upstreamTimeoutBody = "upstream request timeout"
	// noHealthyUpstreamBody answers a cluster without endpoints, with 503.
	noHealthyUpstreamBody = "no healthy upstream"
	// upstreamResetBodyPrefix starts the body of a connection failure or
	// a reset before the response headers; "retried and the latest " then
	// follows when a retry was made, then "reset reason: ...".
	upstreamResetBodyPrefix = "upstream connect error or disconnect/reset before headers. "
)

// Envoy's names of the stream reset reasons.
const (
	resetRemoteConnectionFailure = "remote connection failure"
	resetConnectionTimeout       = "connection timeout"
	resetConnectionTermination   = "connection termination"
	resetRemoteReset             = "remote reset"
	resetRemoteRefusedStream     = "remote refused stream reset"
	resetProtocolError           = "protocol error"
)

// upstreamFailure is how an attempt that got no response ended, as
// Envoy's router answers it.
type upstreamFailure struct {
	status int
	// noHealthyUpstream: the cluster had no endpoint to send to.
	noHealthyUpstream bool
	// resetReason and transportFailure name a failed connection or a
	// reset stream.
	resetReason      string
	transportFailure string
}

// body is the local reply's body; retried tells whether a retry was made.
func (f upstreamFailure) body(retried bool) string {
	if f.noHealthyUpstream {
		return noHealthyUpstreamBody
	}
	var b strings.Builder
	b.WriteString(upstreamResetBodyPrefix)
	if retried {
		b.WriteString("retried and the latest ")
	}
	b.WriteString("reset reason: ")
	b.WriteString(f.resetReason)
	if f.transportFailure != "" {
		b.WriteString(", transport failure reason: ")
		b.WriteString(f.transportFailure)
	}
	return b.String()
}

// responseFlag is Envoy's response flag for the failure.
func (f upstreamFailure) responseFlag() responseFlags {
	switch {
	case f.noHealthyUpstream:
		return flagNoHealthyUpstream
	case f.status == http.StatusGatewayTimeout:
		return flagUpstreamRequestTimeout
	}
	switch f.resetReason {
	case resetRemoteConnectionFailure, resetConnectionTimeout:
		return flagUpstreamConnectionFailure
	case resetConnectionTermination:
		return flagUpstreamConnectionTermination
	case resetProtocolError:
		return 0 // Envoy's UPE, which this handler does not name
	}
	return flagUpstreamRemoteReset
}

// classifyUpstreamError tells how Envoy answers the error reverse_proxy
// returned for an attempt that wrote no response, or false for an error
// that is not an upstream failure (the client went away, a bad
// configuration, ...) and stays a handler error.
func classifyUpstreamError(err error) (upstreamFailure, bool) {
	var he caddyhttp.HandlerError
	if err == nil || !errors.As(err, &he) || he.Err == nil {
		return upstreamFailure{}, false
	}
	if isNoUpstream(err) {
		return upstreamFailure{status: http.StatusServiceUnavailable, noHealthyUpstream: true}, true
	}
	// reverse_proxy answers a failed round trip with 502, or 504 for a
	// timeout; other statuses are its own refusals, or 499 for a client
	// that went away.
	if he.StatusCode != http.StatusBadGateway && he.StatusCode != http.StatusGatewayTimeout {
		return upstreamFailure{}, false
	}
	cause := he.Err
	if errors.Is(cause, context.Canceled) || strings.Contains(cause.Error(), "operation was canceled") {
		return upstreamFailure{}, false
	}

	var dialErr reverseproxy.DialError
	if errors.As(cause, &dialErr) {
		return connectFailure(dialErr), true
	}
	var netErr net.Error
	msg := cause.Error()
	switch {
	case errors.Is(cause, context.DeadlineExceeded) || errors.As(cause, &netErr) && netErr.Timeout():
		// e.g. the transport's response header timeout, which Envoy
		// only has as the route timeout
		return upstreamFailure{status: http.StatusGatewayTimeout}, true
	case strings.Contains(msg, "REFUSED_STREAM"):
		return upstreamFailure{status: http.StatusServiceUnavailable, resetReason: resetRemoteRefusedStream}, true
	case strings.Contains(msg, "stream error:"):
		return upstreamFailure{status: http.StatusServiceUnavailable, resetReason: resetRemoteReset}, true
	case strings.Contains(msg, "malformed HTTP"):
		return upstreamFailure{status: http.StatusBadGateway, resetReason: resetProtocolError}, true
	}
	// The connection closed (or was reset) before the response headers.
	return upstreamFailure{status: http.StatusServiceUnavailable, resetReason: resetConnectionTermination}, true
}

// connectErrnos are the socket errors of a failed connect that Envoy
// reports as a transport failure reason.
var connectErrnos = []syscall.Errno{
	syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
	syscall.ECONNRESET, syscall.EADDRNOTAVAIL, syscall.EACCES, syscall.EPERM,
}

// connectFailure names a failed dial in Envoy's terms. Envoy reports a
// refused (or otherwise failed) connect with the socket error as
// strerror(3) words it, e.g. "delayed connect error: Connection refused".
// DialError does not unwrap, so its cause is read from its text, whose
// format (net.OpError's) ends with the cause's.
func connectFailure(err reverseproxy.DialError) upstreamFailure {
	f := upstreamFailure{status: http.StatusServiceUnavailable, resetReason: resetRemoteConnectionFailure}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "lookup "):
		// An endpoint name that does not resolve leaves Envoy's cluster
		// without hosts.
		return upstreamFailure{status: http.StatusServiceUnavailable, noHealthyUpstream: true}
	case strings.HasSuffix(msg, "i/o timeout") || strings.HasSuffix(msg, ": "+syscall.ETIMEDOUT.Error()):
		f.resetReason = resetConnectionTimeout
		return f
	}
	for _, errno := range connectErrnos {
		if strings.HasSuffix(msg, ": "+errno.Error()) {
			f.transportFailure = "delayed connect error: " + capitalize(errno.Error())
			break
		}
	}
	return f
}

// capitalize upper-cases the first letter of an ASCII message, as
// strerror(3) has it where Go has it in lower case.
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// isNoUpstream reports reverse_proxy's "no upstreams available", which
// Envoy answers locally (no healthy upstream) without retrying.
func isNoUpstream(err error) bool {
	var he caddyhttp.HandlerError
	return errors.As(err, &he) && he.StatusCode == http.StatusServiceUnavailable &&
		strings.Contains(err.Error(), "no upstreams available")
}

// writeLocalReply answers as Envoy's router does when it has no upstream
// response: text/plain, the body and its length.
func writeLocalReply(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// writeUpstreamTimeout answers 504 as Envoy does on an upstream timeout.
func writeUpstreamTimeout(w http.ResponseWriter) error {
	writeLocalReply(w, http.StatusGatewayTimeout, upstreamTimeoutBody)
	return nil
}

// answerUpstreamError answers an attempt that ended with err and wrote no
// response: with Envoy's local reply when err is an upstream failure,
// otherwise err is returned as is. retried tells whether a retry was made.
// The failure's response flag goes to t.
func (h *Handler) answerUpstreamError(w http.ResponseWriter, err error, retried bool, cluster string, t *requestTelemetry) error {
	if err == nil {
		return nil // before classifyUpstreamError, whose errors.As target is allocated
	}
	f, ok := classifyUpstreamError(err)
	if !ok {
		return err
	}
	t.set(f.responseFlag())
	if c := h.logger.Check(zapcore.DebugLevel, "upstream failed"); c != nil {
		c.Write(zap.String("cluster", cluster), zap.Error(err))
	}
	body := upstreamTimeoutBody
	if f.status != http.StatusGatewayTimeout {
		body = f.body(retried)
	}
	writeLocalReply(w, f.status, body)
	return nil
}
