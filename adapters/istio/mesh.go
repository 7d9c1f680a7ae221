package istio

import (
	"encoding/json"
	"maps"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// meshCA is the pki app certificate authority of the mesh certificates.
const meshCA = "istio"

// defaultServiceAccount is Kubernetes' service account of a pod that names
// none, and Istio's of a WorkloadEntry that names none.
const defaultServiceAccount = "default"

// buildMesh returns this proxy's place in the mesh (App.Mesh), or nil when
// the input does not say which workload this proxy is (the runtime then
// uses spiffe://cluster.local/ns/default/sa/default and no locality).
//
// This Caddy is not a pod: its workload is the WorkloadEntry that the
// resources configuring it select, in this order:
//
//  1. the first Sidecar (document order) with a workloadSelector: the
//     first WorkloadEntry of the Sidecar's namespace whose labels contain
//     the selector's;
//  2. else the first Gateway with a non-empty selector: the first
//     WorkloadEntry, of any namespace (Istio's default gateway scope),
//     whose labels contain the selector's.
//
// The identity is spiffe://cluster.local/ns/NS/sa/SA from the
// WorkloadEntry's namespace and serviceAccount ("default" when unset);
// its locality and labels are this proxy's, for locality load balancing.
func (t *translator) buildMesh() *istioapp.Mesh {
	w := t.proxyWorkload()
	if w == nil {
		return nil
	}
	sa := w.ServiceAccount
	if sa == "" {
		sa = defaultServiceAccount
	}
	return &istioapp.Mesh{
		TrustDomain: trustDomain,
		CA:          meshCA,
		Identity:    spiffeID(w.Namespace, sa),
		Locality:    w.Locality,
		Labels:      maps.Clone(w.Labels),
	}
}

// proxyWorkload is the WorkloadEntry this proxy runs as (see buildMesh),
// or nil.
func (t *translator) proxyWorkload() *istioapp.Workload {
	for _, sc := range t.sidecars {
		ws := sc.spec.GetWorkloadSelector()
		if ws == nil {
			continue
		}
		for _, w := range t.workloads {
			if w.Namespace == sc.obj.Namespace && labelsContain(w.Labels, ws.GetLabels()) {
				return w
			}
		}
	}
	for _, gw := range t.gateways {
		sel := gw.spec.GetSelector()
		if len(sel) == 0 {
			continue
		}
		for _, w := range t.workloads {
			if labelsContain(w.Labels, sel) {
				return w
			}
		}
	}
	return nil
}

// meshIdentity is this proxy's SPIFFE ID.
func (t *translator) meshIdentity() string {
	if t.mesh != nil {
		return t.mesh.Identity
	}
	return spiffeID("default", defaultServiceAccount)
}

// istioMTLSWrapper is the caddy.listeners.istio_mtls listener wrapper
// (modules/istiomesh) of a Gateway server with tls.mode ISTIO_MUTUAL: the
// server presents this proxy's mesh certificate and accepts only clients
// with a mesh identity.
func (t *translator) istioMTLSWrapper() json.RawMessage {
	out, err := json.Marshal(map[string]string{
		"wrapper":      "istio_mtls",
		"identity":     t.meshIdentity(),
		"trust_domain": trustDomain,
		"ca":           meshCA,
	})
	if err != nil {
		panic(err)
	}
	return out
}
