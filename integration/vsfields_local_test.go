package integration

import (
	"net/http"
	"strings"
	"testing"
)

// Envoy's local replies where the proxy answers by itself: a fault abort,
// a service without endpoints ("no healthy upstream"), a retry policy
// whose attempts all fail (the last upstream response passes through,
// body included), and retryOn given as status codes or retriable-4xx.
func TestVSFieldLocalRepliesAndRetryOnCodes(t *testing.T) {
	requireBinaries(t)
	busy := startRecorder(t, "busy", http.StatusServiceUnavailable, 0)
	busy2 := startRecorder(t, "busy2", http.StatusServiceUnavailable, 0)
	conflict := startRecorder(t, "conflict", http.StatusConflict, 0)
	ok := startRecorder(t, "ok", http.StatusOK, 0)
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
spec:
  hosts:
  - web
  http:
  - match:
    - uri:
        prefix: /abort
    fault:
      abort:
        httpStatus: 500
        percentage:
          value: 100
    route:
    - destination:
        host: web
        subset: ok
  - match:
    - uri:
        prefix: /empty
    route:
    - destination:
        host: web
        subset: nobody
  - match:
    - uri:
        prefix: /all-busy
    retries:
      attempts: 2
      retryOn: 5xx
    route:
    - destination:
        host: web
        subset: busy
  - match:
    - uri:
        prefix: /code
    retries:
      attempts: 3
      retryOn: "503"
    route:
    - destination:
        host: web
        subset: busy-or-ok
  - match:
    - uri:
        prefix: /4xx
    retries:
      attempts: 3
      retryOn: retriable-4xx
    route:
    - destination:
        host: web
        subset: conflict-or-ok
`
	b := recorderBackends("web", map[string]*recorder{"busy": busy, "busy2": busy2, "conflict": conflict, "ok": ok})
	rule := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: web
spec:
  host: web
  subsets:
  - name: ok
    labels:
      version: ok
  - name: nobody
    labels:
      version: nobody
  - name: busy
    labels:
      group: busy
  - name: busy-or-ok
    labels:
      pair: busy-ok
  - name: conflict-or-ok
    labels:
      pair2: conflict-ok
`
	entries := workloadEntries(t, b)
	// Extra labels group the recorders into the subsets above.
	entries = strings.Replace(entries, "    version: busy\n", "    version: busy\n    group: busy\n    pair: busy-ok\n", 1)
	entries = strings.Replace(entries, "    version: busy2\n", "    version: busy2\n    group: busy\n", 1)
	entries = strings.Replace(entries, "    version: ok\n", "    version: ok\n    pair: busy-ok\n    pair2: conflict-ok\n", 1)
	entries = strings.Replace(entries, "    version: conflict\n", "    version: conflict\n    pair2: conflict-ok\n", 1)
	config := joinDocs(kubeService("web", vsPort), rule, vs, entries)
	client := hostClient(t, meshAddr(startVSMesh(t, config)))

	a := get(t, client, "http://web:9080/abort")
	if a.Status != http.StatusInternalServerError || a.Header.Get("x-recorder") != "" || a.Body != "fault filter abort" {
		t.Errorf("abort: %d %q from %q, want 500 \"fault filter abort\" from the proxy", a.Status, a.Body, a.Header.Get("x-recorder"))
	}
	a = get(t, client, "http://web:9080/empty")
	expectNoBackend(t, "subset without endpoints", a, http.StatusServiceUnavailable)
	t.Run("no-healthy-upstream-body", func(t *testing.T) {
		if a.Body != "no healthy upstream" {
			t.Errorf("subset without endpoints: body %q, want \"no healthy upstream\"", a.Body)
		}
	})

	for i := 0; i < 5; i++ {
		a := get(t, client, "http://web:9080/all-busy")
		if a.Status != http.StatusServiceUnavailable || !strings.HasPrefix(a.Header.Get("x-recorder"), "busy") || !strings.HasPrefix(a.Body, "busy") {
			t.Errorf("all busy: %d %q from %q, want the last upstream 503 with its body", a.Status, a.Body, a.Header.Get("x-recorder"))
		}
	}
	if got := busy.count() + busy2.count(); got != 15 {
		t.Errorf("all busy: %d attempts for 5 requests, want 15 (attempts: 2 retries each)", got)
	}

	busyBefore := busy.count()
	for _, path := range []string{"/code", "/4xx"} {
		for i := 0; i < 10; i++ {
			a := get(t, client, "http://web:9080"+path)
			if a.Status != http.StatusOK || a.Header.Get("x-recorder") != "ok" {
				t.Errorf("%s request %d: %d from %q, want 200 from ok", path, i, a.Status, a.Header.Get("x-recorder"))
			}
		}
	}
	if busy.count() == busyBefore || conflict.count() == 0 {
		t.Errorf("retryOn codes: busy hit %d times, conflict %d; both should have been tried", busy.count()-busyBefore, conflict.count())
	}
}
