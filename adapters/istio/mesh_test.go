package istio

import (
	"encoding/json"
	"testing"
)

// TestMeshIdentity checks which WorkloadEntry gives this proxy its mesh
// identity, locality and labels (buildMesh).
func TestMeshIdentity(t *testing.T) {
	const workloads = `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client-other, namespace: other}
spec: {address: 127.0.0.9, labels: {app: client}, serviceAccount: wrong}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: shop}
spec: {address: 127.0.0.10, labels: {app: client, v: "1"}, serviceAccount: client, locality: r1/z1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: gw, namespace: istio-system}
spec: {address: 127.0.0.11, labels: {istio: ingressgateway}}
`
	const sidecar = `
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: shop}
spec:
  workloadSelector: {labels: {app: client}}
  egress: [{hosts: ["*/*"]}]
`
	const gateway = `
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
`
	for _, tc := range []struct {
		name, input, want string
	}{
		{
			name:  "sidecar selector, same namespace",
			input: workloads + sidecar + gateway,
			want:  `{"trust_domain":"cluster.local","ca":"istio","identity":"spiffe://cluster.local/ns/shop/sa/client","locality":"r1/z1","labels":{"app":"client","v":"1"}}`,
		},
		{
			name:  "gateway selector, any namespace, default service account",
			input: workloads + gateway,
			want:  `{"trust_domain":"cluster.local","ca":"istio","identity":"spiffe://cluster.local/ns/istio-system/sa/default","labels":{"istio":"ingressgateway"}}`,
		},
		{
			name:  "no selected workload",
			input: sidecar + gateway,
			want:  `null`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := adaptInline(t, tc.input)
			got, err := json.Marshal(a.app.Mesh)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("mesh:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
