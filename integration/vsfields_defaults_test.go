package integration

import (
	"net/http"
	"testing"
)

// Istio's defaults and quirks of HTTPRoute fields: a fault abort or delay
// without percentage (and, for the delay, without the deprecated percent)
// injects nothing (0%); attempts without retryOn retry only Istio's
// default conditions, not 503; a destination of weight 0 gets no traffic;
// route response header operations apply to redirects.
func TestVSFieldDefaults(t *testing.T) {
	requireBinaries(t)
	busy := startRecorder(t, "busy", http.StatusServiceUnavailable, 0)
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
        prefix: /abort-no-percentage
    fault:
      abort:
        httpStatus: 500
    route:
    - destination:
        host: web
        subset: ok
  - match:
    - uri:
        prefix: /delay-no-percentage
    fault:
      delay:
        fixedDelay: 3s
    route:
    - destination:
        host: web
        subset: ok
  - match:
    - uri:
        prefix: /attempts-only
    retries:
      attempts: 3
    route:
    - destination:
        host: web
  - match:
    - uri:
        prefix: /weights
    route:
    - destination:
        host: web
        subset: ok
      weight: 100
    - destination:
        host: web
        subset: busy
      weight: 0
  - match:
    - uri:
        prefix: /redirect
    redirect:
      uri: /elsewhere
    headers:
      response:
        set:
          x-redirected: "yes"
`
	b := recorderBackends("web", map[string]*recorder{"busy": busy, "ok": ok})
	config := joinDocs(kubeService("web", vsPort), subsetsRule("web", "busy", "ok"), vs, workloadEntries(t, b))
	client := hostClient(t, meshAddr(startVSMesh(t, config)))

	for i := 0; i < 20; i++ {
		for _, path := range []string{"/abort-no-percentage", "/delay-no-percentage", "/weights"} {
			a := get(t, client, "http://web:9080"+path)
			if a.Status != http.StatusOK || a.Header.Get("x-recorder") != "ok" {
				t.Errorf("%s request %d: %d from %q, want 200 from ok", path, i, a.Status, a.Header.Get("x-recorder"))
			}
		}
	}
	if busy.count() != 0 {
		t.Errorf("the weight-0 destination got %d requests", busy.count())
	}

	unavailable := 0
	for i := 0; i < 20; i++ {
		if get(t, client, "http://web:9080/attempts-only").Status == http.StatusServiceUnavailable {
			unavailable++
		}
	}
	if unavailable == 0 || unavailable != busy.count() {
		t.Errorf("attempts without retryOn: %d clients saw 503, busy hit %d times; want every 503 passed through (503 is not a default condition)", unavailable, busy.count())
	}

	a := get(t, client, "http://web:9080/redirect")
	expectNoBackend(t, "redirect", a, http.StatusMovedPermanently)
	if a.Header.Get("x-redirected") != "yes" || a.Header.Get("Location") != "http://web:9080/elsewhere" {
		t.Errorf("redirect: x-redirected %q, Location %q", a.Header.Get("x-redirected"), a.Header.Get("Location"))
	}
}
