package validation

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
)

// The CRD schema and CEL rules of Istio's crd-all.gen.yaml that
// kube-apiserver checks before the validating webhook, limited to the ones
// the Go validator does not already enforce on the same input. Messages
// follow kube-apiserver's wording.
//
// Rules that depend on whether a field was written at all (CRD "required",
// minItems and CEL has() on a value equal to its default, such as
// "targetPort: 0" or "endpoints: []") ask istioyaml's Object.Has, as the
// decoded Go struct cannot tell.

// enumValue rejects an enum number outside the CRD's enum, in a message
// not made by istioyaml.Decode (which takes enums by name only).
func (c *checker) enumValue(p string, v int32, names map[int32]string) {
	if _, ok := names[v]; ok {
		return
	}
	supported := make([]string, 0, len(names))
	for i := int32(0); int(i) < len(names); i++ {
		supported = append(supported, fmt.Sprintf("%q", names[i]))
	}
	c.err(p, fmt.Sprintf("Unsupported value: %d: supported values: %s", v, strings.Join(supported, ", ")))
}

// maxLength is the OpenAPI maxLength (kube counts characters).
func (c *checker) maxLength(p, s string, limit int) {
	if utf8.RuneCountInString(s) > limit {
		c.err(p, fmt.Sprintf("Too long: may not be more than %d bytes", limit))
	}
}

// writtenEmpty is the OpenAPI minItems 1 on a list written empty (an absent
// list passes).
func (c *checker) writtenEmpty(p string, n int) {
	if n == 0 && c.obj.Has(p) {
		c.err(p, "Invalid value: 0: should have at least 1 items")
	}
}

// maxItems is the OpenAPI maxItems and maxProperties.
func (c *checker) maxItems(p string, n, limit int) {
	if n > limit {
		c.err(p, fmt.Sprintf("Too many: %d: must have at most %d items", n, limit))
	}
}

// celDuration is the CEL rule duration(self) >= duration('1ms').
func (c *checker) celDuration(p string, d *durationpb.Duration) {
	if d != nil && d.AsDuration() < time.Millisecond {
		c.err(p, fmt.Sprintf("Invalid value: %q: must be a valid duration greater than 1ms", d.AsDuration().String()))
	}
}

// celPortNames is the CEL rule on WorkloadEntry ports: names shorter than
// 63 characters matching a DNS label.
func (c *checker) celPortNames(p string, ports map[string]uint32) {
	for _, k := range slices.Sorted(maps.Keys(ports)) {
		if !(len(k) < 63 && matchesDNS1123Label(k)) {
			c.err(p, "Invalid value: \"object\": port name must be valid")
			return
		}
	}
}

// labelSelectorSchema checks a selector map: at most limit entries, values
// of at most 63 characters.
func (c *checker) labelSelectorSchema(p string, labels map[string]string, limit int) {
	c.maxItems(p, len(labels), limit)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		c.maxLength(keyPath(p, k), labels[k], 63)
	}
}

func (c *checker) destinationRuleSchema(dr *networking.DestinationRule) {
	c.trafficPolicySchema("spec.trafficPolicy", dr.TrafficPolicy)
	for i, s := range dr.Subsets {
		c.trafficPolicySchema(indexPath("spec.subsets", i)+".trafficPolicy", s.GetTrafficPolicy())
	}
	if ws := dr.GetWorkloadSelector(); ws != nil {
		c.labelSelectorSchema("spec.workloadSelector.matchLabels", ws.MatchLabels, 4096)
	}
}

func (c *checker) trafficPolicySchema(p string, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	c.loadBalancerSchema(p+".loadBalancer", tp.LoadBalancer)
	c.outlierDetectionSchema(p+".outlierDetection", tp.OutlierDetection)
	c.notInSchema(p+".tls.caCertCredentialName", tp.GetTls().GetCaCertCredentialName() != "")
	c.maxItems(p+".portLevelSettings", len(tp.PortLevelSettings), 4096)
	for i, pl := range tp.PortLevelSettings {
		pp := indexPath(p+".portLevelSettings", i)
		c.loadBalancerSchema(pp+".loadBalancer", pl.GetLoadBalancer())
		c.outlierDetectionSchema(pp+".outlierDetection", pl.GetOutlierDetection())
		c.notInSchema(pp+".tls.caCertCredentialName", pl.GetTls().GetCaCertCredentialName() != "")
	}
	if rb := tp.RetryBudget; rb != nil && rb.Percent != nil {
		if v := rb.Percent.GetValue(); v < 0 {
			c.err(p+".retryBudget.percent", fmt.Sprintf("Invalid value: %v: should be greater than or equal to 0", v))
		} else if v > 100 {
			c.err(p+".retryBudget.percent", fmt.Sprintf("Invalid value: %v: should be less than or equal to 100", v))
		}
	}
}

// notInSchema reports a field of istio.io/api v1.32 that the CRD schema of
// the Istio release we follow does not declare yet; kube-apiserver rejects
// it ("field not declared in schema").
func (c *checker) notInSchema(p string, set bool) {
	if set {
		c.err(p, "field not declared in schema")
	}
}

func (c *checker) loadBalancerSchema(p string, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	c.notInSchema(p+".backendUtilization", lb.GetBackendUtilization() != nil)
	c.celDuration(p+".warmupDurationSecs", lb.WarmupDurationSecs)
	if w := lb.Warmup; w != nil && w.MinimumPercent != nil && w.MinimumPercent.GetValue() < 0 {
		c.err(p+".warmup.minimumPercent", fmt.Sprintf("Invalid value: %v: should be greater than or equal to 0", w.MinimumPercent.GetValue()))
	}
	if za := lb.ZoneAwareLbSetting; za != nil && za.MinClusterSize != nil && za.MinClusterSize.GetValue() < 1 {
		c.err(p+".zoneAwareLbSetting.minClusterSize", fmt.Sprintf("Invalid value: %d: should be greater than or equal to 1", za.MinClusterSize.GetValue()))
	}
}

func (c *checker) outlierDetectionSchema(p string, o *networking.OutlierDetection) {
	c.notInSchema(p+".failurePercentageThreshold", o.GetFailurePercentageThreshold() != nil)
	for i, code := range o.GetOutlierDetectionHttpErrorCodes() {
		cp := indexPath(p+".outlierDetectionHttpErrorCodes", i)
		if code < 100 {
			c.err(cp, fmt.Sprintf("Invalid value: %d: should be greater than or equal to 100", code))
		} else if code > 599 {
			c.err(cp, fmt.Sprintf("Invalid value: %d: should be less than or equal to 599", code))
		}
	}
}

func (c *checker) gatewaySchema(gw *networking.Gateway) {
	for i, s := range gw.Servers {
		sp := indexPath("spec.servers", i)
		// port.number is required; Istio itself lets a server on a unix
		// socket leave it 0.
		if s.GetPort() != nil && s.Port.Number == 0 && strings.HasPrefix(s.Bind, unixAddressPrefix) && !c.obj.Has(sp+".port.number") {
			c.err(sp+".port.number", "Required value")
		}
		c.serverTLSSchema(sp+".tls", s.GetTls())
	}
}

func (c *checker) serverTLSSchema(p string, tls *networking.ServerTLSSettings) {
	if tls == nil {
		return
	}
	c.notInSchema(p+".alpnProtocols", len(tls.AlpnProtocols) > 0)
	c.notInSchema(p+".ecdhCurves", len(tls.EcdhCurves) > 0)
	c.writtenEmpty(p+".credentialNames", len(tls.CredentialNames))
	c.maxItems(p+".credentialNames", len(tls.CredentialNames), 2)
	c.writtenEmpty(p+".tlsCertificates", len(tls.TlsCertificates))
	c.maxItems(p+".tlsCertificates", len(tls.TlsCertificates), 2)
}

func (c *checker) serviceEntrySchema(se *networking.ServiceEntry) {
	c.maxItems("spec.hosts", len(se.Hosts), 256)
	c.maxItems("spec.addresses", len(se.Addresses), 256)
	for i, a := range se.Addresses {
		c.maxLength(indexPath("spec.addresses", i), a, 64)
	}
	c.maxItems("spec.ports", len(se.Ports), 256)
	for i, port := range se.Ports {
		// CEL 0 < self && self <= 65535 on a written targetPort; Istio
		// takes 0 as unset.
		if tp := indexPath("spec.ports", i) + ".targetPort"; port.GetTargetPort() == 0 && c.obj.Has(tp) {
			c.err(tp, "Invalid value: 0: port must be between 1-65535")
		}
	}
	// CEL has(self.endpoints) is true for "endpoints: []", which Istio
	// takes as no endpoints.
	if len(se.Endpoints) == 0 && c.obj.Has("spec.endpoints") {
		if se.WorkloadSelector != nil {
			c.err("spec", `Invalid value: "object": only one of WorkloadSelector or Endpoints can be set`)
		}
		if se.Resolution == networking.ServiceEntry_NONE {
			c.err("spec", `Invalid value: "object": NONE mode cannot set endpoints`)
		}
	}
	c.maxItems("spec.endpoints", len(se.Endpoints), 4096)
	for i, ep := range se.Endpoints {
		if ep != nil {
			c.workloadEntrySchema(indexPath("spec.endpoints", i), ep)
		}
	}
	if ws := se.WorkloadSelector; ws != nil {
		c.labelSelectorSchema("spec.workloadSelector.labels", ws.Labels, 256)
	}
}

func (c *checker) workloadEntrySchema(p string, we *networking.WorkloadEntry) {
	c.maxLength(p+".address", we.Address, 256)
	c.maxItems(p+".labels", len(we.Labels), 256)
	c.maxLength(p+".locality", we.Locality, 2048)
	c.maxLength(p+".network", we.Network, 2048)
	c.maxLength(p+".serviceAccount", we.ServiceAccount, 253)
	c.maxItems(p+".ports", len(we.Ports), 128)
	c.celPortNames(p+".ports", we.Ports)
	// CEL has(self.ports) is true for "ports: {}" (or only null entries,
	// pruned), which Istio takes as no ports.
	if strings.HasPrefix(we.Address, unixAddressPrefix) && len(we.Ports) == 0 && c.obj.Has(p+".ports") {
		c.err(p, `Invalid value: "object": UDS may not include ports`)
	}
}

func (c *checker) sidecarSchema(sc *networking.Sidecar) {
	if ws := sc.WorkloadSelector; ws != nil {
		c.labelSelectorSchema("spec.workloadSelector.labels", ws.Labels, 256)
	}
	for i, in := range sc.Ingress {
		c.serverTLSSchema(indexPath("spec.ingress", i)+".tls", in.GetTls())
	}
}
