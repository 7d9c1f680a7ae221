package istio

import (
	"encoding/json"
	"testing"

	"github.com/golang/protobuf/jsonpb"
	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"
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
			name: "DR level", port: 80, wantPolicy: "round_robin",
			check: func(t *testing.T, tp *networking.TrafficPolicy) {
				if tp.GetConnectionPool() == nil || tp.GetTunnel() == nil {
					t.Errorf("DR-level blocks lost: %v", tp)
				}
			},
		},
		{
			name: "DR port level replaces the DR level", port: 8080, wantPolicy: "random",
			check: func(t *testing.T, tp *networking.TrafficPolicy) {
				if tp.GetConnectionPool() != nil || tp.GetTunnel() != nil {
					t.Errorf("port-level policy inherited DR-level blocks: %v", tp)
				}
			},
		},
		{name: "subset without policy inherits", subset: "plain", port: 80, wantPolicy: "round_robin"},
		{name: "subset without policy inherits the port level", subset: "plain", port: 8080, wantPolicy: "random"},
		{name: "subset block replaces", subset: "lb", port: 80, wantPolicy: "header"},
		{name: "subset block replaces the port level too", subset: "lb", port: 8080, wantPolicy: "header"},
		{
			name: "subset replaces whole blocks", subset: "pool", port: 80, wantPolicy: "round_robin",
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
		{name: "subset policy for other ports", subset: "portlevel", port: 9090, wantPolicy: "header"},
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
	if tp := resolvePolicy(nil, subset("lb"), 80); policyName(t, tp) != "header" {
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
		{`simple: ROUND_ROBIN`, `{"policy":"round_robin"}`},
		{`simple: RANDOM`, `{"policy":"random"}`},
		{`consistentHash: {httpHeaderName: x-user}`, `{"field":"x-user","policy":"header"}`},
		{`consistentHash: {httpQueryParameterName: u}`, `{"key":"u","policy":"query"}`},
		{`consistentHash: {useSourceIp: true}`, `{"policy":"client_ip_hash"}`},
		{`consistentHash: {httpCookie: {name: s, ttl: 10s}}`, `{"max_age":10000000000,"name":"s","policy":"cookie"}`},
		{`consistentHash: {httpCookie: {name: s}}`, `{"name":"s","policy":"cookie"}`},
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
