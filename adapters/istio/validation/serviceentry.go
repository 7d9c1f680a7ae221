package validation

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// Labels that change how Istio treats a ServiceEntry.
const (
	labelEnableAutoallocateIP = "networking.istio.io/enable-autoallocate-ip"
	labelUseWaypoint          = "istio.io/use-waypoint"
)

// serviceEntry ports ValidateServiceEntry.
func (c *checker) serviceEntry(se *networking.ServiceEntry) {
	failed, noLabels := c.alphaWorkloadSelector("spec.workloadSelector", se.WorkloadSelector)
	if failed {
		// Istio returns the selector errors alone.
		return
	}
	if noLabels {
		c.warn("spec.workloadSelector", "service entry: workload selector specified without labels, will be applied to all services in namespace")
	}
	if se.WorkloadSelector != nil && se.Endpoints != nil {
		c.err("spec.endpoints", "only one of WorkloadSelector or Endpoints is allowed in Service Entry")
	}
	if len(se.Hosts) == 0 {
		c.err("spec.hosts", "service entry must have at least one host")
	}
	for i, h := range se.Hosts {
		hp := indexPath("spec.hosts", i)
		if h == "*" {
			// A full wildcard is not allowed in a ServiceEntry.
			c.err(hp, fmt.Sprintf("invalid host %s", h))
			continue
		}
		c.add(hp, validateWildcardDomain(h))
		if se.Resolution != networking.ServiceEntry_DYNAMIC_DNS {
			if err := validatePartialWildcard(h); err != nil {
				c.warn(hp, err.Error())
			}
		}
	}

	cidrFound := false
	for i, a := range se.Addresses {
		cidrFound = cidrFound || strings.Contains(a, "/")
		c.add(indexPath("spec.addresses", i), validateIPSubnet(a))
	}
	if cidrFound && se.Resolution != networking.ServiceEntry_NONE && se.Resolution != networking.ServiceEntry_STATIC {
		c.err("spec.addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types")
	}

	autoAllocation := shouldAutoAllocateIP(c.obj.Labels, se)
	portNumbers := make(map[uint32]bool, len(se.Ports))
	servicePorts := make(map[string]bool, len(se.Ports))
	for i, port := range se.Ports {
		pp := indexPath("spec.ports", i)
		if port == nil {
			c.err(pp, "service entry port may not be null")
			continue
		}
		if servicePorts[port.Name] {
			c.err(pp+".name", fmt.Sprintf("service entry port name %q already defined", port.Name))
		}
		servicePorts[port.Name] = true
		if portNumbers[port.Number] {
			c.err(pp+".number", fmt.Sprintf("service entry port %d already defined", port.Number))
		}
		portNumbers[port.Number] = true
		if port.TargetPort != 0 {
			c.addAt(pp, ".targetPort", validatePort(int(port.TargetPort)))
		}
		if len(se.Addresses) == 0 && !autoAllocation && (port.Protocol == "" || port.Protocol == "TCP") {
			c.warn(pp+".protocol", "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled")
		}
		c.addAt(pp, ".name", validatePortName(port.Name))
		c.addAt(pp, ".protocol", validateProtocol(port.Protocol))
		c.addAt(pp, ".number", validatePort(int(port.Number)))
	}

	switch se.Resolution {
	case networking.ServiceEntry_NONE:
		if len(se.Endpoints) != 0 {
			c.err("spec.endpoints", "no endpoints should be provided for resolution type none")
		}
		if se.WorkloadSelector != nil {
			c.warn("spec.workloadSelector", "workloadSelector should not be set when resolution mode is NONE")
		}
	case networking.ServiceEntry_STATIC:
		for i, ep := range se.Endpoints {
			if ep == nil {
				c.err(indexPath("spec.endpoints", i), "endpoint cannot be nil")
				continue
			}
			c.workloadEntryFields(indexPath("spec.endpoints", i), ep, servicePorts, false)
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		if len(se.Endpoints) == 0 {
			for i, h := range se.Hosts {
				if err := validateFQDN(h); err != nil {
					c.err(indexPath("spec.hosts", i), fmt.Sprintf("hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode %s, %v", se.Resolution, err))
					break
				}
			}
		}
		if se.Resolution == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.Endpoints) > 1 {
			c.err("spec.endpoints", fmt.Sprintf("there must only be 0 or 1 endpoint for resolution mode %s", se.Resolution))
		}
		for i, ep := range se.Endpoints {
			epp := indexPath("spec.endpoints", i)
			if ep == nil {
				c.err(epp, "endpoint cannot be nil")
				continue
			}
			if !isValidIPAddress(ep.Address) && validateFQDN(ep.Address) != nil {
				c.err(epp+".address", fmt.Sprintf("endpoint address %q is not a valid FQDN or an IP address", ep.Address))
			}
			c.labels(epp+".labels", ep.Labels)
			for _, name := range slices.Sorted(maps.Keys(ep.Ports)) {
				port := ep.Ports[name]
				kp := keyPath(epp+".ports", name)
				if !servicePorts[name] {
					c.err(kp, fmt.Sprintf("endpoint port %v is not defined by the service entry", port))
				}
				c.add(kp, validatePortName(name))
				c.add(kp, validatePort(int(port)))
			}
		}
		if len(se.Addresses) > 0 {
			for i, port := range se.Ports {
				if port == nil {
					c.err(indexPath("spec.ports", i), "ports cannot be nil")
					continue
				}
				if parseProtocol(port.Protocol).isTCP() {
					if len(se.Hosts) > 1 {
						c.warn("spec.hosts", "service entry can not have more than one host specified simultaneously with address and tcp port")
					}
					break
				}
			}
		}
	case networking.ServiceEntry_DYNAMIC_DNS:
		if len(se.Hosts) == 0 {
			c.err("spec.hosts", fmt.Sprintf("at least one wildcard host must be provided for resolution type %s", se.Resolution))
		}
		for i, h := range se.Hosts {
			if h == "" || h[0] != '*' {
				c.err(indexPath("spec.hosts", i), fmt.Sprintf("host must be wildcarded for resolution mode %s", se.Resolution))
			}
		}
		if len(se.Addresses) != 0 {
			// Istio's message lacks a space before "from".
			c.err("spec.addresses", fmt.Sprintf("addresses cannot be set for resolution type %s. HTTP route domains will only be generated"+
				"from the hosts field values", se.Resolution))
		}
		if len(se.Endpoints) != 0 {
			c.err("spec.endpoints", fmt.Sprintf("endpoints cannot be set for resolution type %s. Destination IP address determined from hosts"+
				"field values", se.Resolution))
		}
		for i, port := range se.Ports {
			if port == nil {
				c.err(indexPath("spec.ports", i), "port cannot be nil")
				continue
			}
			// Envoy's dynamic forward proxy serves HTTP, TLS, GRPC and HTTP2.
			switch parseProtocol(port.Protocol) {
			case protocolHTTP, protocolTLS, protocolGRPC, protocolHTTP2:
			default:
				c.err(indexPath("spec.ports", i)+".protocol", fmt.Sprintf("only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type %s", se.Resolution))
			}
		}
		if se.Location != networking.ServiceEntry_MESH_EXTERNAL && se.Location != networking.ServiceEntry_MESH_INTERNAL {
			c.err("spec.location", fmt.Sprintf("location must be MESH_EXTERNAL or MESH_INTERNAL for resolution type %s", se.Resolution))
		}
		if se.Location == networking.ServiceEntry_MESH_INTERNAL && usesWaypoint(c.obj.Labels) {
			c.err("spec.location", fmt.Sprintf("location MESH_INTERNAL with resolution type %s is not supported when using waypoints", se.Resolution))
		}
	default:
		c.err("spec.resolution", fmt.Sprintf("unsupported resolution type %s", networking.ServiceEntry_Resolution_name[int32(se.Resolution)]))
	}

	// Plain TCP cannot tell several hosts apart unless resolution is NONE.
	if se.Resolution != networking.ServiceEntry_NONE && len(se.Hosts) > 1 {
		for i, port := range se.Ports {
			if port == nil {
				c.err(indexPath("spec.ports", i), "ports cannot be nil")
				continue
			}
			if p := parseProtocol(port.Protocol); !p.isHTTP() && !p.isTLS() {
				c.err(indexPath("spec.ports", i)+".protocol", "multiple hosts provided with non-HTTP, non-TLS ports")
				break
			}
		}
	}
	c.exportTo("spec.exportTo", se.ExportTo, true, false)
	c.enumValue("spec.location", int32(se.Location), networking.ServiceEntry_Location_name)
	c.serviceEntrySchema(se)
}

// shouldAutoAllocateIP ports serviceentry.ShouldV2AutoAllocateIPFromConfig
// with Istio's default PILOT_ENABLE_IP_AUTOALLOCATE=true.
func shouldAutoAllocateIP(labels map[string]string, se *networking.ServiceEntry) bool {
	if se.Resolution == networking.ServiceEntry_NONE {
		return false
	}
	if v, found := labels[labelEnableAutoallocateIP]; found && strings.EqualFold(v, "false") {
		return false
	}
	return len(se.Addresses) == 0
}

// usesWaypoint ports usesWaypoint.
func usesWaypoint(labels map[string]string) bool {
	v, ok := labels[labelUseWaypoint]
	return ok && v != "" && !strings.EqualFold(v, "none")
}

// workloadEntry ports ValidateWorkloadEntry.
func (c *checker) workloadEntry(we *networking.WorkloadEntry) {
	c.workloadEntryFields("spec", we, nil, true)
	c.workloadEntrySchema("spec", we)
}

// workloadEntryFields ports validateWorkloadEntry for a standalone
// WorkloadEntry (servicePorts nil) or a STATIC ServiceEntry endpoint.
func (c *checker) workloadEntryFields(p string, we *networking.WorkloadEntry, servicePorts map[string]bool, allowFQDNAddresses bool) {
	addr := we.GetAddress()
	if addr == "" {
		if we.Network == "" {
			c.err(p+".address", "address is required")
			return
		}
		c.warn(p+".address", fmt.Sprintf("address is unset with network %q", we.Network))
	}
	unixEndpoint := false
	// Without a ServiceEntry the address may be an IP, a host name or a
	// unix socket; check it by its content.
	if strings.HasPrefix(addr, unixAddressPrefix) {
		unixEndpoint = true
		c.addAt(p, ".address", validateUnixAddress(strings.TrimPrefix(addr, unixAddressPrefix)))
		if len(we.Ports) != 0 {
			c.err(p+".ports", fmt.Sprintf("unix endpoint %s must not include ports", addr))
		}
	} else if addr != "" && !isValidIPAddress(addr) {
		if !allowFQDNAddresses {
			c.err(p+".address", fmt.Sprintf("endpoint address %q is not a valid IP address", addr))
		} else if validateFQDN(addr) != nil {
			c.err(p+".address", fmt.Sprintf("endpoint address %q is not a valid FQDN or an IP address", addr))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(we.Ports)) {
		port := we.Ports[name]
		kp := keyPath(p+".ports", name)
		if servicePorts != nil && !servicePorts[name] {
			c.err(kp, fmt.Sprintf("endpoint port %v is not defined by the service entry", port))
		}
		c.add(kp, validatePortName(name))
		c.add(kp, validatePort(int(port)))
	}
	c.labels(p+".labels", we.Labels)
	if unixEndpoint && servicePorts != nil && len(servicePorts) != 1 {
		c.err(p+".address", "exactly 1 service port required for unix endpoints")
	}
}
