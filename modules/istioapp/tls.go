package istioapp

import (
	"crypto/tls"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/modules/istiomesh"
)

// configureUpstreamTLS applies the cluster's istio TLS settings to the
// client TLS config of the transport, which must have TLS enabled: the mesh
// certificate and trust for ISTIO_MUTUAL, the subject alternative names
// check otherwise.
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
		return nil
	}
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
