package istio

import (
	"encoding/json"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/modules/istiolb"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
)

// selectionPolicy returns the reverse_proxy selection policy for Istio's
// load balancer settings (nil settings are Istio's default):
//
//   - simple unset, UNSPECIFIED, LEAST_REQUEST, LEAST_CONN (a deprecated
//     alias Istio also sends to Envoy's LEAST_REQUEST), and PASSTHROUGH
//     (not supported, warned): least_request (modules/istiolb), Envoy's power
//     of two choices over active requests. Caddy's random_choose is not used:
//     with idle upstreams it always picks the same one;
//   - ROUND_ROBIN: round_robin; RANDOM: random;
//   - consistentHash: header (httpHeaderName), query
//     (httpQueryParameterName), client_ip_hash (useSourceIp), cookie
//     (httpCookie: name, max_age = ttl). Caddy hashes with rendezvous
//     hashing and falls back to random when the key is missing, as Envoy
//     picks at random then.
func selectionPolicy(lb *networking.LoadBalancerSettings) json.RawMessage {
	var w []caddyconfig.Warning
	leastRequest := func() json.RawMessage {
		return caddyconfig.JSONModuleObject(istiolb.LeastRequestSelection{}, "policy", "least_request", &w)
	}
	switch p := lb.GetLbPolicy().(type) {
	case *networking.LoadBalancerSettings_Simple:
		switch p.Simple {
		case networking.LoadBalancerSettings_ROUND_ROBIN:
			return caddyconfig.JSONModuleObject(&reverseproxy.RoundRobinSelection{}, "policy", "round_robin", &w)
		case networking.LoadBalancerSettings_RANDOM:
			return caddyconfig.JSONModuleObject(reverseproxy.RandomSelection{}, "policy", "random", &w)
		}
		return leastRequest()
	case *networking.LoadBalancerSettings_ConsistentHash:
		ch := p.ConsistentHash
		switch key := ch.GetHashKey().(type) {
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
			return caddyconfig.JSONModuleObject(reverseproxy.HeaderHashSelection{Field: key.HttpHeaderName}, "policy", "header", &w)
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
			return caddyconfig.JSONModuleObject(reverseproxy.QueryHashSelection{Key: key.HttpQueryParameterName}, "policy", "query", &w)
		case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
			if key.UseSourceIp {
				return caddyconfig.JSONModuleObject(reverseproxy.ClientIPHashSelection{}, "policy", "client_ip_hash", &w)
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
			cookie := reverseproxy.CookieHashSelection{Name: key.HttpCookie.GetName()}
			if ttl := key.HttpCookie.GetTtl(); ttl != nil {
				cookie.MaxAge = caddy.Duration(ttl.AsDuration())
			}
			return caddyconfig.JSONModuleObject(cookie, "policy", "cookie", &w)
		}
		// No hash key: Envoy hashes nothing and picks at random.
		return caddyconfig.JSONModuleObject(reverseproxy.RandomSelection{}, "policy", "random", &w)
	}
	return leastRequest()
}

// checkLoadBalancer warns about load balancer settings that are not
// translated exactly.
func (t *translator) checkLoadBalancer(obj *istioyaml.Object, path string, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	switch p := lb.GetLbPolicy().(type) {
	case *networking.LoadBalancerSettings_Simple:
		if p.Simple == networking.LoadBalancerSettings_PASSTHROUGH {
			t.warn(obj, path+".simple", "PASSTHROUGH is not supported yet: LEAST_REQUEST (the default) is used")
		}
	case *networking.LoadBalancerSettings_ConsistentHash:
		ch := p.ConsistentHash
		chPath := path + ".consistentHash"
		if c, ok := ch.GetHashKey().(*networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie); ok {
			msg := "Caddy's cookie affinity is not Envoy's ring-hashed cookie: the cookie holds a keyed hash of the chosen endpoint, and Caddy sets it whenever it is missing (Envoy only when ttl is set)"
			if c.HttpCookie.GetPath() != "" || len(c.HttpCookie.GetAttributes()) > 0 {
				msg += "; its path is always / and path and attributes are ignored"
			}
			t.warn(obj, chPath+".httpCookie", msg)
		}
		const rendezvous = "Caddy hashes with rendezvous hashing; ring hash and maglev are not implemented yet: this setting is ignored (requests with the same key still go to the same endpoint)"
		switch ch.GetHashAlgorithm().(type) {
		case *networking.LoadBalancerSettings_ConsistentHashLB_RingHash_:
			t.warn(obj, chPath+".ringHash", rendezvous)
		case *networking.LoadBalancerSettings_ConsistentHashLB_Maglev:
			t.warn(obj, chPath+".maglev", rendezvous)
		}
		if ch.GetMinimumRingSize() != 0 {
			t.warn(obj, chPath+".minimumRingSize", rendezvous)
		}
	case *networking.LoadBalancerSettings_BackendUtilization:
		t.warn(obj, path+".backendUtilization", notImplemented+": LEAST_REQUEST (the default) is used")
	}
	if lb.GetLocalityLbSetting() != nil {
		t.warn(obj, path+".localityLbSetting", notImplemented)
	}
	if lb.GetZoneAwareLbSetting() != nil {
		t.warn(obj, path+".zoneAwareLbSetting", notImplemented)
	}
	if lb.GetWarmupDurationSecs() != nil {
		t.warn(obj, path+".warmupDurationSecs", notImplemented)
	}
	if lb.GetWarmup() != nil {
		t.warn(obj, path+".warmup", notImplemented)
	}
}
