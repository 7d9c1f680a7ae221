package istio

import (
	"encoding/json"
	"testing"

	"github.com/golang/protobuf/jsonpb"
	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"

	_ "github.com/caddy-istio/caddy-istio/modules/istiolb" // the selection policies, for TestValidate
)

// destinationRuleYAML decodes a DestinationRule spec written in YAML.
func destinationRuleYAML(t *testing.T, spec string) *networking.DestinationRule {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	dr := &networking.DestinationRule{}
	if err := jsonpb.UnmarshalString(string(j), dr); err != nil {
		t.Fatal(err)
	}
	return dr
}

// policyName is the reverse_proxy selection policy chosen for a cluster.
func policyName(t *testing.T, tp *networking.TrafficPolicy) string {
	t.Helper()
	var p struct {
		Policy string `json:"policy"`
	}
	if err := json.Unmarshal(selectionPolicy(tp.GetLoadBalancer()), &p); err != nil {
		t.Fatal(err)
	}
	return p.Policy
}

// TestResolvePolicy checks Istio's inheritance rules (MergeSubsetTrafficPolicy):
// port-level settings replace the DR-level policy for their port, subset
// blocks replace whole blocks, and a subset port-level entry replaces all
// four blocks.
func TestResolvePolicy(t *testing.T) {
	dr := destinationRuleYAML(t, `
host: svc
trafficPolicy:
  loadBalancer: {simple: ROUND_ROBIN}
  connectionPool: {tcp: {maxConnections: 10}}
  tunnel: {targetHost: proxy, targetPort: 3128}
  portLevelSettings:
  - port: {number: 8080}
    loadBalancer: {simple: RANDOM}
subsets:
- name: plain
- name: lb
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
- name: pool
  trafficPolicy:
    connectionPool: {http: {http1MaxPendingRequests: 1}}
- name: portlevel
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
    portLevelSettings:
    - port: {number: 80}
      outlierDetection: {consecutive5xxErrors: 3}
`)
	subset := func(name string) *networking.Subset {
		for _, s := range dr.Subsets {
			if s.Name == name {
				return s
			}
		}
		return nil
	}
	for _, tc := range []struct {
		name       string
		subset     string
		port       uint32
		wantPolicy string
		check      func(t *testing.T, tp *networking.TrafficPolicy)
	}{
		{
			name: "DR level", port: 80, wantPolicy: "istio_round_robin",
			check: func(t *testing.T, tp *networking.TrafficPolicy) {
				if tp.GetConnectionPool() == nil || tp.GetTunnel() == nil {
					t.Errorf("DR-level blocks lost: %v", tp)
				}
			},
		},
		{
			name: "DR port level replaces the DR level", port: 8080, wantPolicy: "istio_random",
			check: func(t *testing.T, tp *networking.TrafficPolicy) {
				if tp.GetConnectionPool() != nil || tp.GetTunnel() != nil {
					t.Errorf("port-level policy inherited DR-level blocks: %v", tp)
				}
			},
		},
		{name: "subset without policy inherits", subset: "plain", port: 80, wantPolicy: "istio_round_robin"},
		{name: "subset without policy inherits the port level", subset: "plain", port: 8080, wantPolicy: "istio_random"},
		{name: "subset block replaces", subset: "lb", port: 80, wantPolicy: "ring_hash"},
		{name: "subset block replaces the port level too", subset: "lb", port: 8080, wantPolicy: "ring_hash"},
		{
			name: "subset replaces whole blocks", subset: "pool", port: 80, wantPolicy: "istio_round_robin",
			check: func(t *testing.T, tp *networking.TrafficPolicy) {
				if tp.GetConnectionPool().GetTcp() != nil || tp.GetConnectionPool().GetHttp() == nil {
					t.Errorf("connectionPool merged instead of replaced: %v", tp.GetConnectionPool())
				}
				if tp.GetTunnel() == nil {
					t.Errorf("tunnel not inherited: %v", tp)
				}
			},
		},
		{
			name: "subset port level replaces all four blocks", subset: "portlevel", port: 80, wantPolicy: "least_request",
			check: func(t *testing.T, tp *networking.TrafficPolicy) {
				if tp.GetConnectionPool() != nil || tp.GetOutlierDetection() == nil {
					t.Errorf("want only outlierDetection of the four blocks: %v", tp)
				}
				if tp.GetTunnel() == nil {
					t.Errorf("tunnel of the DR level should stay: %v", tp)
				}
			},
		},
		{name: "subset policy for other ports", subset: "portlevel", port: 9090, wantPolicy: "ring_hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s *networking.Subset
			if tc.subset != "" {
				s = subset(tc.subset)
			}
			tp := resolvePolicy(dr.TrafficPolicy, s, tc.port)
			if got := policyName(t, tp); got != tc.wantPolicy {
				t.Errorf("policy = %s, want %s", got, tc.wantPolicy)
			}
			if len(tp.GetPortLevelSettings()) > 0 {
				t.Errorf("resolved policy keeps portLevelSettings: %v", tp)
			}
			if tc.check != nil {
				tc.check(t, tp)
			}
		})
	}
	if tp := resolvePolicy(nil, nil, 80); tp != nil {
		t.Errorf("no DestinationRule: got %v, want nil", tp)
	}
	if tp := resolvePolicy(nil, subset("lb"), 80); policyName(t, tp) != "ring_hash" {
		t.Errorf("subset policy without DR policy: got %v", tp)
	}
}

func TestSelectionPolicy(t *testing.T) {
	for _, tc := range []struct {
		lb   string
		want string
	}{
		{``, `{"policy":"least_request"}`},
		{`simple: UNSPECIFIED`, `{"policy":"least_request"}`},
		{`simple: LEAST_REQUEST`, `{"policy":"least_request"}`},
		{`simple: PASSTHROUGH`, `{"policy":"least_request"}`},
		{`simple: LEAST_CONN`, `{"policy":"least_request"}`},
		{`simple: ROUND_ROBIN`, `{"policy":"istio_round_robin"}`},
		{`simple: RANDOM`, `{"policy":"istio_random"}`},
		{`consistentHash: {httpHeaderName: x-user}`, `{"header":"x-user","policy":"ring_hash"}`},
		{`consistentHash: {httpQueryParameterName: u}`, `{"policy":"ring_hash","query_parameter":"u"}`},
		{`consistentHash: {useSourceIp: true}`, `{"policy":"ring_hash","source_ip":true}`},
		{`consistentHash: {useSourceIp: false}`, `{"policy":"istio_random"}`},
		{`consistentHash: {httpCookie: {name: s, ttl: 10s}}`, `{"cookie":{"name":"s","ttl":"10s"},"policy":"ring_hash"}`},
		{`consistentHash: {httpCookie: {name: s, path: /a, ttl: 0s}}`, `{"cookie":{"name":"s","path":"/a","ttl":"0s"},"policy":"ring_hash"}`},
		{`consistentHash: {httpCookie: {name: s}}`, `{"cookie":{"name":"s"},"policy":"ring_hash"}`},
		{`consistentHash: {httpCookie: {name: s, ttl: 1s, attributes: [{name: SameSite, value: Strict}, {name: Secure}]}}`, `{"cookie":{"attributes":[{"name":"SameSite","value":"Strict"},{"name":"Secure"}],"name":"s","ttl":"1s"},"policy":"ring_hash"}`},
		{`consistentHash: {httpHeaderName: x, minimumRingSize: 2048}`, `{"header":"x","minimum_ring_size":2048,"policy":"ring_hash"}`},
		{`consistentHash: {httpHeaderName: x, ringHash: {minimumRingSize: 4096}}`, `{"header":"x","minimum_ring_size":4096,"policy":"ring_hash"}`},
		{`consistentHash: {httpHeaderName: x, maglev: {tableSize: 65537}}`, `{"header":"x","policy":"maglev","table_size":65537}`},
		{`consistentHash: {httpHeaderName: x, maglev: {}}`, `{"header":"x","policy":"maglev"}`},
		{`simple: ROUND_ROBIN, warmup: {duration: 30s}`, `{"policy":"istio_round_robin","warmup":{"duration":30000000000,"minimum_percent":10,"aggression":1}}`},
		{`warmup: {duration: 1m, minimumPercent: 25, aggression: 2}`, `{"policy":"least_request","warmup":{"duration":60000000000,"minimum_percent":25,"aggression":2}}`},
		{`simple: LEAST_REQUEST, warmupDurationSecs: 10s`, `{"policy":"least_request","warmup":{"duration":10000000000,"minimum_percent":10,"aggression":1}}`},
		{`simple: RANDOM, warmupDurationSecs: 10s`, `{"policy":"istio_random"}`},
	} {
		var lb *networking.LoadBalancerSettings
		if tc.lb != "" {
			lb = destinationRuleYAML(t, "host: x\ntrafficPolicy:\n  loadBalancer: {"+tc.lb+"}\n").TrafficPolicy.LoadBalancer
		}
		if got := string(selectionPolicy(lb)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.lb, got, tc.want)
		}
	}
}
