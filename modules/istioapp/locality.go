package istioapp

import (
	"maps"
	"math"
	"slices"
	"strings"
)

// locality is region/zone/subzone.
type locality struct{ region, zone, subzone string }

// parseLocality splits "region/zone/subzone" (missing parts are empty).
func parseLocality(s string) locality {
	parts := strings.SplitN(s, "/", 3)
	var l locality
	l.region = parts[0]
	if len(parts) > 1 {
		l.zone = parts[1]
	}
	if len(parts) > 2 {
		l.subzone = parts[2]
	}
	return l
}

// localityMatch reports whether l matches the rule locality, as Istio's
// util.LocalityMatch: "*" matches anything, and a rule's missing zone or
// subzone matches any.
func localityMatch(l locality, rule string) bool {
	r := parseLocality(rule)
	return (r.region == "*" || r.region == l.region) &&
		(r.zone == "*" || r.zone == "" || r.zone == l.zone) &&
		(r.subzone == "*" || r.subzone == "" || r.subzone == l.subzone)
}

// endpointPlan is how a cluster's endpoints share the load: their
// weights, which endpoints get none, and their failover priorities.
type endpointPlan struct {
	// weights are the load-balancing weights by dial (never 0).
	weights map[string]uint32

	// excluded are the endpoints that locality distribution gives no
	// share: they are never offered.
	excluded map[string]bool

	// priorities groups the offered dials by failover priority, best
	// first; nil when every endpoint has the same priority.
	priorities [][]string
}

// distributeScale keeps the integer weights of a distribution precise:
// an endpoint's weight is its share of the load in units of 1/scale percent.
const distributeScale = 1000

// planEndpoints computes the endpoint plan of a cluster whose endpoints
// eps have the dial addresses dials, for this proxy's mesh settings.
//
// Distribution follows Istio's applyLocalityWeight: the first distribute
// rule whose from matches this proxy's locality gives each to-locality its
// percentage, split over the endpoint localities it matches in proportion
// to their weights; endpoints matched by no to-locality get nothing. Each
// endpoint's weight is then its expected share of the load, as Envoy's
// locality-weighted balancing gives it (pick a locality by weight, then
// an endpoint by weight).
//
// Without distribute rules, Istio's applyLocalityFailover sets the
// priorities: same region/zone/subzone 0, same region/zone 1, same region
// 2, the region a failover rule names for this proxy's region 3, the rest
// 4. With failover_priority, labels equal to this proxy's rank first (all
// N labels equal, then the first N-1, ...), and locality ranks within a
// label priority only when failover rules are set too, as Istio does.
func planEndpoints(lb *LocalityLB, mesh *Mesh, dials []string, eps []*Workload) *endpointPlan {
	plan := &endpointPlan{weights: make(map[string]uint32, len(dials))}
	if len(eps) != len(dials) {
		// endpoints are parallel to dials; be safe with a set without them
		eps = make([]*Workload, len(dials))
		for i := range eps {
			eps[i] = new(Workload)
		}
	}
	for i, dial := range dials {
		plan.weights[dial] = max(eps[i].Weight, 1)
	}
	if lb == nil {
		return plan
	}
	var self locality
	var selfLabels map[string]string
	if mesh != nil {
		self = parseLocality(mesh.Locality)
		selfLabels = mesh.Labels
	}
	haveSelf := mesh != nil && mesh.Locality != ""

	if len(lb.Distribute) > 0 {
		// distribution excludes failover, even when no rule matches
		if haveSelf {
			for _, rule := range lb.Distribute {
				if rule != nil && localityMatch(self, rule.From) {
					plan.distribute(rule, dials, eps)
					break
				}
			}
		}
		return plan
	}

	// Istio's failover by locality, unless failover_priority is set
	// without failover rules: then by labels alone
	byLocality := haveSelf && (len(lb.FailoverPriority) == 0 || len(lb.Failover) > 0)
	if !byLocality && len(lb.FailoverPriority) == 0 {
		return plan
	}
	rank := make(map[string]int, len(dials))
	worst := 0
	for i, dial := range dials {
		r := 0
		if byLocality {
			r = failoverPriority(self, parseLocality(eps[i].Locality), lb.Failover)
		}
		if n := len(lb.FailoverPriority); n > 0 {
			r += labelPriority(lb.FailoverPriority, eps[i].Labels, selfLabels) * 5
		}
		rank[dial] = r
		worst = max(worst, r)
	}
	byRank := make([][]string, worst+1)
	for _, dial := range dials {
		byRank[rank[dial]] = append(byRank[rank[dial]], dial)
	}
	for _, group := range byRank {
		if len(group) > 0 {
			plan.priorities = append(plan.priorities, group)
		}
	}
	if len(plan.priorities) <= 1 {
		plan.priorities = nil
	}
	return plan
}

// labelPriority is the failover priority of an endpoint with labels by
// Istio's failoverPriority: 0 when it matches every key, 1 when all but
// the last, ..., len(keys) when it does not match the first. A key is
// matched when the endpoint's value equals this proxy's, or, for a key
// written key=value, that value.
func labelPriority(keys []string, labels, self map[string]string) int {
	matched := 0
	for _, key := range keys {
		want, hasWant := self[key]
		if k, v, ok := strings.Cut(key, "="); ok {
			key, want, hasWant = k, v, true
		}
		v, ok := labels[key]
		if !ok || !hasWant || v != want {
			break
		}
		matched++
	}
	return len(keys) - matched
}

// failoverPriority is the priority of an endpoint at ep for this proxy at
// self (Istio's applyLocalityFailover).
func failoverPriority(self, ep locality, failover []*LocalityFailover) int {
	if ep.region == self.region {
		switch {
		case ep.zone == self.zone && ep.subzone == self.subzone:
			return 0
		case ep.zone == self.zone:
			return 1
		default:
			return 2
		}
	}
	for _, f := range failover {
		if f != nil && f.From == self.region && f.To == ep.region {
			return 3
		}
	}
	return 4
}

// distribute applies one distribute rule to the plan's weights.
func (plan *endpointPlan) distribute(rule *LocalityDistribute, dials []string, eps []*Workload) {
	// group the endpoints by locality, in order of appearance, with the
	// locality's weight (the sum of its endpoints', as Istio sets it)
	type group struct {
		loc     locality
		dials   []string
		weight  uint32
		matched bool
		share   float64
	}
	var groups []*group
	byLoc := map[string]*group{}
	for i, dial := range dials {
		g := byLoc[eps[i].Locality]
		if g == nil {
			g = &group{loc: parseLocality(eps[i].Locality)}
			byLoc[eps[i].Locality] = g
			groups = append(groups, g)
		}
		g.dials = append(g.dials, dial)
		g.weight += plan.weights[dial]
	}
	// Istio ranges over the map; sorted keys make the outcome stable
	for _, to := range slices.Sorted(maps.Keys(rule.To)) {
		pct := rule.To[to]
		var hit []*group
		var total uint32
		for _, g := range groups {
			if !g.matched && localityMatch(g.loc, to) {
				g.matched = true
				hit = append(hit, g)
				total += g.weight
			}
		}
		for _, g := range hit {
			// Istio's integer locality weight
			g.share = float64(pct * g.weight / total)
		}
	}
	var sum float64
	for _, g := range groups {
		sum += g.share
	}
	plan.excluded = map[string]bool{}
	for _, g := range groups {
		if g.share == 0 || sum == 0 {
			for _, dial := range g.dials {
				plan.excluded[dial] = true
			}
			continue
		}
		for _, dial := range g.dials {
			w := g.share / sum * 100 * distributeScale * float64(plan.weights[dial]) / float64(g.weight)
			plan.weights[dial] = uint32(max(1, math.Round(w)))
		}
	}
}
