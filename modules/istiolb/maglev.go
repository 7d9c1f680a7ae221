package istiolb

import (
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/cespare/xxhash/v2"
)

func init() {
	caddy.RegisterModule(new(MaglevSelection))
}

// Envoy's (and Istio's) bounds of the Maglev table size.
const (
	defaultMaglevTableSize = 65537
	maglevTableSizeLimit   = 5000011
)

// MaglevSelection is Envoy's MAGLEV load balancer (Istio's consistentHash
// with maglev): a lookup table of table_size entries filled by each
// endpoint's permutation (offset xxHash64(dial) mod M, skip
// xxHash64(dial, seed 1) mod (M-1) + 1), endpoints taking turns in
// proportion to their weight. A request's key hash modulo the table size
// picks the entry; an unavailable endpoint's entries are skipped forward.
//
// Endpoints fill the table in dial-address order, so the table does not
// depend on the order of the pool.
type MaglevSelection struct {
	HashKey

	// TableSize is the number of table entries (Istio's tableSize); it must
	// be a prime below 5000011. Default: 65537.
	TableSize uint64 `json:"table_size,omitempty"`

	info  EndpointInfo
	table atomic.Pointer[maglevTable]
}

// maglevTable is the table built for one pool.
type maglevTable struct {
	dials   []string
	weights []uint32
	hosts   []uint32 // pool index of each table entry
}

// CaddyModule returns the Caddy module information.
func (*MaglevSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.maglev",
		New: func() caddy.Module { return new(MaglevSelection) },
	}
}

// Provision sets the defaults.
func (s *MaglevSelection) Provision(caddy.Context) error {
	if s.TableSize == 0 {
		s.TableSize = defaultMaglevTableSize
	}
	s.HashKey.provision()
	return nil
}

// Validate checks the configuration.
func (s *MaglevSelection) Validate() error {
	if s.TableSize >= maglevTableSizeLimit {
		return fmt.Errorf("table_size %d must be below %d", s.TableSize, maglevTableSizeLimit)
	}
	if !new(big.Int).SetUint64(s.TableSize).ProbablyPrime(20) {
		return fmt.Errorf("table_size %d is not a prime number", s.TableSize)
	}
	return s.HashKey.validate()
}

// SetEndpointInfo gives the policy the endpoint weights.
func (s *MaglevSelection) SetEndpointInfo(info EndpointInfo) { s.info = info }

// Select returns the available upstream the request's key hashes to, or nil
// if there is none.
func (s *MaglevSelection) Select(pool reverseproxy.UpstreamPool, r *http.Request, w http.ResponseWriter) *reverseproxy.Upstream {
	if !anyAvailable(pool) {
		return nil
	}
	table := s.tableFor(pool)
	n := uint64(len(table.hosts))
	i := s.requestHash(r, w) % n
	for range n {
		if u := pool[table.hosts[i]]; u.Available() {
			return u
		}
		if i++; i == n {
			i = 0
		}
	}
	return nil
}

// tableFor returns the table of pool, building it only when the pool's
// endpoints or weights changed since the last build.
func (s *MaglevSelection) tableFor(pool reverseproxy.UpstreamPool) *maglevTable {
	if table := s.table.Load(); table != nil && samePool(pool, s.info, table.dials, table.weights) {
		return table
	}
	dials, weights := poolSnapshot(pool, s.info)
	table := buildMaglev(dials, weights, s.TableSize)
	s.table.Store(table)
	return table
}

// buildMaglev fills the table as Envoy's MaglevTable does: in each round,
// every endpoint whose turn it is (the heaviest every round, one of a third
// of that weight every third round) takes the next free entry of its
// permutation, until the table is full.
func buildMaglev(dials []string, weights []uint32, size uint64) *maglevTable {
	type builder struct {
		host         uint32
		offset, skip uint64
		next         uint64
		weight       uint64
		target       uint64
	}
	builders := make([]builder, len(dials))
	var heaviest uint64
	seeded := xxhash.NewWithSeed(1)
	for i, dial := range dials {
		seeded.ResetWithSeed(1)
		seeded.WriteString(dial)
		builders[i] = builder{
			host:   uint32(i),
			offset: xxhash.Sum64String(dial) % size,
			skip:   seeded.Sum64()%(size-1) + 1,
			weight: uint64(weights[i]),
		}
		heaviest = max(heaviest, uint64(weights[i]))
	}
	slices.SortStableFunc(builders, func(a, b builder) int {
		return strings.Compare(dials[a.host], dials[b.host])
	})

	const empty = ^uint32(0)
	hosts := make([]uint32, size)
	for i := range hosts {
		hosts[i] = empty
	}
	filled := uint64(0)
	for round := uint64(1); filled < size && len(builders) > 0; round++ {
		for i := range builders {
			if filled == size {
				break
			}
			b := &builders[i]
			if round*b.weight < b.target {
				continue
			}
			b.target += heaviest
			c := (b.offset + b.skip*b.next) % size
			for hosts[c] != empty {
				b.next++
				c = (b.offset + b.skip*b.next) % size
			}
			hosts[c] = b.host
			b.next++
			filled++
		}
	}
	return &maglevTable{dials: dials, weights: weights, hosts: hosts}
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens. Syntax:
//
//	lb_policy maglev {
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
//	    table_size <prime>
//	}
func (s *MaglevSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return unmarshalHashPolicy(d, "maglev", &s.HashKey, "table_size", &s.TableSize)
}

// Interface guards
var (
	_ reverseproxy.Selector = (*MaglevSelection)(nil)
	_ caddy.Provisioner     = (*MaglevSelection)(nil)
	_ caddy.Validator       = (*MaglevSelection)(nil)
	_ caddyfile.Unmarshaler = (*MaglevSelection)(nil)
	_ EndpointInfoSetter    = (*MaglevSelection)(nil)
)
