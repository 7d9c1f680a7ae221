package istioroute

import (
	"context"
	weakrand "math/rand/v2"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// defaultMirrorTimeout bounds a mirrored request when the route has no
// timeout.
const defaultMirrorTimeout = 30 * time.Second

// mirror is a compiled Mirror.
type mirror struct {
	cluster string
	// ppm is the share of requests mirrored, in parts per million as
	// Envoy's runtime fraction.
	ppm uint32
	// handler is nil when the istio app has no such cluster; nothing is
	// then mirrored, as Envoy drops a shadow to an unknown cluster.
	handler *istioapp.ClusterHandler
}

// drawn reports whether this request is mirrored.
func (m *mirror) drawn() bool {
	return m.ppm >= 1_000_000 || weakrand.Uint32N(1_000_000) < m.ppm
}

// sendMirror sends a copy of up, the request as it goes upstream, with
// the copy of body the attempts read, to the mirror's cluster, in the
// background. The copy has its own context (the values of base, the
// client request's context, without its cancellation and bounded by
// timeout; not up's, which may carry the attempts' hints), replacer and
// variables, and a response writer that discards everything, so nothing
// it does reaches the client or delays the primary request. As current
// Istio, its Host is unchanged (no -shadow suffix).
func (h *Handler) sendMirror(m *mirror, up *http.Request, base context.Context, body *replayBody, timeout time.Duration) {
	server, _ := base.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if server == nil {
		server = new(caddyhttp.Server)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(base), timeout)
	mr := up.Clone(ctx) // here, not in the goroutine: the primary proxies up concurrently
	w := &discardWriter{header: make(http.Header)}
	mr = caddyhttp.PrepareRequest(mr, caddy.NewReplacer(), w, server)
	mr.Body = http.NoBody
	if body != nil {
		mr.Body = body.mirrorReader()
	}
	go func() {
		defer cancel()
		defer func() {
			// A mirror whose response is cut (e.g. by its timeout) makes
			// reverse_proxy panic with http.ErrAbortHandler; it must not
			// take the server down.
			if rec := recover(); rec != nil && rec != http.ErrAbortHandler {
				h.logger.Error("mirror panicked", zap.String("cluster", m.cluster), zap.Any("panic", rec))
			}
		}()
		err := m.handler.ServeHTTP(w, mr, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
		if c := h.logger.Check(zapcore.DebugLevel, "mirrored request"); c != nil {
			c.Write(zap.String("cluster", m.cluster), zap.Int("status", w.status), zap.Error(err))
		}
	}()
}

// discardWriter is the response writer of a mirrored request.
type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header { return d.header }

func (d *discardWriter) WriteHeader(code int) {
	if d.status == 0 && code >= 200 {
		d.status = code
	}
}

func (d *discardWriter) Write(p []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	return len(p), nil
}

// Interface guards
var _ http.ResponseWriter = (*discardWriter)(nil)
