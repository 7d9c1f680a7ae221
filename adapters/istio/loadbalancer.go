package istio

import (
	"encoding/json"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istioapp"
	"github.com/caddy-istio/caddy-istio/modules/istiolb"
)

// Defaults of Istio's warmup (WarmupConfiguration).
const (
	defaultWarmupMinimumPercent = 10
	defaultWarmupAggression     = 1
)

// selectionPolicy returns the reverse_proxy selection policy (modules
// istiolb) for Istio's load balancer settings (nil settings are Istio's
// default):
//
//   - simple unset, UNSPECIFIED, LEAST_REQUEST, LEAST_CONN (a deprecated
//     alias Istio also sends to Envoy's LEAST_REQUEST): least_request,
//     Envoy's power of two choices over active requests; PASSTHROUGH
//     too, where it never chooses: the cluster forwards to the original
//     destination (Cluster.OriginalDestination, see addCluster);
//   - ROUND_ROBIN: istio_round_robin; RANDOM: istio_random (Envoy's
//     weighted policies; Caddy's own ignore endpoint weights);
//   - consistentHash: ring_hash (the default algorithm) or maglev, with the
//     hash key (header, cookie, source_ip or query_parameter) and the
//     algorithm's size when set. A cookie's ttl is written only when set
//     (its attributes too, for a generated cookie):
//     "0s" asks for a session cookie, no ttl for no cookie generation. No
//     hash key: istio_random, as Envoy then has nothing to hash.
//
// least_request and istio_round_robin carry the warmup (slow start) too:
// Envoy's slow start is part of those two load balancers only.
func selectionPolicy(lb *networking.LoadBalancerSettings) json.RawMessage {
	p := map[string]any{"policy": "least_request"}
	switch lb.GetLbPolicy().(type) {
	case *networking.LoadBalancerSettings_Simple:
		switch lb.GetSimple() {
		case networking.LoadBalancerSettings_ROUND_ROBIN:
			p["policy"] = "istio_round_robin"
		case networking.LoadBalancerSettings_RANDOM:
			p["policy"] = "istio_random"
		}
	case *networking.LoadBalancerSettings_ConsistentHash:
		p = consistentHashPolicy(lb.GetConsistentHash())
	}
	if w := warmupOf(lb); w != nil && (p["policy"] == "least_request" || p["policy"] == "istio_round_robin") {
		p["warmup"] = w
	}
	out, err := json.Marshal(p)
	if err != nil {
		panic(err) // maps of strings, numbers and plain structs always encode
	}
	return out
}

// consistentHashPolicy is the ring_hash or maglev selection policy of ch.
func consistentHashPolicy(ch *networking.LoadBalancerSettings_ConsistentHashLB) map[string]any {
	p := map[string]any{"policy": "ring_hash"}
	switch key := ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		p["header"] = key.HttpHeaderName
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		p["query_parameter"] = key.HttpQueryParameterName
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		if !key.UseSourceIp {
			return map[string]any{"policy": "istio_random"}
		}
		p["source_ip"] = true
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		cookie := map[string]any{"name": key.HttpCookie.GetName()}
		if path := key.HttpCookie.GetPath(); path != "" {
			cookie["path"] = path
		}
		if ttl := key.HttpCookie.GetTtl(); ttl != nil {
			cookie["ttl"] = ttl.AsDuration().String()
		}
		// validation has refused attributes without a name
		var attrs []istiolb.CookieAttribute
		for _, a := range key.HttpCookie.GetAttributes() {
			attrs = append(attrs, istiolb.CookieAttribute{Name: a.GetName(), Value: a.GetValue()})
		}
		if len(attrs) > 0 {
			cookie["attributes"] = attrs
		}
		p["cookie"] = cookie
	default:
		return map[string]any{"policy": "istio_random"}
	}
	switch alg := ch.GetHashAlgorithm().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_Maglev:
		p["policy"] = "maglev"
		if n := alg.Maglev.GetTableSize(); n != 0 {
			p["table_size"] = n
		}
	case *networking.LoadBalancerSettings_ConsistentHashLB_RingHash_:
		if n := alg.RingHash.GetMinimumRingSize(); n != 0 {
			p["minimum_ring_size"] = n
		}
	default:
		if n := ch.GetMinimumRingSize(); n != 0 {
			p["minimum_ring_size"] = n
		}
	}
	return p
}

// warmupOf is the slow start of lb (warmup, or the deprecated
// warmupDurationSecs) with Istio's defaults written, or nil.
func warmupOf(lb *networking.LoadBalancerSettings) *istioapp.Warmup {
	var w *istioapp.Warmup
	if wc := lb.GetWarmup(); wc != nil {
		w = &istioapp.Warmup{
			Duration:       caddy.Duration(wc.GetDuration().AsDuration()),
			MinimumPercent: ptr(float64(defaultWarmupMinimumPercent)),
			Aggression:     defaultWarmupAggression,
		}
		if v := wc.GetMinimumPercent(); v != nil {
			w.MinimumPercent = ptr(v.GetValue())
		}
		if v := wc.GetAggression(); v != nil {
			w.Aggression = v.GetValue()
		}
	} else if d := lb.GetWarmupDurationSecs(); d != nil {
		w = &istioapp.Warmup{
			Duration:       caddy.Duration(d.AsDuration()),
			MinimumPercent: ptr(float64(defaultWarmupMinimumPercent)),
			Aggression:     defaultWarmupAggression,
		}
	}
	if w == nil || time.Duration(w.Duration) <= 0 {
		return nil
	}
	return w
}

// clusterWarmup is the Cluster.Warmup of lb: Envoy applies slow start only
// with ROUND_ROBIN and LEAST_REQUEST (Istio's default included).
func clusterWarmup(lb *networking.LoadBalancerSettings) *istioapp.Warmup {
	switch lb.GetLbPolicy().(type) {
	case nil:
	case *networking.LoadBalancerSettings_Simple:
		if lb.GetSimple() == networking.LoadBalancerSettings_RANDOM {
			return nil
		}
	default:
		return nil
	}
	return warmupOf(lb)
}

// localityOf is the Cluster.Locality of a resolved policy, as Istio's
// ApplyLocalityLoadBalancer builds it (locality load balancing is on in
// the default mesh):
//
//   - localityLbSetting.enabled false: nil (no locality awareness);
//   - distribute set: the weighted distribution, always;
//   - otherwise failover by locality proximity, with the failover and
//     failoverPriority entries, only when the cluster has outlier
//     detection (Istio: "failover should only be enabled when outlier
//     detection is enabled"); an empty LocalityLB asks for proximity
//     failover alone.
func localityOf(tp *networking.TrafficPolicy) *istioapp.LocalityLB {
	ls := tp.GetLoadBalancer().GetLocalityLbSetting()
	if ls.GetEnabled() != nil && !ls.GetEnabled().GetValue() {
		return nil
	}
	if len(ls.GetDistribute()) > 0 {
		out := &istioapp.LocalityLB{}
		for _, d := range ls.GetDistribute() {
			out.Distribute = append(out.Distribute, &istioapp.LocalityDistribute{From: d.GetFrom(), To: d.GetTo()})
		}
		return out
	}
	if tp.GetOutlierDetection() == nil {
		return nil
	}
	out := &istioapp.LocalityLB{FailoverPriority: append([]string(nil), ls.GetFailoverPriority()...)}
	for _, f := range ls.GetFailover() {
		out.Failover = append(out.Failover, &istioapp.LocalityFailover{From: f.GetFrom(), To: f.GetTo()})
	}
	return out
}

// checkLoadBalancer warns about load balancer settings that are not
// translated exactly.
func (t *translator) checkLoadBalancer(obj *istioyaml.Object, path string, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	if lb.GetBackendUtilization() != nil {
		t.warn(obj, path+".backendUtilization", "not supported (no ORCA load reports in Caddy): LEAST_REQUEST (the default) is used")
	}
	if lb.GetZoneAwareLbSetting() != nil {
		t.warn(obj, path+".zoneAwareLbSetting", "not supported: endpoints are balanced regardless of zone")
	}
	if lb.GetWarmup() != nil || lb.GetWarmupDurationSecs() != nil {
		field := path + ".warmup"
		if lb.GetWarmup() == nil {
			field = path + ".warmupDurationSecs"
		}
		switch lb.GetLbPolicy().(type) {
		case *networking.LoadBalancerSettings_ConsistentHash, *networking.LoadBalancerSettings_BackendUtilization:
			t.warn(obj, field, "ignored: warmup applies only to ROUND_ROBIN and LEAST_REQUEST, as in Envoy")
		case *networking.LoadBalancerSettings_Simple:
			if lb.GetSimple() == networking.LoadBalancerSettings_RANDOM {
				t.warn(obj, field, "ignored: warmup applies only to ROUND_ROBIN and LEAST_REQUEST, as in Envoy")
			}
		}
	}
}
