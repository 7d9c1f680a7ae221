package validation

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// meshModeAllowAnyDynamicDNS is MeshConfig's ALLOW_ANY_DYNAMIC_DNS mode,
// which a Sidecar may not use.
const meshModeAllowAnyDynamicDNS = 3

// sidecar ports ValidateSidecar.
func (c *checker) sidecar(sc *networking.Sidecar) {
	warnsBefore := len(c.warns)
	failed, noLabels := c.alphaWorkloadSelector("spec.workloadSelector", sc.WorkloadSelector)
	if failed {
		// Istio returns the selector errors alone.
		return
	}
	if noLabels {
		c.warn("spec.workloadSelector", "sidecar: workload selector specified without labels, will be applied to all services in namespace")
	}
	if len(sc.Egress) == 0 && len(sc.Ingress) == 0 && sc.OutboundTrafficPolicy == nil && sc.InboundConnectionPool == nil {
		// Istio returns this error alone, without warnings.
		c.warns = c.warns[:warnsBefore]
		c.err("spec", "sidecar: empty configuration provided")
		return
	}

	ports := map[uint32]bool{}
	for i, in := range sc.Ingress {
		ip := indexPath("spec.ingress", i)
		if in == nil {
			c.err(ip, "sidecar: ingress may not be null")
			continue
		}
		if in.Port == nil {
			c.err(ip+".port", "sidecar: port is required for ingress listeners")
			continue
		}
		if in.Port.TargetPort > 0 { //nolint:staticcheck // Istio rejects the deprecated field on sidecars
			c.err(ip+".port.targetPort", "targetPort has no impact on Sidecars")
		}
		c.sidecarIngressPortAndBind(ip, in.Port, in.GetBind())
		if ports[in.Port.Number] {
			c.err(ip+".port.number", "sidecar: ports on IP bound listeners must be unique")
		}
		ports[in.Port.Number] = true
		c.enumValue(ip+".captureMode", int32(in.CaptureMode), networking.CaptureMode_name)

		if in.DefaultEndpoint != "" {
			c.defaultEndpoint(ip+".defaultEndpoint", in.DefaultEndpoint)
		}
		if tls := in.Tls; tls != nil {
			tp := ip + ".tls"
			if len(tls.SubjectAltNames) > 0 {
				c.err(tp+".subjectAltNames", "sidecar: subjectAltNames is not supported in ingress tls")
			}
			if tls.HttpsRedirect {
				c.err(tp+".httpsRedirect", "sidecar: httpsRedirect is not supported")
			}
			if tls.CredentialName != "" {
				c.err(tp+".credentialName", "sidecar: credentialName is not currently supported")
			}
			if len(tls.CredentialNames) > 0 {
				c.err(tp+".credentialNames", "sidecar: credentialNames is not currently supported")
			}
			if len(tls.TlsCertificates) > 0 {
				c.err(tp+".tlsCertificates", "sidecar: tls_certificates is not currently supported")
			}
			if tls.Mode == networking.ServerTLSSettings_ISTIO_MUTUAL || tls.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
				c.err(tp+".mode", fmt.Sprintf("configuration is invalid: cannot set mode to %s in sidecar ingress tls", tls.Mode.String()))
			}
			if !parseProtocol(in.Port.Protocol).isTLS() {
				c.err(tp, "server cannot have TLS settings for non HTTPS/TLS ports")
			}
			c.serverTLS(tp, tls)
		}
		c.connectionPool(ip+".connectionPool", in.ConnectionPool)
		if in.ConnectionPool != nil && in.ConnectionPool.Http != nil && !parseProtocol(in.Port.Protocol).isHTTP() {
			c.warn(ip+".connectionPool.http", fmt.Sprintf("sidecar: HTTP connection pool settings are configured for port %d (%q) but its protocol is not HTTP (%s); only TCP settings will apply",
				in.Port.Number, in.Port.Name, in.Port.Protocol))
		}
	}
	c.connectionPool("spec.inboundConnectionPool", sc.InboundConnectionPool)

	ports = map[uint32]bool{}
	uds := map[string]bool{}
	catchAllFound := false
	for i, eg := range sc.Egress {
		ep := indexPath("spec.egress", i)
		if eg == nil {
			c.err(ep, "egress listener may not be null")
			continue
		}
		// Only the last listener may omit the port (the catch-all).
		if eg.Port == nil {
			if catchAllFound {
				c.err(ep+".port", "sidecar: egress can have only one listener with empty port")
				continue
			}
			if i == len(sc.Egress)-1 {
				catchAllFound = true
			} else {
				c.err(ep+".port", "sidecar: the egress listener with empty port should be the last listener in the list")
			}
		} else {
			if eg.Port.TargetPort > 0 { //nolint:staticcheck // Istio rejects the deprecated field on sidecars
				c.err(ep+".port.targetPort", "targetPort has no impact on Sidecars")
			}
			bind := eg.GetBind()
			c.sidecarEgressPortBindAndCaptureMode(ep, eg.Port, bind, eg.GetCaptureMode())
			if eg.Port.Number == 0 {
				if uds[bind] {
					c.err(ep+".bind", "sidecar: unix domain socket values for listeners must be unique")
				}
				uds[bind] = true
			} else {
				if ports[eg.Port.Number] {
					c.err(ep+".port.number", "sidecar: ports on IP bound listeners must be unique")
				}
				ports[eg.Port.Number] = true
			}
		}
		c.enumValue(ep+".captureMode", int32(eg.CaptureMode), networking.CaptureMode_name)
		c.egressHosts(ep+".hosts", eg.Hosts)
	}
	c.outboundTrafficPolicy("spec.outboundTrafficPolicy", sc.OutboundTrafficPolicy)
	c.sidecarSchema(sc)
}

// egressHosts checks that egress hosts are namespace/dnsName and warns
// about overlapping ones.
func (c *checker) egressHosts(p string, hosts []string) {
	if len(hosts) == 0 {
		c.err(p, "sidecar: egress listener must contain at least one host")
		return
	}
	byNamespace := map[string]map[string]bool{}
	for i, h := range hosts {
		hp := indexPath(p, i)
		ns, svc, found := strings.Cut(h, "/")
		if found && !strings.HasPrefix(ns, "~") {
			if ns == "." {
				ns = c.obj.Namespace
			}
			if byNamespace[ns] == nil {
				byNamespace[ns] = map[string]bool{}
			}
			if svc != "*" {
				if _, dup := byNamespace[ns][svc]; dup || byNamespace[ns]["*"] {
					c.warn(hp, fmt.Sprintf("duplicated egress host: %s", h))
				}
			} else if len(byNamespace[ns]) != 0 {
				c.warn(hp, fmt.Sprintf("duplicated egress host: %s", h))
			}
			byNamespace[ns][svc] = true
		}
		c.namespaceSlashWildcardHostname(hp, h, false, false)
	}
	if byNamespace["*"]["*"] && len(byNamespace) != 1 {
		c.warn(p, "`*/*` host select all resources, no other hosts can be added")
	}
}

// defaultEndpoint checks a sidecar ingress defaultEndpoint: 127.0.0.1:port,
// 0.0.0.0:port, [::1]:port, [::]:port or unix://path.
func (c *checker) defaultEndpoint(p, ep string) {
	if after, ok := strings.CutPrefix(ep, unixAddressPrefix); ok {
		c.add(p, validateUnixAddress(after))
		return
	}
	host, port, err := net.SplitHostPort(ep)
	c.add(p, err)
	if host != "" && host != "127.0.0.1" && host != "0.0.0.0" && host != "::1" && host != "::" {
		c.err(p, "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset")
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		c.err(p, fmt.Sprintf("sidecar: defaultEndpoint port (%s) is not a number: %v", port, err))
	} else {
		c.add(p, validatePort(n))
	}
}

// sidecarIngressPortAndBind ports validateSidecarIngressPortAndBind; p is
// the listener's path.
func (c *checker) sidecarIngressPortAndBind(p string, port *networking.SidecarPort, bind string) {
	if port.Name != "" {
		c.addAt(p, ".port.name", validatePortName(port.Name))
	}
	c.addAt(p, ".port.protocol", validateProtocol(port.Protocol))
	c.addAt(p, ".port.number", validatePort(int(port.Number)))
	if bind != "" {
		c.addAt(p, ".bind", validateIPAddress(bind))
	}
}

// sidecarEgressPortBindAndCaptureMode ports
// validateSidecarEgressPortBindAndCaptureMode; port 0 means a unix socket.
func (c *checker) sidecarEgressPortBindAndCaptureMode(p string, port *networking.SidecarPort, bind string, mode networking.CaptureMode) {
	if port.Name != "" {
		c.addAt(p, ".port.name", validatePortName(port.Name))
	}
	if port.Number == 0 {
		c.addAt(p, ".port.protocol", validateProtocol(port.Protocol))
		if after, ok := strings.CutPrefix(bind, unixAddressPrefix); !ok {
			c.err(p+".bind", "sidecar: ports with 0 value must have a unix domain socket bind address")
		} else {
			c.addAt(p, ".bind", validateUnixAddress(after))
		}
		if mode != networking.CaptureMode_DEFAULT && mode != networking.CaptureMode_NONE {
			c.err(p+".captureMode", "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners")
		}
		return
	}
	c.addAt(p, ".port.protocol", validateProtocol(port.Protocol))
	c.addAt(p, ".port.number", validatePort(int(port.Number)))
	if bind != "" {
		c.addAt(p, ".bind", validateIPAddress(bind))
	}
}

// outboundTrafficPolicy ports validateSidecarOutboundTrafficPolicy.
func (c *checker) outboundTrafficPolicy(p string, tp *networking.OutboundTrafficPolicy) {
	if tp == nil {
		return
	}
	mode := tp.GetMode()
	if mode == meshModeAllowAnyDynamicDNS {
		c.err(p+".mode", "sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not in Sidecar resource")
		return
	}
	c.enumValue(p+".mode", int32(mode), networking.OutboundTrafficPolicy_Mode_name)
	if tp.EgressProxy == nil {
		return
	}
	if mode != networking.OutboundTrafficPolicy_ALLOW_ANY {
		c.err(p+".egressProxy", "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode")
		return
	}
	c.addAt(p, ".egressProxy.host", validateFQDN(tp.EgressProxy.GetHost()))
	if tp.EgressProxy.Port == nil {
		c.err(p+".egressProxy.port", "sidecar: egress_proxy port must be non-nil")
		return
	}
	c.destination(p+".egressProxy", tp.EgressProxy)
}
