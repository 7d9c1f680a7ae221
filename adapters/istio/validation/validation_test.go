package validation

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
)

// corpusDir returns /work/shared/corpus/sub located from this package,
// skipping the test if it is absent.
func corpusDir(t testing.TB, sub string) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Skip("cannot locate the test file")
	}
	dir := filepath.Join(filepath.Dir(self), "..", "..", "..", "..", "shared", "corpus", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("corpus folder absent: %v", err)
	}
	return dir
}

// decodeOne decodes a YAML document that must hold exactly one object.
func decodeOne(t *testing.T, name, doc string) *istioyaml.Object {
	t.Helper()
	objs, _, errs := istioyaml.Decode(name, []byte(doc), istioyaml.Options{})
	if len(errs) > 0 {
		t.Fatalf("%s: decode: %v", name, errs)
	}
	if len(objs) != 1 {
		t.Fatalf("%s: decoded %d objects, want 1", name, len(objs))
	}
	return objs[0]
}

// invalidCorpus splits validation-invalid.yaml into its "# case:" documents.
func invalidCorpus(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{}
	for _, chunk := range strings.Split(string(data), "\n---\n") {
		for _, line := range strings.Split(chunk, "\n") {
			if name, ok := strings.CutPrefix(line, "# case: "); ok {
				docs[strings.TrimSpace(name)] = chunk
			}
		}
	}
	return docs
}

// expectedErrors reads Istio's error texts per case of suite "validation".
func expectedErrors(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Suite, Case string
			Errors      []string
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Suite == "validation" {
			out[rec.Case] = rec.Errors
		}
	}
	return out
}

// TestInvalidCorpus checks that every composed invalid document is rejected
// with Istio's messages, each located at the field at fault. fields lists
// the path of each expected message, in the order of expected-errors.jsonl.
func TestInvalidCorpus(t *testing.T) {
	dir := corpusDir(t, "istio-invalid")
	docs := invalidCorpus(t, filepath.Join(dir, "validation-invalid.yaml"))
	expected := expectedErrors(t, filepath.Join(dir, "expected-errors.jsonl"))

	tests := []struct {
		name   string
		fields []string
	}{
		{"vs-no-routes", []string{"spec.http"}},
		{"vs-duplicate-hosts", []string{"spec.hosts[1]"}},
		{"vs-wildcard-host-on-mesh", []string{"spec.hosts[0]"}},
		{"vs-bad-host", []string{"spec.hosts[0]"}},
		{"vs-no-action", []string{"spec.http[0].route"}},
		{"vs-route-and-redirect", []string{"spec.http[0].route"}},
		{"vs-fault-and-redirect", []string{"spec.http[0].fault"}},
		{"vs-rewrite-and-redirect", []string{"spec.http[0].rewrite"}},
		{"vs-route-and-direct-response", []string{"spec.http[0].route"}},
		{"vs-direct-response-bad-status", []string{"spec.http[0].directResponse.status"}},
		{"vs-negative-weight", []string{"spec.http[0].route[0].weight"}},
		{"vs-total-weight-zero", []string{"spec.http[0].route"}},
		{"vs-destination-host-star", []string{"spec.http[0].route[0].destination.host"}},
		{"vs-bad-subset-name", []string{"spec.http[0].route[0].destination.subset"}},
		{"vs-destination-port-out-of-range", []string{"spec.http[0].route[0].destination.port.number"}},
		{"vs-timeout-zero", []string{"spec.http[0].timeout"}},
		{"vs-timeout-sub-ms", []string{"spec.http[0].timeout"}},
		{"vs-retries-negative-attempts", []string{"spec.http[0].retries.attempts"}},
		{"vs-retries-zero-with-policy", []string{"spec.http[0].retries.attempts"}},
		{"vs-retry-on-unknown", []string{"spec.http[0].retries.retryOn", "spec.http[0].retries.retryOn"}},
		{"vs-per-try-timeout-too-small", []string{"spec.http[0].retries.perTryTimeout"}},
		{"vs-fault-empty", []string{"spec.http[0].fault"}},
		{"vs-fault-abort-bad-status", []string{"spec.http[0].fault.abort.httpStatus"}},
		{"vs-fault-abort-percentage-range", []string{"spec.http[0].fault.abort.percentage.value"}},
		{"vs-fault-grpc-status-numeric", []string{"spec.http[0].fault.abort.grpcStatus"}},
		{"vs-fault-delay-exponential", []string{"spec.http[0].fault.delay.exponentialDelay"}},
		{"vs-fault-delay-too-small", []string{"spec.http[0].fault.delay.fixedDelay"}},
		{"vs-mirror-percentage-over-100", []string{"spec.http[0].mirrorPercentage.value"}},
		{"vs-mirror-and-mirrors", []string{"spec.http[0].mirrors"}},
		{"vs-mirrors-no-destination", []string{"spec.http[0].mirrors[0].destination"}},
		{"vs-redirect-bad-code", []string{"spec.http[0].redirect.redirectCode"}},
		{"vs-redirect-bad-scheme", []string{"spec.http[0].redirect.scheme"}},
		{"vs-redirect-empty", []string{"spec.http[0].redirect"}},
		{"vs-redirect-uri-and-prefix-rewrite", []string{"spec.http[0].redirect.prefixRewrite"}},
		{"vs-redirect-prefix-rewrite-needs-prefix-match", []string{"spec.http[0].match[0].uri"}},
		{"vs-rewrite-uri-and-regex", []string{"spec.http[0].rewrite.uriRegexRewrite"}},
		{"vs-rewrite-empty", []string{"spec.http[0].rewrite"}},
		{"vs-regex-rewrite-incomplete", []string{"spec.http[0].rewrite.uriRegexRewrite.rewrite"}},
		{"vs-uri-regex-invalid", []string{"spec.http[0].match[0].uri.regex"}},
		{"vs-header-empty-prefix", []string{"spec.http[0].match[0].headers.end-user.prefix"}},
		{"vs-header-name-invalid", []string{"spec.http[0].match[0].headers.end user"}},
		{"vs-cors-bad-method", []string{"spec.http[0].corsPolicy.allowMethods[1]"}},
		{"vs-cors-max-age-fraction", []string{"spec.http[0].corsPolicy.maxAge"}},
		{"vs-authority-set-twice", []string{"spec.http[0].headers.request.set.host"}},
		{"vs-bad-gateway-reference", []string{"spec.gateways[0]"}},
		{"vs-source-namespace-invalid", []string{"spec.http[0].match[0].sourceNamespace"}},
		{"vs-jwt-claim-on-mesh", []string{"spec.http[0].match[0].headers.@request.auth.claims.group"}},
		{"vs-tls-match-without-sni", []string{"spec.tls[0].match[0].sniHosts"}},
		{"vs-tls-sni-not-subset-of-hosts", []string{"spec.tls[0].match[0].sniHosts[0]"}},
		{"vs-tcp-without-route", []string{"spec.tcp[0].route"}},
		{"vs-delegate-with-gateways", []string{"spec.gateways"}},
		{"vs-root-delegate-with-route", []string{"spec.http[0].route"}},
		{"dr-empty-traffic-policy", []string{"spec.trafficPolicy"}},
		{"dr-duplicate-subsets", []string{"spec.subsets[1].name"}},
		{"dr-bad-subset-name", []string{"spec.subsets[0].name"}},
		{"dr-bad-host", []string{"spec.host"}},
		{"dr-empty-connection-pool", []string{"spec.trafficPolicy.connectionPool"}},
		{"dr-negative-pool-limits", []string{
			"spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
			"spec.trafficPolicy.connectionPool.http.maxRetries",
			"spec.trafficPolicy.connectionPool.tcp.maxConnections",
		}},
		{"dr-connect-timeout-too-small", []string{"spec.trafficPolicy.connectionPool.tcp.connectTimeout"}},
		{"dr-h2-upgrade-with-client-protocol", []string{"spec.trafficPolicy.connectionPool.http.useClientProtocol"}},
		{"dr-outlier-ejection-percent-range", []string{"spec.trafficPolicy.outlierDetection.maxEjectionPercent"}},
		{"dr-outlier-local-origin-without-split", []string{"spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures"}},
		{"dr-maglev-table-not-prime", []string{"spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize"}},
		{"dr-cookie-without-name", []string{"spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name"}},
		{"dr-locality-distribute-and-failover", []string{"spec.trafficPolicy.loadBalancer.localityLbSetting"}},
		{"dr-locality-weights-not-100", []string{"spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to"}},
		{"dr-tls-mutual-missing-cert", []string{"spec.trafficPolicy.tls.clientCertificate", "spec.trafficPolicy.tls.privateKey"}},
		{"dr-tls-credential-and-files", []string{"spec.trafficPolicy.tls.credentialName"}},
		{"dr-tls-insecure-skip-with-ca", []string{"spec.trafficPolicy.tls.insecureSkipVerify"}},
		{"dr-port-level-empty", []string{"spec.trafficPolicy.portLevelSettings[0]"}},
		{"dr-tunnel-with-proxy-protocol", []string{"spec.trafficPolicy.proxyProtocol"}},
		{"dr-tunnel-bad-protocol", []string{"spec.trafficPolicy.tunnel.protocol"}},
		{"dr-warmup-bad-aggression", []string{"spec.trafficPolicy.loadBalancer.warmup.minimumPercent", "spec.trafficPolicy.loadBalancer.warmup.aggression"}},
		{"gw-no-servers", []string{"spec.servers"}},
		{"gw-https-without-tls", []string{"spec.servers[0].tls"}},
		{"gw-simple-without-cert", []string{"spec.servers[0].tls.serverCertificate", "spec.servers[0].tls.privateKey"}},
		{"gw-mutual-without-ca", []string{"spec.servers[0].tls.caCertificates"}},
		{"gw-istio-mutual-with-cert", []string{"spec.servers[0].tls.serverCertificate"}},
		{"gw-two-cert-sources", []string{"spec.servers[0].tls"}},
		{"gw-duplicate-port-names", []string{"spec.servers[1].port.name"}},
		{"gw-unknown-protocol", []string{"spec.servers[0].port.protocol"}},
		{"gw-http-port-with-certs", []string{"spec.servers[0].tls"}},
		{"gw-invalid-name", []string{"metadata.name"}},
		{"gw-bad-host-namespace", []string{"spec.servers[0].hosts[0]"}},
		{"se-no-hosts", []string{"spec.hosts"}},
		{"se-host-star", []string{"spec.hosts[0]"}},
		{"se-duplicate-port-number", []string{"spec.ports[1].number"}},
		{"se-none-with-endpoints", []string{"spec.endpoints"}},
		{"se-dns-round-robin-many-endpoints", []string{"spec.endpoints"}},
		{"se-cidr-with-dns", []string{"spec.addresses"}},
		{"se-endpoint-undefined-port", []string{"spec.endpoints[0].ports.grpc"}},
		{"se-selector-and-endpoints", []string{"spec.endpoints"}},
		{"se-dynamic-dns-not-wildcard", []string{"spec.hosts[0]"}},
		{"sidecar-egress-bad-host-format", []string{"spec.egress[0].hosts[0]"}},
		{"sidecar-egress-no-hosts", []string{"spec.egress[0].hosts"}},
		{"sidecar-egress-proxy-registry-only", []string{"spec.outboundTrafficPolicy.egressProxy"}},
		{"we-no-address-no-network", []string{"spec.address"}},
	}

	covered := map[string]bool{}
	for _, tc := range tests {
		covered[tc.name] = true
	}
	for name := range expected {
		if !covered[name] {
			t.Errorf("case %s of expected-errors.jsonl has no test", name)
		}
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc, ok := docs[tc.name]
			if !ok {
				t.Fatalf("case not in validation-invalid.yaml")
			}
			want, ok := expected[tc.name]
			if !ok {
				t.Fatalf("case not in expected-errors.jsonl")
			}
			if len(want) != len(tc.fields) {
				t.Fatalf("test lists %d fields for %d expected messages", len(tc.fields), len(want))
			}
			_, errs := Validate(decodeOne(t, tc.name+".yaml", doc))
			if len(errs) == 0 {
				t.Fatal("accepted, want rejected")
			}
			for _, e := range errs {
				if e.Field == "" {
					t.Errorf("error without field path: %s", e.Error())
				}
				if e.Line <= 0 {
					t.Errorf("error without line: %s", e.Error())
				}
			}
			used := make([]bool, len(errs))
			for i, msg := range want {
				found := false
				for j, e := range errs {
					if !used[j] && e.Message == msg && e.Field == tc.fields[i] {
						used[j], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("missing error %q at %s; got %v", msg, tc.fields[i], errs)
				}
			}
		})
	}
}

// TestSamplesAccepted checks that every Istio object of the sample corpus
// is accepted, with exactly the warnings Istio gives.
func TestSamplesAccepted(t *testing.T) {
	dir := corpusDir(t, "istio-samples")
	var got []string
	objects := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		objs, _, derrs := istioyaml.Decode(rel, data, istioyaml.Options{})
		if len(derrs) > 0 {
			t.Errorf("%s: decode: %v", rel, derrs)
		}
		for _, o := range objs {
			objects++
			warns, errs := Validate(o)
			for _, e := range errs {
				t.Errorf("rejected: %s", e.Error())
			}
			for _, w := range warns {
				got = append(got, w.File+" "+w.Name+" "+w.Field+": "+w.Message)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if objects < 80 {
		t.Errorf("validated only %d objects", objects)
	}
	want := []string{
		"bookinfo/networking/fault-injection-details-v1.yaml details spec.http[1]: virtualService rule #1 not used (only the last rule can have no matches)",
		"istio.io/tasks/traffic-management/circuit-breaking/legacy-0f7c1cc/snip_configuring_the_circuit_breaker_1.yaml httpbin spec.trafficPolicy.outlierDetection.consecutiveErrors: " +
			"outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
		"istio.io/tasks/traffic-management/mirroring/legacy-0691334/snip_mirroring_traffic_to_v2_1.yaml httpbin spec.http[0].mirrorPercent: " +
			`using deprecated setting "mirrorPercent", use "mirrorPercentage" instead`,
	}
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// problem is one expected error or warning: field and message.
type problem struct{ field, message string }

func problems(ps []istioyaml.Problem) []problem {
	out := make([]problem, len(ps))
	for i, p := range ps {
		out[i] = problem{p.Field, p.Message}
	}
	return out
}

// TestRules covers rules the corpus does not exercise, ported edge cases of
// Istio's own validation tests, and the CRD schema layer.
func TestRules(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		errs  []problem
		warns []problem
	}{
		{
			name: "subset and port-level warnings are dropped like Istio's appendErrors",
			doc: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutiveErrors: 3}
    portLevelSettings:
    - port: {number: 80}
      outlierDetection: {consecutiveErrors: 3}
  subsets:
  - name: v1
    trafficPolicy:
      outlierDetection: {consecutiveErrors: 3}`,
			warns: []problem{{"spec.trafficPolicy.outlierDetection.consecutiveErrors",
				"outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead"}},
		},
		{
			name: "duplicate and overlapping hosts",
			doc: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  gateways: [gw]
  hosts: [a.example.com, "*.example.com", a.example.com, "*.com"]
  http:
  - route:
    - destination: {host: reviews}`,
			errs: []problem{
				{"spec.hosts[1]", "duplicate hosts in virtual service: a.example.com & *.example.com"},
				{"spec.hosts[2]", "duplicate hosts in virtual service: a.example.com & a.example.com"},
				{"spec.hosts[3]", "duplicate hosts in virtual service: a.example.com & *.com"},
				{"spec.hosts[2]", "duplicate hosts in virtual service: *.example.com & a.example.com"},
				{"spec.hosts[3]", "duplicate hosts in virtual service: *.example.com & *.com"},
				{"spec.hosts[3]", "duplicate hosts in virtual service: a.example.com & *.com"},
			},
		},
		{
			name: "duplicate and overlapping prefix matches",
			doc: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - name: api
    match:
    - uri: {prefix: /api}
    route:
    - destination: {host: reviews}
  - match:
    - name: m
      uri: {prefix: /api}
    - uri: {prefix: /api/v1}
    route:
    - destination: {host: reviews}`,
			warns: []problem{
				{"spec.http[1].match[0]", `virtualService rule #1 match "m" is not used (duplicate/overlapping match in rule "api")`},
				{"spec.http[1].match[1]", `virtualService rule #1 match #1 of prefix /api/v1 is not used (duplicate/overlapping match in rule #0 of prefix /api on "api")`},
			},
		},
		{
			name: "tcp rule after a catch-all",
			doc: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  tcp:
  - route:
    - destination: {host: reviews}
  - match:
    - port: 80
    route:
    - destination: {host: reviews}`,
			warns: []problem{{"spec.tcp[1]", "virtualService rule #1 not used (route without matches defined before)"}},
		},
		{
			name: "header operations",
			doc: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - headers:
      request:
        set: {":path": /x, x-a: "50%"}
        remove: [Host]
      response:
        add: {x-b: "%START_TIME%%"}
    route:
    - destination: {host: reviews}`,
			errs: []problem{
				{"spec.http[0].headers.request.set.:path", `invalid header ":path": header cannot have ":" prefix`},
				{"spec.http[0].headers.request.set.x-a", "header value configuration: invalid header configuration. Un-escaped %"},
				{"spec.http[0].headers.request.remove[0]", `invalid header "Host": cannot set Host header`},
				{"spec.http[0].headers.response.add.x-b", "header value configuration: invalid header configuration. Un-escaped %"},
			},
		},
		{
			name: "legacy gateway name warns and stops the gateway list",
			doc: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [a.example.com]
  gateways: [gw.istio-system, Bad_One]
  http:
  - route:
    - destination: {host: reviews}`,
			warns: []problem{{"spec.gateways[0]", `using legacy gatewayName format "gw.istio-system"; prefer the <namespace>/<name> format: "istio-system/gw"`}},
		},
		{
			name: "warnings Istio drops: abort without error type, legacy names in matches",
			doc: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [a.example.com]
  gateways: [mesh, gw]
  http:
  - match:
    - gateways: [gw.istio-system]
    fault:
      abort: {percentage: {value: 10}}
    route:
    - destination: {host: reviews}
  tcp:
  - match:
    - gateways: [gw.istio-system]
    route:
    - destination: {host: reviews}`,
		},
		{
			name: "AUTO_PASSTHROUGH SNI hosts on gateways",
			doc: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: ["*.local"]
  gateways: [gw]
  tls:
  - match:
    - sniHosts: ["outbound_.80_._.a.local", "outbound_.x_._.1", "1.2.3.4"]
    route:
    - destination: {host: a.local}`,
			errs: []problem{{"spec.tls[0].match[0].sniHosts[1]",
				`domain name "outbound_.x_._.1" invalid (label "x" invalid). should follow outbound_.<PORT>_._.<HOSTNAME> format`}},
			warns: []problem{{"spec.tls[0].match[0].sniHosts[2]",
				`using an IP address ("1.2.3.4") goes against SNI spec and most clients do not support this`}},
		},
		{
			name: "locality distribution",
			doc: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-east/zone1
          to: {"us-east/zone1": 50, "us-east/*": 50}
        - from: us-east/zone1
          to: {"us-west": 0}
        failoverPriority: [topology.kubernetes.io/zone]`,
			errs: []problem{
				{"spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "locality us-east/zone1 overlap with previous specified ones"},
				{"spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[1].to.us-west", "locality weight must be in range [1, 100]"},
			},
		},
		{
			name: "gateway semantics: destinations unchecked but host required",
			doc: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, annotations: {internal.istio.io/route-semantics: gateway}}
spec:
  hosts: [a.example.com]
  gateways: [ns/Gw_1]
  http:
  - route:
    - destination: {host: "*", subset: V_1}
    - destination: {subset: v1}`,
			errs: []problem{
				{"spec.http[0].route[1].destination.host", "Required value"},
				{"spec.http[0].route", "total destination weight = 0"},
			},
		},
		{
			name: "dry-run annotation stops validation",
			doc: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: ns, annotations: {istio.io/dry-run: "true"}}
spec:
  hosts: ["*"]`,
			errs: []problem{{"metadata.annotations.istio.io/dry-run", "ns/r has unsupported annotation istio.io/dry-run, please remove the annotation"}},
		},
		{
			name: "sidecar: empty configuration drops warnings",
			doc: `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s}
spec:
  workloadSelector: {}`,
			errs: []problem{{"spec", "sidecar: empty configuration provided"}},
		},
		{
			name: "sidecar egress hosts and ports",
			doc: `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s}
spec:
  egress:
  - port: {number: 80, protocol: HTTP, name: http}
    hosts: ["*/*", "ns/a.example.com", "ns/*", "~/*", "*/reviews"]
  - hosts: ["./*"]`,
			errs: []problem{{"spec.egress[0].hosts[4]", "short names (non FQDN) are not allowed"}},
			warns: []problem{
				{"spec.egress[0].hosts[2]", "duplicated egress host: ns/*"},
				{"spec.egress[0].hosts[4]", "duplicated egress host: */reviews"},
				{"spec.egress[0].hosts", "`*/*` host select all resources, no other hosts can be added"},
			},
		},
		{
			name: "service entry: DNS hosts, ports and TCP warnings",
			doc: `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, labels: {networking.istio.io/enable-autoallocate-ip: "false"}}
spec:
  hosts: [a.example.com, b.example.com]
  resolution: DNS
  ports:
  - {number: 3306, name: mysql, protocol: MYSQL}
  - {number: 3306, name: mysql}`,
			errs: []problem{
				{"spec.ports[1].name", `service entry port name "mysql" already defined`},
				{"spec.ports[1].number", "service entry port 3306 already defined"},
				{"spec.ports[0].protocol", "multiple hosts provided with non-HTTP, non-TLS ports"},
			},
			warns: []problem{{"spec.ports[1].protocol", "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled"}},
		},
		{
			name: "workload entry: CRD port-name rule and lengths",
			doc: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: we}
spec:
  address: 10.0.0.1
  serviceAccount: ` + strings.Repeat("s", 254) + `
  ports: {` + strings.Repeat("p", 63) + `: 80}`,
			errs: []problem{
				{"spec.serviceAccount", "Too long: may not be more than 253 bytes"},
				{"spec.ports", `Invalid value: "object": port name must be valid`},
			},
		},
		{
			name: "destination rule: CRD-only rules",
			doc: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      warmupDurationSecs: 0s
      warmup: {duration: 1s, minimumPercent: -1}
    outlierDetection: {outlierDetectionHttpErrorCodes: [99, 503, 600]}
    retryBudget: {percent: 101}
  subsets:
  - name: v1
    trafficPolicy:
      loadBalancer:
        zoneAwareLbSetting: {minClusterSize: 0}
        backendUtilization: {}`,
			errs: []problem{
				{"spec.trafficPolicy.loadBalancer.warmupDurationSecs", `Invalid value: "0s": must be a valid duration greater than 1ms`},
				{"spec.trafficPolicy.loadBalancer.warmup.minimumPercent", "Invalid value: -1: should be greater than or equal to 0"},
				{"spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[0]", "Invalid value: 99: should be greater than or equal to 100"},
				{"spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[2]", "Invalid value: 600: should be less than or equal to 599"},
				{"spec.trafficPolicy.retryBudget.percent", "Invalid value: 101: should be less than or equal to 100"},
				{"spec.subsets[0].trafficPolicy.loadBalancer.backendUtilization", "field not declared in schema"},
				{"spec.subsets[0].trafficPolicy.loadBalancer.zoneAwareLbSetting.minClusterSize", "Invalid value: 0: should be greater than or equal to 1"},
			},
		},
		{
			name: "gateway: tls options",
			doc: `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*.example.com", "ns/1.2.3.4"]
    tls:
      mode: SIMPLE
      credentialNames: [a, b, c]
      minProtocolVersion: TLSV1_1
      cipherSuites: [BOGUS, AES128-SHA, AES128-SHA]
  - port: {number: 0, name: uds, protocol: HTTP}
    bind: unix:///var/run/gw.sock
    hosts: ["*"]`,
			errs: []problem{{"spec.servers[0].tls.credentialNames", "Too many: 3: must have at most 2 items"}},
			warns: []problem{
				{"spec.servers[0].tls.cipherSuites", "ignoring invalid cipher suites: [BOGUS]"},
				{"spec.servers[0].tls.cipherSuites", "ignoring duplicate cipher suites: [AES128-SHA]"},
			},
		},
		{
			name: "kube-apiserver metadata rules",
			doc: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: Bad_Name
  namespace: a.b
  labels: {"x*": ok, app: "-v"}
spec:
  host: reviews`,
			errs: []problem{
				{"metadata.name", `Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
				{"metadata.namespace", `Invalid value: "a.b": must not contain dots`},
				{"metadata.labels", `Invalid value: "-v": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
				{"metadata.labels", `Invalid value: "x*": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`},
			},
		},
		{
			name: "kubernetes service: basic checks",
			doc: `apiVersion: v1
kind: Service
metadata: {name: 1svc}
spec:
  ports:
  - {name: http, port: 80}
  - {name: http, port: 70000, targetPort: 0}
  - {port: 81}`,
			errs: []problem{
				{"metadata.name", `Invalid value: "1svc": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`},
				{"spec.ports[1].name", `Duplicate value: "http"`},
				{"spec.ports[1].port", "Invalid value: 70000: must be between 1 and 65535, inclusive"},
				{"spec.ports[1].targetPort", "Invalid value: 0: must be between 1 and 65535, inclusive"},
				{"spec.ports[2].name", "Required value"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			warns, errs := Validate(decodeOne(t, "t.yaml", tc.doc))
			if got := problems(errs); !sameProblems(got, tc.errs) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.errs)
			}
			if got := problems(warns); !sameProblems(got, tc.warns) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tc.warns)
			}
		})
	}
}

// sameProblems compares two problem lists in order; nil equals empty.
func sameProblems(a, b []problem) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestHeaderValueVariables(t *testing.T) {
	tests := []struct {
		value string
		ok    bool
	}{
		{"foo", true},
		{"%HOSTNAME%", true},
		{"100%%", true},
		{"prefix %HOSTNAME% suffix", true},
		{`%REQ(x-a)%`, true},
		{`%VAR(["a", "b"])%`, true},
		{"abc%123", false},
		{"%START_TIME%%", false},
		{`%VAR(["a" x])%`, false},
		{`%VAR(["a\`, false},
		{"tab\tok", true},
		{"bell\x07", false},
	}
	for _, tc := range tests {
		if err := validateHTTPHeaderValue(tc.value); (err == nil) != tc.ok {
			t.Errorf("validateHTTPHeaderValue(%q) = %v, want ok=%v", tc.value, err, tc.ok)
		}
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		name string
		fn   func(string) bool
		in   string
		want bool
	}{
		{"label", isDNS1123Label, "a-B-1", true},
		{"label", isDNS1123Label, "-a", false},
		{"label", isDNS1123Label, strings.Repeat("a", 64), false},
		{"wildcard", isWildcardDNS1123Label, "*", true},
		{"wildcard", isWildcardDNS1123Label, "*-foo", true},
		{"wildcard", isWildcardDNS1123Label, "*foo", true},
		{"wildcard", isWildcardDNS1123Label, "foo*", false},
		{"wildcard", isWildcardDNS1123Label, "**", false},
		{"qualified", isQualifiedName, "a_b.c-d", true},
		{"qualified", isQualifiedName, "_a", false},
	}
	for _, tc := range tests {
		if got := tc.fn(tc.in); got != tc.want {
			t.Errorf("%s(%q) = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
	for key, want := range map[string]string{
		"app":                    "",
		"app.kubernetes.io/name": "",
		"a/b/c":                  `invalid tag key: "a/b/c"`,
		"-x":                     `invalid tag key: "-x"`,
		strings.Repeat("n", 64):  `invalid tag key: "` + strings.Repeat("n", 64) + `" (name is too long)`,
	} {
		got := ""
		if err := validateTagKey(key); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("validateTagKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func BenchmarkValidateVirtualService(b *testing.B) {
	objs, _, errs := istioyaml.Decode("b.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
      uri: {prefix: /api}
    route:
    - destination: {host: reviews, subset: v2}
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}
  - match:
    - uri: {regex: "/v[0-9]+/.*"}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v3}
      weight: 10
    timeout: 5s
`), istioyaml.Options{})
	if len(errs) > 0 || len(objs) != 1 {
		b.Fatal(errs)
	}
	b.ReportAllocs()
	for b.Loop() {
		Validate(objs[0])
	}
}

// TestProblemLines checks that problems carry the line of their field.
func TestProblemLines(t *testing.T) {
	doc := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: -10
  - route:
    - destination: {host: reviews}
`
	warns, errs := Validate(decodeOne(t, "lines.yaml", doc))
	if len(errs) != 1 || errs[0].Field != "spec.http[0].route[0].weight" || errs[0].Line != 9 {
		t.Errorf("errors = %+v, want one at spec.http[0].route[0].weight line 9", errs)
	}
	if len(warns) != 1 || warns[0].Field != "spec.http[1]" || warns[0].Line != 10 {
		t.Errorf("warnings = %+v, want one at spec.http[1] line 10", warns)
	}
}

// TestWrittenFields covers the CRD rules that depend on whether a field was
// written, which the decoded struct cannot show; each pair differs only in
// that. kube-apiserver rejects the written (or omitted) form, Istio's Go
// validator accepts both.
func TestWrittenFields(t *testing.T) {
	const (
		se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n  hosts: [a.example.com]\n"
		gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  servers:\n"
		sc = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec:\n  ingress:\n  - port: {number: 9080, protocol: HTTPS, name: h}\n    defaultEndpoint: 127.0.0.1:8080\n"
		we = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec:\n  address: unix:///var/run/vm.sock\n"
	)
	tests := []struct {
		name string
		doc  string
		errs []problem
	}{
		{
			name: "targetPort omitted",
			doc:  se + "  ports: [{number: 80, name: http, protocol: HTTP}]\n",
		},
		{
			name: "targetPort null is pruned",
			doc:  se + "  ports: [{number: 80, name: http, protocol: HTTP, targetPort: null}]\n",
		},
		{
			name: "targetPort written 0",
			doc:  se + "  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 0}]\n",
			errs: []problem{{"spec.ports[0].targetPort", "Invalid value: 0: port must be between 1-65535"}},
		},
		{
			name: "endpoints omitted with resolution NONE",
			doc:  se + "  ports: [{number: 80, name: http, protocol: HTTP}]\n",
		},
		{
			name: "endpoints written empty with resolution NONE",
			doc:  se + "  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE\n  endpoints: []\n",
			errs: []problem{{"spec", `Invalid value: "object": NONE mode cannot set endpoints`}},
		},
		{
			name: "endpoints written empty with resolution STATIC",
			doc:  se + "  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: []\n",
		},
		{
			name: "endpoints written empty beside a workload selector",
			doc:  se + "  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: a}}\n  endpoints: []\n",
			errs: []problem{{"spec", `Invalid value: "object": only one of WorkloadSelector or Endpoints can be set`}},
		},
		{
			name: "unix endpoint without ports",
			doc:  se + "  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: unix:///var/run/a.sock}]\n",
		},
		{
			name: "unix endpoint with ports written empty",
			doc:  se + "  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: unix:///var/run/a.sock, ports: {}}]\n",
			errs: []problem{{"spec.endpoints[0]", `Invalid value: "object": UDS may not include ports`}},
		},
		{
			name: "WorkloadEntry on a unix socket with only a null port",
			doc:  we + "  ports: {http: null}\n",
			errs: []problem{{"spec", `Invalid value: "object": UDS may not include ports`}},
		},
		{
			name: "WorkloadEntry on a unix socket without ports",
			doc:  we,
		},
		{
			name: "gateway server on a unix socket with port number 0",
			doc:  gw + "  - {port: {number: 0, name: h, protocol: HTTP}, bind: unix:///var/run/gw.sock, hosts: [\"*\"]}\n",
		},
		{
			name: "gateway server on a unix socket without port number",
			doc:  gw + "  - {port: {name: h, protocol: HTTP}, bind: unix:///var/run/gw.sock, hosts: [\"*\"]}\n",
			errs: []problem{{"spec.servers[0].port.number", "Required value"}},
		},
		{
			name: "gateway credentialNames written empty",
			doc:  gw + "  - {port: {number: 443, name: h, protocol: HTTPS}, hosts: [\"*\"], tls: {mode: SIMPLE, credentialName: c, credentialNames: []}}\n",
			errs: []problem{{"spec.servers[0].tls.credentialNames", "Invalid value: 0: should have at least 1 items"}},
		},
		{
			name: "gateway tlsCertificates written empty",
			doc:  gw + "  - {port: {number: 443, name: h, protocol: HTTPS}, hosts: [\"*\"], tls: {mode: SIMPLE, credentialName: c, tlsCertificates: []}}\n",
			errs: []problem{{"spec.servers[0].tls.tlsCertificates", "Invalid value: 0: should have at least 1 items"}},
		},
		{
			name: "sidecar tlsCertificates written empty",
			doc:  sc + "    tls: {mode: SIMPLE, serverCertificate: /a, privateKey: /b, tlsCertificates: []}\n",
			errs: []problem{{"spec.ingress[0].tls.tlsCertificates", "Invalid value: 0: should have at least 1 items"}},
		},
		{
			name: "sidecar tls without the lists",
			doc:  sc + "    tls: {mode: SIMPLE, serverCertificate: /a, privateKey: /b}\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Validate(decodeOne(t, "t.yaml", tc.doc))
			if got := problems(errs); !sameProblems(got, tc.errs) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.errs)
			}
		})
	}
}
