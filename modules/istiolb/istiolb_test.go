package istiolb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/standard"
)

func provisioned(t *testing.T) *LeastRequestSelection {
	t.Helper()
	s := new(LeastRequestSelection)
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func idlePool(n int) reverseproxy.UpstreamPool {
	pool := make(reverseproxy.UpstreamPool, n)
	for i := range pool {
		pool[i] = &reverseproxy.Upstream{Host: new(reverseproxy.Host), Dial: fmt.Sprintf("127.0.0.1:%d", 10000+i)}
	}
	return pool
}

// With idle upstreams every one gets its share: the bug this policy exists
// to avoid (Caddy's random_choose always picks the same idle upstream).
func TestIdleUpstreamsShareEvenly(t *testing.T) {
	s := provisioned(t)
	for _, n := range []int{2, 3, 5} {
		pool := idlePool(n)
		counts := map[*reverseproxy.Upstream]int{}
		const picks = 30000
		for range picks {
			counts[s.Select(pool, nil, nil)]++
		}
		for _, u := range pool {
			share := float64(counts[u]) / picks
			if want := 1 / float64(n); share < want-0.02 || share > want+0.02 {
				t.Errorf("n=%d: %s got %.3f of picks, want %.3f±0.02", n, u.Dial, share, want)
			}
		}
	}
}

func TestNoAvailableUpstream(t *testing.T) {
	s := provisioned(t)
	if u := s.Select(nil, nil, nil); u != nil {
		t.Fatalf("empty pool: got %v", u)
	}
}

func TestValidateAndCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int
		wantErr bool
	}{
		{in: "lb_policy least_request", want: 2},
		{in: "lb_policy least_request 3", want: 3},
		{in: "lb_policy least_request x", wantErr: true},
		{in: "lb_policy least_request 2 3", wantErr: true},
	} {
		s := new(LeastRequestSelection)
		d := caddyfile.NewTestDispenser(tc.in)
		d.Next() // lb_policy
		err := s.UnmarshalCaddyfile(d)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: want an error", tc.in)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if err := s.Provision(caddy.Context{}); err != nil {
			t.Fatal(err)
		}
		if s.ChoiceCount != tc.want {
			t.Errorf("%q: choice_count %d, want %d", tc.in, s.ChoiceCount, tc.want)
		}
	}
	if err := (&LeastRequestSelection{ChoiceCount: 1}).Validate(); err == nil {
		t.Error("choice_count 1: want an error")
	}
}

// Through a real reverse_proxy: requests held open spread over both backends
// nearly evenly, because each new request compares active requests.
func TestHeldRequestsBalanceByActiveRequests(t *testing.T) {
	release := make(chan struct{})
	var slowHits, fastHits int64
	var mu sync.Mutex
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		slowHits++
		mu.Unlock()
		if r.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(w, "slow")
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fastHits++
		mu.Unlock()
		if r.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(w, "fast")
	}))
	defer fast.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`{"admin":{"disabled":true,"config":{"persist":false}},"apps":{"http":{"servers":{"s":{"listen":[%q],
		"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":%q},{"dial":%q}],
		"load_balancing":{"selection_policy":{"policy":"least_request"}}}]}]}}}}}`,
		addr, slow.Listener.Addr().String(), fast.Listener.Addr().String())
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	defer caddy.Stop()

	// Hold 20 requests open; P2C spreads them, then the busier side stays busy.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var held sync.WaitGroup
	for range 20 {
		held.Add(1)
		go func() {
			defer held.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/hold", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := slowHits + fastHits
		mu.Unlock()
		if n == 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	heldSlow, heldFast := slowHits, fastHits
	mu.Unlock()
	// Pure random choice would give 10±2.2 (one sigma); P2C keeps the sides
	// within a few requests of each other.
	if heldSlow < 7 || heldFast < 7 {
		t.Fatalf("20 held requests split %d/%d, want both >= 7", heldSlow, heldFast)
	}
	close(release)
	held.Wait()
}
