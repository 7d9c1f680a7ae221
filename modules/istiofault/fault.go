// Package istiofault injects Istio's HTTP faults (VirtualService
// HTTPRoute.fault, HTTPFaultInjection) the way Istio's Envoy fault filter
// does.
//
// It has two users: the http.handlers.istio_fault handler (Handler, also
// the istio_fault Caddyfile directive), and the istio_route handler, which
// applies a route's Fault before proxying:
//
//	f := &istiofault.Fault{Abort: &istiofault.Abort{HTTPStatus: 503, Percentage: 10}}
//	if err := f.Provision(); err != nil { ... } // once, at provision time
//	aborted, err := f.Apply(w, r)               // per request
//	if err != nil || aborted {
//		return err // the response, if any, is written
//	}
//	// go on: proxy the request
//
// Semantics, as Envoy runs what Istio generates:
//
//   - The delay and the abort are drawn independently for each request
//     against their percentages, converted as Istio does to parts per
//     million (uint32(percentage*10000) of 1,000,000, truncated). An absent
//     or zero percentage never fires.
//   - If both fire, the delay happens first, then the abort.
//   - A delay waits FixedDelay unless the request's context ends first; then
//     Apply returns an error (499 for a client cancel) and nothing else
//     happens.
//   - An abort answers locally; the request goes no further. To a plain
//     HTTP request the answer is the status with the body
//     "fault filter abort" (text/plain); a grpc_status abort uses HTTP
//     status 200 there. To a gRPC request (content-type application/grpc
//     or application/grpc+...) the answer is always a trailers-only gRPC
//     response: HTTP 200, content-type application/grpc, grpc-status and
//     grpc-message "fault filter abort". Its grpc-status is the code of
//     grpc_status or, for an http_status abort, Envoy's mapping of the HTTP
//     status to a gRPC code (503 is UNAVAILABLE, 404 UNIMPLEMENTED, ...).
//     This is Envoy's local reply (Http::Utility::sendLocalReply), which
//     decides on gRPC from the request, not from the kind of abort.
//   - Envoy adds no response header for an injected fault: the
//     x-envoy-fault-* headers it documents are request headers that let a
//     caller choose faults (header_abort, header_delay), which Istio never
//     configures. The fault shows only in Envoy's access log flags (FI, DI)
//     and stats, so nothing is added here either.
package istiofault

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// abortBody is the body of Envoy's fault abort local reply.
const abortBody = "fault filter abort"

// abortBodyBytes is abortBody, converted once.
var abortBodyBytes = []byte(abortBody)

// million is the denominator Istio gives Envoy for fault percentages.
const million = 1_000_000

// grpcCodes are the gRPC status code names Istio accepts for
// HTTPFaultInjection.Abort.grpcStatus, with their numeric codes.
var grpcCodes = map[string]int{
	"OK":                  0,
	"CANCELLED":           1,
	"UNKNOWN":             2,
	"INVALID_ARGUMENT":    3,
	"DEADLINE_EXCEEDED":   4,
	"NOT_FOUND":           5,
	"ALREADY_EXISTS":      6,
	"PERMISSION_DENIED":   7,
	"RESOURCE_EXHAUSTED":  8,
	"FAILED_PRECONDITION": 9,
	"ABORTED":             10,
	"OUT_OF_RANGE":        11,
	"UNIMPLEMENTED":       12,
	"INTERNAL":            13,
	"UNAVAILABLE":         14,
	"DATA_LOSS":           15,
	"UNAUTHENTICATED":     16,
}

// Validate checks the fault as Istio's validation does, with Istio's
// error messages where Istio has one.
func (f *Fault) Validate() error {
	if f.Delay == nil && f.Abort == nil {
		return errors.New("HTTP fault injection must have an abort and/or a delay")
	}
	if f.Delay != nil {
		if err := validateFixedDelay(time.Duration(f.Delay.FixedDelay)); err != nil {
			return err
		}
		if err := validatePercentage(f.Delay.Percentage); err != nil {
			return err
		}
	}
	if f.Abort != nil {
		if err := validateAbort(f.Abort.HTTPStatus, f.Abort.GRPCStatus); err != nil {
			return err
		}
		if err := validatePercentage(f.Abort.Percentage); err != nil {
			return err
		}
	}
	return nil
}

// Provision validates the fault and precomputes what Apply needs. Call it
// once, before the first Apply; a Fault is not safe to Provision while it
// is being applied.
func (f *Fault) Provision() error {
	if err := f.Validate(); err != nil {
		return err
	}
	f.delayPPM, f.abortPPM, f.grpcCode = 0, 0, ""
	if f.Delay != nil {
		f.delayPPM = percentToPPM(f.Delay.Percentage)
	}
	if f.Abort != nil {
		f.abortPPM = percentToPPM(f.Abort.Percentage)
		if f.Abort.GRPCStatus != "" {
			f.grpcCode = strconv.Itoa(grpcCodes[f.Abort.GRPCStatus])
		}
	}
	return nil
}

// Apply injects the fault into one request: it waits for the delay if the
// delay is drawn, then writes the abort response if the abort is drawn
// (aborted is then true and the caller must not go on with the request).
// If the request's context ends during the delay, Apply returns a handler
// error wrapping the context's error (status 499 for a client cancel, as
// Caddy's reverse proxy reports it) and writes nothing. A nil Fault does
// nothing. Safe for concurrent use after Provision.
func (f *Fault) Apply(w http.ResponseWriter, r *http.Request) (aborted bool, err error) {
	if f == nil {
		return false, nil
	}
	if f.Delay != nil && draw(f.delayPPM) {
		if err := sleep(r.Context(), time.Duration(f.Delay.FixedDelay)); err != nil {
			return false, err
		}
	}
	if f.Abort != nil && draw(f.abortPPM) {
		f.writeAbort(w, r)
		return true, nil
	}
	return false, nil
}

// draw reports whether an event of ppm parts per million happens, as
// Envoy's FractionalPercent check (random % denominator < numerator).
func draw(ppm uint32) bool {
	switch {
	case ppm == 0:
		return false
	case ppm >= million:
		return true
	}
	return rand.Uint32N(million) < ppm
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.Canceled) {
			return caddyhttp.Error(499, err)
		}
		return caddyhttp.Error(http.StatusGatewayTimeout, err)
	}
}

// writeAbort writes Envoy's local reply for a fault abort.
func (f *Fault) writeAbort(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if isGRPCRequest(r) {
		code := f.grpcCode
		if code == "" {
			code = strconv.Itoa(httpToGRPCStatus(f.Abort.HTTPStatus))
		}
		// Trailers-only: the status travels in the headers, no body.
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", code)
		if r.Method != http.MethodHead {
			h.Set("Grpc-Message", abortBody)
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	status := f.Abort.HTTPStatus
	if status == 0 {
		status = http.StatusOK // a grpc_status abort to a non-gRPC request
	}
	if status == http.StatusNoContent || status == http.StatusNotModified {
		w.WriteHeader(status) // no body allowed
		return
	}
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(abortBody)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(abortBodyBytes)
	}
}

// isGRPCRequest is Envoy's Grpc::Common::hasGrpcContentType: content-type
// exactly application/grpc or starting with application/grpc+
// (application/grpc-web is not gRPC).
func isGRPCRequest(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+')
}

// httpToGRPCStatus is Envoy's Grpc::Utility::httpToGrpcStatus.
func httpToGRPCStatus(status int) int {
	switch status {
	case http.StatusBadRequest:
		return grpcCodes["INTERNAL"]
	case http.StatusUnauthorized:
		return grpcCodes["UNAUTHENTICATED"]
	case http.StatusForbidden:
		return grpcCodes["PERMISSION_DENIED"]
	case http.StatusNotFound:
		return grpcCodes["UNIMPLEMENTED"]
	case http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return grpcCodes["UNAVAILABLE"]
	}
	return grpcCodes["UNKNOWN"]
}

// percentToPPM is Istio's translatePercentToFractionalPercent numerator.
func percentToPPM(percentage float64) uint32 {
	return uint32(percentage * 10000)
}

// validatePercentage is Istio's validatePercentage.
func validatePercentage(percentage float64) error {
	if math.IsNaN(percentage) || percentage < 0 || percentage > 100 ||
		(percentage > 0 && percentage < 0.0001) {
		return fmt.Errorf("percentage %v is neither 0.0, nor in range [0.0001, 100.0]", percentage)
	}
	return nil
}

// validateFixedDelay is Istio's duration validation.
func validateFixedDelay(d time.Duration) error {
	if d < time.Millisecond {
		return errors.New("duration must be greater than 1ms")
	}
	if d%time.Millisecond != 0 {
		return errors.New("only durations to ms precision are supported")
	}
	return nil
}

// validateAbort checks that exactly one status is set and that it is one
// Istio accepts.
func validateAbort(httpStatus int, grpcStatus string) error {
	switch {
	case httpStatus != 0 && grpcStatus != "":
		return errors.New("abort cannot have both http_status and grpc_status")
	case grpcStatus != "":
		if _, ok := grpcCodes[grpcStatus]; !ok {
			return fmt.Errorf("gRPC status %q is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'", grpcStatus)
		}
	case httpStatus < 200 || httpStatus > 599:
		return fmt.Errorf("HTTP status %d is not in range 200-599", httpStatus)
	}
	return nil
}
