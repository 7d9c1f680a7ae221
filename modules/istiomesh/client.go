package istiomesh

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// IstioMutualSNI is the SNI an Istio sidecar sends to an ISTIO_MUTUAL
// upstream: outbound_.PORT_.SUBSET_.HOST (SUBSET empty for none).
func IstioMutualSNI(port int, subset, host string) string {
	return "outbound_." + strconv.Itoa(port) + "_." + subset + "_." + host
}

// ConfigureIstioMutual sets up cfg, the TLS client config of an upstream
// cluster, for ISTIO_MUTUAL:
//
//   - the client certificate is id, renewed in place;
//   - the server chain must verify against the mesh root only (id's CA),
//     for server authentication;
//   - the server certificate must carry one of sans as a URI (or DNS) SAN,
//     or, when sans is empty, some spiffe://TRUST_DOMAIN/ identity
//     (trustDomain empty: id's trust domain);
//   - serverName, when not empty, is the SNI sent (see IstioMutualSNI);
//     it is never checked against the certificate.
//
// Go's own hostname check is switched off (InsecureSkipVerify) because mesh
// certificates carry only a SPIFFE URI; the check is done in
// VerifyConnection instead, so it also applies to resumed sessions. Any
// VerifyConnection already in cfg runs after this one.
func ConfigureIstioMutual(cfg *tls.Config, id *Identity, serverName string, sans []string, trustDomain string) {
	if trustDomain == "" {
		trustDomain = id.TrustDomain()
	}
	cfg.Certificates = nil
	cfg.GetClientCertificate = id.GetClientCertificate
	cfg.RootCAs = nil // trust comes from id, at each handshake
	cfg.InsecureSkipVerify = true
	if serverName != "" {
		cfg.ServerName = serverName
	}
	sans = slices.Clone(sans)
	matches := func(leaf *x509.Certificate) error {
		if len(sans) > 0 {
			return matchSubjectAltNames(leaf, sans)
		}
		return matchTrustDomain(leaf, trustDomain)
	}
	chainVerify(cfg, id.RootPool, matches)
}

// ConfigureSubjectAltNames makes cfg, a TLS client config for SIMPLE or
// MUTUAL upstream TLS, require a server certificate carrying one of sans
// (DNS or URI SANs, exact match) instead of the server name, as Istio's
// subjectAltNames does. The chain is verified against cfg.RootCAs as it
// is when ConfigureSubjectAltNames is called (nil: the system roots), so
// call it after setting RootCAs. It does nothing when sans is empty or cfg
// already skips verification (insecureSkipVerify skips both checks in
// Istio too).
func ConfigureSubjectAltNames(cfg *tls.Config, sans []string) {
	if len(sans) == 0 || cfg.InsecureSkipVerify {
		return
	}
	roots := cfg.RootCAs
	cfg.InsecureSkipVerify = true
	sans = slices.Clone(sans)
	chainVerify(cfg, func() *x509.CertPool { return roots }, func(leaf *x509.Certificate) error {
		return matchSubjectAltNames(leaf, sans)
	})
}

// chainVerify installs a VerifyConnection that verifies the server's chain
// against roots() for serverAuth, then checks the leaf with match.
func chainVerify(cfg *tls.Config, roots func() *x509.CertPool, match func(*x509.Certificate) error) {
	next := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verifyChain(cs.PeerCertificates, roots(), x509.ExtKeyUsageServerAuth); err != nil {
			return err
		}
		if err := match(cs.PeerCertificates[0]); err != nil {
			return err
		}
		if next != nil {
			return next(cs)
		}
		return nil
	}
}

// verifyChain verifies certs (leaf first, then intermediates) against
// roots for the key usage.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("the peer sent no certificate")
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}

// matchSubjectAltNames requires one of sans among the certificate's URI or
// DNS SANs.
func matchSubjectAltNames(cert *x509.Certificate, sans []string) error {
	for _, u := range cert.URIs {
		if slices.Contains(sans, u.String()) {
			return nil
		}
	}
	for _, name := range cert.DNSNames {
		if slices.Contains(sans, name) {
			return nil
		}
	}
	return fmt.Errorf("the peer certificate has none of the subject alt names %v (it has %s)", sans, describeSANs(cert))
}

// matchTrustDomain requires a spiffe://trustDomain/ URI SAN.
func matchTrustDomain(cert *x509.Certificate, trustDomain string) error {
	for _, id := range spiffeURIs(cert) {
		if td, err := ParseSPIFFEID(id); err == nil && strings.EqualFold(td, trustDomain) {
			return nil
		}
	}
	return fmt.Errorf("the peer certificate has no identity of trust domain %s (it has %s)", trustDomain, describeSANs(cert))
}

func describeSANs(cert *x509.Certificate) string {
	var names []string
	for _, u := range cert.URIs {
		names = append(names, u.String())
	}
	names = append(names, cert.DNSNames...)
	if len(names) == 0 {
		return "no DNS or URI SAN"
	}
	return strings.Join(names, ", ")
}
