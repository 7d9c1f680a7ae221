// Package istiomesh gives a Caddy process its Istio mesh identity: a SPIFFE
// workload certificate issued by a certificate authority of Caddy's pki app,
// the TLS client verification of ISTIO_MUTUAL and of subjectAltNames, and
// the server side of mesh mTLS (the caddy.listeners.istio_mtls listener
// wrapper).
//
// Caddy instances form one mesh by sharing the pki CA: the same root and
// intermediate, given as files in the pki app's configuration or found in
// shared storage.
package istiomesh

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddypki"
	"go.uber.org/zap"
)

// Defaults shared with istioapp's Mesh.
const (
	// DefaultCA is the pki app certificate authority ID of the mesh.
	DefaultCA = "istio"

	// DefaultTrustDomain is Istio's default trust domain.
	DefaultTrustDomain = "cluster.local"

	// defaultCAName names the mesh CA that the pki app creates when
	// DefaultCA is not configured; its root and intermediate common names
	// derive from it.
	defaultCAName = "Caddy Istio Mesh"

	// DefaultLifetime is the lifetime of a workload certificate, Istio's
	// default (24h); it is renewed at half-life.
	DefaultLifetime = 24 * time.Hour
)

// clockSkew backdates certificates, for mesh members whose clocks are
// slightly behind the issuer's.
const clockSkew = time.Minute

// Variables so that tests can shorten them.
var (
	certLifetime  = DefaultLifetime
	retryInterval = time.Minute // before a failed renewal is retried
)

// DefaultIdentity returns the identity of a proxy that names none:
// spiffe://TRUST_DOMAIN/ns/default/sa/default.
func DefaultIdentity(trustDomain string) string {
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	return "spiffe://" + trustDomain + "/ns/default/sa/default"
}

// ParseSPIFFEID checks that id is a SPIFFE ID (spiffe://TRUST_DOMAIN/PATH,
// no query, fragment or user info) and returns its trust domain.
func ParseSPIFFEID(id string) (trustDomain string, err error) {
	u, err := url.Parse(id)
	if err != nil {
		return "", fmt.Errorf("spiffe id %q: %v", id, err)
	}
	switch {
	case u.Scheme != "spiffe":
		return "", fmt.Errorf("spiffe id %q: scheme must be spiffe", id)
	case u.Host == "":
		return "", fmt.Errorf("spiffe id %q: no trust domain", id)
	case u.Port() != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("spiffe id %q: a trust domain has no port or user, an id no query or fragment", id)
	case u.Path == "" || u.Path == "/":
		return "", fmt.Errorf("spiffe id %q: no workload path", id)
	}
	return u.Host, nil
}

// Identity is a workload certificate for one SPIFFE ID, issued by a pki app
// CA and renewed in the background at half-life. Its callbacks serve the
// current certificate to TLS servers and clients. An Identity is shared by
// everything in the process that asks for the same CA and SPIFFE ID, and
// it stops renewing once every Caddy config that asked for it is unloaded.
type Identity struct {
	key      string // in identities
	spiffeID string
	trust    string // trust domain
	lifetime time.Duration
	logger   *zap.Logger

	cert atomic.Pointer[tls.Certificate] // Leaf is set
	ca   atomic.Pointer[caddypki.CA]     // of the newest config that acquired it
	pool atomic.Pointer[x509.CertPool]   // the mesh root

	stop     chan struct{}
	stopOnce sync.Once
}

// identities holds the Identities in use, by CA ID, root and SPIFFE ID.
var identities = caddy.NewUsagePool()

// NewIdentity returns the workload certificate of spiffeID issued by the
// pki app certificate authority caID (DefaultCA when empty), issuing it
// when this process has none yet. The CA is the one configured in the pki
// app (pki.certificate_authorities.ID); DefaultCA needs no configuration,
// the pki app then gets it with default settings (no trust store
// installation). Either way the pki app loads its root and intermediate
// from Caddy's storage or creates them there, and renews the intermediate.
//
// Call it from a module's Provision, so that the pki app it may load or
// extend starts with the config. The Identity is released when ctx is
// cancelled, that is when the config that provisioned the caller unloads;
// callers need no cleanup of their own.
func NewIdentity(ctx caddy.Context, caID, spiffeID string) (*Identity, error) {
	if caID == "" {
		caID = DefaultCA
	}
	trustDomain, err := ParseSPIFFEID(spiffeID)
	if err != nil {
		return nil, err
	}
	ca, err := meshCA(ctx, caID)
	if err != nil {
		return nil, err
	}
	root := ca.RootCertificate()
	if root == nil {
		return nil, fmt.Errorf("certificate authority %q has no root certificate", caID)
	}
	sum := sha256.Sum256(root.Raw)
	// The root is part of the key: a config reload that changes the CA's
	// root gets a new certificate, not one chained to the old root.
	key := caID + "|" + hex.EncodeToString(sum[:]) + "|" + spiffeID
	logger := ctx.Logger().With(zap.String("identity", spiffeID), zap.String("ca", caID))
	val, loaded, err := identities.LoadOrNew(key, func() (caddy.Destructor, error) {
		id := &Identity{
			key:      key,
			spiffeID: spiffeID,
			trust:    trustDomain,
			lifetime: certLifetime,
			logger:   logger,
			stop:     make(chan struct{}),
		}
		id.setCA(ca)
		if err := id.renew(); err != nil {
			return nil, err
		}
		go id.maintain()
		return id, nil
	})
	if err != nil {
		return nil, fmt.Errorf("issuing the certificate of %s: %v", spiffeID, err)
	}
	id := val.(*Identity)
	if loaded {
		// The pki app renews intermediates in the newest config's CA.
		id.setCA(ca)
	}
	// Not ctx.OnCancel: it appends to this copy of ctx only.
	context.AfterFunc(ctx, func() {
		if _, err := identities.Delete(key); err != nil {
			logger.Error("releasing the mesh identity", zap.Error(err))
		}
	})
	return id, nil
}

// meshCA returns the pki app's certificate authority caID. The mesh's
// default CA (DefaultCA) is added to the pki app when the config does not
// configure it, as the pki app does with its own default CA: its root and
// intermediate are then loaded from, or created in, Caddy's storage, and
// the pki app renews the intermediate like any other CA's.
func meshCA(ctx caddy.Context, caID string) (*caddypki.CA, error) {
	app, err := ctx.AppIfConfigured("pki")
	loadedHere := errors.Is(err, caddy.ErrNotConfigured)
	if loadedHere {
		// An unconfigured pki app provisions Caddy's default CA, writing
		// its root and then its intermediate to storage without a lock:
		// mesh members starting together on shared storage would read
		// each other's half-written CA. Our lock serialises them.
		app, err = withStorageLock(ctx, "pki_authority_"+caddypki.DefaultCAID, func() (any, error) {
			return ctx.App("pki")
		})
	}
	if err != nil {
		return nil, fmt.Errorf("loading the pki app: %v", err)
	}
	pki, ok := app.(*caddypki.PKI)
	if !ok {
		return nil, fmt.Errorf("the pki app is a %T, not *caddypki.PKI", app)
	}
	if loadedHere && caID != caddypki.DefaultCAID {
		// A pki app with no CAs provisions Caddy's local CA, which it
		// would install into the system trust store at start. Nobody asked
		// for it: drop it; GetCA provisions it again for whoever does.
		delete(pki.CAs, caddypki.DefaultCAID)
	}
	if _, configured := pki.CAs[caID]; !configured && caID == DefaultCA {
		installTrust := false // a mesh CA is not for browsers
		ca := &caddypki.CA{Name: defaultCAName, InstallTrust: &installTrust}
		// The storage lock keeps mesh members that start together on
		// shared storage from creating a root each.
		_, err := withStorageLock(ctx, "pki_authority_"+caID, func() (any, error) {
			return nil, ca.Provision(ctx, caID, ctx.Logger().Named("pki"))
		})
		if err != nil {
			return nil, fmt.Errorf("provisioning the mesh certificate authority %q: %v", caID, err)
		}
		if pki.CAs == nil {
			pki.CAs = make(map[string]*caddypki.CA)
		}
		pki.CAs[caID] = ca
	}
	ca, err := pki.GetCA(ctx, caID)
	if err != nil {
		return nil, fmt.Errorf("mesh certificate authority %q (configure it in the pki app, pki.certificate_authorities.%s): %v", caID, caID, err)
	}
	return ca, nil
}

// withStorageLock runs do holding the storage lock name, so that processes
// sharing Caddy's storage take turns.
func withStorageLock(ctx caddy.Context, name string, do func() (any, error)) (any, error) {
	if err := ctx.Storage().Lock(ctx, name); err != nil {
		return nil, fmt.Errorf("locking %s in storage: %v", name, err)
	}
	defer func() {
		if err := ctx.Storage().Unlock(ctx, name); err != nil {
			ctx.Logger().Error("unlocking in storage", zap.String("lock", name), zap.Error(err))
		}
	}()
	return do()
}

func (id *Identity) setCA(ca *caddypki.CA) {
	id.ca.Store(ca)
	pool := x509.NewCertPool()
	pool.AddCert(ca.RootCertificate())
	id.pool.Store(pool)
}

// SPIFFEID returns the identity's SPIFFE ID.
func (id *Identity) SPIFFEID() string { return id.spiffeID }

// TrustDomain returns the trust domain of the identity's SPIFFE ID.
func (id *Identity) TrustDomain() string { return id.trust }

// RootPool returns the mesh root: the trust anchor of ISTIO_MUTUAL.
func (id *Identity) RootPool() *x509.CertPool { return id.pool.Load() }

// Certificate returns the current certificate (leaf first, then the
// intermediates; Leaf is set).
func (id *Identity) Certificate() *tls.Certificate { return id.cert.Load() }

// GetCertificate serves the identity as a TLS server certificate, whatever
// the client's SNI.
func (id *Identity) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return id.cert.Load(), nil
}

// GetClientCertificate serves the identity as a TLS client certificate,
// whatever CAs the server asks for.
func (id *Identity) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return id.cert.Load(), nil
}

// Destruct stops the renewal; the usage pool calls it when the last config
// using the identity is unloaded.
func (id *Identity) Destruct() error {
	id.stopOnce.Do(func() { close(id.stop) })
	return nil
}

// maintain renews the certificate at half-life until Destruct.
func (id *Identity) maintain() {
	for {
		leaf := id.cert.Load().Leaf
		issued := leaf.NotBefore.Add(clockSkew)
		half := issued.Add(leaf.NotAfter.Sub(issued) / 2)
		timer := time.NewTimer(max(time.Until(half), 0))
		select {
		case <-id.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		if err := id.renew(); err != nil {
			id.logger.Error("renewing the mesh certificate; retrying", zap.Error(err), zap.Duration("retry_in", retryInterval))
			select {
			case <-id.stop:
				return
			case <-time.After(retryInterval):
			}
		}
	}
}

// renew issues a new certificate with the CA's current intermediate.
func (id *Identity) renew() error {
	cert, err := issue(id.ca.Load(), id.spiffeID, id.lifetime)
	if err != nil {
		return err
	}
	id.cert.Store(cert)
	id.logger.Debug("issued mesh certificate", zap.Time("not_after", cert.Leaf.NotAfter))
	return nil
}

// issue signs a fresh P-256 key for spiffeID with ca's intermediate: the
// SPIFFE ID as the only (URI) SAN, an empty subject (Go then marks the SAN
// critical, as X.509 requires), and both serverAuth and clientAuth, like
// Istio's workload certificates.
func issue(ca *caddypki.CA, spiffeID string, lifetime time.Duration) (*tls.Certificate, error) {
	chain := ca.IntermediateCertificateChain()
	signer := ca.IntermediateKey()
	if len(chain) == 0 || signer == nil {
		return nil, errors.New("the certificate authority has no intermediate")
	}
	uri, err := url.Parse(spiffeID)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(lifetime)
	if inter := chain[0]; notAfter.After(inter.NotAfter) {
		notAfter = inter.NotAfter
	}
	if !notAfter.After(now) {
		return nil, errors.New("the certificate authority's intermediate has expired")
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		URIs:                  []*url.URL{uri},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, chain[0], key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("signing: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}

// spiffeURIs returns the certificate's spiffe:// URI SANs.
func spiffeURIs(cert *x509.Certificate) []string {
	var ids []string
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			ids = append(ids, u.String())
		}
	}
	return ids
}

// Interface guards
var _ caddy.Destructor = (*Identity)(nil)
