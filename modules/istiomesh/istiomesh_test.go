package istiomesh

import (
	"crypto/x509"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddypki"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
)

// Test identities.
const (
	clientID = "spiffe://cluster.local/ns/default/sa/client"
	serverID = "spiffe://cluster.local/ns/default/sa/server"
	otherID  = "spiffe://cluster.local/ns/default/sa/other"
)

// loadCaddy runs Caddy in the test process with file storage in a temporary
// directory, two pki certificate authorities ("istio", the mesh, and
// "other", a stranger) and the given http servers, and returns the config's
// context. Caddy's config is global: tests using it do not run in parallel.
func loadCaddy(t *testing.T, servers map[string]any) caddy.Context {
	t.Helper()
	noTrust := false
	ca := map[string]any{"install_trust": noTrust}
	config := map[string]any{
		// No autosave of the config into the user's config directory.
		"admin":   map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"storage": map[string]any{"module": "file_system", "root": t.TempDir()},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{
			"pki": map[string]any{"certificate_authorities": map[string]any{"istio": ca, "other": ca}},
		},
	}
	if servers != nil {
		config["apps"].(map[string]any)["http"] = map[string]any{"servers": servers}
	}
	raw, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(raw, true); err != nil {
		t.Fatalf("loading caddy config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	return caddy.ActiveContext()
}

func newIdentity(t *testing.T, ctx caddy.Context, ca, spiffeID string) *Identity {
	t.Helper()
	id, err := NewIdentity(ctx, ca, spiffeID)
	if err != nil {
		t.Fatalf("NewIdentity(%s, %s): %v", ca, spiffeID, err)
	}
	return id
}

func TestParseSPIFFEID(t *testing.T) {
	for _, tc := range []struct {
		id    string
		trust string // "" when invalid
	}{
		{"spiffe://cluster.local/ns/default/sa/reviews", "cluster.local"},
		{"spiffe://example.org/x", "example.org"},
		{"https://cluster.local/ns/default/sa/reviews", ""},
		{"spiffe:///ns/default/sa/reviews", ""},
		{"spiffe://cluster.local", ""},
		{"spiffe://cluster.local/", ""},
		{"spiffe://cluster.local:8080/ns/a", ""},
		{"spiffe://cluster.local/ns/a?x=1", ""},
		{"reviews.default.svc.cluster.local", ""},
	} {
		got, err := ParseSPIFFEID(tc.id)
		if tc.trust == "" {
			if err == nil {
				t.Errorf("ParseSPIFFEID(%q) = %q, want an error", tc.id, got)
			}
			continue
		}
		if err != nil || got != tc.trust {
			t.Errorf("ParseSPIFFEID(%q) = %q, %v; want %q", tc.id, got, err, tc.trust)
		}
	}
}

func TestIdentityIssuance(t *testing.T) {
	ctx := loadCaddy(t, nil)
	id := newIdentity(t, ctx, "", clientID)

	cert := id.Certificate()
	leaf := cert.Leaf
	if got := uris(leaf); !slices.Equal(got, []string{clientID}) {
		t.Errorf("URI SANs = %v, want [%s]", got, clientID)
	}
	if len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 0 || len(leaf.EmailAddresses) != 0 {
		t.Errorf("other SANs: dns %v ip %v email %v, want none", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("ExtKeyUsage = %v, want serverAuth and clientAuth", leaf.ExtKeyUsage)
	}
	if leaf.IsCA {
		t.Error("the leaf is a CA")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < DefaultLifetime || life > DefaultLifetime+2*time.Minute {
		t.Errorf("lifetime %v, want about %v", life, DefaultLifetime)
	}
	if len(cert.Certificate) < 2 {
		t.Fatalf("chain has %d certificates, want the leaf and the intermediate", len(cert.Certificate))
	}
	peer := parseChain(t, cert.Certificate)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := verifyChain(peer, id.RootPool(), usage); err != nil {
			t.Errorf("chain does not verify against the mesh root for %v: %v", usage, err)
		}
	}
	if id.TrustDomain() != "cluster.local" || id.SPIFFEID() != clientID {
		t.Errorf("TrustDomain, SPIFFEID = %s, %s", id.TrustDomain(), id.SPIFFEID())
	}

	// Another CA's root does not anchor it.
	other := newIdentity(t, ctx, "other", clientID)
	if err := verifyChain(peer, other.RootPool(), x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("the mesh certificate verifies against another CA's root")
	}

	// One Identity per CA and SPIFFE ID in a process.
	if again := newIdentity(t, ctx, DefaultCA, clientID); again != id {
		t.Error("a second NewIdentity for the same CA and SPIFFE ID made a new Identity")
	}
	if other == id {
		t.Error("two CAs share an Identity")
	}
	if server := newIdentity(t, ctx, DefaultCA, serverID); server == id {
		t.Error("two SPIFFE IDs share an Identity")
	}

	if _, err := NewIdentity(ctx, "missing", clientID); err == nil {
		t.Error("NewIdentity with an unconfigured CA: no error")
	}
	if _, err := NewIdentity(ctx, "", "reviews.default.svc"); err == nil {
		t.Error("NewIdentity with a DNS name: no error")
	}
}

func TestIdentityRenewalAndRelease(t *testing.T) {
	defer func(l time.Duration) { certLifetime = l }(certLifetime)
	certLifetime = 2 * time.Second
	ctx := loadCaddy(t, nil)
	const renewedID = "spiffe://cluster.local/ns/default/sa/renewed"
	id := newIdentity(t, ctx, "", renewedID)
	first := id.Certificate()

	deadline := time.Now().Add(10 * time.Second)
	for id.Certificate() == first {
		if time.Now().After(deadline) {
			t.Fatal("the certificate was not renewed within 10s of a 2s lifetime")
		}
		time.Sleep(50 * time.Millisecond)
	}
	renewed := id.Certificate()
	if !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) || !slices.Equal(uris(renewed.Leaf), []string{renewedID}) {
		t.Errorf("renewed certificate: not after %v (first %v), URIs %v", renewed.Leaf.NotAfter, first.Leaf.NotAfter, uris(renewed.Leaf))
	}

	// Unloading the config releases the Identity and stops the renewal.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, inUse := identities.References(id.key); !inUse {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Identity is still in use after its config was unloaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-id.stop:
	default:
		t.Error("the renewal was not stopped")
	}
}

func parseChain(t *testing.T, der [][]byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for _, d := range der {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	return certs
}

func uris(cert *x509.Certificate) []string {
	var s []string
	for _, u := range cert.URIs {
		s = append(s, u.String())
	}
	return s
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}

// TestDefaultCAWithoutConfig: the mesh's default CA needs no pki
// configuration; it lives in Caddy's storage, so a second config (or
// process) with the same storage gets the same root.
func TestDefaultCAWithoutConfig(t *testing.T) {
	storage := t.TempDir()
	load := func() caddy.Context {
		raw, err := json.Marshal(map[string]any{
			"admin":   map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
			"storage": map[string]any{"module": "file_system", "root": storage},
			"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := caddy.Load(raw, true); err != nil {
			t.Fatalf("loading caddy config: %v", err)
		}
		return caddy.ActiveContext()
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	ctx := load()
	first := newIdentity(t, ctx, "", clientID)
	app, err := ctx.App("pki")
	if err != nil {
		t.Fatal(err)
	}
	ca := app.(*caddypki.PKI).CAs[DefaultCA]
	if ca == nil || ca.InstallTrust == nil || *ca.InstallTrust {
		t.Fatalf("the pki app's %s CA: %+v, want one that does not install trust", DefaultCA, ca)
	}
	if _, hasLocal := app.(*caddypki.PKI).CAs[caddypki.DefaultCAID]; hasLocal {
		t.Errorf("the pki app got Caddy's %s CA, which it would install into the system trust store", caddypki.DefaultCAID)
	}
	if _, err := NewIdentity(ctx, "missing", clientID); err == nil {
		t.Error("NewIdentity with an unconfigured CA other than the default: no error")
	}

	second := newIdentity(t, load(), "", serverID)
	peer := parseChain(t, second.Certificate().Certificate)
	if err := verifyChain(peer, first.RootPool(), x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("a second config with the same storage has another mesh root: %v", err)
	}
}
