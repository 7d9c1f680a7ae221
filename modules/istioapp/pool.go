package istioapp

import (
	"math/rand/v2"
	"time"

	"github.com/caddy-istio/caddy-istio/modules/istiolb"
)

// overprovisioningFactor is Envoy's default: a priority whose healthy share
// times 1.4 reaches 100% takes all of the load.
const overprovisioningFactor = 1.4

// endpointPool picks the endpoints offered to one request from a
// cluster's endpoints: without ejected ones (outlier detection), only those
// of the failover priority chosen for the request (locality), or all of
// them in panic mode.
type endpointPool struct {
	// dials are the endpoints that may get load (locality distribution
	// may leave some out), in registry order.
	dials []string

	// priorities groups dials by failover priority, best first; nil: one
	// priority.
	priorities [][]string

	// outlier is the cluster's outlier detector, or nil.
	outlier *outlierDetector

	// minHealthPercent is the panic threshold: when a smaller share of the
	// endpoints is healthy, ejected ones are offered too. 0: never.
	minHealthPercent uint32
}

// available returns the endpoints to offer now. Envoy's priority load is
// followed: each priority takes min(100%, healthy share x 1.4) of what the
// better priorities left, normalized when the total is under 100%; one
// priority is drawn by those loads for each request and its healthy
// endpoints are offered. When the healthy share of all endpoints is below
// minHealthPercent, all endpoints of the best priority are offered (panic).
// An empty result means no healthy upstream.
func (p *endpointPool) available() []string {
	var ejected map[string]bool
	if p.outlier != nil {
		ejected = p.outlier.ejected()
	}
	if len(p.priorities) == 0 {
		if len(ejected) == 0 {
			return p.dials
		}
		healthy := withoutEjected(p.dials, ejected)
		if p.panics(len(healthy), len(p.dials)) {
			return p.dials
		}
		return healthy
	}

	healthyByPriority := make([][]string, len(p.priorities))
	healthyTotal := 0
	for i, group := range p.priorities {
		healthyByPriority[i] = withoutEjected(group, ejected)
		healthyTotal += len(healthyByPriority[i])
	}
	if p.panics(healthyTotal, len(p.dials)) {
		return p.priorities[0]
	}
	if healthyTotal == 0 {
		return nil
	}
	loads := make([]float64, len(p.priorities))
	left, total := 100.0, 0.0
	for i, group := range p.priorities {
		health := min(100, float64(len(healthyByPriority[i]))/float64(len(group))*100*overprovisioningFactor)
		loads[i] = min(left, health)
		left -= loads[i]
		total += health
	}
	if total < 100 {
		// Envoy normalizes the loads by the total health
		for i, group := range p.priorities {
			loads[i] = min(100, float64(len(healthyByPriority[i]))/float64(len(group))*100*overprovisioningFactor) * 100 / total
		}
	}
	draw := rand.Float64() * 100
	for i, load := range loads {
		if load <= 0 {
			continue
		}
		if draw < load {
			return healthyByPriority[i]
		}
		draw -= load
	}
	// rounding: the last priority with load
	for i := len(loads) - 1; i >= 0; i-- {
		if loads[i] > 0 {
			return healthyByPriority[i]
		}
	}
	return nil
}

// panics reports whether healthy endpoints out of total are few enough for
// panic mode.
func (p *endpointPool) panics(healthy, total int) bool {
	return p.minHealthPercent > 0 && total > 0 && healthy*100 < int(p.minHealthPercent)*total
}

// withoutEjected returns dials without the ejected ones; dials itself when
// none is.
func withoutEjected(dials []string, ejected map[string]bool) []string {
	if len(ejected) == 0 {
		return dials
	}
	out := make([]string, 0, len(dials))
	for _, dial := range dials {
		if !ejected[dial] {
			out = append(out, dial)
		}
	}
	return out
}

// endpointInfo is the istiolb.EndpointInfo of a cluster.
type endpointInfo struct {
	weights map[string]uint32
	addedAt map[string]time.Time
}

// EndpointWeight implements istiolb.EndpointInfo.
func (e *endpointInfo) EndpointWeight(dial string) uint32 {
	if w, ok := e.weights[dial]; ok && w > 0 {
		return w
	}
	return 1
}

// EndpointAddedAt implements istiolb.EndpointInfo.
func (e *endpointInfo) EndpointAddedAt(dial string) time.Time {
	return e.addedAt[dial]
}

// Interface guards
var _ istiolb.EndpointInfo = (*endpointInfo)(nil)
