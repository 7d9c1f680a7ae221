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

// TestGatewayIstioMutual checks that an HTTPS Gateway server with
// ISTIO_MUTUAL is served behind the istio_mtls listener wrapper with this
// proxy's identity, that other TLS modes are still not served, and that a
// port cannot mix servers with and without ISTIO_MUTUAL.
func TestGatewayIstioMutual(t *testing.T) {
	out, warnings, err := Adapter{}.Adapt([]byte(`
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  servers:
  - port: {number: 15443, name: mtls, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 15443, name: plain, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8443, name: simple, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen           []string          `json:"listen"`
					ListenerWrappers []json.RawMessage `json:"listener_wrappers"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	servers := cfg.Apps.HTTP.Servers
	if len(servers) != 1 {
		t.Fatalf("want only the ISTIO_MUTUAL server, got %s", out)
	}
	s := servers["gateway-15443"]
	const wantWrapper = `{"ca":"istio","identity":"spiffe://cluster.local/ns/default/sa/default","trust_domain":"cluster.local","wrapper":"istio_mtls"}`
	if len(s.ListenerWrappers) != 1 || string(s.ListenerWrappers[0]) != wantWrapper {
		t.Errorf("listener wrappers = %s, want [%s]", s.ListenerWrappers, wantWrapper)
	}
	var ws []string
	for _, w := range warnings {
		ws = append(ws, w.Directive+": "+w.Message)
	}
	if !hasWarning(ws, "spec.servers[1].tls.mode", "with and without ISTIO_MUTUAL") {
		t.Errorf("no warning about the mixed port: %q", ws)
	}
	if !hasWarning(ws, "spec.servers[2].tls.credentialName", "not served") {
		t.Errorf("no warning about the SIMPLE server: %q", ws)
	}
}
