package istioroute

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

func readAllString(t *testing.T, r io.Reader) (string, error) {
	t.Helper()
	b, err := io.ReadAll(r)
	return string(b), err
}

func TestReplayBody(t *testing.T) {
	t.Run("each attempt reads the whole body", func(t *testing.T) {
		rb := newReplayBody(strings.NewReader("hello world"), -1, 100)
		first, _ := rb.nextAttempt()
		buf := make([]byte, 5)
		if n, err := first.Read(buf); n != 5 || err != nil {
			t.Fatalf("first read %d %v", n, err)
		}
		second, ok := rb.nextAttempt()
		if !ok {
			t.Fatal("second attempt refused")
		}
		if _, err := first.Read(buf); !errors.Is(err, errAttemptOver) {
			t.Errorf("the first attempt's reader still works: %v", err)
		}
		if got, err := readAllString(t, second); got != "hello world" || err != nil {
			t.Errorf("second attempt read %q, %v", got, err)
		}
		third, _ := rb.nextAttempt()
		if got, _ := readAllString(t, third); got != "hello world" {
			t.Errorf("third attempt read %q", got)
		}
	})

	t.Run("a body beyond the limit streams once", func(t *testing.T) {
		rb := newReplayBody(strings.NewReader(strings.Repeat("x", 50)), -1, 10)
		first, _ := rb.nextAttempt()
		if got, _ := readAllString(t, first); len(got) != 50 {
			t.Errorf("first attempt read %d bytes, want 50", len(got))
		}
		if rb.replayable() {
			t.Error("replayable after overflow")
		}
		if _, ok := rb.nextAttempt(); ok {
			t.Error("second attempt allowed after overflow")
		}
		if _, err := readAllString(t, rb.mirrorReader()); !errors.Is(err, errBodyNotReplayed) {
			t.Errorf("mirror of an overflowed body: %v", err)
		}
	})

	t.Run("a declared length beyond the limit is never kept", func(t *testing.T) {
		rb := newReplayBody(strings.NewReader("abcdef"), 6, 5)
		if rb.replayable() {
			t.Error("replayable")
		}
		first, _ := rb.nextAttempt()
		if got, _ := readAllString(t, first); got != "abcdef" {
			t.Errorf("read %q", got)
		}
	})

	t.Run("a mirror follows the attempt", func(t *testing.T) {
		pr, pw := io.Pipe()
		rb := newReplayBody(pr, -1, 100)
		mirrored := make(chan string, 1)
		go func() {
			got, _ := readAllString(t, rb.mirrorReader())
			mirrored <- got
		}()
		first, _ := rb.nextAttempt()
		go func() {
			_, _ = io.WriteString(pw, "part one, ")
			_, _ = io.WriteString(pw, "part two")
			pw.Close()
		}()
		if got, _ := readAllString(t, first); got != "part one, part two" {
			t.Errorf("attempt read %q", got)
		}
		select {
		case got := <-mirrored:
			if got != "part one, part two" {
				t.Errorf("mirror read %q", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("mirror still waiting")
		}
	})

	t.Run("a mirror gives up when the exchange ends unread", func(t *testing.T) {
		rb := newReplayBody(strings.NewReader("never read"), -1, 100)
		done := make(chan error, 1)
		go func() {
			_, err := readAllString(t, rb.mirrorReader())
			done <- err
		}()
		rb.close()
		select {
		case err := <-done:
			if !errors.Is(err, errBodyNotReplayed) {
				t.Errorf("error %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("mirror still waiting")
		}
	})
}

// TestStreamingRequestBodyWithRetries checks that a route with retries
// sends the request body upstream as it comes, and replays a body of
// unknown length.
func TestStreamingRequestBodyWithRetries(t *testing.T) {
	gotFirst := make(chan struct{})
	var calls atomic.Int32
	streaming := funcBackend(t, "streaming", func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.URL.Path == "/flaky" && n == 1 {
			_, _ = io.ReadAll(r.Body)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		buf := make([]byte, 6)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/stream" {
			close(gotFirst)
		}
		rest, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, string(buf)+string(rest))
	})
	app := new(istioapp.App)
	c := addService(app, "stream.test", streaming.endpoint(nil))
	h := provisionHandler(t, newContext(t, app), single("stream.test", &Route{
		Route:   []*Destination{{Cluster: c}},
		Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}},
	}))
	srv := front(t, h)

	t.Run("streams", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			_, _ = io.WriteString(pw, "first ")
			select {
			case <-gotFirst: // the upstream has the first part before the rest is sent
				_, _ = io.WriteString(pw, "second")
				pw.Close()
			case <-time.After(5 * time.Second):
				pw.CloseWithError(errors.New("the upstream did not get the first part while the body was open"))
			}
		}()
		req, _ := http.NewRequest("POST", srv.URL+"/stream", pr)
		req.Host = "stream.test"
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "first second" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("unknown length replayed", func(t *testing.T) {
		calls.Store(0)
		req, _ := http.NewRequest("POST", srv.URL+"/flaky", io.MultiReader(strings.NewReader("chunked "), strings.NewReader("body")))
		req.Host = "stream.test"
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "chunked body" || calls.Load() != 2 {
			t.Errorf("got %d %q after %d calls", resp.StatusCode, body, calls.Load())
		}
	})
}
