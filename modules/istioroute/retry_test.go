package istioroute

import (
	"net/http"
	"testing"
)

func TestRetriableResponse(t *testing.T) {
	policy, err := compileRetryPolicy(&RetryPolicy{Attempts: 2, RetryOn: []string{"5xx", "retriable-4xx"}})
	if err != nil {
		t.Fatal(err)
	}
	overloaded := http.Header{"X-Envoy-Overloaded": {"true"}}
	for _, tc := range []struct {
		name   string
		code   int
		header http.Header
		want   bool
	}{
		{"503", 503, http.Header{}, true},
		{"409", 409, http.Header{}, true},
		{"200", 200, http.Header{}, false},
		{"404", 404, http.Header{}, false},
		// A circuit breaker's overflow is never retried, as in Envoy.
		{"overloaded 503", 503, overloaded, false},
	} {
		if got := policy.retriableResponse(tc.code, tc.header); got != tc.want {
			t.Errorf("%s: retriable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
