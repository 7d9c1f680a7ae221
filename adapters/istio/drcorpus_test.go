package istio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// TestDestinationRuleCorpus adapts the sample DestinationRules with the
// services they are written for and checks the clusters Istio would build,
// and that nothing but the skipped Kubernetes kinds (and Istio's own
// deprecation warning) is reported.
func TestDestinationRuleCorpus(t *testing.T) {
	dir := corpusDir(t, "istio-samples")
	const (
		bookinfo     = "bookinfo/platform/kube/bookinfo.yaml"
		httpbin      = "httpbin/httpbin.yaml"
		circuit      = "istio.io/tasks/traffic-management/circuit-breaking/snip_configuring_the_circuit_breaker_1.yaml"
		legacy       = "istio.io/tasks/traffic-management/circuit-breaking/legacy-0f7c1cc/snip_configuring_the_circuit_breaker_1.yaml"
		reviews      = "outbound|9080||reviews.default.svc.cluster.local"
		reviewsV2    = "outbound|9080|v2|reviews.default.svc.cluster.local"
		ratingsMySQL = "outbound|9080|v2-mysql-vm|ratings.default.svc.cluster.local"
		httpbinPort  = "outbound|8000||httpbin.default.svc.cluster.local"
	)
	// The circuit-breaking task's pool: one connection, one pending
	// request, no keep-alive; ejection after one 5xx.
	circuitPool := clusterView{
		"transport":         `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"enabled":false,"idle_timeout":3600000000000},"max_conns_per_host":1,"protocol":"http"}`,
		"selection":         `{"policy":"least_request"}`,
		"connection_pool":   `{"max_connections":1,"max_pending_requests":1,"max_requests_per_connection":1}`,
		"outlier_detection": `{"base_ejection_time":180000000000,"consecutive_5xx_errors":1,"interval":1000000000,"max_ejection_percent":100}`,
		"locality":          `{}`,
	}
	legacyPool := clusterView{}
	for k, v := range circuitPool {
		legacyPool[k] = v
	}
	// consecutiveErrors is ignored: Envoy's default of 5 applies.
	legacyPool["outlier_detection"] = `{"base_ejection_time":180000000000,"consecutive_5xx_errors":5,"interval":1000000000,"max_ejection_percent":100}`

	for _, tc := range []struct {
		name     string
		files    []string
		clusters map[string]clusterView
		warnings []string // allowed warnings besides skipped kinds
	}{
		{
			name:  "destination-rule-all",
			files: []string{bookinfo, "bookinfo/networking/destination-rule-all.yaml"},
			clusters: map[string]clusterView{
				reviews:      {"transport": defaultTransport, "selection": `{"policy":"least_request"}`},
				reviewsV2:    {"transport": defaultTransport, "selection": `{"policy":"least_request"}`},
				ratingsMySQL: {"transport": defaultTransport, "selection": `{"policy":"least_request"}`},
			},
		},
		{
			name:  "destination-rule-all-mtls",
			files: []string{bookinfo, "bookinfo/networking/destination-rule-all-mtls.yaml"},
			clusters: map[string]clusterView{
				// No WorkloadEntries: no known identities, so any of the
				// trust domain is accepted.
				reviews:   {"transport": `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http","tls":{},"versions":["1.1"]}`, "selection": `{"policy":"least_request"}`, "tls": `{"istio_mutual":true}`},
				reviewsV2: {"transport": `{"compression":false,"dial_timeout":10000000000,"keep_alive":{"idle_timeout":3600000000000},"protocol":"http","tls":{},"versions":["1.1"]}`, "selection": `{"policy":"least_request"}`, "tls": `{"istio_mutual":true}`},
			},
		},
		{
			name:  "destination-rule-reviews",
			files: []string{bookinfo, "bookinfo/networking/destination-rule-reviews.yaml"},
			clusters: map[string]clusterView{
				reviews:   {"transport": defaultTransport, "selection": `{"policy":"istio_random"}`},
				reviewsV2: {"transport": defaultTransport, "selection": `{"policy":"istio_random"}`},
			},
		},
		{
			name:     "circuit-breaking",
			files:    []string{httpbin, circuit},
			clusters: map[string]clusterView{httpbinPort: circuitPool},
		},
		{
			name:     "circuit-breaking legacy consecutiveErrors",
			files:    []string{httpbin, legacy},
			clusters: map[string]clusterView{httpbinPort: legacyPool},
			warnings: []string{"spec.trafficPolicy.outlierDetection.consecutiveErrors: outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var docs []string
			for _, f := range tc.files {
				data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
				if err != nil {
					t.Fatal(err)
				}
				docs = append(docs, string(data))
			}
			a, warnings := adaptInline(t, strings.Join(docs, "\n---\n"))
			byName := make(map[string]*istioapp.Cluster)
			for _, c := range a.app.Clusters {
				byName[c.Name] = c
			}
			for name, want := range tc.clusters {
				c := byName[name]
				if c == nil {
					t.Errorf("no cluster %s", name)
					continue
				}
				got := viewCluster(t, c)
				for k := range mergeKeys(got, want) {
					if got[k] != want[k] {
						t.Errorf("%s %s:\n got %s\nwant %s", name, k, got[k], want[k])
					}
				}
			}
			for _, w := range warnings {
				if strings.Contains(w, "is not used by caddy-istio; skipped") {
					continue
				}
				allowed := false
				for _, a := range tc.warnings {
					allowed = allowed || strings.Contains(w, a)
				}
				if !allowed {
					t.Errorf("unexpected warning %q", w)
				}
			}
		})
	}
}

// mergeKeys is the set of keys of a and b.
func mergeKeys(a, b clusterView) map[string]bool {
	keys := make(map[string]bool)
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}
