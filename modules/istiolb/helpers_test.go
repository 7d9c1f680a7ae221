package istiolb

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// staticInfo is an EndpointInfo from maps; missing entries weigh 1 and have
// no age.
type staticInfo struct {
	weights map[string]uint32
	added   map[string]time.Time
}

func (i staticInfo) EndpointWeight(dial string) uint32 {
	if w, ok := i.weights[dial]; ok {
		return w
	}
	return 1
}

func (i staticInfo) EndpointAddedAt(dial string) time.Time { return i.added[dial] }

// dialsOf returns n loopback dial addresses.
func dialsOf(n int) []string {
	dials := make([]string, n)
	for i := range dials {
		dials[i] = fmt.Sprintf("127.0.0.1:%d", 10000+i)
	}
	return dials
}

// poolOf returns fresh upstreams for dials, as Caddy's dynamic upstreams
// give a selection policy per request.
func poolOf(dials []string) reverseproxy.UpstreamPool {
	pool := make(reverseproxy.UpstreamPool, len(dials))
	for i, d := range dials {
		pool[i] = &reverseproxy.Upstream{Host: new(reverseproxy.Host), Dial: d}
	}
	return pool
}

// setActiveRequests sets the active request count of a Host, which only the
// reverseproxy package can change: Host's first field is that atomic
// counter. The check catches a Host layout change.
func setActiveRequests(t testing.TB, h *reverseproxy.Host, n int) {
	t.Helper()
	(*atomic.Int64)(unsafe.Pointer(h)).Store(int64(n))
	if h.NumRequests() != n {
		t.Fatalf("cannot set the active requests of a reverseproxy.Host: its layout changed")
	}
}

// makeUnavailable makes u full, hence unavailable.
func makeUnavailable(t testing.TB, u *reverseproxy.Upstream) {
	t.Helper()
	u.MaxRequests = 1
	setActiveRequests(t, u.Host, 1)
	if u.Available() {
		t.Fatal("upstream still available")
	}
}

// provision provisions and validates a policy.
func provision(t testing.TB, m interface {
	caddy.Provisioner
	caddy.Validator
}) {
	t.Helper()
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
}

// shares counts picks per dial.
func shares(picks map[string]int, total int, dial string) float64 {
	return float64(picks[dial]) / float64(total)
}
