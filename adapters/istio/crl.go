package istio

import (
	"path/filepath"

	networking "istio.io/api/networking/v1alpha3"
)

// crlFileOf is the certificate revocation list file of the client TLS
// settings ct of a DestinationRule for svc (istioapp.UpstreamTLS.CRLFile):
// caCrl, or with credentialName the CRL of the secret's CA, as Istio takes
// it from the secret that holds the CA (ca.crl of a kubernetes.io/tls
// secret, crl of a generic one; NAME, else NAME-cacert). It is "" for
// none, and for ISTIO_MUTUAL and insecureSkipVerify, where Envoy has no
// validation context to check one in.
func (t *translator) crlFileOf(ct *networking.ClientTLSSettings, svc *service) string {
	switch ct.GetMode() {
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
	default:
		return ""
	}
	if ct.GetInsecureSkipVerify().GetValue() {
		return ""
	}
	name := ct.GetCredentialName()
	if name == "" {
		return ct.GetCaCrl()
	}
	dir := t.opts.CredentialsDir
	if dir == "" {
		return ""
	}
	ns := t.credentialNamespace(svc, name)
	for _, secret := range []string{filepath.Join(dir, ns, name), filepath.Join(dir, ns, name+"-cacert")} {
		if firstFile(secret, "ca.crt", "cacert") != "" {
			return firstFile(secret, "ca.crl", "crl")
		}
	}
	return ""
}
