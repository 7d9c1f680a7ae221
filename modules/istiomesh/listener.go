package istiomesh

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(MTLSListenerWrapper{})
}

// MTLSListenerWrapper terminates Istio mesh mTLS (the server side of
// ISTIO_MUTUAL, a sidecar's inbound in STRICT mode): it presents the
// server's mesh certificate, requires a client certificate chained to the
// mesh root with a SPIFFE identity of the trust domain, and refuses every
// other client (plaintext ones included) at the handshake.
//
// Use it in a server whose listener has no TLS connection policies of its
// own; the connections it returns are *tls.Conn, so handlers see the
// client's certificate (r.TLS, {http.request.tls.client.san.uris.0}), and it
// offers ALPN h2 and http/1.1, so HTTP/2 works when the server enables h2.
type MTLSListenerWrapper struct {
	// CA is the pki app certificate authority of the mesh. Default: istio.
	CA string `json:"ca,omitempty"`

	// TrustDomain of the mesh: clients must have a
	// spiffe://TRUST_DOMAIN/... identity. Default: cluster.local.
	TrustDomain string `json:"trust_domain,omitempty"`

	// Identity is the SPIFFE ID this server presents.
	// Default: spiffe://TRUST_DOMAIN/ns/default/sa/default.
	Identity string `json:"identity,omitempty"`

	// AllowedIdentities, when set, are the only client SPIFFE IDs accepted.
	// Default: any identity of the trust domain.
	AllowedIdentities []string `json:"allowed_identities,omitempty"`

	// ALPN lists the application protocols offered, in order of preference.
	// Default: h2, http/1.1. Offer only http/1.1 when the server does not
	// enable h2, or HTTP/2 clients will fail after the handshake.
	ALPN []string `json:"alpn,omitempty"`

	identity  *Identity
	tlsConfig *tls.Config
}

// CaddyModule returns the Caddy module information.
func (MTLSListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.istio_mtls",
		New: func() caddy.Module { return new(MTLSListenerWrapper) },
	}
}

// Provision sets the defaults and gets the server's mesh identity.
func (w *MTLSListenerWrapper) Provision(ctx caddy.Context) error {
	if w.CA == "" {
		w.CA = DefaultCA
	}
	if w.TrustDomain == "" {
		w.TrustDomain = DefaultTrustDomain
	}
	if w.Identity == "" {
		w.Identity = DefaultIdentity(w.TrustDomain)
	}
	if len(w.ALPN) == 0 {
		w.ALPN = []string{"h2", "http/1.1"}
	}
	for _, allowed := range w.AllowedIdentities {
		if _, err := ParseSPIFFEID(allowed); err != nil {
			return fmt.Errorf("allowed_identities: %v", err)
		}
	}
	id, err := NewIdentity(ctx, w.CA, w.Identity)
	if err != nil {
		return err
	}
	w.identity = id
	w.tlsConfig = ServerTLSConfig(id, w.TrustDomain, w.AllowedIdentities)
	w.tlsConfig.NextProtos = slices.Clone(w.ALPN)
	return nil
}

// WrapListener terminates mesh mTLS on ln's connections.
func (w *MTLSListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	return tls.NewListener(tlsOnlyListener{ln}, w.tlsConfig)
}

// tlsOnlyListener closes connections that do not start with a TLS
// handshake record. Go's http.Server would otherwise answer a plaintext
// HTTP request with "400 Client sent an HTTP request to an HTTPS server";
// an Istio sidecar in STRICT mode resets the connection instead.
type tlsOnlyListener struct {
	net.Listener
}

func (l tlsOnlyListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsOnlyConn{Conn: conn}, nil
}

// tlsOnlyConn checks the first byte it reads. Only the TLS handshake reads
// it, from one goroutine.
type tlsOnlyConn struct {
	net.Conn
	checked bool
}

// recordTypeHandshake is the content type of a TLS handshake record.
const recordTypeHandshake = 0x16

func (c *tlsOnlyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.checked && n > 0 {
		c.checked = true
		if p[0] != recordTypeHandshake {
			c.Conn.Close()
			return 0, errNotTLS
		}
	}
	return n, err
}

var errNotTLS = errors.New("istio_mtls: the client did not start a TLS handshake")

// ServerTLSConfig returns the TLS server config of mesh mTLS for id: its
// certificate, a required client certificate chained to the mesh root with
// a SPIFFE identity of trustDomain, and, when allowed is not empty, one of
// those identities. NextProtos is left empty for the caller.
func ServerTLSConfig(id *Identity, trustDomain string, allowed []string) *tls.Config {
	allowed = slices.Clone(allowed)
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: id.GetCertificate,
		ClientAuth:     tls.RequireAnyClientCert,
		// The chain is verified here rather than with ClientCAs so that the
		// mesh root is read at each handshake.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyChain(cs.PeerCertificates, id.RootPool(), x509.ExtKeyUsageClientAuth); err != nil {
				return fmt.Errorf("client certificate: %v", err)
			}
			leaf := cs.PeerCertificates[0]
			if err := matchTrustDomain(leaf, trustDomain); err != nil {
				return fmt.Errorf("client certificate: %v", err)
			}
			if len(allowed) > 0 {
				if err := matchSubjectAltNames(leaf, allowed); err != nil {
					return fmt.Errorf("client identity not allowed: %v", err)
				}
			}
			return nil
		},
	}
}

// UnmarshalCaddyfile sets up the wrapper from Caddyfile tokens:
//
//	istio_mtls {
//	    ca                 <id>
//	    trust_domain       <domain>
//	    identity           <spiffe id>
//	    allowed_identities <spiffe id...>
//	    alpn               <protocol...>
//	}
func (w *MTLSListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the wrapper name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch option := d.Val(); option {
		case "ca", "trust_domain", "identity":
			if !d.NextArg() {
				return d.ArgErr()
			}
			value := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			switch option {
			case "ca":
				w.CA = value
			case "trust_domain":
				w.TrustDomain = value
			default:
				w.Identity = value
			}
		case "allowed_identities", "alpn":
			values := d.RemainingArgs()
			if len(values) == 0 {
				return d.ArgErr()
			}
			if option == "alpn" {
				w.ALPN = append(w.ALPN, values...)
			} else {
				w.AllowedIdentities = append(w.AllowedIdentities, values...)
			}
		default:
			return d.Errf("unrecognized istio_mtls option %q (want one of %s)", option,
				strings.Join([]string{"ca", "trust_domain", "identity", "allowed_identities", "alpn"}, ", "))
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*MTLSListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*MTLSListenerWrapper)(nil)
	_ caddyfile.Unmarshaler = (*MTLSListenerWrapper)(nil)
)
