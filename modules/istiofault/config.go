package istiofault

import "github.com/caddyserver/caddy/v2"

// This file holds the JSON configuration types of Istio's HTTPFaultInjection,
// shared by the http.handlers.istio_fault handler and the istio_route handler
// (which applies a route's fault before proxying).

// Fault is Istio's HTTPFaultInjection: an optional delay, then an optional
// abort, drawn independently per request.
//
// Call Provision before Apply: it validates the fault and precomputes the
// parts per million that Apply draws against.
type Fault struct {
	// Delay waits before the request goes on.
	Delay *Delay `json:"delay,omitempty"`
	// Abort answers locally instead of forwarding the request.
	Abort *Abort `json:"abort,omitempty"`

	// Precomputed by Provision: Envoy's FractionalPercent numerators (of
	// one million) and the abort's gRPC status code as a decimal string.
	delayPPM uint32
	abortPPM uint32
	grpcCode string
}

// Delay is Istio's HTTPFaultInjection.Delay with a fixed delay.
type Delay struct {
	// FixedDelay is how long to wait. At least 1ms, in whole milliseconds
	// (Istio's validation).
	FixedDelay caddy.Duration `json:"fixed_delay"`
	// Percentage of requests delayed, 0 to 100 (resolution 0.0001, as Envoy's
	// parts per million). Default: 0 — as Istio, a fault without a
	// percentage injects nothing.
	Percentage float64 `json:"percentage,omitempty"`
}

// Abort is Istio's HTTPFaultInjection.Abort.
type Abort struct {
	// HTTPStatus answers with this HTTP status (200-599).
	HTTPStatus int `json:"http_status,omitempty"`
	// GRPCStatus answers with a trailers-only gRPC response carrying this
	// status code name (e.g. UNAVAILABLE). Exclusive with HTTPStatus.
	GRPCStatus string `json:"grpc_status,omitempty"`
	// Percentage of requests aborted, 0 to 100. Default: 0 (no abort).
	Percentage float64 `json:"percentage,omitempty"`
}
