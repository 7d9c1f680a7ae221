package istiofault

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler injects an Istio HTTP fault (HTTPFaultInjection) into the
// requests it handles: an optional delay, then an optional abort that
// answers locally so that the next handlers, such as reverse_proxy, never
// see the request. See the package documentation for the exact semantics.
//
// Its JSON is the Fault's, inline:
// {"handler": "istio_fault", "delay": {...}, "abort": {...}}.
type Handler struct {
	Fault
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.istio_fault",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision validates the fault and prepares it.
func (h *Handler) Provision(caddy.Context) error {
	return h.Fault.Provision()
}

// Validate checks the fault as Istio does.
func (h *Handler) Validate() error {
	return h.Fault.Validate()
}

// ServeHTTP applies the fault, then calls next unless the request was
// aborted.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	aborted, err := h.Apply(w, r)
	if err != nil || aborted {
		return err
	}
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
