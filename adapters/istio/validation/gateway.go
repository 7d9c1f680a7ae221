package validation

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	networking "istio.io/api/networking/v1alpha3"
)

// gateway ports ValidateGateway.
func (c *checker) gateway(gw *networking.Gateway) {
	gatewaySemantics := c.obj.Annotations[annotationInternalGatewaySemantics] == semanticsGateway
	if !isDNS1123Label(c.obj.Name) && !gatewaySemantics {
		c.err("metadata.name", fmt.Sprintf("invalid gateway name: %q", c.obj.Name))
	}
	if len(gw.Servers) == 0 {
		c.err("spec.servers", "gateway must have at least one server")
	} else {
		for i, s := range gw.Servers {
			c.server(indexPath("spec.servers", i), s, gatewaySemantics)
		}
	}
	portNames := make(map[string]bool, len(gw.Servers))
	for i, s := range gw.Servers {
		sp := indexPath("spec.servers", i)
		if s == nil {
			c.err(sp, "server may not be nil")
			continue
		}
		if s.Port != nil {
			if portNames[s.Port.Name] {
				c.err(sp+".port.name", fmt.Sprintf("port names in servers must be unique: duplicate name %s", s.Port.Name))
			}
			portNames[s.Port.Name] = true
			if !parseProtocol(s.Port.Protocol).isHTTP() && s.GetTls().GetHttpsRedirect() {
				c.warn(sp+".tls.httpsRedirect", "tls.httpsRedirect should only be used with http servers")
			}
		}
	}
	c.gatewaySchema(gw)
}

// server ports validateServer.
func (c *checker) server(p string, s *networking.Server, gatewaySemantics bool) {
	if s == nil {
		c.err(p, "cannot have nil server")
		return
	}
	if len(s.Hosts) == 0 {
		c.err(p+".hosts", "server config must contain at least one host")
	} else {
		for i, h := range s.Hosts {
			c.namespaceSlashWildcardHostname(indexPath(p+".hosts", i), h, true, gatewaySemantics)
		}
	}
	portOK := c.serverPort(p+".port", s.Port, s.Bind)
	c.serverBind(p, s.Port, s.Bind)
	c.serverTLS(p+".tls", s.Tls)
	if !portOK {
		return
	}
	// HTTPS and TLS ports need TLS settings; plain ports may carry only
	// httpsRedirect or a certificate-less passthrough block.
	proto := parseProtocol(s.Port.Protocol)
	switch {
	case proto.isTLS() && s.Tls == nil:
		c.err(p+".tls", "server must have TLS settings for HTTPS/TLS protocols")
	case !proto.isTLS() && s.Tls != nil:
		if proto.isHTTP() {
			passthrough := s.Tls.Mode == networking.ServerTLSSettings_PASSTHROUGH || s.Tls.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH
			if !passthrough || s.Tls.CaCertificates != "" || s.Tls.PrivateKey != "" || s.Tls.ServerCertificate != "" {
				c.err(p+".tls", "server cannot have TLS settings for plain text HTTP ports")
			}
		} else {
			c.err(p+".tls", "server cannot have TLS settings for non HTTPS/TLS ports")
		}
	}
}

// serverPort ports validateServerPort; it reports whether the port had no
// errors.
func (c *checker) serverPort(p string, port *networking.Port, bind string) bool {
	if port == nil {
		c.err(p, "port is required")
		return false
	}
	before := c.errorCount()
	if parseProtocol(port.Protocol) == protocolUnsupported {
		c.err(p+".protocol", fmt.Sprintf("invalid protocol %q, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP", port.Protocol))
	}
	if port.Number > 0 || !strings.HasPrefix(bind, unixAddressPrefix) {
		c.addAt(p, ".number", validatePort(int(port.Number)))
	}
	if port.TargetPort > 0 { //nolint:staticcheck // Istio rejects the deprecated field on gateways
		c.err(p+".targetPort", "targetPort has no impact on Gateways")
	}
	if port.Name == "" {
		c.err(p+".name", fmt.Sprintf("port name must be set: %v", port))
	}
	return c.errorCount() == before
}

// serverBind ports validateServerBind; p is the server's path.
func (c *checker) serverBind(p string, port *networking.Port, bind string) {
	if after, ok := strings.CutPrefix(bind, unixAddressPrefix); ok {
		c.addAt(p, ".bind", validateUnixAddress(after))
		if port != nil && port.Number != 0 {
			c.err(p+".port.number", fmt.Sprintf("port number must be 0 for unix domain socket: %v", port))
		}
	} else if bind != "" {
		c.addAt(p, ".bind", validateIPAddress(bind))
	}
}

// namespaceSlashWildcardHostname ports agent.ValidateNamespaceSlashWildcardHostname
// for gateway server hosts and sidecar egress hosts.
func (c *checker) namespaceSlashWildcardHostname(p, hostname string, isGateway, gatewaySemantics bool) {
	ns, dnsName, found := strings.Cut(hostname, "/")
	if !found {
		if isGateway {
			// Old-style host without a namespace.
			c.hostnamePart(p, hostname, true)
			return
		}
		c.err(p, "host must be of form namespace/dnsName")
		return
	}
	if ns == "" || dnsName == "" {
		c.err(p, "config namespace and dnsName in host entry cannot be empty")
	}
	if !isGateway {
		// *, . or a DNS label, optionally ~-prefixed to exclude it.
		n := strings.TrimPrefix(ns, "~")
		if n != "" && n != "*" && n != "." && !isDNS1123Label(n) {
			c.err(p, fmt.Sprintf("invalid namespace value %q in sidecar", ns))
		}
	} else if ns != "*" && ns != "." && (ns != "~" || !gatewaySemantics) && !isDNS1123Label(ns) {
		c.err(p, fmt.Sprintf("invalid namespace value %q in gateway", ns))
	}
	c.hostnamePart(p, dnsName, isGateway)
}

// hostnamePart ports validateSidecarOrGatewayHostnamePart. For sidecars
// Istio appends the domain error twice; we keep that.
func (c *checker) hostnamePart(p, hostname string, isGateway bool) {
	if hostname != "*" && !strings.Contains(hostname, ".") {
		c.err(p, "short names (non FQDN) are not allowed")
	}
	if err := validateWildcardDomain(hostname); err != nil {
		if !isGateway {
			c.err(p, err.Error())
		}
		// Gateways also accept an IP.
		if !isValidIPAddress(hostname) {
			c.err(p, err.Error())
		}
	}
	c.add(p, validatePartialWildcard(hostname))
}

// serverTLS ports validateTLSOptions (gateway servers and sidecar ingress).
func (c *checker) serverTLS(p string, tls *networking.ServerTLSSettings) {
	if tls == nil {
		return
	}
	c.enumValue(p+".mode", int32(tls.Mode), networking.ServerTLSSettings_TLSmode_name)
	c.enumValue(p+".minProtocolVersion", int32(tls.MinProtocolVersion), networking.ServerTLSSettings_TLSProtocol_name)
	c.enumValue(p+".maxProtocolVersion", int32(tls.MaxProtocolVersion), networking.ServerTLSSettings_TLSProtocol_name)
	if tls.MinProtocolVersion == networking.ServerTLSSettings_TLSV1_0 || tls.MinProtocolVersion == networking.ServerTLSSettings_TLSV1_1 {
		if len(tls.CipherSuites) == 0 {
			c.warn(p+".minProtocolVersion", "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.")
		}
	}
	invalid, valid, duplicate := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, cs := range tls.CipherSuites {
		switch {
		case !isValidCipherSuite(cs):
			invalid[cs] = true
		case valid[cs]:
			duplicate[cs] = true
		default:
			valid[cs] = true
		}
	}
	if len(invalid) > 0 {
		c.warn(p+".cipherSuites", fmt.Sprintf("ignoring invalid cipher suites: %v", slices.Sorted(maps.Keys(invalid))))
	}
	if len(duplicate) > 0 {
		c.warn(p+".cipherSuites", fmt.Sprintf("ignoring duplicate cipher suites: %v", slices.Sorted(maps.Keys(duplicate))))
	}

	if tls.Mode == networking.ServerTLSSettings_ISTIO_MUTUAL {
		// ISTIO_MUTUAL uses the mesh certificates; no other source may be set.
		if tls.ServerCertificate != "" {
			c.err(p+".serverCertificate", "ISTIO_MUTUAL TLS cannot have associated server certificate")
		}
		if tls.PrivateKey != "" {
			c.err(p+".privateKey", "ISTIO_MUTUAL TLS cannot have associated private key")
		}
		if tls.CaCertificates != "" {
			c.err(p+".caCertificates", "ISTIO_MUTUAL TLS cannot have associated CA bundle")
		}
		if len(tls.TlsCertificates) > 0 {
			c.err(p+".tlsCertificates", "ISTIO_MUTUAL TLS cannot have associated tlsCertificates")
		}
		if tls.CredentialName != "" {
			c.err(p+".credentialName", "ISTIO_MUTUAL TLS cannot have associated credentialName")
		}
		if len(tls.CredentialNames) > 0 {
			c.err(p+".credentialNames", "ISTIO_MUTUAL TLS cannot have associated credentialNames")
		}
		return
	}
	if tls.Mode == networking.ServerTLSSettings_PASSTHROUGH || tls.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
		if tls.CaCrl != "" || tls.ServerCertificate != "" || tls.PrivateKey != "" || tls.CaCertificates != "" ||
			len(tls.TlsCertificates) > 0 || tls.CredentialName != "" || len(tls.CredentialNames) > 0 {
			c.warn(p+".mode", fmt.Sprintf("%v mode does not use certificates, they will be ignored", tls.Mode))
		}
	}
	sources := 0
	if tls.ServerCertificate != "" && tls.PrivateKey != "" {
		sources++
	}
	if tls.CredentialName != "" {
		sources++
	}
	if len(tls.CredentialNames) > 0 {
		sources++
	}
	if len(tls.TlsCertificates) > 0 {
		sources++
	}
	if sources > 1 {
		c.err(p, "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified")
	}
	terminating := tls.Mode == networking.ServerTLSSettings_SIMPLE || tls.Mode == networking.ServerTLSSettings_MUTUAL ||
		tls.Mode == networking.ServerTLSSettings_OPTIONAL_MUTUAL
	if terminating && (tls.CredentialName != "" || len(tls.CredentialNames) > 0) {
		// Credentials are fetched remotely; no files are required.
		return
	}
	if terminating {
		prefix := "SIMPLE TLS"
		if tls.Mode != networking.ServerTLSSettings_SIMPLE {
			prefix = "MUTUAL TLS"
			if tls.CaCertificates == "" {
				c.err(p+".caCertificates", fmt.Sprintf("%s requires a client CA bundle", prefix))
			}
		}
		if len(tls.TlsCertificates) > 2 {
			c.warn(p+".tlsCertificates", fmt.Sprintf("%s can support up to 2 server certificates", prefix))
		}
		if len(tls.TlsCertificates) > 0 {
			for i, cert := range tls.TlsCertificates {
				cp := indexPath(p+".tlsCertificates", i)
				if cert.GetServerCertificate() == "" {
					c.err(cp+".serverCertificate", fmt.Sprintf("%s requires a server certificate", prefix))
				}
				if cert.GetPrivateKey() == "" {
					c.err(cp+".privateKey", fmt.Sprintf("%s requires a private key", prefix))
				}
			}
		} else {
			if tls.ServerCertificate == "" {
				c.err(p+".serverCertificate", fmt.Sprintf("%s requires a server certificate", prefix))
			}
			if tls.PrivateKey == "" {
				c.err(p+".privateKey", fmt.Sprintf("%s requires a private key", prefix))
			}
		}
	}
	if tls.CaCrl != "" {
		if tls.CredentialName != "" {
			c.err(p+".caCrl", "CRL is not supported with credentialName. CRL has to be specified in the credential")
		}
		if tls.Mode == networking.ServerTLSSettings_SIMPLE {
			c.err(p+".caCrl", "CRL is not supported with SIMPLE TLS")
		}
	}
}

// validCipherSuites lists the cipher suites Istio accepts in
// Gateway.server.tls.cipherSuites (BoringSSL names, without PSK).
var validCipherSuites = map[string]bool{
	"ECDHE-ECDSA-AES128-GCM-SHA256": true, "ECDHE-RSA-AES128-GCM-SHA256": true,
	"ECDHE-ECDSA-AES256-GCM-SHA384": true, "ECDHE-RSA-AES256-GCM-SHA384": true,
	"ECDHE-ECDSA-CHACHA20-POLY1305": true, "ECDHE-RSA-CHACHA20-POLY1305": true,
	"ECDHE-ECDSA-AES128-SHA": true, "ECDHE-RSA-AES128-SHA": true,
	"ECDHE-ECDSA-AES256-SHA": true, "ECDHE-RSA-AES256-SHA": true,
	"AES128-GCM-SHA256": true, "AES256-GCM-SHA384": true,
	"AES128-SHA": true, "AES256-SHA": true, "DES-CBC3-SHA": true,
}

// isValidCipherSuite ports security.IsValidCipherSuite: expressions starting
// with an operator such as - or + are let through.
func isValidCipherSuite(cs string) bool {
	if cs == "" || cs == "ALL" {
		return true
	}
	if r := rune(cs[0]); !unicode.IsNumber(r) && !unicode.IsLetter(r) {
		return true
	}
	return validCipherSuites[cs]
}
