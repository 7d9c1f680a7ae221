package validation

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// destinationRule ports ValidateDestinationRule.
func (c *checker) destinationRule(dr *networking.DestinationRule) {
	c.add("spec.host", validateWildcardDomain(dr.Host))
	c.trafficPolicy("spec.trafficPolicy", dr.TrafficPolicy)

	// Istio keeps only the errors of subset checks.
	names := make(map[string]bool, len(dr.Subsets))
	for i, s := range dr.Subsets {
		sp := indexPath("spec.subsets", i)
		if s == nil {
			c.err(sp, "subset may not be null")
			continue
		}
		if names[s.Name] {
			c.err(sp+".name", fmt.Sprintf("duplicate subset names: %s", s.Name))
		}
		names[s.Name] = true
		c.addAt(sp, ".name", validateSubsetName(s.Name))
		c.labels(sp+".labels", s.Labels)
		c.errorsOnly(func() { c.trafficPolicy(sp+".trafficPolicy", s.TrafficPolicy) })
	}
	c.exportTo("spec.exportTo", dr.ExportTo, false, dr.GetWorkloadSelector() != nil)
	c.workloadSelector("spec.workloadSelector", dr.GetWorkloadSelector())
	c.destinationRuleSchema(dr)
}

// workloadSelector ports validateWorkloadSelector (type/v1beta1 selector).
func (c *checker) workloadSelector(p string, selector *typev1beta1.WorkloadSelector) {
	if selector == nil {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(selector.MatchLabels)) {
		v := selector.MatchLabels[k]
		if k == "" {
			c.err(keyPath(p+".matchLabels", k), fmt.Sprintf("empty key is not supported in selector: %q", k+"="+v))
		}
		if strings.Contains(k, "*") || strings.Contains(v, "*") {
			c.err(keyPath(p+".matchLabels", k), fmt.Sprintf("wildcard is not supported in selector: %q", k+"="+v))
		}
	}
	if len(selector.MatchLabels) == 0 {
		c.warn(p, "workload selector specified without labels")
	}
}

// trafficPolicy ports validateTrafficPolicy.
func (c *checker) trafficPolicy(p string, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	if tp.OutlierDetection == nil && tp.ConnectionPool == nil && tp.LoadBalancer == nil && tp.Tls == nil &&
		tp.PortLevelSettings == nil && tp.Tunnel == nil && tp.ProxyProtocol == nil && tp.RetryBudget == nil {
		c.err(p, "traffic policy must have at least one field")
		return
	}
	if tp.Tunnel != nil && tp.ProxyProtocol != nil {
		c.err(p+".proxyProtocol", "tunnel and proxyProtocol must not be set together")
		return
	}
	c.outlierDetection(p+".outlierDetection", tp.OutlierDetection)
	c.connectionPool(p+".connectionPool", tp.ConnectionPool)
	c.loadBalancer(p+".loadBalancer", tp.LoadBalancer, tp.OutlierDetection)
	c.clientTLS(p+".tls", tp.Tls)
	c.portTrafficPolicies(p+".portLevelSettings", tp.PortLevelSettings)
	c.tunnel(p+".tunnel", tp.Tunnel)
	if pp := tp.ProxyProtocol; pp != nil && pp.Version != 0 && pp.Version != 1 {
		c.err(p+".proxyProtocol.version", fmt.Sprintf("proxy protocol version is invalid: %d", pp.Version))
	}
}

// tunnel ports validateTunnelSettings.
func (c *checker) tunnel(p string, t *networking.TrafficPolicy_TunnelSettings) {
	if t == nil {
		return
	}
	if t.Protocol != "" && t.Protocol != "CONNECT" && t.Protocol != "POST" {
		c.err(p+".protocol", `tunnel protocol must be "CONNECT" or "POST"`)
	}
	fqdnErr, ipErr := validateFQDN(t.TargetHost), validateIPAddress(t.TargetHost)
	if fqdnErr != nil && ipErr != nil {
		c.err(p+".targetHost", fmt.Sprintf("tunnel target host must be valid FQDN or IP address: %s; %s", fqdnErr, ipErr))
	}
	if err := validatePort(int(t.TargetPort)); err != nil {
		c.err(p+".targetPort", fmt.Sprintf("tunnel target port is invalid: %s", err))
	}
}

// outlierDetection ports validateOutlierDetection.
func (c *checker) outlierDetection(p string, o *networking.OutlierDetection) {
	if o == nil {
		return
	}
	if o.BaseEjectionTime != nil {
		c.addAt(p, ".baseEjectionTime", validateDuration(o.BaseEjectionTime))
	}
	if o.ConsecutiveErrors != 0 { //nolint:staticcheck // Istio still warns about the deprecated field
		c.warn(p+".consecutiveErrors", "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead")
	}
	if !o.SplitExternalLocalOriginErrors && o.ConsecutiveLocalOriginFailures.GetValue() > 0 {
		c.err(p+".consecutiveLocalOriginFailures", "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false")
	}
	if o.Interval != nil {
		c.addAt(p, ".interval", validateDuration(o.Interval))
	}
	c.addAt(p, ".maxEjectionPercent", validatePercent(o.MaxEjectionPercent))
	c.addAt(p, ".minHealthPercent", validatePercent(o.MinHealthPercent))
}

// connectionPool ports validateConnectionPool.
func (c *checker) connectionPool(p string, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.Http == nil && cp.Tcp == nil {
		c.err(p, "connection pool must have at least one field")
		return
	}
	if h := cp.Http; h != nil {
		hp := p + ".http"
		if h.Http1MaxPendingRequests < 0 {
			c.err(hp+".http1MaxPendingRequests", "http1 max pending requests must be non-negative")
		}
		if h.Http2MaxRequests < 0 {
			c.err(hp+".http2MaxRequests", "http2 max requests must be non-negative")
		}
		if h.MaxRequestsPerConnection < 0 {
			c.err(hp+".maxRequestsPerConnection", "max requests per connection must be non-negative")
		}
		if h.MaxRetries < 0 {
			c.err(hp+".maxRetries", "max retries must be non-negative")
		}
		if h.IdleTimeout != nil {
			c.addAt(hp, ".idleTimeout", validateDuration(h.IdleTimeout))
		}
		if h.H2UpgradePolicy == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE && h.UseClientProtocol {
			c.err(hp+".useClientProtocol", "use client protocol must not be true when H2UpgradePolicy is UPGRADE")
		}
		if h.MaxConcurrentStreams < 0 {
			c.err(hp+".maxConcurrentStreams", "max concurrent streams must be non-negative")
		}
		if ka := h.GetHttp2KeepAlive(); ka != nil {
			kp := hp + ".http2KeepAlive"
			if ka.Interval == nil {
				c.err(kp+".interval", "http2 keepalive interval is required")
			} else {
				c.addAt(kp, ".interval", validateDuration(ka.Interval))
			}
			if ka.Timeout == nil {
				c.err(kp+".timeout", "http2 keepalive timeout is required")
			} else {
				c.addAt(kp, ".timeout", validateDuration(ka.Timeout))
			}
		}
		c.enumValue(hp+".h2UpgradePolicy", int32(h.H2UpgradePolicy), networking.ConnectionPoolSettings_HTTPSettings_H2UpgradePolicy_name)
	}
	if t := cp.Tcp; t != nil {
		tp := p + ".tcp"
		if t.MaxConnections < 0 {
			c.err(tp+".maxConnections", "max connections must be non-negative")
		}
		if t.ConnectTimeout != nil {
			c.addAt(tp, ".connectTimeout", validateDuration(t.ConnectTimeout))
		}
		if t.MaxConnectionDuration != nil {
			c.addAt(tp, ".maxConnectionDuration", validateDuration(t.MaxConnectionDuration))
		}
		// 0s disables the idle timeout.
		if t.IdleTimeout != nil && t.IdleTimeout.AsDuration().Milliseconds() != 0 {
			c.addAt(tp, ".idleTimeout", validateDuration(t.IdleTimeout))
		}
		if ka := t.TcpKeepalive; ka != nil {
			if ka.Time != nil {
				c.addAt(tp, ".tcpKeepalive.time", validateDuration(ka.Time))
			}
			if ka.Interval != nil {
				c.addAt(tp, ".tcpKeepalive.interval", validateDuration(ka.Interval))
			}
		}
	}
}

// loadBalancer ports validateLoadBalancer.
func (c *checker) loadBalancer(p string, lb *networking.LoadBalancerSettings, outlier *networking.OutlierDetection) {
	if lb == nil {
		return
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		cp := p + ".consistentHash"
		cookie := ch.GetHttpCookie()
		if cookie != nil && cookie.GetName() == "" {
			c.err(cp+".httpCookie.name", "name required for HttpCookie")
		}
		if cookie != nil {
			attrs := make(map[string]bool, len(cookie.GetAttributes()))
			for i, a := range cookie.GetAttributes() {
				ap := indexPath(cp+".httpCookie.attributes", i) + ".name"
				if a.GetName() == "" {
					c.err(ap, "cookie attribute name cannot be empty")
					continue
				}
				if attrs[a.GetName()] {
					c.err(ap, fmt.Sprintf("duplicate cookie attribute name: %s", a.GetName()))
				} else {
					attrs[a.GetName()] = true
				}
			}
		}
		if ch.MinimumRingSize != 0 { //nolint:staticcheck // Istio still warns about the deprecated field
			c.warn(cp+".minimumRingSize", "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead")
		}
		if ch.MinimumRingSize != 0 && ch.GetHashAlgorithm() != nil { //nolint:staticcheck
			c.err(cp+".minimumRingSize", "only one of MinimumRingSize or Maglev/Ringhash can be specified")
		}
		if ml := ch.GetMaglev(); ml != nil {
			tp := cp + ".maglev.tableSize"
			if ml.TableSize == 0 {
				c.err(tp, "tableSize must be set for maglev")
			}
			if ml.TableSize >= 5000011 {
				c.err(tp, "tableSize must be less than 5000011 for maglev")
			}
			if !isPrime(ml.TableSize) {
				c.err(tp, "tableSize must be a prime number for maglev")
			}
		}
	}
	if s, ok := lb.LbPolicy.(*networking.LoadBalancerSettings_Simple); ok {
		c.enumValue(p+".simple", int32(s.Simple), networking.LoadBalancerSettings_SimpleLB_name)
	}
	if lb.LocalityLbSetting != nil && lb.ZoneAwareLbSetting != nil {
		c.err(p+".zoneAwareLbSetting", "only one of localityLbSetting and zoneAwareLbSetting can be set")
	}
	c.localityLbSetting(p+".localityLbSetting", lb.LocalityLbSetting, outlier)
	c.zoneAwareLbSetting(p+".zoneAwareLbSetting", lb.ZoneAwareLbSetting, outlier)
	if w := lb.Warmup; w != nil {
		wp := p + ".warmup"
		if w.Duration == nil {
			c.err(wp+".duration", "duration is required")
		} else {
			c.addAt(wp, ".duration", validateDuration(w.Duration))
		}
		if w.MinimumPercent.GetValue() > 100 {
			c.err(wp+".minimumPercent", "minimumPercent value should be less than or equal to 100")
		}
		if w.Aggression != nil && w.Aggression.GetValue() <= 0 {
			c.err(wp+".aggression", "aggression should be greater than 0")
		}
	}
}

// isPrime ports Istio's copy of Envoy's primality test.
func isPrime(x uint64) bool {
	if x != 0 && x < 4 {
		return true
	} else if x&1 == 0 {
		return false
	}
	limit := uint64(math.Sqrt(float64(x)))
	for f := uint64(3); f <= limit; f += 2 {
		if x%f == 0 {
			return false
		}
	}
	return true
}

// Topology labels, which failoverPriority may not repeat next to failover.
const (
	labelTopologyRegion  = "topology.kubernetes.io/region"
	labelTopologyZone    = "topology.kubernetes.io/zone"
	labelTopologySubzone = "topology.istio.io/subzone"
)

func isTopologyLabel(l string) bool {
	return l == labelTopologyRegion || l == labelTopologyZone || l == labelTopologySubzone
}

// localityLbSetting ports agent.ValidateLocalityLbSetting, which stops at
// several of its errors.
func (c *checker) localityLbSetting(p string, lb *networking.LocalityLoadBalancerSetting, outlier *networking.OutlierDetection) {
	if lb == nil {
		return
	}
	if len(lb.GetDistribute()) > 0 && len(lb.GetFailover()) > 0 {
		c.err(p, "can not simultaneously specify 'distribute' and 'failover'")
		return
	}
	if len(lb.GetFailover()) > 0 {
		for i, l := range lb.GetFailoverPriority() {
			if isTopologyLabel(l) {
				c.err(indexPath(p+".failoverPriority", i), fmt.Sprintf("can not simultaneously set 'failover' and topology label '%s' in 'failover_priority'", l))
				return
			}
		}
	}
	srcLocalities := make([]string, 0, len(lb.GetDistribute()))
	for i, d := range lb.GetDistribute() {
		dp := indexPath(p+".distribute", i)
		srcLocalities = append(srcLocalities, d.GetFrom())
		var total uint32
		dest := slices.Sorted(maps.Keys(d.GetTo()))
		for _, loc := range dest {
			w := d.GetTo()[loc]
			if w <= 0 || w > 100 {
				c.err(keyPath(dp+".to", loc), "locality weight must be in range [1, 100]")
				return
			}
			total += w
		}
		if total != 100 {
			c.err(dp+".to", fmt.Sprintf("total locality weight %v != 100", total))
			return
		}
		c.addAt(dp, ".to", validateLocalities(dest))
	}
	c.addAt(p, ".distribute", validateLocalities(srcLocalities))

	if (len(lb.GetFailover()) != 0 || len(lb.GetFailoverPriority()) != 0) && outlier == nil {
		c.warn(p, "outlier detection policy must be provided for failover")
	}
	for i, f := range lb.GetFailover() {
		fp := indexPath(p+".failover", i)
		if f.GetFrom() == f.GetTo() {
			c.err(fp, "locality lb failover settings must specify different regions")
		}
		if strings.Contains(f.GetFrom(), "/") || strings.Contains(f.GetTo(), "/") {
			c.err(fp, "locality lb failover only specify region")
		}
		if strings.Contains(f.GetTo(), "*") || strings.Contains(f.GetFrom(), "*") {
			c.err(fp, "locality lb failover region should not contain '*' wildcard")
		}
	}
}

// zoneAwareLbSetting ports agent.ValidateZoneAwareLbSetting.
func (c *checker) zoneAwareLbSetting(p string, lb *networking.ZoneAwareLoadBalancerSetting, outlier *networking.OutlierDetection) {
	if lb == nil {
		return
	}
	for i, l := range lb.GetFailoverPriority() {
		if isTopologyLabel(l) {
			c.err(indexPath(p+".failoverPriority", i), fmt.Sprintf("'failover_priority' for zone aware lb must not use topology label '%s'; region- and zone-level routing are handled automatically", l))
		}
	}
	if (len(lb.GetFailover()) != 0 || len(lb.GetFailoverPriority()) != 0) && outlier == nil {
		c.warn(p, "outlier detection policy must be provided for failover")
	}
	for i, f := range lb.GetFailover() {
		fp := indexPath(p+".failover", i)
		if f.GetFrom() == f.GetTo() {
			c.err(fp, "zone aware lb failover settings must specify different regions")
		}
		if strings.Contains(f.GetFrom(), "/") || strings.Contains(f.GetTo(), "/") {
			c.err(fp, "zone aware lb failover only specifies region; zone and subzone failover are handled automatically")
		}
		if strings.Contains(f.GetTo(), "*") || strings.Contains(f.GetFrom(), "*") {
			c.err(fp, "zone aware lb failover region should not contain '*' wildcard")
		}
	}
}

// validateLocalities ports agent.validateLocalities: region/zone/subzone
// names, a trailing '*' at most, and no overlaps.
func validateLocalities(localities []string) error {
	type zones map[string]map[string]bool
	regions := map[string]zones{}
	for _, locality := range localities {
		if n := strings.Count(locality, "*"); n > 0 && (n > 1 || !strings.HasSuffix(locality, "*")) {
			return fmt.Errorf("locality %s wildcard '*' number can not exceed 1 and must be in the end", locality)
		}
		if _, exist := regions["*"]; exist {
			return fmt.Errorf("locality %s overlap with previous specified ones", locality)
		}
		items := strings.SplitN(locality, "/", 3)
		for _, it := range items {
			if it == "" {
				return fmt.Errorf("locality %s must not contain empty region/zone/subzone info", locality)
			}
		}
		region := items[0]
		overlap := fmt.Errorf("locality %s overlap with previous specified ones", locality)
		switch len(items) - 1 {
		case 0:
			if _, exist := regions[region]; exist {
				return overlap
			}
			regions[region] = zones{"*": {"*": true}}
		case 1:
			zone := items[1]
			if r, exist := regions[region]; exist {
				if _, exist := r["*"]; exist {
					return overlap
				}
				if _, exist := r[zone]; exist {
					return overlap
				}
				r[zone] = map[string]bool{"*": true}
			} else {
				regions[region] = zones{zone: {"*": true}}
			}
		case 2:
			zone, subzone := items[1], items[2]
			if r, exist := regions[region]; exist {
				if _, exist := r["*"]; exist {
					return overlap
				}
				if z, exist := r[zone]; exist {
					if z["*"] || z[subzone] {
						return overlap
					}
					z[subzone] = true
				} else {
					r[zone] = map[string]bool{subzone: true}
				}
			} else {
				regions[region] = zones{zone: {subzone: true}}
			}
		}
	}
	return nil
}

// clientTLS ports agent.ValidateTLS (DestinationRule client TLS).
func (c *checker) clientTLS(p string, s *networking.ClientTLSSettings) {
	if s == nil {
		return
	}
	ns := c.obj.Namespace
	if strings.HasPrefix(s.CredentialName, configMapURI) {
		rnNamespace, err := parseConfigMapResourceName(s.CredentialName)
		if err != nil {
			c.err(p+".credentialName", fmt.Sprintf("invalid configmap:// credentialName: %v", err))
		} else if rnNamespace != ns || ns == "" {
			c.err(p+".credentialName", fmt.Sprintf("invalid configmap:// credentialName: namespace must match the configuration namespace %q", ns))
		}
	}
	if s.GetInsecureSkipVerify().GetValue() {
		if s.Mode == networking.ClientTLSSettings_SIMPLE &&
			(s.CaCertificates != "" || s.CredentialName != "" || s.SubjectAltNames != nil) {
			c.err(p+".insecureSkipVerify", "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true")
		}
		if s.Mode == networking.ClientTLSSettings_MUTUAL && (s.CaCertificates != "" || s.SubjectAltNames != nil) {
			c.err(p+".insecureSkipVerify", "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true")
		}
	}
	c.enumValue(p+".mode", int32(s.Mode), networking.ClientTLSSettings_TLSmode_name)
	if (s.Mode == networking.ClientTLSSettings_SIMPLE || s.Mode == networking.ClientTLSSettings_MUTUAL) && s.CredentialName != "" {
		if s.ClientCertificate != "" || s.CaCertificates != "" || s.PrivateKey != "" || s.CaCrl != "" {
			c.err(p+".credentialName", "cannot specify client certificates or CA certificate or CA CRL If credentialName is set")
		}
		// The credentials are fetched remotely.
		return
	}
	if s.Mode == networking.ClientTLSSettings_MUTUAL {
		if s.ClientCertificate == "" {
			c.err(p+".clientCertificate", "client certificate required for mutual tls")
		}
		if s.PrivateKey == "" {
			c.err(p+".privateKey", "private key required for mutual tls")
		}
	}
}

const configMapURI = "configmap://"

// parseConfigMapResourceName ports the configmap:// branch of
// credentials.ParseResourceName and returns the namespace.
func parseConfigMapResourceName(name string) (string, error) {
	split := strings.Split(strings.TrimPrefix(name, configMapURI), "/")
	if len(split) <= 1 {
		return "", fmt.Errorf("invalid resource name %q. Expected namespace and name", name)
	}
	if split[0] == "" {
		return "", fmt.Errorf("invalid resource name %q. Expected namespace", name)
	}
	if split[1] == "" {
		return "", fmt.Errorf("invalid resource name %q. Expected name", name)
	}
	return split[0], nil
}

// portTrafficPolicies ports validatePortTrafficPolicies, which keeps only
// the errors of the port-level checks.
func (c *checker) portTrafficPolicies(p string, pls []*networking.TrafficPolicy_PortTrafficPolicy) {
	for i, t := range pls {
		tp := indexPath(p, i)
		if t == nil {
			c.err(tp, "traffic policy may not be null")
			continue
		}
		if t.Port == nil {
			c.err(tp+".port", "portTrafficPolicy must have valid port")
		}
		if t.OutlierDetection == nil && t.ConnectionPool == nil && t.LoadBalancer == nil && t.Tls == nil {
			c.err(tp, "port traffic policy must have at least one field")
			continue
		}
		c.errorsOnly(func() {
			c.outlierDetection(tp+".outlierDetection", t.OutlierDetection)
			c.connectionPool(tp+".connectionPool", t.ConnectionPool)
			c.loadBalancer(tp+".loadBalancer", t.LoadBalancer, t.OutlierDetection)
			c.clientTLS(tp+".tls", t.Tls)
		})
	}
}
