package istio

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
)

// hostPolicy is the merge of every DestinationRule written for one host, as
// Istio merges them: subsets concatenated in document order (a later subset
// with a name already seen is dropped), and the first top-level
// trafficPolicy wins.
type hostPolicy struct {
	host          string
	rules         []*destinationRule
	trafficPolicy *networking.TrafficPolicy
	subsets       []*networking.Subset
}

// subset returns the named subset, or nil.
func (hp *hostPolicy) subset(name string) *networking.Subset {
	if hp == nil {
		return nil
	}
	for _, s := range hp.subsets {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// hostPolicies merges the DestinationRules by (expanded) host, in document
// order of the first rule for each host, and warns about what they set
// that is not translated.
//
// Istio looks DestinationRules up in the client's namespace, then the
// service's, then the root namespace; this Caddy is one client for every
// namespace, so rules of every namespace apply, if exported to a client
// of this proxy (checkExportTo). A rule with a workloadSelector applies
// when it selects this proxy (checkWorkloadSelector); as in Istio, it then
// takes precedence over the rules without selector for its host, and
// merges only with other such rules.
func (t *translator) hostPolicies() []*hostPolicy {
	clients := t.clientNamespaces()
	identities := t.proxyWorkloads()
	var selected, plain []*destinationRule
	for _, dr := range t.destinationRules {
		t.checkDestinationRule(dr)
		if !t.checkExportTo(dr, clients) {
			continue
		}
		if dr.spec.GetWorkloadSelector() == nil {
			plain = append(plain, dr)
		} else if t.checkWorkloadSelector(dr, identities) {
			selected = append(selected, dr)
		}
	}
	selectedHosts := make(map[string]*destinationRule)
	for _, dr := range selected {
		if selectedHosts[dr.host] == nil {
			selectedHosts[dr.host] = dr
		}
	}

	var out []*hostPolicy
	byHost := make(map[string]*hostPolicy)
	for _, dr := range append(selected, plain...) {
		if sel := selectedHosts[dr.host]; sel != nil && dr.spec.GetWorkloadSelector() == nil {
			t.warn(dr.obj, "spec.host", fmt.Sprintf("ignored: %s, whose workloadSelector selects this proxy, takes precedence for host %s (as in Istio)", sel.obj.Ref(), dr.host))
			continue
		}
		hp := byHost[dr.host]
		if hp == nil {
			hp = &hostPolicy{host: dr.host, trafficPolicy: dr.spec.GetTrafficPolicy()}
			byHost[dr.host] = hp
			out = append(out, hp)
		} else if hp.trafficPolicy == nil {
			hp.trafficPolicy = dr.spec.GetTrafficPolicy()
		} else if dr.spec.GetTrafficPolicy() != nil {
			t.warn(dr.obj, "spec.trafficPolicy", fmt.Sprintf("ignored: %s already sets the traffic policy of host %s (the first one wins, as in Istio)", hp.rules[0].obj.Ref(), dr.host))
		}
		hp.rules = append(hp.rules, dr)
		for i, s := range dr.spec.GetSubsets() {
			if hp.subset(s.GetName()) != nil {
				t.warn(dr.obj, fmt.Sprintf("spec.subsets[%d]", i), fmt.Sprintf("ignored: subset %q of host %s is already defined", s.GetName(), dr.host))
				continue
			}
			hp.subsets = append(hp.subsets, s)
		}
	}
	return out
}

// proxyWorkload is one workload this proxy stands for, as a
// DestinationRule workloadSelector sees it.
type proxyWorkload struct {
	namespace string
	labels    map[string]string
}

// proxyWorkloads are the workloads this proxy stands for (see
// proxyIdentity): each Sidecar's (its workloadSelector labels, none
// without selector) or the default mesh listener's (namespace "default",
// no labels), each Gateway's (its selector labels), and the WorkloadEntry
// of the mesh identity (buildMesh).
func (t *translator) proxyWorkloads() []proxyWorkload {
	var out []proxyWorkload
	if len(t.sidecars) == 0 {
		out = append(out, proxyWorkload{namespace: defaultProxyNamespace})
	}
	for _, sc := range t.sidecars {
		out = append(out, proxyWorkload{namespace: sc.obj.Namespace, labels: sc.spec.GetWorkloadSelector().GetLabels()})
	}
	for _, gw := range t.gateways {
		out = append(out, proxyWorkload{namespace: gw.obj.Namespace, labels: gw.spec.GetSelector()})
	}
	if w := t.proxyWorkload(); w != nil {
		out = append(out, proxyWorkload{namespace: w.Namespace, labels: w.Labels})
	}
	return out
}

// checkWorkloadSelector reports whether dr, which has a workloadSelector,
// applies to this proxy: it selects one of the proxy's workloads (same
// namespace, labels containing matchLabels). The clusters are shared by
// every listener of this proxy, so a rule selecting only some of them
// applies to all, with a warning.
func (t *translator) checkWorkloadSelector(dr *destinationRule, workloads []proxyWorkload) bool {
	want := dr.spec.GetWorkloadSelector().GetMatchLabels()
	matched := 0
	for _, w := range workloads {
		if w.namespace == dr.obj.Namespace && labelsContain(w.labels, want) {
			matched++
		}
	}
	switch {
	case matched == 0:
		t.warn(dr.obj, "spec.workloadSelector", "selects no workload of this proxy (Sidecar and Gateway selectors, the mesh WorkloadEntry): the DestinationRule is ignored")
		return false
	case matched < len(workloads):
		t.warn(dr.obj, "spec.workloadSelector", "selects only some of the workloads of this proxy, but applies to all: the clusters are shared by every listener of this proxy")
	}
	return true
}

// policyFor returns the merged DestinationRules that apply to a service
// hostname: those written for the hostname itself, else those with the
// most specific wildcard host covering it.
func policyFor(policies []*hostPolicy, hostname string) *hostPolicy {
	hosts := make([]string, len(policies))
	for i, hp := range policies {
		hosts[i] = hp.host
	}
	if i := mostSpecific(hostname, hosts); i >= 0 {
		return policies[i]
	}
	return nil
}

// resolvePolicy returns the traffic policy of a cluster: destination port
// port, subset (nil for the whole service), following Istio's
// util.MergeSubsetTrafficPolicy exactly:
//
//  1. A DR-level portLevelSettings entry for the port replaces the DR-level
//     policy completely (fields it omits get defaults, not the DR-level
//     values; tunnel, proxyProtocol and retryBudget are dropped).
//  2. A subset port-level entry for the port replaces loadBalancer,
//     connectionPool, outlierDetection and tls of the step-1 policy, all
//     four, even those it leaves unset.
//  3. Otherwise each block the subset policy sets (loadBalancer,
//     connectionPool, outlierDetection, tls, tunnel, proxyProtocol,
//     retryBudget) replaces the whole block; there is no deeper merge.
//
// The result shares messages with the inputs: do not modify it.
func resolvePolicy(dr *networking.TrafficPolicy, subset *networking.Subset, port uint32) *networking.TrafficPolicy {
	base, _ := portLevelPolicy(dr, port)
	sp := subset.GetTrafficPolicy()
	if sp == nil {
		return base
	}
	subsetPolicy, portLevel := portLevelPolicy(sp, port)
	if base == nil {
		return subsetPolicy
	}
	merged := proto.Clone(base).(*networking.TrafficPolicy)
	if portLevel {
		merged.LoadBalancer = subsetPolicy.LoadBalancer
		merged.ConnectionPool = subsetPolicy.ConnectionPool
		merged.OutlierDetection = subsetPolicy.OutlierDetection
		merged.Tls = subsetPolicy.Tls
		return merged
	}
	if subsetPolicy.LoadBalancer != nil {
		merged.LoadBalancer = subsetPolicy.LoadBalancer
	}
	if subsetPolicy.ConnectionPool != nil {
		merged.ConnectionPool = subsetPolicy.ConnectionPool
	}
	if subsetPolicy.OutlierDetection != nil {
		merged.OutlierDetection = subsetPolicy.OutlierDetection
	}
	if subsetPolicy.Tls != nil {
		merged.Tls = subsetPolicy.Tls
	}
	if subsetPolicy.Tunnel != nil {
		merged.Tunnel = subsetPolicy.Tunnel
	}
	if subsetPolicy.ProxyProtocol != nil {
		merged.ProxyProtocol = subsetPolicy.ProxyProtocol
	}
	if subsetPolicy.RetryBudget != nil {
		merged.RetryBudget = subsetPolicy.RetryBudget
	}
	return merged
}

// portLevelPolicy returns the policy for port: the portLevelSettings entry
// for it as a whole policy (portLevel true), else tp itself.
func portLevelPolicy(tp *networking.TrafficPolicy, port uint32) (policy *networking.TrafficPolicy, portLevel bool) {
	if tp == nil {
		return nil, false
	}
	for _, pl := range tp.GetPortLevelSettings() {
		if pl.GetPort() != nil && pl.GetPort().GetNumber() == port {
			return &networking.TrafficPolicy{
				LoadBalancer:     pl.GetLoadBalancer(),
				ConnectionPool:   pl.GetConnectionPool(),
				OutlierDetection: pl.GetOutlierDetection(),
				Tls:              pl.GetTls(),
			}, true
		}
	}
	if len(tp.GetPortLevelSettings()) == 0 {
		return tp, false
	}
	// The port-level entries of other ports do not apply.
	tp = proto.Clone(tp).(*networking.TrafficPolicy)
	tp.PortLevelSettings = nil
	return tp, false
}

// clientNamespaces are the namespaces of this proxy's clients, for whom
// Istio would build the clusters: those of the mesh listeners' identities
// (each Sidecar's namespace, "default" without Sidecar) and of the
// Gateways (see proxyIdentity).
func (t *translator) clientNamespaces() []string {
	set := make(map[string]bool)
	if len(t.sidecars) == 0 {
		set[defaultProxyNamespace] = true
	}
	for _, sc := range t.sidecars {
		set[sc.obj.Namespace] = true
	}
	for _, gw := range t.gateways {
		set[gw.obj.Namespace] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// drExportedTo reports whether dr is visible to namespace ns: exportTo
// empty or with "*" is every namespace, "." the DestinationRule's own.
func drExportedTo(dr *destinationRule, ns string) bool {
	to := dr.spec.GetExportTo()
	if len(to) == 0 || slices.Contains(to, "*") {
		return true
	}
	for _, e := range to {
		if e == ns || (e == "." && ns == dr.obj.Namespace) {
			return true
		}
	}
	return false
}

// checkExportTo reports whether dr applies to this proxy's clusters. The
// clusters are shared by every listener of this proxy, so a
// DestinationRule exported to none of the clients' namespaces is dropped,
// and one exported to only some of them applies to all, with a warning.
func (t *translator) checkExportTo(dr *destinationRule, clients []string) bool {
	if len(dr.spec.GetExportTo()) == 0 {
		return true
	}
	var seen, unseen []string
	for _, ns := range clients {
		if drExportedTo(dr, ns) {
			seen = append(seen, ns)
		} else {
			unseen = append(unseen, ns)
		}
	}
	switch {
	case len(seen) == 0:
		t.warn(dr.obj, "spec.exportTo", fmt.Sprintf("not exported to the namespace of any client of this proxy (%s): the DestinationRule is ignored", strings.Join(clients, ", ")))
		return false
	case len(unseen) > 0:
		t.warn(dr.obj, "spec.exportTo", fmt.Sprintf("not exported to %s, but applies to its clients too: the clusters are shared by every listener of this proxy (exported to %s)", strings.Join(unseen, ", "), strings.Join(seen, ", ")))
	}
	return true
}

// checkDestinationRule warns about every field of dr that is not
// translated, or not exactly, where it is written.
func (t *translator) checkDestinationRule(dr *destinationRule) {
	obj, spec := dr.obj, dr.spec
	t.checkTrafficPolicy(obj, "spec.trafficPolicy", spec.GetTrafficPolicy())
	for i, s := range spec.GetSubsets() {
		t.checkTrafficPolicy(obj, fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), s.GetTrafficPolicy())
	}
}

func (t *translator) checkTrafficPolicy(obj *istioyaml.Object, path string, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	t.checkPolicyBlocks(obj, path, tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection(), tp.GetTls())
	if tn := tp.GetTunnel(); tn != nil && tn.GetProtocol() != "" && !strings.EqualFold(tn.GetProtocol(), "CONNECT") {
		t.warn(obj, path+".tunnel.protocol", fmt.Sprintf("not supported: only CONNECT tunnels are; the tunnel is not used (protocol %s)", tn.GetProtocol()))
	}
	if tp.GetRetryBudget().GetBudgetInterval() != nil {
		t.warn(obj, path+".retryBudget.budgetInterval", "not supported: the budget counts the retries and requests in progress, as Envoy's retry budget")
	}
	for i, pl := range tp.GetPortLevelSettings() {
		t.checkPolicyBlocks(obj, fmt.Sprintf("%s.portLevelSettings[%d]", path, i), pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection(), pl.GetTls())
	}
}

func (t *translator) checkPolicyBlocks(obj *istioyaml.Object, path string, lb *networking.LoadBalancerSettings, cp *networking.ConnectionPoolSettings, od *networking.OutlierDetection, tls *networking.ClientTLSSettings) {
	t.checkLoadBalancer(obj, path+".loadBalancer", lb)
	t.checkConnectionPool(obj, path+".connectionPool", cp)
	t.checkOutlierDetection(obj, path+".outlierDetection", od)
	t.checkTLS(obj, path+".tls", tls)
}
