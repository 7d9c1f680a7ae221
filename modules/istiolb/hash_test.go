package istiolb

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// hashPolicy is a consistent-hash policy under test.
type hashPolicy interface {
	reverseproxy.Selector
	caddy.Provisioner
	caddy.Validator
	EndpointInfoSetter
}

// hashPolicies returns fresh, provisioned ring_hash and maglev policies
// with the hash key.
func hashPolicies(t testing.TB, key HashKey) map[string]hashPolicy {
	policies := map[string]hashPolicy{
		"ring_hash": &RingHashSelection{HashKey: key},
		"maglev":    &MaglevSelection{HashKey: key},
	}
	for _, p := range policies {
		provision(t, p)
	}
	return policies
}

func headerRequest(value string) *http.Request {
	r := httptest.NewRequest("GET", "http://example.com/", nil)
	if value != "" {
		r.Header.Set("X-User", value)
	}
	return r
}

// assign maps each of n keys to the dial it hashes to.
func assign(s reverseproxy.Selector, dials []string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s.Select(poolOf(dials), headerRequest(fmt.Sprintf("user-%d", i)), nil).Dial
	}
	return out
}

func TestHashKeySticky(t *testing.T) {
	dials := dialsOf(5)
	for _, tc := range []struct {
		name    string
		key     HashKey
		request func(i int) *http.Request
	}{
		{name: "header", key: HashKey{Header: "x-user"}, request: func(i int) *http.Request { return headerRequest(fmt.Sprint("user-", i)) }},
		{name: "host", key: HashKey{Header: "Host"}, request: func(i int) *http.Request {
			return httptest.NewRequest("GET", fmt.Sprintf("http://host-%d.example/", i), nil)
		}},
		{name: "query parameter", key: HashKey{QueryParameter: "q"}, request: func(i int) *http.Request {
			return httptest.NewRequest("GET", fmt.Sprintf("http://example.com/?a=b&q=v%d&q=other", i), nil)
		}},
		{name: "source ip", key: HashKey{SourceIP: true}, request: func(i int) *http.Request {
			r := httptest.NewRequest("GET", "http://example.com/", nil)
			// The port changes per connection; only the IP counts.
			r.RemoteAddr = fmt.Sprintf("127.0.0.%d:%d", i%250+1, 40000+i)
			return r
		}},
		{name: "cookie", key: HashKey{Cookie: &HashCookie{Name: "user"}}, request: func(i int) *http.Request {
			r := httptest.NewRequest("GET", "http://example.com/", nil)
			r.AddCookie(&http.Cookie{Name: "user", Value: fmt.Sprint("u", i)})
			return r
		}},
	} {
		for name, s := range hashPolicies(t, tc.key) {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				used := map[string]bool{}
				for i := range 50 {
					first := s.Select(poolOf(dials), tc.request(i), nil)
					used[first.Dial] = true
					for range 20 {
						if got := s.Select(poolOf(dials), tc.request(i), nil); got.Dial != first.Dial {
							t.Fatalf("key %d went to %s, then %s", i, first.Dial, got.Dial)
						}
					}
				}
				if len(used) < 3 {
					t.Errorf("50 keys used only %d of 5 hosts", len(used))
				}
			})
		}
	}
}

// Removing one of 10 hosts moves its keys and (almost) only them; adding an
// 11th moves about 1/11 of the keys.
//
// Ring hash moves some keys between remaining hosts too: like Envoy, it
// keeps the ring near minimum_ring_size entries, so with 9 hosts each gets
// ceil(1024/9) = 114 entries instead of 103, and the new entries take arcs
// of their neighbours (expected about 9% of the keys).
func TestHashMinimalDisruption(t *testing.T) {
	const keys = 10000
	dials := dialsOf(11)
	ten, removed := dials[:10], dials[3]
	nine := append(append([]string{}, dials[:3]...), dials[4:10]...)
	for _, tc := range []struct {
		policy            string
		maxOthersMovedOut float64 // share of keys not on the removed host that move
		maxMovedIn        float64 // share of keys that move when a host is added
	}{
		{policy: "ring_hash", maxOthersMovedOut: 0.12, maxMovedIn: 0.20},
		{policy: "maglev", maxOthersMovedOut: 0.03, maxMovedIn: 1./11 + 0.03},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			s := hashPolicies(t, HashKey{Header: "X-User"})[tc.policy]
			before := assign(s, ten, keys)
			after := assign(s, nine, keys)
			onRemoved, othersMoved := 0, 0
			for i := range before {
				switch {
				case before[i] == removed:
					onRemoved++
					if after[i] == removed {
						t.Fatalf("key %d still on the removed host", i)
					}
				case after[i] != before[i]:
					othersMoved++
				}
			}
			if share := float64(onRemoved) / keys; math.Abs(share-0.1) > 0.04 {
				t.Errorf("removed host had %.3f of the keys, want about 0.1", share)
			}
			moved := float64(othersMoved) / keys
			t.Logf("remove 1 of 10: %.4f of the keys on the other hosts moved", moved)
			if moved > tc.maxOthersMovedOut {
				t.Errorf("%.4f of the keys on the other hosts moved, want <= %.2f", moved, tc.maxOthersMovedOut)
			}

			grown := assign(s, dials, keys)
			movedIn := 0
			for i := range before {
				if grown[i] != before[i] {
					movedIn++
				}
			}
			share := float64(movedIn) / keys
			t.Logf("add an 11th host: %.4f of the keys moved", share)
			if share > tc.maxMovedIn {
				t.Errorf("adding a host moved %.4f of the keys, want <= %.3f", share, tc.maxMovedIn)
			}
		})
	}
}

// Ring hash keeps every key of the remaining hosts exactly in place when
// their number of entries does not change: here the maximum ring size caps
// both rings at 90 entries per host.
func TestRingHashRemovalExactAtFixedEntries(t *testing.T) {
	dials := dialsOf(10)
	nine := append(append([]string{}, dials[:3]...), dials[4:]...)
	w := make([]uint32, 10)
	for i := range w {
		w[i] = 1
	}
	full := buildRing(dials, w, 1024, 900)
	less := buildRing(nine, w[:9], 1024, 810)
	lookup := func(ring *hashRing, ds []string, h uint64) string {
		i := 0
		for i < len(ring.hashes) && ring.hashes[i] < h {
			i++
		}
		if i == len(ring.hashes) {
			i = 0
		}
		return ds[ring.hosts[i]]
	}
	for k := range 10000 {
		h := uint64(k) * 0x9E3779B97F4A7C15
		a, b := lookup(full, dials, h), lookup(less, nine, h)
		if a != dials[3] && a != b {
			t.Fatalf("hash %x moved from %s to %s", h, a, b)
		}
	}
}

// A host's share of keys follows its weight.
func TestHashWeights(t *testing.T) {
	dials := dialsOf(3)
	info := staticInfo{weights: map[string]uint32{dials[0]: 1, dials[1]: 1, dials[2]: 2}}
	policies := map[string]hashPolicy{
		"ring_hash": &RingHashSelection{HashKey: HashKey{Header: "X-User"}, MinimumRingSize: 1 << 16},
		"maglev":    &MaglevSelection{HashKey: HashKey{Header: "X-User"}},
	}
	for name, s := range policies {
		t.Run(name, func(t *testing.T) {
			provision(t, s)
			s.SetEndpointInfo(info)
			const keys = 20000
			picks := map[string]int{}
			for _, d := range assign(s, dials, keys) {
				picks[d]++
			}
			for i, want := range []float64{0.25, 0.25, 0.5} {
				if got := shares(picks, keys, dials[i]); math.Abs(got-want) > 0.03 {
					t.Errorf("%s got %.3f of the keys, want %.2f", dials[i], got, want)
				}
			}
		})
	}
}

func TestHashMissingKeyIsRandom(t *testing.T) {
	dials := dialsOf(3)
	for _, key := range []HashKey{{Header: "X-User"}, {Cookie: &HashCookie{Name: "user"}}, {QueryParameter: "q"}} {
		for name, s := range hashPolicies(t, key) {
			picks := map[string]int{}
			const n = 3000
			for range n {
				picks[s.Select(poolOf(dials), headerRequest(""), httptest.NewRecorder()).Dial]++
			}
			for _, d := range dials {
				if got := shares(picks, n, d); got < 0.25 || got > 0.42 {
					t.Errorf("%s %+v: %s got %.3f of keyless requests, want about 1/3", name, key, d, got)
				}
			}
		}
	}
}

// Keys of an unavailable host go to the next host on the ring or table,
// consistently; other keys stay.
func TestHashSkipsUnavailable(t *testing.T) {
	dials := dialsOf(5)
	for name, s := range hashPolicies(t, HashKey{Header: "X-User"}) {
		t.Run(name, func(t *testing.T) {
			before := assign(s, dials, 500)
			for i, was := range before {
				pool := poolOf(dials)
				makeUnavailable(t, pool[0])
				r := headerRequest(fmt.Sprintf("user-%d", i))
				got := s.Select(pool, r, nil)
				if got == pool[0] {
					t.Fatal("picked an unavailable upstream")
				}
				if was != dials[0] && got.Dial != was {
					t.Fatalf("key %d moved from available %s to %s", i, was, got.Dial)
				}
				if again := s.Select(pool, r, nil); again != got {
					t.Fatalf("key %d of the unavailable host went to %s, then %s", i, got.Dial, again.Dial)
				}
			}
			pool := poolOf(dials)
			for _, u := range pool {
				makeUnavailable(t, u)
			}
			if u := s.Select(pool, headerRequest("x"), nil); u != nil {
				t.Fatalf("no upstream available: got %v", u)
			}
			if u := s.Select(nil, headerRequest("x"), nil); u != nil {
				t.Fatalf("empty pool: got %v", u)
			}
		})
	}
}

func TestHashCookieGeneration(t *testing.T) {
	dials := dialsOf(5)
	ttl := func(d time.Duration) *caddy.Duration { c := caddy.Duration(d); return &c }
	for _, tc := range []struct {
		name       string
		cookie     HashCookie
		wantSuffix string // of the Set-Cookie after the value; empty: no cookie
	}{
		{name: "ttl and path", cookie: HashCookie{Name: "user", Path: "/", TTL: ttl(10 * time.Second)}, wantSuffix: `"; Max-Age=10; Path=/; HttpOnly`},
		{name: "session cookie", cookie: HashCookie{Name: "user", TTL: ttl(0)}, wantSuffix: `"; HttpOnly`},
		{name: "subsecond ttl", cookie: HashCookie{Name: "user", Path: "/a", TTL: ttl(1500 * time.Millisecond)}, wantSuffix: `"; Max-Age=1; Path=/a; HttpOnly`},
		{name: "attributes", cookie: HashCookie{Name: "user", TTL: ttl(time.Hour), Attributes: []CookieAttribute{{Name: "SameSite", Value: "Strict"}, {Name: "Secure"}}}, wantSuffix: `"; Max-Age=3600; SameSite=Strict; Secure; HttpOnly`},
		{name: "no ttl", cookie: HashCookie{Name: "user"}},
	} {
		for name, s := range hashPolicies(t, HashKey{Cookie: &tc.cookie}) {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				for client := range 20 {
					r := httptest.NewRequest("GET", "http://example.com/", nil)
					r.RemoteAddr = fmt.Sprintf("127.0.0.1:%d", 30000+client)
					r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey,
						&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}))
					w := httptest.NewRecorder()
					first := s.Select(poolOf(dials), r, w)
					setCookies := w.Header().Values("Set-Cookie")
					if tc.wantSuffix == "" {
						if len(setCookies) != 0 {
							t.Fatalf("Set-Cookie %q, want none", setCookies)
						}
						return
					}
					// A retry must not add a second cookie.
					s.Select(poolOf(dials), r, w)
					if setCookies = w.Header().Values("Set-Cookie"); len(setCookies) != 1 {
						t.Fatalf("Set-Cookie %q, want one", setCookies)
					}
					value, ok := strings.CutPrefix(setCookies[0], `user="`)
					if !ok || !strings.HasSuffix(value, tc.wantSuffix) {
						t.Fatalf("Set-Cookie %q, want user=\"<value>%s", setCookies[0], tc.wantSuffix)
					}
					value = strings.TrimSuffix(value, tc.wantSuffix)
					next := httptest.NewRequest("GET", "http://example.com/", nil)
					// Browsers send the value back as set, quoted.
					next.Header.Set("Cookie", `user="`+value+`"`)
					w = httptest.NewRecorder()
					for range 5 {
						if got := s.Select(poolOf(dials), next, w); got.Dial != first.Dial {
							t.Fatalf("request with cookie %s went to %s, first to %s", value, got.Dial, first.Dial)
						}
					}
					if len(w.Header().Values("Set-Cookie")) != 0 {
						t.Fatal("cookie set again on a request that has it")
					}
				}
			})
		}
	}
}

// The table is built once per endpoint set, not per request, though every
// request brings fresh Upstream values.
func TestHashTableCached(t *testing.T) {
	dials := dialsOf(4)
	ring := &RingHashSelection{HashKey: HashKey{Header: "X-User"}}
	maglev := &MaglevSelection{HashKey: HashKey{Header: "X-User"}}
	provision(t, ring)
	provision(t, maglev)
	info := staticInfo{weights: map[string]uint32{}}
	ring.SetEndpointInfo(info)
	maglev.SetEndpointInfo(info)
	current := func() (any, any) { return ring.ring.Load(), maglev.table.Load() }

	ring.Select(poolOf(dials), headerRequest("a"), nil)
	maglev.Select(poolOf(dials), headerRequest("a"), nil)
	r1, m1 := current()
	for i := range 10 {
		ring.Select(poolOf(dials), headerRequest(fmt.Sprint(i)), nil)
		maglev.Select(poolOf(dials), headerRequest(fmt.Sprint(i)), nil)
	}
	if r2, m2 := current(); r2 != r1 || m2 != m1 {
		t.Fatal("table rebuilt for the same endpoints")
	}
	ring.Select(poolOf(dials[:3]), headerRequest("a"), nil)
	maglev.Select(poolOf(dials[:3]), headerRequest("a"), nil)
	r3, m3 := current()
	if r3 == r1 || m3 == m1 {
		t.Fatal("table not rebuilt when an endpoint left")
	}
	info.weights[dials[0]] = 7
	ring.Select(poolOf(dials[:3]), headerRequest("a"), nil)
	maglev.Select(poolOf(dials[:3]), headerRequest("a"), nil)
	if r4, m4 := current(); r4 == r3 || m4 == m3 {
		t.Fatal("table not rebuilt when a weight changed")
	}
}

func TestHashValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    interface {
			caddy.Provisioner
			caddy.Validator
		}
		wantErr string
	}{
		{name: "ring ok", p: &RingHashSelection{HashKey: HashKey{SourceIP: true}}},
		{name: "ring no key", p: &RingHashSelection{}, wantErr: "exactly one hash key"},
		{name: "ring two keys", p: &RingHashSelection{HashKey: HashKey{Header: "a", QueryParameter: "q"}}, wantErr: "exactly one hash key"},
		{name: "ring too big", p: &RingHashSelection{HashKey: HashKey{Header: "a"}, MinimumRingSize: 8388609}, wantErr: "minimum_ring_size"},
		{name: "cookie without name", p: &RingHashSelection{HashKey: HashKey{Cookie: &HashCookie{}}}, wantErr: "name is required"},
		{name: "maglev ok", p: &MaglevSelection{HashKey: HashKey{Header: "a"}, TableSize: 251}},
		{name: "maglev not prime", p: &MaglevSelection{HashKey: HashKey{Header: "a"}, TableSize: 65536}, wantErr: "not a prime"},
		{name: "maglev too big", p: &MaglevSelection{HashKey: HashKey{Header: "a"}, TableSize: 5000011}, wantErr: "below 5000011"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.Provision(caddy.Context{}); err != nil {
				t.Fatal(err)
			}
			err := tc.p.Validate()
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// Maglev fills every entry, and an equal-weight table gives each host an
// equal share of entries (within one).
func TestMaglevTableBalanced(t *testing.T) {
	dials := dialsOf(7)
	w := []uint32{1, 1, 1, 1, 1, 1, 1}
	table := buildMaglev(dials, w, 65537)
	counts := make([]int, len(dials))
	for _, h := range table.hosts {
		counts[h]++
	}
	for i, c := range counts {
		if c < 65537/7 || c > 65537/7+1 {
			t.Errorf("host %d has %d entries, want %d or %d", i, c, 65537/7, 65537/7+1)
		}
	}
	// The pool order does not matter.
	reversed := []string{dials[6], dials[5], dials[4], dials[3], dials[2], dials[1], dials[0]}
	other := buildMaglev(reversed, w, 65537)
	for i := range table.hosts {
		if dials[table.hosts[i]] != reversed[other.hosts[i]] {
			t.Fatalf("entry %d differs with the pool reversed", i)
		}
	}
}

func BenchmarkHashSelect(b *testing.B) {
	dials := dialsOf(20)
	for _, tc := range []struct {
		name string
		key  HashKey
		req  *http.Request
	}{
		{name: "header", key: HashKey{Header: "X-User"}, req: headerRequest("user-42")},
		{name: "query", key: HashKey{QueryParameter: "q"}, req: httptest.NewRequest("GET", "http://example.com/?a=1&q=abc", nil)},
		{name: "source_ip", key: HashKey{SourceIP: true}, req: httptest.NewRequest("GET", "http://example.com/", nil)},
	} {
		for name, s := range hashPolicies(b, tc.key) {
			pool := poolOf(dials)
			b.Run(tc.name+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					s.Select(pool, tc.req, nil)
				}
			})
		}
	}
}

// The request path does not allocate in the steady state.
func TestHashSelectDoesNotAllocate(t *testing.T) {
	dials := dialsOf(20)
	pool := poolOf(dials)
	for _, tc := range []struct {
		key HashKey
		req *http.Request
	}{
		{key: HashKey{Header: "X-User"}, req: headerRequest("user-42")},
		{key: HashKey{Header: "host"}, req: headerRequest("user-42")},
		{key: HashKey{QueryParameter: "q"}, req: httptest.NewRequest("GET", "http://example.com/?a=1&q=abc", nil)},
		{key: HashKey{SourceIP: true}, req: httptest.NewRequest("GET", "http://example.com/", nil)},
	} {
		for name, s := range hashPolicies(t, tc.key) {
			s.SetEndpointInfo(staticInfo{})
			s.Select(pool, tc.req, nil)
			if allocs := testing.AllocsPerRun(100, func() { s.Select(pool, tc.req, nil) }); allocs != 0 {
				t.Errorf("%s %+v: %v allocations per request", name, tc.key, allocs)
			}
		}
	}
}

// As in Envoy, a repeated header hashes its values regardless of their
// order, and an empty cookie counts as missing.
func TestHashKeyEdgeCases(t *testing.T) {
	dials := dialsOf(10)
	for name, s := range hashPolicies(t, HashKey{Header: "X-User"}) {
		for i := range 50 {
			a, b := headerRequest(""), headerRequest("")
			a.Header["X-User"] = []string{fmt.Sprint("x", i), fmt.Sprint("y", i)}
			b.Header["X-User"] = []string{fmt.Sprint("y", i), fmt.Sprint("x", i)}
			if ua, ub := s.Select(poolOf(dials), a, nil), s.Select(poolOf(dials), b, nil); ua.Dial != ub.Dial {
				t.Fatalf("%s: header values in another order went to %s, not %s", name, ub.Dial, ua.Dial)
			}
		}
	}
	ttl := caddy.Duration(0)
	for name, s := range hashPolicies(t, HashKey{Cookie: &HashCookie{Name: "user", TTL: &ttl}}) {
		r := headerRequest("")
		r.Header.Set("Cookie", "user=")
		w := httptest.NewRecorder()
		s.Select(poolOf(dials), r, w)
		if len(w.Header().Values("Set-Cookie")) != 1 {
			t.Errorf("%s: an empty cookie did not make a new one", name)
		}
	}
}
