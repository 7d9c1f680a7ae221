package istiolb

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/cespare/xxhash/v2"
)

func init() {
	caddy.RegisterModule(new(RingHashSelection))
}

// Envoy's bounds of the ring size.
const (
	defaultMinimumRingSize = 1024
	maximumRingSize        = 8 * 1024 * 1024
)

// RingHashSelection is Envoy's RING_HASH load balancer (Istio's
// consistentHash with ringHash, the default consistent-hash algorithm). Each
// endpoint is hashed onto a ring (xxHash64 of "<dial>_<i>") a number of times
// proportional to its weight; a request's key hash picks the first ring entry
// at or after it. An unavailable endpoint's entries are skipped, so its
// requests go to the next endpoints on the ring.
//
// As in Envoy, the ring holds about minimum_ring_size entries whatever the
// number of endpoints, so an endpoint's share of entries, and hence a few
// keys of the other endpoints, change when endpoints come and go.
type RingHashSelection struct {
	HashKey

	// MinimumRingSize is the least number of ring entries (Istio's
	// minimumRingSize). Default: 1024; at most 8388608.
	MinimumRingSize uint64 `json:"minimum_ring_size,omitempty"`

	info EndpointInfo
	ring atomic.Pointer[hashRing]
}

// hashRing is the ring built for one pool.
type hashRing struct {
	dials   []string
	weights []uint32
	hashes  []uint64 // sorted
	hosts   []uint32 // pool index of each entry of hashes
}

// CaddyModule returns the Caddy module information.
func (*RingHashSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.ring_hash",
		New: func() caddy.Module { return new(RingHashSelection) },
	}
}

// Provision sets the defaults.
func (s *RingHashSelection) Provision(caddy.Context) error {
	if s.MinimumRingSize == 0 {
		s.MinimumRingSize = defaultMinimumRingSize
	}
	s.HashKey.provision()
	return nil
}

// Validate checks the configuration.
func (s *RingHashSelection) Validate() error {
	if s.MinimumRingSize > maximumRingSize {
		return fmt.Errorf("minimum_ring_size %d exceeds %d", s.MinimumRingSize, maximumRingSize)
	}
	return s.HashKey.validate()
}

// SetEndpointInfo gives the policy the endpoint weights.
func (s *RingHashSelection) SetEndpointInfo(info EndpointInfo) { s.info = info }

// Select returns the available upstream the request's key hashes to, or nil
// if there is none.
func (s *RingHashSelection) Select(pool reverseproxy.UpstreamPool, r *http.Request, w http.ResponseWriter) *reverseproxy.Upstream {
	if !anyAvailable(pool) {
		return nil
	}
	ring := s.ringFor(pool)
	n := len(ring.hashes)
	i, _ := slices.BinarySearch(ring.hashes, s.requestHash(r, w))
	for range n {
		if i == n {
			i = 0
		}
		if u := pool[ring.hosts[i]]; u.Available() {
			return u
		}
		i++
	}
	return nil
}

// ringFor returns the ring of pool, building it only when the pool's
// endpoints or weights changed since the last build.
func (s *RingHashSelection) ringFor(pool reverseproxy.UpstreamPool) *hashRing {
	if ring := s.ring.Load(); ring != nil && samePool(pool, s.info, ring.dials, ring.weights) {
		return ring
	}
	dials, weights := poolSnapshot(pool, s.info)
	ring := buildRing(dials, weights, s.MinimumRingSize, maximumRingSize)
	s.ring.Store(ring)
	return ring
}

// buildRing builds the ring as Envoy's RingHashLoadBalancer does: the
// endpoint with the least weight gets at least ceil(minSize * its share)
// entries, the others proportionally more, within maxSize in total.
func buildRing(dials []string, weights []uint32, minSize, maxSize uint64) *hashRing {
	var sum, least float64
	for i, w := range weights {
		sum += float64(w)
		if i == 0 || float64(w) < least {
			least = float64(w)
		}
	}
	minShare := least / sum
	scale := math.Min(math.Ceil(minShare*float64(minSize))/minShare, float64(maxSize))

	type entry struct {
		hash uint64
		host uint32
	}
	entries := make([]entry, 0, int(scale)+len(dials))
	var target float64
	var current uint64
	var key []byte
	for i, dial := range dials {
		target += scale * float64(weights[i]) / sum
		key = append(append(key[:0], dial...), '_')
		prefix := len(key)
		for n := 0; float64(current) < target; n++ {
			key = strconv.AppendInt(key[:prefix], int64(n), 10)
			entries = append(entries, entry{hash: xxhash.Sum64(key), host: uint32(i)})
			current++
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.host, b.host))
	})
	ring := &hashRing{
		dials:   dials,
		weights: weights,
		hashes:  make([]uint64, len(entries)),
		hosts:   make([]uint32, len(entries)),
	}
	for i, e := range entries {
		ring.hashes[i], ring.hosts[i] = e.hash, e.host
	}
	return ring
}

// anyAvailable reports whether pool has an available upstream.
func anyAvailable(pool reverseproxy.UpstreamPool) bool {
	for _, u := range pool {
		if u.Available() {
			return true
		}
	}
	return false
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens. Syntax:
//
//	lb_policy ring_hash {
//	    # exactly one hash key
//	    header          <name>
//	    cookie          <name> [{
//	        path      <path>
//	        ttl       <duration>
//	        attribute <name> [<value>]
//	    }]
//	    source_ip
//	    query_parameter <name>
//
//	    minimum_ring_size <n>
//	}
func (s *RingHashSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return unmarshalHashPolicy(d, "ring_hash", &s.HashKey, "minimum_ring_size", &s.MinimumRingSize)
}

// Interface guards
var (
	_ reverseproxy.Selector = (*RingHashSelection)(nil)
	_ caddy.Provisioner     = (*RingHashSelection)(nil)
	_ caddy.Validator       = (*RingHashSelection)(nil)
	_ caddyfile.Unmarshaler = (*RingHashSelection)(nil)
	_ EndpointInfoSetter    = (*RingHashSelection)(nil)
)
