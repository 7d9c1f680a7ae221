package istio

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// poolService is the service the cluster policy tests write
// DestinationRules for: one HTTP port, two endpoints with service
// accounts, and a WorkloadEntry picked by its selector.
const poolService = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.org]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  workloadSelector:
    labels: {app: shop}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: shop-v1, namespace: default}
spec: {address: 127.0.0.1, labels: {app: shop, version: v1}, serviceAccount: shop-v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: shop-v2, namespace: default}
spec: {address: 127.0.0.2, labels: {app: shop, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: shop-vm, namespace: default}
spec: {address: 127.0.0.3, labels: {app: shop, version: v3}, serviceAccount: shop-vm}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-ns, namespace: other}
spec: {address: 127.0.0.4, labels: {app: shop}, serviceAccount: elsewhere}
`

// clusterView is the part of a cluster the policy tests compare, as
// canonical JSON: the reverse_proxy transport and selection policy, and
// the Cluster fields of the traffic policy.
type clusterView map[string]string

// viewCluster renders c for comparison.
func viewCluster(t *testing.T, c *istioapp.Cluster) clusterView {
	t.Helper()
	var proxy struct {
		Transport     json.RawMessage `json:"transport"`
		Headers       json.RawMessage `json:"headers"`
		LoadBalancing struct {
			SelectionPolicy json.RawMessage `json:"selection_policy"`
		} `json:"load_balancing"`
	}
	if err := json.Unmarshal(c.Proxy, &proxy); err != nil {
		t.Fatal(err)
	}
	v := clusterView{
		"transport": canonicalJSON(t, proxy.Transport),
		"selection": canonicalJSON(t, proxy.LoadBalancing.SelectionPolicy),
	}
	if len(proxy.Headers) > 0 {
		v["headers"] = canonicalJSON(t, proxy.Headers)
	}
	add := func(key string, value any, isNil bool) {
		if isNil {
			return
		}
		j, err := json.Marshal(value)
		if err != nil {
			t.Fatal(err)
		}
		v[key] = canonicalJSON(t, j)
	}
	add("connection_pool", c.ConnectionPool, c.ConnectionPool == nil)
	add("outlier_detection", c.OutlierDetection, c.OutlierDetection == nil)
	add("tls", c.TLS, c.TLS == nil)
	add("locality", c.Locality, c.Locality == nil)
	add("warmup", c.Warmup, c.Warmup == nil)
	add("tunnel", c.Tunnel, c.Tunnel == nil)
	add("retry_budget", c.RetryBudget, c.RetryBudget == nil)
	add("original_destination", c.OriginalDestination, !c.OriginalDestination)
	return v
}

// canonicalJSON re-encodes j with sorted keys and no spaces.
func canonicalJSON(t *testing.T, j []byte) string {
	t.Helper()
	if len(j) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatalf("%v: %s", err, j)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// shopIdentities are the identities of the endpoints of poolService.
const shopIdentities = `{"subject_alt_names":["spiffe://cluster.local/ns/default/sa/shop-v1","spiffe://cluster.local/ns/default/sa/shop-vm"]}`

// defaultTransport is the transport of a cluster without connection pool
// or TLS settings: Istio's connect and idle timeouts.
const defaultTransport = `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http"}`

func TestClusterPolicies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   string // the DestinationRule's trafficPolicy, YAML
		cluster  string // default outbound|80||shop.example.org
		subsets  string // the DestinationRule's subsets, YAML
		want     clusterView
		warnings []string // field: message parts
	}{
		{
			name: "no policy",
			want: clusterView{"transport": defaultTransport, "selection": `{"policy":"least_request"}`},
		},
		{
			name:   "round robin with warmup",
			policy: `loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 30s}}`,
			want: clusterView{
				"transport": defaultTransport,
				"selection": `{"policy":"istio_round_robin","warmup":{"aggression":1,"duration":30000000000,"minimum_percent":10}}`,
				"warmup":    `{"aggression":1,"duration":30000000000,"minimum_percent":10}`,
			},
		},
		{
			name:   "deprecated warmupDurationSecs",
			policy: `loadBalancer: {warmupDurationSecs: 1m}`,
			want: clusterView{
				"transport": defaultTransport,
				"selection": `{"policy":"least_request","warmup":{"aggression":1,"duration":60000000000,"minimum_percent":10}}`,
				"warmup":    `{"aggression":1,"duration":60000000000,"minimum_percent":10}`,
			},
		},
		{
			name:     "warmup with RANDOM is ignored",
			policy:   `loadBalancer: {simple: RANDOM, warmup: {duration: 30s}}`,
			want:     clusterView{"transport": defaultTransport, "selection": `{"policy":"istio_random"}`},
			warnings: []string{"spec.trafficPolicy.loadBalancer.warmup: ", "only to ROUND_ROBIN and LEAST_REQUEST"},
		},
		{
			name:   "cookie hash with session ttl",
			policy: `loadBalancer: {consistentHash: {httpCookie: {name: s, ttl: 0s}, ringHash: {minimumRingSize: 2048}}}`,
			want: clusterView{
				"transport": defaultTransport,
				"selection": `{"cookie":{"name":"s","ttl":"0s"},"minimum_ring_size":2048,"policy":"ring_hash"}`,
			},
		},
		{
			name:   "locality distribute applies without outlier detection",
			policy: `loadBalancer: {localityLbSetting: {distribute: [{from: r1/*, to: {"r1/*": 80, "r2/*": 20}}]}}`,
			want: clusterView{
				"transport": defaultTransport,
				"selection": `{"policy":"least_request"}`,
				"locality":  `{"distribute":[{"from":"r1/*","to":{"r1/*":80,"r2/*":20}}]}`,
			},
		},
		{
			name:   "locality failover needs outlier detection",
			policy: `loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r2}]}}`,
			want:   clusterView{"transport": defaultTransport, "selection": `{"policy":"least_request"}`},
			// Istio's own validation warning.
			warnings: []string{"outlier detection policy must be provided for failover"},
		},
		{
			name: "locality failover with outlier detection",
			policy: `
loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r2}], failoverPriority: [topology.istio.io/network]}}
outlierDetection: {}`,
			want: clusterView{
				"transport":         defaultTransport,
				"selection":         `{"policy":"least_request"}`,
				"locality":          `{"failover":[{"from":"r1","to":"r2"}],"failover_priority":["topology.istio.io/network"]}`,
				"outlier_detection": `{"base_ejection_time":30000000000,"consecutive_5xx_errors":5,"interval":10000000000,"max_ejection_percent":10}`,
			},
		},
		{
			name: "locality disabled",
			policy: `
loadBalancer: {localityLbSetting: {enabled: false}}
outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 2}`,
			want: clusterView{
				"transport":         defaultTransport,
				"selection":         `{"policy":"least_request"}`,
				"outlier_detection": `{"base_ejection_time":30000000000,"consecutive_gateway_errors":2,"interval":10000000000,"max_ejection_percent":10}`,
			},
		},
		{
			name: "outlier detection fields",
			policy: `
outlierDetection:
  consecutive5xxErrors: 7
  interval: 1s
  baseEjectionTime: 3m
  maxEjectionPercent: 100
  minHealthPercent: 50
  splitExternalLocalOriginErrors: true
  consecutiveLocalOriginFailures: 2
  outlierDetectionHttpErrorCodes: [500, 503]
loadBalancer: {localityLbSetting: {enabled: false}}`,
			want: clusterView{
				"transport":         defaultTransport,
				"selection":         `{"policy":"least_request"}`,
				"outlier_detection": `{"base_ejection_time":180000000000,"consecutive_5xx_errors":7,"consecutive_local_origin_failures":2,"error_status_codes":[500,503],"interval":1000000000,"max_ejection_percent":100,"min_health_percent":50,"split_external_local_origin_errors":true}`,
			},
		},
		{
			name: "connection pool",
			policy: `
connectionPool:
  tcp:
    maxConnections: 5
    connectTimeout: 2s
    maxConnectionDuration: 1m
    idleTimeout: 5m
    tcpKeepalive: {interval: 20s}
  http:
    http1MaxPendingRequests: 3
    http2MaxRequests: 7
    maxRetries: 2
    maxRequestsPerConnection: 10
    idleTimeout: 30s
    h2UpgradePolicy: UPGRADE`,
			want: clusterView{
				"transport":       `{"compression":false,"dial_timeout":2000000000,"keep_alive":{"idle_timeout":30000000000,"probe_interval":20000000000},"max_conns_per_host":5,"protocol":"http","versions":["h2c","2"]}`,
				"selection":       `{"policy":"least_request"}`,
				"connection_pool": `{"max_connection_duration":60000000000,"max_connections":5,"max_pending_requests":3,"max_requests":7,"max_requests_per_connection":10,"max_retries":2,"tcp_keepalive":{"interval":20000000000}}`,
			},
		},
		{
			name:   "tcp idle timeout 0s disables it; one request per connection",
			policy: `connectionPool: {tcp: {idleTimeout: 0s}, http: {maxRequestsPerConnection: 1}}`,
			want: clusterView{
				"transport":       `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"enabled":false,"idle_timeout":-1},"protocol":"http"}`,
				"selection":       `{"policy":"least_request"}`,
				"connection_pool": `{"max_requests_per_connection":1}`,
			},
		},
		{
			name: "keepalives, client protocol and max concurrent streams",
			policy: `
connectionPool:
  tcp: {tcpKeepalive: {time: 10s, probes: 3}}
  http: {useClientProtocol: true, maxConcurrentStreams: 10, http2KeepAlive: {interval: 1s, timeout: 1s}}`,
			want: clusterView{
				"transport":       defaultTransport,
				"selection":       `{"policy":"least_request"}`,
				"connection_pool": `{"http2_keep_alive":{"interval":1000000000,"timeout":1000000000},"tcp_keepalive":{"probes":3,"time":10000000000},"use_client_protocol":true}`,
			},
			warnings: []string{"connectionPool.http.maxConcurrentStreams: "},
		},
		{
			name:   "SIMPLE TLS with auto SNI",
			policy: `tls: {mode: SIMPLE}`,
			want: clusterView{
				"transport": `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http","tls":{"server_name":"{http.request.host}"},"versions":["1.1"]}`,
				"selection": `{"policy":"least_request"}`,
				// The ServiceEntry's identities, as Istio checks them without subjectAltNames.
				"tls": shopIdentities,
			},
		},
		{
			name:   "MUTUAL TLS",
			policy: `tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, sni: shop.internal, subjectAltNames: [shop.internal]}`,
			want: clusterView{
				"transport": `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http","tls":{"ca":{"pem_files":["/ca.pem"],"provider":"file"},"client_certificate_file":"/c.pem","client_certificate_key_file":"/k.pem","server_name":"shop.internal"},"versions":["1.1"]}`,
				"selection": `{"policy":"least_request"}`,
				"tls":       `{"subject_alt_names":["shop.internal"]}`,
			},
		},
		{
			name:   "SIMPLE TLS without verification, HTTP/2",
			policy: `tls: {mode: SIMPLE, insecureSkipVerify: true}` + "\n" + `connectionPool: {http: {h2UpgradePolicy: UPGRADE}}`,
			want: clusterView{
				"transport": `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http","tls":{"insecure_skip_verify":true,"server_name":"{http.request.host}"},"versions":["2"]}`,
				"selection": `{"policy":"least_request"}`,
			},
		},
		{
			name:   "ISTIO_MUTUAL: identities of the endpoints",
			policy: `tls: {mode: ISTIO_MUTUAL}`,
			want: clusterView{
				"transport": `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http","tls":{},"versions":["1.1"]}`,
				"selection": `{"policy":"least_request"}`,
				"tls":       `{"istio_mutual":true,"subject_alt_names":["spiffe://cluster.local/ns/default/sa/shop-v1","spiffe://cluster.local/ns/default/sa/shop-vm"]}`,
			},
		},
		{
			name:   "TLS settings Caddy lacks",
			policy: `tls: {mode: SIMPLE, credentialName: shop-cred}`,
			want: clusterView{
				"transport": `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http","tls":{"server_name":"{http.request.host}"},"versions":["1.1"]}`,
				"selection": `{"policy":"least_request"}`,
				// The ServiceEntry's identities, as Istio checks them without subjectAltNames.
				"tls": shopIdentities,
			},
			warnings: []string{"spec.trafficPolicy.tls.credentialName: "},
		},
		{
			name:   "certificate revocation list",
			policy: `tls: {mode: SIMPLE, caCrl: /crl.pem}`,
			want: clusterView{
				"transport": `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http","tls":{"server_name":"{http.request.host}"},"versions":["1.1"]}`,
				"selection": `{"policy":"least_request"}`,
				// The CRL file, and the ServiceEntry's identities, as Istio checks them without subjectAltNames.
				"tls": `{"crl_file":"/crl.pem","subject_alt_names":["spiffe://cluster.local/ns/default/sa/shop-v1","spiffe://cluster.local/ns/default/sa/shop-vm"]}`,
			},
		},
		{
			name:   "proxy protocol",
			policy: `proxyProtocol: {version: V2}`,
			want: clusterView{
				"transport": `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http","proxy_protocol":"v2"}`,
				"selection": `{"policy":"least_request"}`,
			},
		},
		{
			name:   "tunnel and retry budget",
			policy: `tunnel: {targetHost: proxy.internal, targetPort: 3128}` + "\n" + `retryBudget: {}`,
			want: clusterView{
				"transport":    defaultTransport,
				"selection":    `{"policy":"least_request"}`,
				"tunnel":       `{"target_host":"proxy.internal","target_port":3128}`,
				"retry_budget": `{"min_retry_concurrency":3,"percent":20}`,
			},
		},
		{
			name:   "retry budget values",
			policy: `retryBudget: {percent: 50, minRetryConcurrency: 1}`,
			want: clusterView{
				"transport":    defaultTransport,
				"selection":    `{"policy":"least_request"}`,
				"retry_budget": `{"min_retry_concurrency":1,"percent":50}`,
			},
		},
		{
			name:     "POST tunnel",
			policy:   `tunnel: {protocol: POST, targetHost: proxy.internal, targetPort: 3128}`,
			want:     clusterView{"transport": defaultTransport, "selection": `{"policy":"least_request"}`},
			warnings: []string{"spec.trafficPolicy.tunnel.protocol: ", "only CONNECT"},
		},
		{
			name:     "unsupported load balancers",
			policy:   `loadBalancer: {simple: LEAST_REQUEST, zoneAwareLbSetting: {enabled: true}}`,
			want:     clusterView{"transport": defaultTransport, "selection": `{"policy":"least_request"}`},
			warnings: []string{"spec.trafficPolicy.loadBalancer.zoneAwareLbSetting: "},
		},
		{
			name:   "passthrough",
			policy: `loadBalancer: {simple: PASSTHROUGH}`,
			want: clusterView{
				"transport":            defaultTransport,
				"selection":            `{"policy":"least_request"}`,
				"original_destination": `true`,
			},
		},
		{
			name:    "subset replaces whole blocks",
			policy:  `connectionPool: {tcp: {maxConnections: 5}}` + "\n" + `loadBalancer: {simple: RANDOM}`,
			subsets: `[{name: v1, labels: {version: v1}, trafficPolicy: {connectionPool: {http: {http1MaxPendingRequests: 1}}}}]`,
			cluster: "outbound|80|v1|shop.example.org",
			want: clusterView{
				"transport":       defaultTransport,
				"selection":       `{"policy":"istio_random"}`,
				"connection_pool": `{"max_pending_requests":1}`,
			},
		},
		{
			name:    "port level replaces the host level",
			policy:  `connectionPool: {tcp: {maxConnections: 5}}` + "\n" + `portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: ROUND_ROBIN}}]`,
			subsets: `[{name: v1, labels: {version: v1}}]`,
			cluster: "outbound|80|v1|shop.example.org",
			want:    clusterView{"transport": defaultTransport, "selection": `{"policy":"istio_round_robin"}`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dr := "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: shop, namespace: default}\nspec:\n  host: shop.example.org\n"
			if tc.policy != "" {
				dr += "  trafficPolicy:\n" + indent(strings.TrimSpace(tc.policy), "    ") + "\n"
			}
			if tc.subsets != "" {
				dr += "  subsets: " + tc.subsets + "\n"
			}
			a, warnings := adaptInline(t, poolService+dr)
			name := tc.cluster
			if name == "" {
				name = "outbound|80||shop.example.org"
			}
			var c *istioapp.Cluster
			for _, cl := range a.app.Clusters {
				if cl.Name == name {
					c = cl
				}
			}
			if c == nil {
				t.Fatalf("no cluster %s", name)
			}
			got := viewCluster(t, c)
			for k, want := range tc.want {
				if got[k] != want {
					t.Errorf("%s:\n got %s\nwant %s", k, got[k], want)
				}
			}
			for k, g := range got {
				if _, ok := tc.want[k]; !ok {
					t.Errorf("unexpected %s: %s", k, g)
				}
			}
			for _, w := range tc.warnings {
				if !hasWarning(warnings, w) {
					t.Errorf("missing warning %q in %q", w, warnings)
				}
			}
			for _, w := range warnings {
				expected := false
				for _, part := range tc.warnings {
					expected = expected || strings.Contains(w, part)
				}
				if !expected {
					t.Errorf("unexpected warning %q", w)
				}
			}
		})
	}
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	var b bytes.Buffer
	for i, line := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(prefix + line)
	}
	return b.String()
}

// TestDestinationRuleExportTo checks that a DestinationRule not exported
// to the namespace of any client of this proxy is ignored, and one
// exported to some of them applies with a warning.
func TestDestinationRuleExportTo(t *testing.T) {
	const gateway = `
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
`
	for _, tc := range []struct {
		name, exportTo, namespace, extra string
		wantPolicy                       string
		warning                          string
	}{
		{name: "public", exportTo: `["*"]`, namespace: "default", wantPolicy: "istio_random"},
		{name: "own namespace, the mesh listener's", exportTo: `["."]`, namespace: "default", wantPolicy: "istio_random"},
		{name: "own namespace, no client there", exportTo: `["."]`, namespace: "elsewhere", wantPolicy: "least_request", warning: "not exported to the namespace of any client of this proxy (default)"},
		{name: "named namespace", exportTo: `[default]`, namespace: "elsewhere", wantPolicy: "istio_random"},
		{name: "some clients", exportTo: `["."]`, namespace: "default", extra: gateway, wantPolicy: "istio_random", warning: "not exported to edge, but applies to its clients too"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := poolService + `
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: ` + tc.namespace + `}
spec:
  host: shop.example.org
  exportTo: ` + tc.exportTo + `
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
` + tc.extra
			a, warnings := adaptInline(t, input)
			var got clusterView
			for _, c := range a.app.Clusters {
				if c.Name == "outbound|80||shop.example.org" {
					got = viewCluster(t, c)
				}
			}
			if want := `{"policy":"` + tc.wantPolicy + `"}`; got["selection"] != want {
				t.Errorf("selection = %s, want %s", got["selection"], want)
			}
			if tc.warning != "" && !hasWarning(warnings, "spec.exportTo: ", tc.warning) {
				t.Errorf("missing warning %q in %q", tc.warning, warnings)
			}
			if tc.warning == "" && hasWarning(warnings, "spec.exportTo") {
				t.Errorf("unexpected warnings %q", warnings)
			}
		})
	}
}

// TestDestinationRuleWorkloadSelector checks that a DestinationRule with a
// workloadSelector applies when it selects this proxy (a Sidecar's
// workloadSelector labels, in the Sidecar's namespace), taking precedence
// over the rule without selector, and is ignored otherwise.
func TestDestinationRuleWorkloadSelector(t *testing.T) {
	const rules = `
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop-all, namespace: default}
spec:
  host: shop.example.org
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop-sleep, namespace: default}
spec:
  host: shop.example.org
  workloadSelector: {matchLabels: {app: sleep}}
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
`
	sidecar := func(ns string) string {
		return `
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sleep, namespace: ` + ns + `}
spec:
  workloadSelector: {labels: {app: sleep, version: v1}}
  egress: [{hosts: ["*/*"]}]
`
	}
	for _, tc := range []struct {
		name, input, wantPolicy string
		warnings                []string
	}{
		{
			name: "selects this proxy", input: poolService + rules + sidecar("default"), wantPolicy: "istio_random",
			warnings: []string{"spec.host: ", "shop-sleep, whose workloadSelector selects this proxy, takes precedence"},
		},
		{
			name: "other namespace", input: poolService + rules + sidecar("other"), wantPolicy: "istio_round_robin",
			warnings: []string{"spec.workloadSelector: ", "selects no workload of this proxy"},
		},
		{
			name: "no Sidecar", input: poolService + rules, wantPolicy: "istio_round_robin",
			warnings: []string{"spec.workloadSelector: ", "selects no workload of this proxy"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, warnings := adaptInline(t, tc.input)
			var got clusterView
			for _, c := range a.app.Clusters {
				if c.Name == "outbound|80||shop.example.org" {
					got = viewCluster(t, c)
				}
			}
			if want := `{"policy":"` + tc.wantPolicy + `"}`; got["selection"] != want {
				t.Errorf("selection = %s, want %s", got["selection"], want)
			}
			if !hasWarning(warnings, tc.warnings...) {
				t.Errorf("missing warning %q in %q", tc.warnings, warnings)
			}
		})
	}
}

// TestHTTP2PortVersions: a service port of protocol HTTP2, GRPC or
// GRPC-WEB speaks HTTP/2 to its endpoints (h2c in plaintext, h2 over TLS),
// whatever h2UpgradePolicy says, as Istio's setUpstreamProtocol; an HTTP
// port speaks HTTP/1.1 unless upgraded.
func TestHTTP2PortVersions(t *testing.T) {
	for _, tc := range []struct {
		protocol, policy, want string
	}{
		{"GRPC", ``, `["h2c"]`},
		{"HTTP2", ``, `["h2c"]`},
		{"GRPC-WEB", ``, `["h2c"]`},
		{"GRPC", `tls: {mode: SIMPLE}`, `["2"]`},
		{"GRPC", `connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE}}`, `["h2c"]`},
		{"HTTP", ``, ``},
		{"HTTP", `connectionPool: {http: {h2UpgradePolicy: UPGRADE}}`, `["h2c","2"]`},
		{"HTTP", `tls: {mode: SIMPLE}`, `["1.1"]`},
	} {
		t.Run(tc.protocol+" "+tc.policy, func(t *testing.T) {
			in := strings.Replace(poolService, "protocol: HTTP}", "protocol: "+tc.protocol+"}", 1)
			if tc.policy != "" {
				in += "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: shop, namespace: default}\nspec:\n  host: shop.example.org\n  trafficPolicy: {" + tc.policy + "}\n"
			}
			a, _ := adaptInline(t, in)
			var proxy struct {
				Transport struct {
					Versions json.RawMessage `json:"versions"`
				} `json:"transport"`
			}
			for _, c := range a.app.Clusters {
				if c.Name == "outbound|80||shop.example.org" {
					if err := json.Unmarshal(c.Proxy, &proxy); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := string(proxy.Transport.Versions); got != tc.want {
				t.Errorf("versions %s, want %s", got, tc.want)
			}
		})
	}
}
