package istiofault

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("istio_fault", parseCaddyfile)
	// A fault acts before the request is proxied, as Envoy's fault filter
	// runs before its router.
	httpcaddyfile.RegisterDirectiveOrder("istio_fault", httpcaddyfile.Before, "reverse_proxy")
}

// parseCaddyfile sets up the handler from Caddyfile tokens.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	istio_fault [<matcher>] {
//	    delay <duration> [<percentage>]
//	    abort <http_status> [<percentage>]
//	    abort grpc <STATUS_NAME> [<percentage>]
//	}
//
// At least one of delay and abort is required, each at most once. The
// duration is a Caddy duration of at least 1ms, in whole milliseconds;
// http_status is 200-599; STATUS_NAME is a gRPC status code name such as
// UNAVAILABLE. A percentage is 0 to 100, optionally followed by %; unlike
// the JSON (where an absent percentage is Istio's 0, never), an omitted
// percentage in the Caddyfile means 100: every request.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "delay":
			if h.Delay != nil {
				return d.Err("duplicate delay")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("bad delay duration '%s': %v", d.Val(), err)
			}
			if err := validateFixedDelay(dur); err != nil {
				return d.Errf("bad delay duration '%s': %v", d.Val(), err)
			}
			percentage, err := parsePercentage(d)
			if err != nil {
				return err
			}
			h.Delay = &Delay{FixedDelay: caddy.Duration(dur), Percentage: percentage}

		case "abort":
			if h.Abort != nil {
				return d.Err("duplicate abort")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			abort := new(Abort)
			if d.Val() == "grpc" {
				if !d.NextArg() {
					return d.ArgErr()
				}
				abort.GRPCStatus = d.Val()
			} else {
				status, err := strconv.Atoi(d.Val())
				if err != nil {
					return d.Errf("bad abort status '%s': want an HTTP status or 'grpc <STATUS_NAME>'", d.Val())
				}
				abort.HTTPStatus = status
			}
			if err := validateAbort(abort.HTTPStatus, abort.GRPCStatus); err != nil {
				return d.Errf("bad abort: %v", err)
			}
			percentage, err := parsePercentage(d)
			if err != nil {
				return err
			}
			abort.Percentage = percentage
			h.Abort = abort

		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	if h.Delay == nil && h.Abort == nil {
		return d.Err("istio_fault needs a delay and/or an abort")
	}
	return nil
}

// parsePercentage reads the optional last argument of a delay or abort
// line: a percentage, 100 when omitted.
func parsePercentage(d *caddyfile.Dispenser) (float64, error) {
	if !d.NextArg() {
		return 100, nil
	}
	text := d.Val()
	percentage, err := strconv.ParseFloat(strings.TrimSuffix(text, "%"), 64)
	if err != nil {
		return 0, d.Errf("bad percentage '%s'", text)
	}
	if err := validatePercentage(percentage); err != nil {
		return 0, d.Errf("bad percentage '%s': %v", text, err)
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return percentage, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
