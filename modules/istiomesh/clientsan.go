package istiomesh

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

func init() {
	caddy.RegisterModule(ClientSANVerifier{})
}

// ClientSANVerifier (tls.client_auth.verifier.istio_san) accepts a client
// certificate only when it carries one of SubjectAltNames as a URI or DNS
// SAN, exactly: Istio's ServerTLSSettings.subjectAltNames of a MUTUAL or
// OPTIONAL_MUTUAL Gateway server. The chain is verified by the connection
// policy's client_authentication (its CA); this only checks the names.
// A client without certificate is left to the policy's mode: refused by
// require_and_verify, accepted by verify_if_given (OPTIONAL_MUTUAL).
type ClientSANVerifier struct {
	// SubjectAltNames the client certificate must carry one of. Required.
	SubjectAltNames []string `json:"subject_alt_names,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (ClientSANVerifier) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.client_auth.verifier.istio_san",
		New: func() caddy.Module { return new(ClientSANVerifier) },
	}
}

// Provision checks the configuration.
func (v *ClientSANVerifier) Provision(caddy.Context) error {
	if len(v.SubjectAltNames) == 0 {
		return errors.New("subject_alt_names is required")
	}
	return nil
}

// VerifyClientCertificate requires one of the names on the client's leaf
// certificate.
func (v ClientSANVerifier) VerifyClientCertificate(rawCerts [][]byte, verifiedChains [][]*x509.Certificate) error {
	var leaf *x509.Certificate
	switch {
	case len(verifiedChains) > 0 && len(verifiedChains[0]) > 0:
		leaf = verifiedChains[0][0]
	case len(rawCerts) > 0:
		cert, err := x509.ParseCertificate(rawCerts[0])
		if err != nil {
			return fmt.Errorf("parsing the client certificate: %v", err)
		}
		leaf = cert
	default:
		return nil
	}
	if err := matchSubjectAltNames(leaf, v.SubjectAltNames); err != nil {
		return fmt.Errorf("client certificate refused: %v", err)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner                  = (*ClientSANVerifier)(nil)
	_ caddytls.ClientCertificateVerifier = ClientSANVerifier{}
)
