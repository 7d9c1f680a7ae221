package istiofault

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestValidate(t *testing.T) {
	ms := caddy.Duration(time.Millisecond)
	tests := []struct {
		name  string
		fault Fault
		err   string // substring; "" means valid
	}{
		{"delay only", Fault{Delay: &Delay{FixedDelay: 5 * ms, Percentage: 10}}, ""},
		{"abort only", Fault{Abort: &Abort{HTTPStatus: 503, Percentage: 100}}, ""},
		{"grpc abort", Fault{Abort: &Abort{GRPCStatus: "UNAVAILABLE"}}, ""},
		{"smallest percentage", Fault{Abort: &Abort{HTTPStatus: 500, Percentage: 0.0001}}, ""},
		{"empty", Fault{}, "HTTP fault injection must have an abort and/or a delay"},
		{"status too big", Fault{Abort: &Abort{HTTPStatus: 999}}, "HTTP status 999 is not in range 200-599"},
		{"status too small", Fault{Abort: &Abort{HTTPStatus: 199}}, "HTTP status 199 is not in range 200-599"},
		{"no status", Fault{Abort: &Abort{Percentage: 5}}, "HTTP status 0 is not in range 200-599"},
		{"both statuses", Fault{Abort: &Abort{HTTPStatus: 503, GRPCStatus: "INTERNAL"}}, "cannot have both"},
		{"numeric grpc status", Fault{Abort: &Abort{GRPCStatus: "14"}},
			`gRPC status "14" is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'`},
		{"lower-case grpc status", Fault{Abort: &Abort{GRPCStatus: "unavailable"}}, "is not supported"},
		{"percentage over 100", Fault{Abort: &Abort{HTTPStatus: 503, Percentage: 150}},
			"percentage 150 is neither 0.0, nor in range [0.0001, 100.0]"},
		{"negative percentage", Fault{Delay: &Delay{FixedDelay: ms, Percentage: -1}}, "percentage -1 is neither"},
		{"percentage below resolution", Fault{Delay: &Delay{FixedDelay: ms, Percentage: 0.00001}}, "is neither 0.0"},
		{"zero delay", Fault{Delay: &Delay{}}, "duration must be greater than 1ms"},
		{"sub-millisecond delay", Fault{Delay: &Delay{FixedDelay: caddy.Duration(500 * time.Microsecond)}}, "duration must be greater than 1ms"},
		{"delay not in whole ms", Fault{Delay: &Delay{FixedDelay: caddy.Duration(1500 * time.Microsecond)}}, "only durations to ms precision are supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.fault.Provision()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Provision() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Provision() = %v, want an error containing %q", err, tt.err)
			}
		})
	}
}

func TestPercentToPPM(t *testing.T) {
	tests := []struct {
		percentage float64
		want       uint32
	}{
		{0, 0},
		{0.0001, 1},
		{0.1, 1000},
		{33.33333, 333333},
		{50, 500000},
		{99.99999, 999999}, // truncated, as Istio's uint32 conversion
		{100, million},
	}
	for _, tt := range tests {
		if got := percentToPPM(tt.percentage); got != tt.want {
			t.Errorf("percentToPPM(%v) = %d, want %d", tt.percentage, got, tt.want)
		}
	}
}

func TestDrawExtremes(t *testing.T) {
	for range 1000 {
		if draw(0) {
			t.Fatal("draw(0) fired")
		}
		if !draw(million) {
			t.Fatal("draw(million) did not fire")
		}
	}
}

func TestIsGRPCRequest(t *testing.T) {
	tests := map[string]bool{
		"application/grpc":       true,
		"application/grpc+proto": true,
		"application/grpc-web":   false,
		"application/json":       false,
		"":                       false,
	}
	for contentType, want := range tests {
		r := httptest.NewRequest(http.MethodPost, "/svc/Method", nil)
		r.Header.Set("Content-Type", contentType)
		if got := isGRPCRequest(r); got != want {
			t.Errorf("isGRPCRequest(%q) = %v, want %v", contentType, got, want)
		}
	}
}

func TestHTTPToGRPCStatus(t *testing.T) {
	tests := map[int]int{400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14, 500: 2, 200: 2, 418: 2}
	for status, want := range tests {
		if got := httpToGRPCStatus(status); got != want {
			t.Errorf("httpToGRPCStatus(%d) = %d, want %d", status, got, want)
		}
	}
}

func TestApplyAbortResponse(t *testing.T) {
	type want struct {
		status      int
		contentType string
		body        string
		grpcStatus  string
		grpcMessage string
	}
	plain := func(status int) want {
		return want{status: status, contentType: "text/plain", body: abortBody}
	}
	tests := []struct {
		name        string
		abort       Abort
		method      string
		contentType string
		want        want
	}{
		{"http status", Abort{HTTPStatus: 503}, "GET", "", plain(503)},
		{"teapot", Abort{HTTPStatus: 418}, "POST", "application/json", plain(418)},
		{"head has no body", Abort{HTTPStatus: 500}, "HEAD", "", want{status: 500, contentType: "text/plain"}},
		{"204 has no body", Abort{HTTPStatus: 204}, "GET", "", want{status: 204}},
		{"grpc status to a gRPC request", Abort{GRPCStatus: "UNAVAILABLE"}, "POST", "application/grpc",
			want{status: 200, contentType: "application/grpc", grpcStatus: "14", grpcMessage: abortBody}},
		{"grpc OK", Abort{GRPCStatus: "OK"}, "POST", "application/grpc+proto",
			want{status: 200, contentType: "application/grpc", grpcStatus: "0", grpcMessage: abortBody}},
		{"grpc UNAUTHENTICATED", Abort{GRPCStatus: "UNAUTHENTICATED"}, "POST", "application/grpc",
			want{status: 200, contentType: "application/grpc", grpcStatus: "16", grpcMessage: abortBody}},
		// Envoy's local reply answers gRPC requests in gRPC whatever the abort.
		{"http status to a gRPC request", Abort{HTTPStatus: 404}, "POST", "application/grpc",
			want{status: 200, contentType: "application/grpc", grpcStatus: "12", grpcMessage: abortBody}},
		// ... and plain requests in plain HTTP, with status 200 for a gRPC abort.
		{"grpc status to a plain request", Abort{GRPCStatus: "INTERNAL"}, "GET", "", plain(200)},
		{"grpc-web is not gRPC", Abort{GRPCStatus: "INTERNAL"}, "POST", "application/grpc-web", plain(200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			abort := tt.abort
			abort.Percentage = 100
			f := &Fault{Abort: &abort}
			if err := f.Provision(); err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(tt.method, "/x", nil)
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := httptest.NewRecorder()
			aborted, err := f.Apply(w, r)
			if err != nil || !aborted {
				t.Fatalf("Apply() = %v, %v; want true, nil", aborted, err)
			}
			got := want{
				status:      w.Code,
				contentType: w.Header().Get("Content-Type"),
				body:        w.Body.String(),
				grpcStatus:  w.Header().Get("Grpc-Status"),
				grpcMessage: w.Header().Get("Grpc-Message"),
			}
			if got != tt.want {
				t.Errorf("response = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestApplyNoFault(t *testing.T) {
	tests := map[string]*Fault{
		"nil fault":          nil,
		"absent percentages": {Delay: &Delay{FixedDelay: caddy.Duration(time.Hour)}, Abort: &Abort{HTTPStatus: 503}},
		"zero percentages":   {Delay: &Delay{FixedDelay: caddy.Duration(time.Hour)}, Abort: &Abort{GRPCStatus: "INTERNAL"}},
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) {
			if f != nil {
				if err := f.Provision(); err != nil {
					t.Fatal(err)
				}
			}
			for range 1000 {
				w := httptest.NewRecorder()
				aborted, err := f.Apply(w, httptest.NewRequest("GET", "/", nil))
				if aborted || err != nil {
					t.Fatalf("Apply() = %v, %v; want false, nil", aborted, err)
				}
				if w.Code != http.StatusOK || w.Body.Len() != 0 || len(w.Header()) != 0 {
					t.Fatalf("Apply() wrote a response: %d %v %q", w.Code, w.Header(), w.Body)
				}
			}
		})
	}
}

func TestApplyDelayCanceled(t *testing.T) {
	f := &Fault{
		Delay: &Delay{FixedDelay: caddy.Duration(10 * time.Second), Percentage: 100},
		Abort: &Abort{HTTPStatus: 503, Percentage: 100},
	}
	if err := f.Provision(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cancel func(context.Context) (context.Context, context.CancelFunc)
		status int
		cause  error
	}{
		{"client cancel", context.WithCancel, 499, context.Canceled},
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 50*time.Millisecond)
		}, http.StatusGatewayTimeout, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.cancel(context.Background())
			defer cancel()
			if tt.cause == context.Canceled {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
			w := httptest.NewRecorder()
			start := time.Now()
			aborted, err := f.Apply(w, r)
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Fatalf("Apply() returned after %v, want it to stop at the cancel", elapsed)
			}
			if aborted {
				t.Fatal("Apply() aborted a canceled request")
			}
			var handlerErr caddyhttp.HandlerError
			if !errors.As(err, &handlerErr) || handlerErr.StatusCode != tt.status || !errors.Is(err, tt.cause) {
				t.Fatalf("Apply() error = %#v, want a %d handler error wrapping %v", err, tt.status, tt.cause)
			}
			if w.Body.Len() != 0 || len(w.Header()) != 0 {
				t.Fatalf("Apply() wrote a response after the cancel: %v %q", w.Header(), w.Body)
			}
		})
	}
}

func BenchmarkApplyNoFault(b *testing.B) {
	f := &Fault{Abort: &Abort{HTTPStatus: 503, Percentage: 0.0001}}
	if err := f.Provision(); err != nil {
		b.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = f.Apply(w, r)
	}
}
