package istioapp

import (
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/modules/istiomesh"
)

// configureUpstreamTLS applies the cluster's istio TLS settings to the
// client TLS config of the transport, which must have TLS enabled: the mesh
// certificate and trust for ISTIO_MUTUAL, the subject alternative names
// check otherwise, and the certificate revocation lists.
func (a *App) configureUpstreamTLS(ctx caddy.Context, ht *reverseproxy.HTTPTransport, c *Cluster) error {
	if c.TLS == nil {
		return nil
	}
	if ht.TLS == nil || ht.Transport == nil {
		return fmt.Errorf("the proxy transport must enable tls")
	}
	cfg := ht.Transport.TLSClientConfig
	if cfg == nil {
		cfg = new(tls.Config)
		ht.Transport.TLSClientConfig = cfg
	}
	if !c.TLS.IstioMutual {
		if len(c.TLS.SubjectAltNames) > 0 {
			istiomesh.ConfigureSubjectAltNames(cfg, c.TLS.SubjectAltNames)
		}
	} else if err := a.configureIstioMutual(ctx, ht, cfg, c); err != nil {
		return err
	}
	if c.TLS.CRLFile != "" {
		// after the chain verification, which it relies on
		lists, err := loadRevocationLists(c.TLS.CRLFile)
		if err != nil {
			return fmt.Errorf("crl_file: %v", err)
		}
		configureRevocation(cfg, lists)
	}
	return nil
}

// configureIstioMutual sets up cfg for ISTIO_MUTUAL: the mesh certificate,
// the mesh trust and Istio's SNI.
func (a *App) configureIstioMutual(ctx caddy.Context, ht *reverseproxy.HTTPTransport, cfg *tls.Config, c *Cluster) error {
	mesh := a.Mesh
	if mesh == nil {
		mesh = new(Mesh)
	}
	trustDomain := mesh.TrustDomain
	if trustDomain == "" {
		trustDomain = istiomesh.DefaultTrustDomain
	}
	identity := mesh.Identity
	if identity == "" {
		identity = istiomesh.DefaultIdentity(trustDomain)
	}
	id, err := istiomesh.NewIdentity(ctx, mesh.CA, identity)
	if err != nil {
		return fmt.Errorf("istio_mutual: %v", err)
	}
	// Istio's SNI unless the transport names one
	serverName := ""
	if ht.TLS.ServerName == "" {
		serverName = istiomesh.IstioMutualSNI(int(c.Port), c.Subset, c.Service)
	}
	istiomesh.ConfigureIstioMutual(cfg, id, serverName, c.TLS.SubjectAltNames, trustDomain)
	return nil
}

// AutoSNI is the transport tls server_name that asks for Istio's
// auto-SNI: each connection's SNI is the host of the request it is made
// for, as sent upstream (after a route's authority rewrite), not the
// client's request that Caddy's placeholder would read.
const AutoSNI = "{http.request.host}"

// sniSeparator ends the hex-encoded auto-SNI server name that tlsTransport
// puts before the host of the request URL, where the TLS dialer finds it.
const sniSeparator = "~"

// tlsTransport is the reverse_proxy transport of a cluster whose
// HTTPTransport speaks TLS. It hides the transport's
// RequestHeaderOpsTransport, by which reverse_proxy would send the
// endpoint address as Host: Envoy keeps the request's Host. With
// auto-SNI it names the request's host in the handshake, and keeps the
// connections of different server names apart.
type tlsTransport struct {
	ht      *reverseproxy.HTTPTransport
	autoSNI bool
}

// newTLSTransport wraps ht, a provisioned transport with TLS.
func newTLSTransport(ht *reverseproxy.HTTPTransport) *tlsTransport {
	t := &tlsTransport{ht: ht, autoSNI: ht.TLS.ServerName == AutoSNI}
	if t.autoSNI && ht.Transport != nil {
		// Caddy's dialer would fill the placeholder from the client's
		// request; this one takes the server name from the request sent
		ht.Transport.DialTLSContext = tlsDialer(ht.Transport)
	}
	return t
}

// RoundTrip sends req with the request's own Host. With auto-SNI, the
// server name goes, hex-encoded, before the host of the request URL: Go's
// transport pools connections by that host, so a connection made for one
// name is never reused for another, and hands it to the TLS dialer
// (tlsDialer), which takes the name out. Caddy's dialer dials the
// upstream's address whatever the URL says, as it does for proxy
// protocol. req is changed in place, not copied: the cluster transport
// sets req.Close on it for the per-connection limits.
func (t *tlsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.autoSNI {
		if sni := hostWithoutPort(req.Host); sni != "" {
			u := *req.URL
			u.Host = hex.EncodeToString([]byte(sni)) + sniSeparator + u.Host
			req.URL = &u
		}
	}
	return t.ht.RoundTrip(req)
}

// autoSNIOf returns the auto-SNI server name in a dial address of Go's
// transport (see tlsTransport.RoundTrip), if there is one.
func autoSNIOf(addr string) (string, bool) {
	encoded, _, ok := strings.Cut(strings.TrimPrefix(addr, "["), sniSeparator)
	if !ok {
		return "", false
	}
	sni, err := hex.DecodeString(encoded)
	if err != nil {
		return "", false
	}
	return string(sni), true
}

// hostWithoutPort is the host of a Host header value, without port or
// IPv6 brackets.
func hostWithoutPort(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// ProxyProtocolEnabled forwards to the HTTP transport.
func (t *tlsTransport) ProxyProtocolEnabled() bool { return t.ht.ProxyProtocolEnabled() }

// TLSEnabled forwards to the HTTP transport.
func (t *tlsTransport) TLSEnabled() bool { return t.ht.TLSEnabled() }

// OverrideHealthCheckScheme forwards to the HTTP transport.
func (t *tlsTransport) OverrideHealthCheckScheme(base *url.URL, port string) {
	t.ht.OverrideHealthCheckScheme(base, port)
}

// loadHTTPTransport loads and provisions the proxy's transport when it is
// Caddy's http transport (TransportRaw is then cleared), so that the
// cluster can give reverse_proxy its own wrapper before reverse_proxy
// provisions and asks the transport for header operations. It returns
// nil for another transport, left to reverse_proxy.
func loadHTTPTransport(ctx caddy.Context, proxy *reverseproxy.Handler) (*reverseproxy.HTTPTransport, error) {
	if len(proxy.TransportRaw) == 0 {
		return nil, nil
	}
	var head struct {
		Protocol string `json:"protocol"`
	}
	if err := json.Unmarshal(proxy.TransportRaw, &head); err != nil || head.Protocol != "http" {
		return nil, nil // reverse_proxy reports what it cannot load
	}
	mod, err := ctx.LoadModule(proxy, "TransportRaw")
	if err != nil {
		return nil, fmt.Errorf("loading transport: %v", err)
	}
	proxy.TransportRaw = nil
	return mod.(*reverseproxy.HTTPTransport), nil
}

// Interface guards
var (
	_ http.RoundTripper                                = (*tlsTransport)(nil)
	_ reverseproxy.ProxyProtocolTransport              = (*tlsTransport)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*tlsTransport)(nil)
)
