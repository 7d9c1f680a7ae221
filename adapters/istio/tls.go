package istio

import (
	"encoding/json"
	"slices"

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
		if ca := ct.GetCaCertificates(); ca != "" {
			tc.CARaw = fileCAPool(ca)
		}
		tc.InsecureSkipVerify = ct.GetInsecureSkipVerify().GetValue()
		if ct.GetMode() == networking.ClientTLSSettings_MUTUAL {
			tc.ClientCertificateFile = ct.GetClientCertificate()
			tc.ClientCertificateKeyFile = ct.GetPrivateKey()
		}
		sans := slices.Clone(ct.GetSubjectAltNames())
		if len(sans) == 0 && svc != nil && svc.obj.Service == nil && !tc.InsecureSkipVerify {
			// Istio: "use subject alt names specified in service entry
			// if TLS settings does not have subject alt names".
			sans = t.serviceIdentities(svc)
		}
		var ut *istioapp.UpstreamTLS
		if len(sans) > 0 {
			ut = &istioapp.UpstreamTLS{SubjectAltNames: sans}
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
	if ct.GetCredentialName() != "" {
		t.warn(obj, path+".credentialName", "not supported: Kubernetes secrets are not read; set clientCertificate, privateKey and caCertificates (files) instead")
	}
	if ct.GetCaCertCredentialName() != "" {
		t.warn(obj, path+".caCertCredentialName", "not supported: Kubernetes secrets are not read; set caCertificates (a file) instead")
	}
	if ct.GetCaCrl() != "" {
		t.warn(obj, path+".caCrl", "not supported: Caddy's transport does not check certificate revocation lists")
	}
}
