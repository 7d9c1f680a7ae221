package istiomesh

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(IstioTransport{})
}

// IstioTransport is Caddy's HTTP transport (http.reverse_proxy.transport.http)
// with Istio's upstream TLS modes on top:
//
//   - istio_mutual (ISTIO_MUTUAL): TLS with this proxy's mesh certificate
//     (a SPIFFE identity issued by the pki app's mesh CA), trusting only
//     the mesh root and requiring the server to have a mesh identity;
//   - subject_alt_names: the server certificate must carry one of these
//     names, instead of matching the server name (Istio's subjectAltNames,
//     for ISTIO_MUTUAL and for SIMPLE/MUTUAL TLS configured with the
//     transport's own tls options).
//
// Every option of the http transport works the same here: its JSON fields
// are inline, its Caddyfile sub-directives are accepted in the same block.
// The transport also implements everything reverse_proxy asks of the http
// transport (TLS, H2C, proxy protocol, health check scheme, idle connection
// cleanup), through the embedded HTTPTransport.
//
// With istio_mutual, HTTP/3 (versions 3) is refused, and the tls options
// that choose certificates or trust (client certificates, CA pools,
// insecure_skip_verify) are refused too: the mesh decides both.
type IstioTransport struct {
	reverseproxy.HTTPTransport

	// IstioMutual turns TLS on with the mesh identity (Istio's
	// ISTIO_MUTUAL): the client certificate is Identity's, the server
	// chain must verify against the mesh root of CA, and the server must
	// have one of SubjectAltNames or, when there is none, any identity of
	// TrustDomain. Default: false.
	IstioMutual bool `json:"istio_mutual,omitempty"`

	// Identity is the SPIFFE ID this proxy presents with istio_mutual.
	// Default: spiffe://TRUST_DOMAIN/ns/default/sa/default.
	Identity string `json:"identity,omitempty"`

	// TrustDomain of the mesh, with istio_mutual: the server must have an
	// identity of it when SubjectAltNames is empty. Default: the trust
	// domain of Identity, or cluster.local when Identity is not set.
	TrustDomain string `json:"trust_domain,omitempty"`

	// CA is the pki app certificate authority of the mesh, with
	// istio_mutual. Default: istio.
	CA string `json:"ca,omitempty"`

	// SubjectAltNames accepted in the server certificate (URI or DNS SANs,
	// exact match). With istio_mutual they are SPIFFE IDs; without it they
	// need TLS on (tls options, or https upstreams) and replace the check
	// of the server name. Default: none (istio_mutual: any identity of the
	// trust domain; TLS: the server name is checked).
	SubjectAltNames []string `json:"subject_alt_names,omitempty"`

	// SNI is the server name sent with istio_mutual (Istio sends
	// outbound_.PORT_.SUBSET_.HOST, see IstioMutualSNI); placeholders are
	// replaced per request. It is never checked against the certificate.
	// Default: none (the tls server_name, if any).
	SNI string `json:"sni,omitempty"`

	identity *Identity
}

// CaddyModule returns the Caddy module information.
func (IstioTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.istio",
		New: func() caddy.Module { return new(IstioTransport) },
	}
}

// Provision sets the defaults, provisions the http transport and sets up
// its TLS client config for istio_mutual or subject_alt_names.
func (t *IstioTransport) Provision(ctx caddy.Context) error {
	if err := t.prepare(); err != nil {
		return err
	}
	if t.IstioMutual {
		id, err := NewIdentity(ctx, t.CA, t.Identity)
		if err != nil {
			return fmt.Errorf("istio_mutual: %v", err)
		}
		t.identity = id
	}
	if err := t.HTTPTransport.Provision(ctx); err != nil {
		return err
	}
	// The http transport's HTTP/1.1 and HTTP/2 connections clone this
	// config at each dial, so configuring it in place after Provision
	// covers them all.
	cfg := t.Transport.TLSClientConfig
	if cfg == nil {
		return errors.New("the http transport has no TLS client config")
	}
	if t.IstioMutual {
		// The SNI is already in cfg.ServerName (see prepare), where the
		// http transport replaces its placeholders.
		ConfigureIstioMutual(cfg, t.identity, "", t.SubjectAltNames, t.TrustDomain)
	} else {
		ConfigureSubjectAltNames(cfg, t.SubjectAltNames)
	}
	return nil
}

// prepare sets the defaults and checks the options before the http
// transport is provisioned. It returns nil without changing anything when
// the transport is a plain http transport.
func (t *IstioTransport) prepare() error {
	if !t.IstioMutual {
		if t.Identity != "" || t.TrustDomain != "" || t.CA != "" || t.SNI != "" {
			return errors.New("identity, trust_domain, ca and sni need istio_mutual")
		}
		if len(t.SubjectAltNames) == 0 {
			return nil
		}
		if t.TLS == nil {
			return errors.New("subject_alt_names needs TLS to the upstream: istio_mutual, tls options or https upstreams")
		}
		return t.refuseHTTP3("subject_alt_names")
	}
	if t.CA == "" {
		t.CA = DefaultCA
	}
	if t.TrustDomain == "" {
		t.TrustDomain = DefaultTrustDomain
		if t.Identity != "" {
			trustDomain, err := ParseSPIFFEID(t.Identity)
			if err != nil {
				return fmt.Errorf("identity: %v", err)
			}
			t.TrustDomain = trustDomain
		}
	}
	if t.Identity == "" {
		t.Identity = DefaultIdentity(t.TrustDomain)
	}
	for _, san := range t.SubjectAltNames {
		if _, err := ParseSPIFFEID(san); err != nil {
			return fmt.Errorf("subject_alt_names with istio_mutual: %v", err)
		}
	}
	if err := t.refuseHTTP3("istio_mutual"); err != nil {
		return err
	}
	if t.TLS == nil {
		t.TLS = new(reverseproxy.TLSConfig)
	}
	tlsConfig := t.TLS
	switch {
	case len(tlsConfig.CARaw) > 0 || len(tlsConfig.RootCAPool) > 0 || len(tlsConfig.RootCAPEMFiles) > 0:
		return errors.New("istio_mutual trusts the mesh root only: remove the tls trust options (ca, root_ca_pool, root_ca_pem_files)")
	case tlsConfig.ClientCertificateFile != "" || tlsConfig.ClientCertificateKeyFile != "" || tlsConfig.ClientCertificateAutomate != "":
		return errors.New("istio_mutual presents the mesh identity: remove the tls client certificate options")
	case tlsConfig.InsecureSkipVerify:
		return errors.New("istio_mutual verifies the server's mesh identity: remove insecure_skip_verify")
	}
	if t.SNI != "" {
		if tlsConfig.ServerName != "" && tlsConfig.ServerName != t.SNI {
			return fmt.Errorf("sni %q and tls server_name %q disagree: set one", t.SNI, tlsConfig.ServerName)
		}
		tlsConfig.ServerName = t.SNI
	}
	return nil
}

// refuseHTTP3 reports an error when HTTP/3 is on: the http transport builds
// the HTTP/3 TLS config privately, where option could not apply.
func (t *IstioTransport) refuseHTTP3(option string) error {
	if slices.Contains(t.Versions, "3") {
		return fmt.Errorf("%s does not support HTTP/3 to the upstream (versions 3)", option)
	}
	return nil
}

// RequestHeaderOps keeps the client's Host with istio_mutual, as an Istio
// sidecar does; the http transport would set it to the upstream's
// host:port because TLS is on. Otherwise it is the http transport's.
func (t *IstioTransport) RequestHeaderOps() *headers.HeaderOps {
	if t.IstioMutual {
		return nil
	}
	return t.HTTPTransport.RequestHeaderOps()
}

// UnmarshalCaddyfile sets up the transport from Caddyfile tokens:
//
//	transport istio {
//	    istio_mutual
//	    identity          <spiffe id>
//	    trust_domain      <domain>
//	    ca                <id>
//	    subject_alt_names <name...>
//	    sni               <server name>
//	    # and every sub-directive of `transport http`
//	}
func (t *IstioTransport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the transport name
	// The tokens of the http transport's sub-directives, with the name and
	// the braces around them, for its own UnmarshalCaddyfile.
	httpTokens := []caddyfile.Token{d.Token()}
	if d.NextArg() {
		return d.ArgErr()
	}
	opened := false
	for d.NextBlock(0) {
		if !opened {
			// NextBlock consumed the opening brace.
			d.Prev()
			httpTokens = append(httpTokens, d.Token())
			d.Next()
			opened = true
		}
		switch option := d.Val(); option {
		case "istio_mutual":
			if d.NextArg() {
				return d.ArgErr()
			}
			t.IstioMutual = true
		case "identity", "trust_domain", "ca", "sni":
			if !d.NextArg() {
				return d.ArgErr()
			}
			value := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			field := map[string]*string{"identity": &t.Identity, "trust_domain": &t.TrustDomain, "ca": &t.CA, "sni": &t.SNI}[option]
			if *field != "" {
				return d.Errf("%s already specified", option)
			}
			*field = value
		case "subject_alt_names":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			t.SubjectAltNames = append(t.SubjectAltNames, names...)
		default:
			httpTokens = append(httpTokens, d.NextSegment()...)
		}
	}
	if opened {
		httpTokens = append(httpTokens, d.Token()) // the closing brace
	}
	return t.HTTPTransport.UnmarshalCaddyfile(caddyfile.NewDispenser(httpTokens))
}

// Interface guards
var (
	_ caddy.Provisioner                                = (*IstioTransport)(nil)
	_ caddy.CleanerUpper                               = (*IstioTransport)(nil)
	_ caddyfile.Unmarshaler                            = (*IstioTransport)(nil)
	_ http.RoundTripper                                = (*IstioTransport)(nil)
	_ reverseproxy.TLSTransport                        = (*IstioTransport)(nil)
	_ reverseproxy.H2CTransport                        = (*IstioTransport)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*IstioTransport)(nil)
	_ reverseproxy.ProxyProtocolTransport              = (*IstioTransport)(nil)
	_ reverseproxy.RequestHeaderOpsTransport           = (*IstioTransport)(nil)
)
