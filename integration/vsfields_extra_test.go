package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// rewrite.uri replaces the whole path under an exact or regex match (Envoy
// prefix_rewrite of the whole matched path); header matches by prefix and
// regex; a fault delay runs before the router, so it does not count
// against the route timeout; delay and abort together delay, then abort.
func TestVSFieldRewriteWholePathHeaderMatchFaultOrder(t *testing.T) {
	requireBinaries(t)
	b := startBackends(t, "web/v1", "web/v2")
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
        exact: /exact
    rewrite:
      uri: /replaced
    route:
    - destination:
        host: web
        subset: v1
  - match:
    - uri:
        regex: /items/[0-9]+
    rewrite:
      uri: /item
    route:
    - destination:
        host: web
        subset: v1
  - match:
    - uri:
        prefix: /hm
      headers:
        x-tier:
          prefix: gold
        x-id:
          regex: "[a-f0-9]{4}"
    route:
    - destination:
        host: web
        subset: v2
  - match:
    - uri:
        prefix: /delayed-timeout
    fault:
      delay:
        fixedDelay: 1s
        percentage:
          value: 100
    timeout: 0.5s
    route:
    - destination:
        host: web
        subset: v1
  - match:
    - uri:
        prefix: /delay-abort
    fault:
      delay:
        fixedDelay: 300ms
        percentage:
          value: 100
      abort:
        httpStatus: 429
        percentage:
          value: 100
    route:
    - destination:
        host: web
        subset: v1
  - route:
    - destination:
        host: web
        subset: v1
`
	client := hostClient(t, meshAddr(startVSMesh(t, joinDocs(webService(t, b), vs))))

	for _, tc := range []struct{ url, path, query string }{
		{"http://web:9080/exact?k=v", "/replaced", "k=v"},
		{"http://web:9080/items/42", "/item", ""},
		{"http://web:9080/exact/more", "/exact/more", ""},
	} {
		a := get(t, client, tc.url)
		expectBackend(t, tc.url, a, "web", "v1")
		if a.Reply != nil && (a.Reply.Path != tc.path || a.Reply.Query != tc.query) {
			t.Errorf("%s: backend saw %q %q, want %q %q", tc.url, a.Reply.Path, a.Reply.Query, tc.path, tc.query)
		}
	}

	for _, tc := range []struct {
		headers []string
		want    string
	}{
		{[]string{"x-tier", "gold", "x-id", "beef"}, "v2"},
		{[]string{"x-tier", "golden", "x-id", "0a1b"}, "v2"},
		{[]string{"x-tier", "Gold", "x-id", "beef"}, "v1"},   // prefix is case-sensitive
		{[]string{"x-tier", "gold", "x-id", "beef0"}, "v1"},  // regex is a full match
		{[]string{"x-tier", "gold"}, "v1"},                   // every header must match
		{[]string{"x-tier", "silver", "x-id", "beef"}, "v1"}, // prefix
	} {
		expectBackend(t, fmt.Sprintf("/hm %q", tc.headers), get(t, client, "http://web:9080/hm", tc.headers...), "web", tc.want)
	}

	start := time.Now()
	a := get(t, client, "http://web:9080/delayed-timeout")
	elapsed := time.Since(start)
	expectBackend(t, "1s delay with a 0.5s timeout", a, "web", "v1")
	if elapsed < 950*time.Millisecond {
		t.Errorf("1s delay with a 0.5s timeout answered after %v, want the whole delay first", elapsed)
	}

	start = time.Now()
	a = get(t, client, "http://web:9080/delay-abort")
	elapsed = time.Since(start)
	expectNoBackend(t, "delay and abort", a, http.StatusTooManyRequests)
	if elapsed < 290*time.Millisecond {
		t.Errorf("delay and abort answered after %v, want the 300ms delay before the abort", elapsed)
	}
}
