package istioapp

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// This file is the read-only introspection API of a running istio app, as
// `istioctl proxy-config clusters` and `endpoints` show Envoy's: the
// clusters with a summary of their traffic policy, and each cluster's
// endpoints with their outlier detection state. Snapshots are copies, safe
// to keep and encode while the app serves requests.

// Endpoint health values of EndpointSnapshot.Health.
const (
	// EndpointHealthy: the endpoint gets load.
	EndpointHealthy = "HEALTHY"
	// EndpointEjected: outlier detection took the endpoint out until
	// EjectedUntil (or panic mode offers it anyway).
	EndpointEjected = "EJECTED"
	// EndpointExcluded: locality distribution gives the endpoint no share
	// of the load.
	EndpointExcluded = "EXCLUDED"
)

// ClusterSnapshot is the state of one provisioned cluster.
type ClusterSnapshot struct {
	// Name is Istio's cluster name, outbound|PORT|SUBSET|HOST.
	Name string `json:"name"`
	// Service is the registry hostname; Port the service port number;
	// Subset the DestinationRule subset ("" for the whole service).
	Service string `json:"service"`
	Port    uint32 `json:"port"`
	Subset  string `json:"subset,omitempty"`
	// Labels of the subset.
	Labels map[string]string `json:"labels,omitempty"`

	// Policy summarizes the cluster's traffic policy.
	Policy PolicySummary `json:"policy"`

	// ActiveRequests and PendingRequests are the cluster's requests on a
	// connection and waiting for one, as its circuit breakers count them.
	// Counted only for clusters with a connection pool, outlier detection
	// or a retry budget (Tracked); others have no per-cluster counter.
	Tracked         bool  `json:"tracked"`
	ActiveRequests  int64 `json:"active_requests"`
	PendingRequests int64 `json:"pending_requests"`
	// RetriesInProgress counts the admitted retries not over yet (only
	// counted under a retry cap: maxRetries or a retry budget).
	RetriesInProgress int64 `json:"retries_in_progress"`

	// Endpoints are the cluster's endpoints in registry order; empty for
	// an original-destination cluster.
	Endpoints []EndpointSnapshot `json:"endpoints"`
}

// PolicySummary is the part of a cluster's traffic policy that
// `istioctl proxy-config cluster -o json` would show first.
type PolicySummary struct {
	// LoadBalancer is Istio's name of the balancing: LEAST_REQUEST,
	// ROUND_ROBIN, RANDOM, RING_HASH, MAGLEV or PASSTHROUGH; the Caddy
	// selection policy's name when it is none of those.
	LoadBalancer string `json:"load_balancer"`
	// SelectionPolicy is the Caddy selection policy module name (empty:
	// reverse_proxy's default, random).
	SelectionPolicy string `json:"selection_policy,omitempty"`

	// TLSMode is DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL.
	TLSMode string `json:"tls_mode"`
	// SubjectAltNames the server certificate must carry one of.
	SubjectAltNames []string `json:"subject_alt_names,omitempty"`

	// ConnectionPool limits; nil: none.
	ConnectionPool *ConnectionPool `json:"connection_pool,omitempty"`
	// OutlierDetection settings with Istio's defaults filled in; nil: off.
	OutlierDetection *OutlierDetection `json:"outlier_detection,omitempty"`
	// Locality load balancing; nil: off.
	Locality *LocalityLB `json:"locality,omitempty"`
	// Warmup (slow start); nil: off.
	Warmup *Warmup `json:"warmup,omitempty"`
	// RetryBudget; nil: none.
	RetryBudget *RetryBudget `json:"retry_budget,omitempty"`
	// Tunnel; nil: direct connections.
	Tunnel *Tunnel `json:"tunnel,omitempty"`
}

// EndpointSnapshot is the state of one endpoint of a cluster.
type EndpointSnapshot struct {
	// Address is the dial address (host:port or unix/path), as Caddy's
	// reverse_proxy upstreams name it.
	Address string `json:"address"`

	// Workload is namespace/name of the WorkloadEntry; empty for inline
	// ServiceEntry endpoints.
	Workload       string            `json:"workload,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Weight         uint32            `json:"weight"`
	Locality       string            `json:"locality,omitempty"`
	ServiceAccount string            `json:"service_account,omitempty"`
	// Priority is the endpoint's failover priority, 0 the best.
	Priority int `json:"priority"`

	// Health is EndpointHealthy, EndpointEjected or EndpointExcluded.
	Health string `json:"health"`
	// EjectedUntil is, for an ejected endpoint, when its ejection time is
	// over; it returns at the first outlier sweep (every interval) after.
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	// Ejections is outlier detection's ejection multiplier: raised by each
	// ejection, lowered by each sweep that finds the endpoint healthy.
	Ejections uint32 `json:"ejections"`
	// Consecutive errors counted towards the next ejection.
	Consecutive5xx     uint32 `json:"consecutive_5xx"`
	ConsecutiveGateway uint32 `json:"consecutive_gateway_errors"`
	ConsecutiveLocal   uint32 `json:"consecutive_local_origin_failures"`
}

// Snapshot returns the state of every cluster of the app, in
// configuration order. A nil or unprovisioned app has none.
func (a *App) Snapshot() []ClusterSnapshot {
	if a == nil || a.clusters == nil {
		return nil
	}
	out := make([]ClusterSnapshot, 0, len(a.Clusters))
	for _, c := range a.Clusters {
		ch := a.clusters[c.Name]
		if ch == nil {
			continue
		}
		out = append(out, ch.snapshot(c, time.Now()))
	}
	return out
}

// snapshot returns the state of ch, configured by c, at now.
func (ch *ClusterHandler) snapshot(c *Cluster, now time.Time) ClusterSnapshot {
	cs := ClusterSnapshot{
		Name:      c.Name,
		Service:   c.Service,
		Port:      c.Port,
		Subset:    c.Subset,
		Labels:    maps.Clone(c.Labels),
		Policy:    policySummary(c),
		Endpoints: []EndpointSnapshot{},
	}
	if ch.transport != nil {
		cs.Tracked = true
		cs.ActiveRequests = ch.transport.active.Load()
		cs.PendingRequests = ch.transport.pending.Load()
	}
	cs.RetriesInProgress = ch.retries.Load()
	if c.OriginalDestination || ch.upstreams == nil {
		return cs
	}

	set := ch.upstreams
	var outlier *outlierDetector
	if ch.lease != nil {
		outlier = ch.lease.outlier
	}
	health := outlier.healthOf(now)
	offered, priority := map[string]bool(nil), map[string]int(nil)
	if set.pool != nil {
		offered = make(map[string]bool, len(set.pool.dials))
		for _, dial := range set.pool.dials {
			offered[dial] = true
		}
		priority = make(map[string]int)
		for i, group := range set.pool.priorities {
			for _, dial := range group {
				priority[dial] = i
			}
		}
	}
	for i, dial := range set.dials {
		es := EndpointSnapshot{Address: dial, Health: EndpointHealthy, Weight: 1, Priority: priority[dial]}
		if i < len(set.endpoints) && set.endpoints[i] != nil {
			w := set.endpoints[i]
			if w.Name != "" {
				es.Workload = w.Namespace + "/" + w.Name
			}
			es.Labels = maps.Clone(w.Labels)
			if w.Weight > 0 {
				es.Weight = w.Weight
			}
			es.Locality = w.Locality
			es.ServiceAccount = w.ServiceAccount
		}
		if offered != nil && !offered[dial] {
			es.Health = EndpointExcluded
		}
		if h, ok := health[dial]; ok {
			es.Ejections = h.ejections
			es.Consecutive5xx = h.consecutive5xx
			es.ConsecutiveGateway = h.consecutiveGateway
			es.ConsecutiveLocal = h.consecutiveLocal
			if h.ejected {
				es.Health = EndpointEjected
				until := h.until
				es.EjectedUntil = &until
			}
		}
		cs.Endpoints = append(cs.Endpoints, es)
	}
	return cs
}

// endpointHealth is a copy of one endpoint's outlier state.
type endpointHealth struct {
	hostHealth
	// until is when the ejection time of an ejected endpoint is over.
	until time.Time
}

// healthOf copies the outlier state of every endpoint; nil for a nil
// detector.
func (d *outlierDetector) healthOf(now time.Time) map[string]endpointHealth {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]endpointHealth, len(d.hosts))
	for dial, h := range d.hosts {
		eh := endpointHealth{hostHealth: *h}
		if h.ejected {
			// as sweep decides: base x ejections, capped at maxEject
			eh.until = h.ejectedAt.Add(min(d.base*time.Duration(h.ejections), d.maxEject))
		}
		out[dial] = eh
	}
	return out
}

// policySummary summarizes the traffic policy of c.
func policySummary(c *Cluster) PolicySummary {
	p := PolicySummary{
		ConnectionPool: c.ConnectionPool,
		Locality:       c.Locality,
		Warmup:         c.Warmup,
		RetryBudget:    c.RetryBudget,
		Tunnel:         c.Tunnel,
		TLSMode:        "DISABLE",
	}
	if od := c.OutlierDetection; od != nil {
		filled := *od
		if filled.Interval <= 0 {
			filled.Interval = caddy.Duration(defaultOutlierInterval)
		}
		if filled.BaseEjectionTime <= 0 {
			filled.BaseEjectionTime = caddy.Duration(defaultOutlierBaseEjectionTime)
		}
		if filled.MaxEjectionPercent == 0 {
			filled.MaxEjectionPercent = defaultOutlierMaxEjectionPct
		}
		p.OutlierDetection = &filled
	}

	var proxy struct {
		LoadBalancing *struct {
			SelectionPolicy *struct {
				Policy string `json:"policy"`
			} `json:"selection_policy"`
		} `json:"load_balancing"`
		Transport *struct {
			TLS *struct {
				ClientCertificateFile string `json:"client_certificate_file"`
				ClientCertificate     string `json:"client_certificate"`
			} `json:"tls"`
		} `json:"transport"`
	}
	if len(c.Proxy) > 0 {
		// the app provisioned this JSON, so it decodes; a failure leaves
		// the defaults
		_ = json.Unmarshal(c.Proxy, &proxy)
	}
	if lb := proxy.LoadBalancing; lb != nil && lb.SelectionPolicy != nil {
		p.SelectionPolicy = lb.SelectionPolicy.Policy
	}
	p.LoadBalancer = istioLBName(p.SelectionPolicy)
	if c.OriginalDestination {
		p.LoadBalancer = "PASSTHROUGH"
	}

	if t := proxy.Transport; t != nil && t.TLS != nil {
		p.TLSMode = "SIMPLE"
		if t.TLS.ClientCertificateFile != "" || t.TLS.ClientCertificate != "" {
			p.TLSMode = "MUTUAL"
		}
	}
	if c.TLS != nil {
		if c.TLS.IstioMutual {
			p.TLSMode = "ISTIO_MUTUAL"
		}
		p.SubjectAltNames = slices.Clone(c.TLS.SubjectAltNames)
	}
	return p
}

// istioLBName is Istio's name of the selection policies the adapter
// writes; others keep their Caddy name.
func istioLBName(policy string) string {
	switch policy {
	case "least_request":
		return "LEAST_REQUEST"
	case "istio_round_robin", "round_robin":
		return "ROUND_ROBIN"
	case "istio_random", "random", "":
		return "RANDOM"
	case "ring_hash":
		return "RING_HASH"
	case "maglev":
		return "MAGLEV"
	}
	return policy
}
