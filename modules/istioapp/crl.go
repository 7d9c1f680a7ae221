package istioapp

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// revocationLists are the certificate revocation lists of a cluster's
// upstream TLS (UpstreamTLS.CRLFile).
type revocationLists []*x509.RevocationList

// loadRevocationLists reads the PEM CRLs ("X509 CRL" blocks) of file.
func loadRevocationLists(file string) (revocationLists, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var lists revocationLists
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		lists = append(lists, crl)
	}
	if len(lists) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate revocation list", file)
	}
	return lists, nil
}

// configureRevocation makes cfg refuse a server whose chain has a revoked
// certificate. It runs after the chain verification cfg has, Go's own or
// a VerifyConnection installed before (subject alternative names,
// ISTIO_MUTUAL).
func configureRevocation(cfg *tls.Config, lists revocationLists) {
	next := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if next != nil {
			if err := next(cs); err != nil {
				return err
			}
		}
		chain := peerChain(cs)
		if len(chain) == 0 {
			return errors.New("the peer sent no certificate")
		}
		return lists.check(chain, time.Now())
	}
}

// peerChain is the server's chain, leaf first: the first chain Go
// verified, else the certificates the server sent, as far as each
// signed the one before it (the verification then was a custom one).
func peerChain(cs tls.ConnectionState) []*x509.Certificate {
	if len(cs.VerifiedChains) > 0 {
		return cs.VerifiedChains[0]
	}
	var chain []*x509.Certificate
	for i, cert := range cs.PeerCertificates {
		if i > 0 && chain[i-1].CheckSignatureFrom(cert) != nil {
			break
		}
		chain = append(chain, cert)
	}
	return chain
}

// check verifies every certificate of chain against the lists, as Envoy
// (BoringSSL with X509_V_FLAG_CRL_CHECK_ALL) does: each must be covered
// by a current CRL of its issuer, and not listed in it. A CRL is its
// issuer's when signed by the issuer certificate in the chain; for the
// top of a chain that stops short of its root, whose certificate is not
// at hand, when the issuer name and key identifier match.
func (l revocationLists) check(chain []*x509.Certificate, now time.Time) error {
	for i, cert := range chain {
		var issuer *x509.Certificate
		switch {
		case i+1 < len(chain):
			issuer = chain[i+1]
		case bytes.Equal(cert.RawIssuer, cert.RawSubject) && cert.CheckSignatureFrom(cert) == nil:
			issuer = cert // a self-signed root, under its own CRL
		}
		crl, err := l.issuedFor(cert, issuer, now)
		if err != nil {
			return fmt.Errorf("certificate %q: %v", cert.Subject, err)
		}
		for _, entry := range crl.RevokedCertificateEntries {
			if entry.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return fmt.Errorf("certificate %q (serial %s) is revoked", cert.Subject, cert.SerialNumber)
			}
		}
	}
	return nil
}

// issuedFor returns the current CRL of the issuer of cert; issuer is the
// issuer certificate, nil when unknown.
func (l revocationLists) issuedFor(cert, issuer *x509.Certificate, now time.Time) (*x509.RevocationList, error) {
	var stale error
	for _, crl := range l {
		if !bytes.Equal(crl.RawIssuer, cert.RawIssuer) {
			continue
		}
		if issuer != nil {
			if crl.CheckSignatureFrom(issuer) != nil {
				continue
			}
		} else if len(crl.AuthorityKeyId) > 0 && len(cert.AuthorityKeyId) > 0 && !bytes.Equal(crl.AuthorityKeyId, cert.AuthorityKeyId) {
			continue
		}
		switch {
		case now.Before(crl.ThisUpdate):
			stale = errors.New("the CRL is not yet valid")
		case !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate):
			stale = errors.New("the CRL has expired")
		default:
			return crl, nil
		}
	}
	if stale != nil {
		return nil, stale
	}
	return nil, errors.New("unable to get certificate CRL")
}
