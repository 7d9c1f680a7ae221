package integration

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

// retryConfig is the Service "flaky" on vsPort with one WorkloadEntry per
// address in b (labels app: flaky, version: the key's version) and a
// VirtualService whose only route sends to flaky with the given HTTPRoute
// lines (indented four spaces, e.g. "    retries:\n      attempts: 3\n").
func retryConfig(t *testing.T, b backends, routeFields string) string {
	t.Helper()
	vs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: flaky
spec:
  hosts:
  - flaky
  http:
  - route:
    - destination:
        host: flaky
` + routeFields
	return joinDocs(kubeService("flaky", vsPort), vs, workloadEntries(t, b))
}

// Retries: Istio's default policy when `retries` is absent (2 retries on
// connect-failure, refused-stream, unavailable, cancelled, with the
// previous-hosts predicate), explicit attempts and retryOn, attempts 0,
// perTryTimeout, and the request body replayed on each attempt.
func TestVSFieldRetries(t *testing.T) {
	requireBinaries(t)
	const requests = 20

	// One endpoint refuses connections, the other answers: the default
	// policy retries the connect failure on the other endpoint, so every
	// request succeeds whichever endpoint is picked first.
	t.Run("default-connect-failure", func(t *testing.T) {
		b := startBackends(t, "flaky/up")
		b["flaky/down"] = closedPort(t)
		client := hostClient(t, meshAddr(startVSMesh(t, retryConfig(t, b, ""))))
		for i := 0; i < requests; i++ {
			expectBackend(t, "flaky", get(t, client, "http://flaky:9080/"), "flaky", "up")
		}
	})

	// The default policy does not retry 503 (retriable-status-codes with no
	// codes, since Istio 1.24): some requests get the 503 endpoint's answer.
	t.Run("default-no-503-retry", func(t *testing.T) {
		bad := startRecorder(t, "bad", http.StatusServiceUnavailable, 0)
		good := startRecorder(t, "good", http.StatusOK, 0)
		config := retryConfig(t, recorderBackends("flaky", map[string]*recorder{"bad": bad, "good": good}), "")
		client := hostClient(t, meshAddr(startVSMesh(t, config)))
		unavailable := 0
		for i := 0; i < requests; i++ {
			if get(t, client, "http://flaky:9080/").Status == http.StatusServiceUnavailable {
				unavailable++
			}
		}
		if unavailable == 0 || unavailable != bad.count() || bad.count()+good.count() != requests {
			t.Errorf("%d clients saw 503; bad endpoint hit %d times, good %d; want every 503 passed through without retry", unavailable, bad.count(), good.count())
		}
	})

	// attempts: 3, retryOn: 5xx: a 503 is retried on the other endpoint.
	t.Run("attempts-3-retryOn-5xx", func(t *testing.T) {
		bad := startRecorder(t, "bad", http.StatusServiceUnavailable, 0)
		good := startRecorder(t, "good", http.StatusOK, 0)
		config := retryConfig(t, recorderBackends("flaky", map[string]*recorder{"bad": bad, "good": good}),
			"    retries:\n      attempts: 3\n      retryOn: 5xx\n")
		client := hostClient(t, meshAddr(startVSMesh(t, config)))
		for i := 0; i < requests; i++ {
			a := get(t, client, "http://flaky:9080/")
			if a.Status != http.StatusOK || a.Header.Get("x-recorder") != "good" {
				t.Errorf("request %d: %d from %q, want 200 from good", i, a.Status, a.Header.Get("x-recorder"))
			}
		}
		if bad.count() == 0 {
			t.Errorf("the 503 endpoint was never tried in %d requests; the test proves nothing", requests)
		}
		if good.count() != requests {
			t.Errorf("good endpoint hit %d times, want %d (once per request)", good.count(), requests)
		}
	})

	// attempts: 0 disables retries, even of connect failures.
	t.Run("attempts-0", func(t *testing.T) {
		bad := startRecorder(t, "bad", http.StatusServiceUnavailable, 0)
		good := startRecorder(t, "good", http.StatusOK, 0)
		config := retryConfig(t, recorderBackends("flaky", map[string]*recorder{"bad": bad, "good": good}),
			"    retries:\n      attempts: 0\n")
		client := hostClient(t, meshAddr(startVSMesh(t, config)))
		unavailable := 0
		for i := 0; i < requests; i++ {
			if get(t, client, "http://flaky:9080/").Status == http.StatusServiceUnavailable {
				unavailable++
			}
		}
		if unavailable == 0 || unavailable != bad.count() || bad.count()+good.count() != requests {
			t.Errorf("%d clients saw 503; bad hit %d, good %d; want one attempt per request", unavailable, bad.count(), good.count())
		}
	})

	// attempts: 0 with one endpoint refusing connections: no retry, so the
	// requests that pick it fail with Envoy's 503 for a connect failure; and
	// the same 503 when every endpoint refuses, after the default retries
	// ("upstream connect error or disconnect/reset before headers. reset
	// reason: connection failure").
	t.Run("attempts-0-connect-failure", func(t *testing.T) {
		b := startBackends(t, "flaky/up")
		b["flaky/down"] = closedPort(t)
		client := hostClient(t, meshAddr(startVSMesh(t, retryConfig(t, b, "    retries:\n      attempts: 0\n"))))
		failed := 0
		for i := 0; i < requests; i++ {
			a := get(t, client, "http://flaky:9080/")
			switch {
			case a.Status == http.StatusServiceUnavailable && a.Reply == nil:
				failed++
			case a.Reply == nil || a.Reply.Version != "up":
				t.Errorf("request %d: %v, want 200 from flaky up or a 503 connect failure", i, a)
			}
		}
		if failed == 0 {
			t.Errorf("no request failed on the refusing endpoint in %d requests: were connect failures retried?", requests)
		}

		// Every endpoint refusing, with the default policy: 503 after the
		// retries.
		down := backends{"flaky/down1": closedPort(t), "flaky/down2": closedPort(t)}
		client = hostClient(t, meshAddr(startVSMesh(t, retryConfig(t, down, ""))))
		expectNoBackend(t, "every endpoint down", get(t, client, "http://flaky:9080/"), http.StatusServiceUnavailable)
	})

	// perTryTimeout: each attempt gets 0.2s; with a slow (1s) and a fast
	// endpoint, an attempt on the slow one is cut and retried on the fast
	// one, so every request succeeds.
	t.Run("perTryTimeout", func(t *testing.T) {
		slow := startRecorder(t, "slow", http.StatusOK, time.Second)
		fast := startRecorder(t, "fast", http.StatusOK, 0)
		config := retryConfig(t, recorderBackends("flaky", map[string]*recorder{"slow": slow, "fast": fast}),
			"    retries:\n      attempts: 2\n      perTryTimeout: 0.2s\n      retryOn: 5xx\n")
		client := hostClient(t, meshAddr(startVSMesh(t, config)))
		for i := 0; i < 10; i++ {
			a := get(t, client, "http://flaky:9080/")
			if a.Status != http.StatusOK || a.Header.Get("x-recorder") != "fast" {
				t.Errorf("request %d: %d from %q, want 200 from fast", i, a.Status, a.Header.Get("x-recorder"))
			}
		}
		if slow.count() == 0 {
			t.Error("the slow endpoint was never tried; the test proves nothing")
		}
	})

	// perTryTimeout when every attempt times out: an endpoint that takes 1s
	// is tried three times (attempts: 2, retryOn 5xx retries a per-try
	// timeout) and the client gets Envoy's 504 "upstream request timeout"
	// after about 3 x 0.2s. With retryOn connect-failure a per-try timeout
	// is not retried (Envoy retries it only for 5xx, gateway-error, reset):
	// one attempt, then 504.
	t.Run("perTryTimeout-exhausted", func(t *testing.T) {
		for _, tc := range []struct {
			retryOn  string
			attempts int
		}{{"5xx", 3}, {"connect-failure", 1}} {
			slow := startRecorder(t, "slow", http.StatusOK, time.Second)
			config := retryConfig(t, recorderBackends("flaky", map[string]*recorder{"slow": slow}),
				"    retries:\n      attempts: 2\n      perTryTimeout: 0.2s\n      retryOn: "+tc.retryOn+"\n")
			client := hostClient(t, meshAddr(startVSMesh(t, config)))
			start := time.Now()
			a := get(t, client, "http://flaky:9080/")
			elapsed := time.Since(start)
			expectNoBackend(t, "retryOn "+tc.retryOn, a, http.StatusGatewayTimeout)
			if a.Body != "upstream request timeout" {
				t.Errorf("retryOn %s: body %q, want \"upstream request timeout\"", tc.retryOn, a.Body)
			}
			if min := time.Duration(tc.attempts) * 190 * time.Millisecond; elapsed < min || elapsed > 2*time.Second {
				t.Errorf("retryOn %s: 504 after %v, want about %d x 0.2s", tc.retryOn, elapsed, tc.attempts)
			}
			if got := slow.waitForCount(tc.attempts+1, time.Second); got != tc.attempts {
				t.Errorf("retryOn %s: the endpoint saw %d attempts, want %d", tc.retryOn, got, tc.attempts)
			}
		}
	})

	// A POST body is sent again, whole, on the retry.
	t.Run("post-body-replayed", func(t *testing.T) {
		bad := startRecorder(t, "bad", http.StatusServiceUnavailable, 0)
		good := startRecorder(t, "good", http.StatusOK, 0)
		config := retryConfig(t, recorderBackends("flaky", map[string]*recorder{"bad": bad, "good": good}),
			"    retries:\n      attempts: 3\n      retryOn: 5xx\n")
		client := hostClient(t, meshAddr(startVSMesh(t, config)))
		body := strings.Repeat("retry me, whole. ", 4000) // 68 KB
		for i := 0; i < requests; i++ {
			req, err := http.NewRequest(http.MethodPost, "http://flaky:9080/post", bytes.NewReader([]byte(body)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "text/plain")
			if a := do(t, client, req); a.Status != http.StatusOK || a.Header.Get("x-recorder") != "good" {
				t.Errorf("POST %d: %d from %q, want 200 from good", i, a.Status, a.Header.Get("x-recorder"))
			}
		}
		if bad.count() == 0 {
			t.Errorf("the 503 endpoint was never tried in %d requests; the test proves nothing", requests)
		}
		for _, r := range append(bad.requests(), good.requests()...) {
			if r.Method != http.MethodPost || r.Body != body {
				t.Errorf("an attempt arrived as %s with %d body bytes, want POST with %d", r.Method, len(r.Body), len(body))
			}
		}
	})
}
