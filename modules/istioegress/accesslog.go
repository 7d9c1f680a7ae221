package istioegress

import (
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Decisions of the access log.
const (
	decisionAllowed = "allowed"
	decisionRefused = "refused"
)

// logEntry is the access log record of one request or tunnel, written
// when it ends: who asked, for what, what the policy decided and why, where
// it went, how many bytes each way and for how long.
type logEntry struct {
	start    time.Time
	client   string
	method   string
	proto    string
	dest     *destination
	decision string
	reason   string
	upstream string
	status   int

	// bytesUp counts bytes from the client to the destination (request
	// body or tunnel), bytesDown the other way.
	bytesUp, bytesDown atomic.Int64

	// idleClosed is set when the idle timeout ended a tunnel.
	idleClosed atomic.Bool
}

func (h *Handler) newLogEntry(r *http.Request) *logEntry {
	return &logEntry{start: time.Now(), client: r.RemoteAddr, method: r.Method, proto: r.Proto}
}

func (e *logEntry) refuse(reason string) {
	e.decision, e.reason = decisionRefused, reason
}

func (e *logEntry) allow(reason string) {
	e.decision, e.reason = decisionAllowed, reason
}

// write logs the entry: refusals at warn, the rest at info.
func (e *logEntry) write(logger *zap.Logger) {
	fields := []zap.Field{
		zap.String("client", e.client),
		zap.String("method", e.method),
		zap.String("proto", e.proto),
	}
	if e.dest != nil {
		fields = append(fields, zap.String("host", e.dest.host), zap.Uint32("port", e.dest.port))
	}
	fields = append(fields,
		zap.String("decision", e.decision),
		zap.String("reason", e.reason),
	)
	if e.upstream != "" {
		fields = append(fields, zap.String("upstream", e.upstream))
	}
	fields = append(fields,
		zap.Int("status", e.status),
		zap.Int64("bytes_up", e.bytesUp.Load()),
		zap.Int64("bytes_down", e.bytesDown.Load()),
		zap.Duration("duration", time.Since(e.start)),
	)
	if e.idleClosed.Load() {
		fields = append(fields, zap.Bool("idle_timeout", true))
	}
	if e.decision == decisionRefused {
		logger.Warn("egress", fields...)
		return
	}
	logger.Info("egress", fields...)
}
