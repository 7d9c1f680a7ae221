package istio

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// trustDomain is the mesh trust domain (Istio's default).
const trustDomain = "cluster.local"

// spiffeID is the mesh identity of a service account.
func spiffeID(namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// autoSNI is the server_name for SIMPLE and MUTUAL without sni: Istio sets
// SNI from the Host of the request sent upstream (auto-SNI), which the
// istio app reads after a route's authority rewrite.
const autoSNI = istioapp.AutoSNI

// upstreamTLS returns the transport tls settings and the Cluster.TLS for
// the client TLS settings ct of a cluster of svc (both nil for plaintext):
//
//   - DISABLE: plaintext;
//   - SIMPLE: TLS verifying the server with caCertificates (the system
//     roots when empty), SNI sni or the request's host, and the
//     subjectAltNames checked by the runtime (for a ServiceEntry host
//     without them, the service's identities, as Istio does);
//   - MUTUAL: SIMPLE plus the client certificate and key;
//   - credentialName (SIMPLE and MUTUAL): the files of that secret in the
//     credentials directory (see ResolveCredential) replace
//     caCertificates, clientCertificate and privateKey, as Istio takes
//     them from the Kubernetes secret;
//   - ISTIO_MUTUAL: TLS on, with the mesh certificate and the mesh CA set
//     by the runtime; the server must present one of the identities of
//     the service: its ServiceEntry subjectAltNames and the
//     spiffe://cluster.local/ns/NS/sa/SA of its endpoints' service
//     accounts (Istio's ServiceAccounts of the service), any identity of
//     the trust domain when none is known.
func (t *translator) upstreamTLS(ct *networking.ClientTLSSettings, svc *service) (*reverseproxy.TLSConfig, *istioapp.UpstreamTLS) {
	switch ct.GetMode() {
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
		tc := &reverseproxy.TLSConfig{ServerName: ct.GetSni()}
		if tc.ServerName == "" {
			tc.ServerName = autoSNI
		}
		caFile, certFile, keyFile := ct.GetCaCertificates(), ct.GetClientCertificate(), ct.GetPrivateKey()
		if name := ct.GetCredentialName(); name != "" {
			// Istio takes the certificates from the secret and ignores the
			// file fields; a secret that is missing leaves them empty (the
			// handshake then fails, as Envoy's cluster without its secret).
			cred, _, _ := ResolveCredential(t.opts.CredentialsDir, t.credentialNamespace(svc, name), name)
			caFile, certFile, keyFile = cred.CA, cred.Cert, cred.Key
		}
		if caFile != "" {
			tc.CARaw = fileCAPool(caFile)
		}
		tc.InsecureSkipVerify = ct.GetInsecureSkipVerify().GetValue()
		if ct.GetMode() == networking.ClientTLSSettings_MUTUAL {
			tc.ClientCertificateFile = certFile
			tc.ClientCertificateKeyFile = keyFile
		}
		sans := slices.Clone(ct.GetSubjectAltNames())
		if len(sans) == 0 && svc != nil && svc.obj.Service == nil && !tc.InsecureSkipVerify {
			// Istio: "use subject alt names specified in service entry
			// if TLS settings does not have subject alt names".
			sans = t.serviceIdentities(svc)
		}
		var ut *istioapp.UpstreamTLS
		if crl := t.crlFileOf(ct, svc); len(sans) > 0 || crl != "" {
			ut = &istioapp.UpstreamTLS{SubjectAltNames: sans, CRLFile: crl}
		}
		return tc, ut
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		return &reverseproxy.TLSConfig{}, &istioapp.UpstreamTLS{IstioMutual: true, SubjectAltNames: t.serviceIdentities(svc)}
	}
	return nil, nil
}

// fileCAPool is the tls.ca_pool.source.file module for a PEM file.
func fileCAPool(file string) json.RawMessage {
	out, err := json.Marshal(map[string]any{"provider": "file", "pem_files": []string{file}})
	if err != nil {
		panic(err)
	}
	return out
}

// serviceIdentities are the identities a server of svc may present with
// ISTIO_MUTUAL, sorted: the ServiceEntry's subjectAltNames and the SPIFFE
// IDs of the service accounts of its endpoints (inline endpoints, and the
// WorkloadEntries its selector picks in its namespace). Endpoints without
// a service account add none.
func (t *translator) serviceIdentities(svc *service) []string {
	if svc == nil {
		return nil
	}
	var ids []string
	if se, ok := svc.obj.Spec.(*networking.ServiceEntry); ok && svc.obj.Service == nil {
		ids = append(ids, se.GetSubjectAltNames()...)
	}
	add := func(w *istioapp.Workload, namespace string) {
		if w.ServiceAccount != "" {
			ids = append(ids, spiffeID(namespace, w.ServiceAccount))
		}
	}
	for _, w := range svc.Endpoints {
		add(w, svc.Namespace)
	}
	if svc.Selector != nil {
		for _, w := range t.workloads {
			if w.Namespace == svc.Namespace && labelsContain(w.Labels, svc.Selector) {
				add(w, w.Namespace)
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// checkTLS warns about the client TLS settings Caddy cannot apply.
func (t *translator) checkTLS(obj *istioyaml.Object, path string, ct *networking.ClientTLSSettings) {
	if name := ct.GetCredentialName(); name != "" {
		t.checkCredential(obj, path, ct, name)
	}
	if ct.GetCaCertCredentialName() != "" {
		t.warn(obj, path+".caCertCredentialName", "not supported: Kubernetes secrets are not read; set caCertificates (a file) instead")
	}
}

// credentialNamespace is the namespace the credentialName of a
// DestinationRule of svc is looked up in: the namespace of the rule that
// names it (Istio reads secrets of the DestinationRule's namespace), else
// the service's.
func (t *translator) credentialNamespace(svc *service, name string) string {
	if svc != nil {
		if hp := policyFor(t.policies, svc.Hostname); hp != nil {
			for _, dr := range hp.rules {
				if namesCredential(dr.spec, name) {
					return dr.obj.Namespace
				}
			}
		}
		return svc.Namespace
	}
	return defaultProxyNamespace
}

// namesCredential reports whether a client TLS block of dr names the
// credential name.
func namesCredential(dr *networking.DestinationRule, name string) bool {
	policies := []*networking.TrafficPolicy{dr.GetTrafficPolicy()}
	for _, s := range dr.GetSubsets() {
		policies = append(policies, s.GetTrafficPolicy())
	}
	for _, tp := range policies {
		if tp.GetTls().GetCredentialName() == name {
			return true
		}
		for _, pl := range tp.GetPortLevelSettings() {
			if pl.GetTls().GetCredentialName() == name {
				return true
			}
		}
	}
	return false
}

// checkCredential warns when the credential name of the client TLS block
// ct at path is not found in the credentials directory, or lacks what the
// mode needs.
func (t *translator) checkCredential(obj *istioyaml.Object, path string, ct *networking.ClientTLSSettings, name string) {
	field := path + ".credentialName"
	if ct.GetClientCertificate() != "" || ct.GetPrivateKey() != "" || ct.GetCaCertificates() != "" {
		t.warn(obj, field, "the certificates come from this credential: clientCertificate, privateKey and caCertificates are ignored, as in Istio")
	}
	cred, looked, found := ResolveCredential(t.opts.CredentialsDir, obj.Namespace, name)
	switch {
	case t.opts.CredentialsDir == "":
		t.warn(obj, field, fmt.Sprintf("credential %q not found: no credentials directory (the config has no file name; set %s): TLS to this destination fails", name, CredentialsEnv))
		return
	case !found:
		t.warn(obj, field, fmt.Sprintf("credential %q not found (looked in %s): TLS to this destination fails", name, strings.Join(looked, ", ")))
		return
	}
	mutual := ct.GetMode() == networking.ClientTLSSettings_MUTUAL
	if mutual && (cred.Cert == "" || cred.Key == "") {
		t.warn(obj, field, fmt.Sprintf("credential %q has no tls.crt/tls.key (or cert/key) in %s: MUTUAL TLS to this destination fails", name, looked[0]))
	}
	if cred.CA == "" && !ct.GetInsecureSkipVerify().GetValue() {
		t.warn(obj, field, fmt.Sprintf("credential %q has no ca.crt (or cacert): the server certificate is verified against the system roots", name))
	}
}
