package istio

import (
	"fmt"
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
// namespace, so rules of every namespace apply.
func (t *translator) hostPolicies() []*hostPolicy {
	var out []*hostPolicy
	byHost := make(map[string]*hostPolicy)
	for _, dr := range t.destinationRules {
		t.checkDestinationRule(dr)
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

// checkDestinationRule warns about every field of dr that is not
// translated, or not exactly, where it is written.
func (t *translator) checkDestinationRule(dr *destinationRule) {
	obj, spec := dr.obj, dr.spec
	if spec.GetWorkloadSelector() != nil {
		t.warn(obj, "spec.workloadSelector", "not implemented yet: the DestinationRule applies to every client (the clusters are shared by every listener of this proxy)")
	}
	if len(spec.GetExportTo()) > 0 {
		t.warn(obj, "spec.exportTo", notImplemented+" (every client sees the DestinationRule: the clusters are shared by every listener of this proxy)")
	}
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
