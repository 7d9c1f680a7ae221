package istio

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-istio/caddy-istio/modules/istiomesh"
)

// Gateway HTTPS servers with tls.mode SIMPLE, MUTUAL or OPTIONAL_MUTUAL
// terminate TLS in Caddy's http server, as Envoy's filter chains do:
//
//   - one connection policy per server host, matched by SNI (exact names
//     first, then wildcards by longest suffix, then "*" without matcher, as
//     Envoy picks the most specific server_names), so several servers on
//     one port each present their own certificate and client
//     authentication; and one istio_route per server host, matched on the
//     same SNI, with that server's virtual hosts only (Istio's route
//     configuration per HTTPS server);
//   - the certificates of serverCertificate/privateKey, tlsCertificates,
//     or credentialName(s) (see ResolveCredential) are loaded by the tls
//     app's load_files with a tag per server, and the server's policies
//     select that tag: the certificate is presented whatever the SNI,
//     as Envoy presents a filter chain's certificate;
//   - beyond Istio: a credentialName that is not in the local credential
//     directory gets a certificate from Caddy's automatic HTTPS (see
//     automaticCertificates) instead of failing every handshake as Istio
//     does for a missing secret;
//   - minProtocolVersion (default TLS 1.2, Istio's gateway default),
//     maxProtocolVersion, cipherSuites (OpenSSL names mapped to Go's) and
//     ecdhCurves become the policy's protocol_min/max, cipher_suites and
//     curves;
//   - MUTUAL and OPTIONAL_MUTUAL verify client certificates against
//     caCertificates (or the credential's CA) with require_and_verify and
//     verify_if_given, and subjectAltNames with the istio_san verifier
//     (modules/istiomesh).
//
// Client certificate checks that Caddy cannot do (verifyCertificateSpki,
// verifyCertificateHash, caCrl) leave the server
// unserved with a warning rather than accept clients Istio refuses.

// gatewayTLS collects the tls app configuration of the Gateway servers.
type gatewayTLS struct {
	files    caddytls.FileLoader
	internal []string // names issued by Caddy's internal CA
	acme     []string // names issued by ACME
}

// internalCA is the pki app authority of the internal issuer: Caddy's
// default one, told not to install its root into the system trust store.
const internalCA = "local"

// istioSystemNamespace is where Istio's ingress gateway, and so the
// secrets of its credentialNames, usually live.
const istioSystemNamespace = "istio-system"

// terminatesTLS reports whether the server is an HTTPS server that Caddy
// terminates with a certificate of its own (not the mesh's).
func terminatesTLS(s *networking.Server) bool {
	if strings.ToUpper(s.GetPort().GetProtocol()) != "HTTPS" {
		return false
	}
	switch s.GetTls().GetMode() {
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
		return true
	}
	return false
}

// serverPolicy is the TLS connection policy of one Gateway server,
// without its SNI matcher.
type serverPolicy struct {
	hosts  []string // the server's dnsNames
	policy caddytls.ConnectionPolicy
}

// serverTLSPolicy translates the tls of a terminating HTTPS server (see
// terminatesTLS). It returns false, with a warning, when the server
// cannot be served as Istio would.
func (t *translator) serverTLSPolicy(gw *gateway, path string, s *networking.Server, acc *gatewayTLS) (*serverPolicy, bool) {
	// Certificates are added to acc only when the server is served.
	own := &gatewayTLS{}
	sp, ok := t.buildServerTLSPolicy(gw, path, s, own)
	if ok {
		acc.files = append(acc.files, own.files...)
		for _, n := range own.internal {
			if !slices.Contains(acc.internal, n) {
				acc.internal = append(acc.internal, n)
			}
		}
		for _, n := range own.acme {
			if !slices.Contains(acc.acme, n) {
				acc.acme = append(acc.acme, n)
			}
		}
	}
	return sp, ok
}

func (t *translator) buildServerTLSPolicy(gw *gateway, path string, s *networking.Server, acc *gatewayTLS) (*serverPolicy, bool) {
	tls := s.GetTls()
	field := path + ".tls"
	for _, unsupported := range []struct {
		name string
		set  bool
	}{
		{"verifyCertificateSpki", len(tls.GetVerifyCertificateSpki()) > 0},
		{"verifyCertificateHash", len(tls.GetVerifyCertificateHash()) > 0},
		{"caCrl", tls.GetCaCrl() != ""},
	} {
		if unsupported.set {
			t.warn(gw.obj, field+"."+unsupported.name, "not implemented yet: this server is not served (it would accept client certificates that Istio refuses)")
			return nil, false
		}
	}

	sp := &serverPolicy{}
	seen := map[string]bool{}
	for _, h := range s.GetHosts() {
		_, name := splitNamespacedHost(h)
		name = strings.ToLower(name)
		if !seen[name] {
			seen[name] = true
			sp.hosts = append(sp.hosts, name)
		}
	}
	p := &sp.policy

	tag := fmt.Sprintf("istio-gateway %s %s", gw.ref(), path)
	var files caddytls.FileLoader
	var credentialCA string
	automatic := false
	switch {
	case tls.GetServerCertificate() != "":
		files = append(files, caddytls.CertKeyFilePair{Certificate: tls.GetServerCertificate(), Key: tls.GetPrivateKey()})
	case len(tls.GetTlsCertificates()) > 0:
		for _, c := range tls.GetTlsCertificates() {
			files = append(files, caddytls.CertKeyFilePair{Certificate: c.GetServerCertificate(), Key: c.GetPrivateKey()})
		}
	case tls.GetCredentialName() != "" || len(tls.GetCredentialNames()) > 0:
		names, nameField := tls.GetCredentialNames(), field+".credentialNames"
		if tls.GetCredentialName() != "" {
			names, nameField = []string{tls.GetCredentialName()}, field+".credentialName"
		}
		for _, name := range names {
			cred, looked, ok := t.credential(gw, name)
			switch {
			case !ok && len(names) == 1 && tls.GetMode() == networking.ServerTLSSettings_SIMPLE:
				automatic = true
				t.warn(gw.obj, nameField, fmt.Sprintf("credential %q not found (looked in %s): the server's hosts get certificates from Caddy's automatic HTTPS", name, lookedAt(looked)))
			case !ok:
				t.warn(gw.obj, nameField, fmt.Sprintf("credential %q not found (looked in %s): this server is not served (Istio fails its handshakes)", name, lookedAt(looked)))
				return nil, false
			case cred.Cert == "" || cred.Key == "":
				t.warn(gw.obj, nameField, fmt.Sprintf("credential %q has no tls.crt/tls.key (or cert/key): this server is not served (Istio fails its handshakes)", name))
				return nil, false
			default:
				files = append(files, caddytls.CertKeyFilePair{Certificate: cred.Cert, Key: cred.Key})
				if credentialCA == "" {
					credentialCA = cred.CA
				}
			}
		}
	}
	for i := range files {
		files[i].Tags = []string{tag}
	}
	acc.files = append(acc.files, files...)
	if len(files) > 0 {
		p.CertSelection = &caddytls.CustomCertSelectionPolicy{AnyTag: []string{tag}}
	}
	if automatic {
		t.automaticCertificates(gw, field+".credentialName", sp.hosts, acc)
		if len(acc.internal) == 0 && len(acc.acme) == 0 {
			t.warn(gw.obj, field+".credentialName", "no host of this server can get a certificate: this server is not served (Istio fails its handshakes)")
			return nil, false
		}
	}

	if !t.protocolVersions(gw, field, tls, p) {
		return nil, false
	}
	p.CipherSuites = t.cipherSuites(gw, field+".cipherSuites", tls.GetCipherSuites())
	p.Curves = t.curves(gw, field+".ecdhCurves", tls.GetEcdhCurves())

	if tls.GetMode() != networking.ServerTLSSettings_SIMPLE {
		ca := tls.GetCaCertificates()
		if ca == "" {
			ca = credentialCA
		}
		if ca == "" && tls.GetCaCertCredentialName() != "" {
			cred, looked, _ := t.credential(gw, tls.GetCaCertCredentialName())
			ca = cred.CA
			if ca == "" {
				t.warn(gw.obj, field+".caCertCredentialName", fmt.Sprintf("no ca.crt (or cacert) for credential %q (looked in %s): this server is not served", tls.GetCaCertCredentialName(), lookedAt(looked)))
				return nil, false
			}
		}
		if ca == "" {
			t.warn(gw.obj, field+".credentialName", "no CA certificate to verify clients with (ca.crt or cacert in the credential, or a NAME-cacert credential): this server is not served (Istio fails its handshakes)")
			return nil, false
		}
		mode := "require_and_verify"
		if tls.GetMode() == networking.ServerTLSSettings_OPTIONAL_MUTUAL {
			mode = "verify_if_given"
		}
		var w []caddyconfig.Warning
		p.ClientAuthentication = &caddytls.ClientAuthentication{
			CARaw: jsonModuleObject(caddytls.FileCAPool{TrustedCACertPEMFiles: []string{ca}}, "provider", "file", &w),
			Mode:  mode,
		}
		if sans := tls.GetSubjectAltNames(); len(sans) > 0 {
			p.ClientAuthentication.VerifiersRaw = []json.RawMessage{jsonModuleObject(
				istiomesh.ClientSANVerifier{SubjectAltNames: sans}, "verifier", "istio_san", &w)}
		}
	} else if len(tls.GetSubjectAltNames()) > 0 {
		t.warn(gw.obj, field+".subjectAltNames", "ignored: a SIMPLE server asks for no client certificate")
	}
	return sp, true
}

// credential resolves a credentialName of gw: in the Gateway's namespace,
// then in istio-system, where Istio's ingress gateway (whose namespace
// Istio reads secrets from) usually runs.
func (t *translator) credential(gw *gateway, name string) (Credential, []string, bool) {
	var looked []string
	for _, ns := range []string{gw.obj.Namespace, istioSystemNamespace} {
		cred, l, ok := ResolveCredential(t.opts.CredentialsDir, ns, name)
		looked = append(looked, l...)
		if ok {
			return cred, looked, true
		}
		if ns == istioSystemNamespace {
			break
		}
	}
	return Credential{}, looked, false
}

func lookedAt(looked []string) string {
	if len(looked) == 0 {
		return "no directory: the config has no file name and " + CredentialsEnv + " is not set"
	}
	return strings.Join(looked, ", ")
}

// automaticCertificates asks Caddy's automatic HTTPS for certificates of
// hosts: Caddy's internal CA for local names (localhost, *.local,
// *.internal, *.home.arpa, *.cluster.local, IPs, single labels), ACME for
// public DNS names. "*" and public wildcards (which need the ACME DNS
// challenge) cannot get one: they are warned about and their handshakes
// fail, as Istio's do without a certificate.
func (t *translator) automaticCertificates(gw *gateway, field string, hosts []string, acc *gatewayTLS) {
	for _, h := range hosts {
		switch {
		case h == "*":
			t.warn(gw.obj, field, `host "*" cannot get an automatic certificate: clients are served only under the server's other hosts`)
		case isLocalName(h):
			if !slices.Contains(acc.internal, h) {
				acc.internal = append(acc.internal, h)
			}
		case strings.HasPrefix(h, "*."):
			t.warn(gw.obj, field, fmt.Sprintf("host %q cannot get an automatic certificate (a public wildcard needs the ACME DNS challenge)", h))
		default:
			if !slices.Contains(acc.acme, h) {
				acc.acme = append(acc.acme, h)
			}
		}
	}
}

// isLocalName reports whether host is not a public DNS name, so that a
// public CA would not issue a certificate for it.
func isLocalName(host string) bool {
	name := strings.TrimPrefix(host, "*.")
	return certmagic.SubjectIsInternal(name) || net.ParseIP(name) != nil ||
		!strings.Contains(name, ".") || name == "cluster.local" || strings.HasSuffix(name, ".cluster.local")
}

// protocolVersions sets protocol_min and protocol_max. Caddy speaks TLS
// 1.2 and 1.3 only.
func (t *translator) protocolVersions(gw *gateway, field string, tls *networking.ServerTLSSettings, p *caddytls.ConnectionPolicy) bool {
	switch tls.GetMinProtocolVersion() {
	case networking.ServerTLSSettings_TLSV1_0, networking.ServerTLSSettings_TLSV1_1:
		t.warn(gw.obj, field+".minProtocolVersion", "Caddy does not speak TLS below 1.2: the minimum is TLS 1.2")
		p.ProtocolMin = "tls1.2"
	case networking.ServerTLSSettings_TLSV1_3:
		p.ProtocolMin = "tls1.3"
	default:
		// TLS_AUTO: Istio's gateway default.
		p.ProtocolMin = "tls1.2"
	}
	switch tls.GetMaxProtocolVersion() {
	case networking.ServerTLSSettings_TLSV1_0, networking.ServerTLSSettings_TLSV1_1:
		t.warn(gw.obj, field+".maxProtocolVersion", "Caddy does not speak TLS below 1.2: this server is not served")
		return false
	case networking.ServerTLSSettings_TLSV1_2:
		p.ProtocolMax = "tls1.2"
	case networking.ServerTLSSettings_TLSV1_3:
		p.ProtocolMax = "tls1.3"
	}
	if p.ProtocolMax == "tls1.2" && p.ProtocolMin == "tls1.3" {
		// Envoy fails every handshake of such a listener.
		t.warn(gw.obj, field+".maxProtocolVersion", "lower than minProtocolVersion: this server is not served")
		return false
	}
	return true
}

// openSSLCipherSuites maps the cipher suite names Istio accepts to Go's.
var openSSLCipherSuites = map[string]string{
	"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-ECDSA-AES128-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
	"ECDHE-RSA-AES128-SHA":          "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
	"ECDHE-ECDSA-AES256-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
	"ECDHE-RSA-AES256-SHA":          "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
	"AES128-GCM-SHA256":             "TLS_RSA_WITH_AES_128_GCM_SHA256",
	"AES256-GCM-SHA384":             "TLS_RSA_WITH_AES_256_GCM_SHA384",
	"AES128-SHA":                    "TLS_RSA_WITH_AES_128_CBC_SHA",
	"AES256-SHA":                    "TLS_RSA_WITH_AES_256_CBC_SHA",
	"DES-CBC3-SHA":                  "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
}

// cipherSuites maps Istio's cipher suite names to Caddy's. Names Istio
// ignores (invalid or duplicate: its validation already warned) are
// dropped quietly; valid names that Caddy does not offer are dropped with
// a warning. Cipher suites only apply to TLS 1.2, in Go as in Envoy.
func (t *translator) cipherSuites(gw *gateway, field string, names []string) []string {
	var out, unsupported []string
	for _, n := range names {
		goName, ok := openSSLCipherSuites[n]
		if !ok || slices.Contains(out, goName) {
			continue
		}
		if !caddytls.CipherSuiteNameSupported(goName) {
			unsupported = append(unsupported, n)
			continue
		}
		out = append(out, goName)
	}
	if len(unsupported) > 0 {
		t.warn(gw.obj, field, fmt.Sprintf("cipher suites Caddy does not offer are ignored: %v", unsupported))
	}
	if len(names) > 0 && len(out) == 0 {
		t.warn(gw.obj, field, "no cipher suite left: Caddy's defaults are used")
	}
	return out
}

// envoyCurves maps Envoy's curve names to Caddy's.
var envoyCurves = map[string]string{
	"X25519":         "x25519",
	"P-256":          "secp256r1",
	"P-384":          "secp384r1",
	"P-521":          "secp521r1",
	"X25519MLKEM768": "x25519mlkem768",
}

func (t *translator) curves(gw *gateway, field string, names []string) []string {
	var out, unknown []string
	for _, n := range names {
		c, ok := envoyCurves[n]
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if len(unknown) > 0 {
		t.warn(gw.obj, field, fmt.Sprintf("unknown curves are ignored: %v", unknown))
	}
	return out
}

// sniEntry is one server host of a TLS listener: Envoy's filter chain
// match on server_names, which picks the TLS settings and, in Istio, the
// route configuration of that server alone.
type sniEntry struct {
	name   string
	rank   int // 0 exact, 1 wildcard, 2 catch-all "*"
	server int // index into the listener's servers (and policies)
}

// sniEntries returns the hosts of the servers of one TLS listener, most
// specific first: exact names in server order, then wildcards by longest
// suffix, then the catch-all "*", as Envoy picks the most specific
// server_names. A name already claimed by an earlier server is left to
// it, as Istio keeps the first of conflicting filter chains.
func sniEntries(servers []*serverPolicy) []sniEntry {
	var entries []sniEntry
	claimed := map[string]bool{}
	for i, sp := range servers {
		for _, h := range sp.hosts {
			if claimed[h] {
				continue
			}
			claimed[h] = true
			rank := 0
			switch {
			case h == "*":
				rank = 2
			case strings.HasPrefix(h, "*"):
				rank = 1
			}
			entries = append(entries, sniEntry{name: h, rank: rank, server: i})
		}
	}
	slices.SortStableFunc(entries, func(a, b sniEntry) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 || a.rank != 1 {
			return c
		}
		return cmp.Compare(len(b.name), len(a.name))
	})
	return entries
}

// sniPattern is the regular expression of the SNI values e matches, or ""
// for the catch-all. Envoy's "*.example.com" matches any name under
// example.com, deeper ones too (Caddy's sni matcher would match one
// label).
func (e sniEntry) sniPattern() string {
	switch e.rank {
	case 0:
		return `(?i)^` + regexp.QuoteMeta(e.name) + `$`
	case 1:
		return `(?i)^.+` + regexp.QuoteMeta(strings.TrimPrefix(e.name, "*")) + `$`
	}
	return ""
}

// connectionPolicies returns one connection policy per SNI entry, in the
// entries' order.
func connectionPolicies(servers []*serverPolicy, entries []sniEntry) caddytls.ConnectionPolicies {
	var out caddytls.ConnectionPolicies
	for _, e := range entries {
		p := servers[e.server].policy
		var w []caddyconfig.Warning
		switch e.rank {
		case 0:
			p.MatchersRaw = caddy.ModuleMap{"sni": caddyconfig.JSON([]string{e.name}, &w)}
		case 1:
			p.MatchersRaw = caddy.ModuleMap{"sni_regexp": caddyconfig.JSON(map[string]string{"pattern": e.sniPattern()}, &w)}
		}
		out = append(out, &p)
	}
	return out
}

// sniRouteMatcher matches the requests of connections whose SNI chose e,
// so that each server's routes serve only its own connections, as
// Istio's route configuration per HTTPS server does: a client cannot
// reach a MUTUAL server's routes through another server's handshake by
// sending its Host.
func (e sniEntry) sniRouteMatcher() caddyhttp.RawMatcherSets {
	pattern := e.sniPattern()
	if pattern == "" {
		return nil
	}
	var w []caddyconfig.Warning
	return caddyhttp.RawMatcherSets{{"vars_regexp": caddyconfig.JSON(map[string]any{
		"{http.request.tls.server_name}": map[string]string{"pattern": pattern},
	}, &w)}}
}

// apps returns the tls and pki apps, or nil when no Gateway server needs
// them.
func (acc *gatewayTLS) apps() (tlsApp, pkiApp json.RawMessage) {
	if len(acc.files) == 0 && len(acc.internal) == 0 && len(acc.acme) == 0 {
		return nil, nil
	}
	var w []caddyconfig.Warning
	app := caddytls.TLS{CertificatesRaw: caddy.ModuleMap{}}
	if len(acc.files) > 0 {
		app.CertificatesRaw["load_files"] = caddyconfig.JSON(acc.files, &w)
	}
	if names := append(slices.Clone(acc.internal), acc.acme...); len(names) > 0 {
		app.CertificatesRaw["automate"] = caddyconfig.JSON(names, &w)
		app.Automation = &caddytls.AutomationConfig{}
		if len(acc.internal) > 0 {
			app.Automation.Policies = append(app.Automation.Policies, &caddytls.AutomationPolicy{
				SubjectsRaw: acc.internal,
				IssuersRaw:  []json.RawMessage{jsonModuleObject(caddytls.InternalIssuer{CA: internalCA}, "module", "internal", &w)},
			})
		}
		if len(acc.acme) > 0 {
			// No issuers: Caddy's default public ACME CAs.
			app.Automation.Policies = append(app.Automation.Policies, &caddytls.AutomationPolicy{SubjectsRaw: acc.acme})
		}
	}
	tlsApp = caddyconfig.JSON(app, &w)
	if len(acc.internal) > 0 {
		installTrust := false
		pkiApp = caddyconfig.JSON(map[string]any{
			"certificate_authorities": map[string]any{internalCA: map[string]any{"install_trust": &installTrust}},
		}, &w)
	}
	return tlsApp, pkiApp
}
