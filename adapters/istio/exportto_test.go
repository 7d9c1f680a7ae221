package istio

import (
	"reflect"
	"strings"
	"testing"
)

// exportServices are two Services of namespace default: web, which the
// VirtualServices of the exportTo tests route, and alt, where they send
// the traffic.
const exportServices = `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Service
metadata: {name: alt, namespace: default}
spec:
  ports: [{name: http, port: 8000}]
`

const (
	webCluster = "outbound|8000||web.default.svc.cluster.local"
	altCluster = "outbound|8000||alt.default.svc.cluster.local"
)

// exportVS is a VirtualService named name in ns with exportTo (YAML flow
// list, "" for none), bound to gateways ("" for the mesh), for
// web.default.svc.cluster.local and, on gateways, www.example.com, routing
// everything to alt.
func exportVS(name, ns, exportTo, gateways string) string {
	out := `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec:
  hosts: [web.default.svc.cluster.local]
`
	if gateways != "" {
		out = strings.Replace(out, "[web.default.svc.cluster.local]", "[www.example.com]", 1)
		out += "  gateways: " + gateways + "\n"
	}
	if exportTo != "" {
		out += "  exportTo: " + exportTo + "\n"
	}
	return out + `  http:
  - route:
    - destination: {host: alt.default.svc.cluster.local}
`
}

// webRoutes summarizes the routes of web's virtual host on the mesh
// listener.
func webRoutes(t *testing.T, a *adapted) []string {
	t.Helper()
	vh := a.vhost("mesh", "web.default.svc.cluster.local:8000")
	if vh == nil {
		t.Fatalf("no virtual host for web on the mesh listener: %v", vhostSummary(a.servers["mesh"]))
	}
	return routeSummary(vh.Routes)
}

// TestExportToMesh checks which VirtualServices a mesh listener uses: those
// exported to its namespace ("default" for the default listener, the
// Sidecar's otherwise).
func TestExportToMesh(t *testing.T) {
	sidecarIn := func(ns string) string {
		return `
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: ` + ns + `}
spec:
  egress: [{hosts: ["*/*"]}]
`
	}
	for _, tc := range []struct {
		name    string
		sidecar string // a Sidecar (its namespace is the listener's), or none
		vs      string
		used    bool
	}{
		{"default listener, no exportTo", "", exportVS("vs", "foo", "", ""), true},
		{"default listener, star", "", exportVS("vs", "foo", `["*"]`, ""), true},
		{"default listener, dot in default", "", exportVS("vs", "default", `["."]`, ""), true},
		{"default listener, dot elsewhere", "", exportVS("vs", "foo", `["."]`, ""), false},
		{"default listener, named default", "", exportVS("vs", "foo", `[default]`, ""), true},
		{"default listener, named other", "", exportVS("vs", "foo", `[bar]`, ""), false},
		{"default listener, own name elsewhere", "", exportVS("vs", "foo", `[foo]`, ""), false},
		{"sidecar in foo, dot in foo", sidecarIn("foo"), exportVS("vs", "foo", `["."]`, ""), true},
		{"sidecar in foo, dot in default", sidecarIn("foo"), exportVS("vs", "default", `["."]`, ""), false},
		{"sidecar in foo, named foo", sidecarIn("foo"), exportVS("vs", "bar", `[foo]`, ""), true},
		{"sidecar in foo, named default", sidecarIn("foo"), exportVS("vs", "bar", `[default, baz]`, ""), false},
		{"sidecar in foo, star", sidecarIn("foo"), exportVS("vs", "bar", `["*"]`, ""), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, warnings := adaptInline(t, exportServices+tc.sidecar+tc.vs)
			want := []string{"* -> " + webCluster}
			if tc.used {
				want = []string{"* -> " + altCluster}
			}
			if got := webRoutes(t, a); !reflect.DeepEqual(got, want) {
				t.Errorf("routes = %q, want %q", got, want)
			}
			if hasWarning(warnings, "spec.exportTo: not implemented") {
				t.Errorf("exportTo is still reported as not implemented: %q", warnings)
			}
			if warned := hasWarning(warnings, "spec.exportTo: not exported to the namespace of a mesh listener"); warned == tc.used {
				t.Errorf("warning about a VirtualService no mesh listener sees: %v, want %v; warnings:\n%s", warned, !tc.used, strings.Join(warnings, "\n"))
			}
		})
	}
}

// TestExportToMeshOrder checks that, as in Istio, the VirtualServices
// exported to the listener's namespace come before the public ones: the
// first one for a host wins whatever the document order.
func TestExportToMeshOrder(t *testing.T) {
	public := exportVS("public", "default", "", "")
	private := strings.Replace(exportVS("private", "default", `["."]`, ""), "alt.default", "web.default", 1)
	a, warnings := adaptInline(t, exportServices+public+private)
	if got, want := webRoutes(t, a), []string{"* -> " + webCluster}; !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %q, want %q (the private VirtualService's)", got, want)
	}
	if !hasWarning(warnings, "spec.hosts[0]: host web.default.svc.cluster.local is already routed by VirtualService default/private") {
		t.Errorf("want a warning that the public VirtualService loses web; warnings:\n%s", strings.Join(warnings, "\n"))
	}
}

// TestExportToSharedListener checks that when Sidecars of two namespaces
// share the mesh listener, the routes of a VirtualService are built for
// the Sidecars it is exported to only (their namespace is then the one
// match.sourceNamespace sees).
func TestExportToSharedListener(t *testing.T) {
	a, _ := adaptInline(t, exportServices+`
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: a}
spec:
  egress: [{hosts: ["*/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: b}
spec:
  egress: [{hosts: ["*/*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: a}
spec:
  hosts: [web.default.svc.cluster.local]
  exportTo: ["."]
  http:
  - match: [{sourceNamespace: b, uri: {prefix: /b}}]
    route:
    - destination: {host: web.default.svc.cluster.local}
  - match: [{sourceNamespace: a, uri: {prefix: /a}}]
    route:
    - destination: {host: alt.default.svc.cluster.local}
`)
	if got, want := webRoutes(t, a), []string{"prefix /a -> " + altCluster}; !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %q, want %q", got, want)
	}
}

// TestExportToGateway checks that a gateway uses the VirtualServices
// exported to the Gateway's namespace, and says when one bound to it is
// not.
func TestExportToGateway(t *testing.T) {
	const gw = `
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
`
	for _, tc := range []struct {
		name     string
		ns       string
		exportTo string
		served   bool
	}{
		{"no exportTo", "default", "", true},
		{"dot in another namespace", "default", `["."]`, false},
		{"dot in the gateway's namespace", "istio-system", `["."]`, true},
		{"star", "default", `["*"]`, true},
		{"gateway's namespace by name", "default", `[istio-system]`, true},
		{"gateway's namespace with others", "default", `[".", istio-system]`, true},
		{"other namespaces", "default", `[".", foo]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, warnings := adaptInline(t, exportServices+gw+exportVS("vs", tc.ns, tc.exportTo, "[istio-system/gw]"))
			var got []string
			for _, vh := range a.servers["gateway-8080"].vhosts {
				got = append(got, vh.Name+": "+strings.Join(routeSummary(vh.Routes), "; "))
			}
			var want []string
			if tc.served {
				want = []string{"www.example.com: * -> " + altCluster}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("virtual hosts = %q, want %q", got, want)
			}
			warned := hasWarning(warnings, "spec.gateways[0]: the VirtualService is not exported to namespace istio-system of gateway istio-system/gw")
			if warned == tc.served {
				t.Errorf("warning about the gateway's namespace: %v, want %v; warnings:\n%s", warned, !tc.served, strings.Join(warnings, "\n"))
			}
			if hasWarning(warnings, "no host of the VirtualService matches") {
				t.Errorf("unexpected host warning: %q", warnings)
			}
		})
	}
}

// TestExportToGatewayOrder checks that on a gateway the routes of the
// VirtualServices private to the Gateway's namespace merge first, then
// those exported to it by name, then the public ones, as Istio lists them.
func TestExportToGatewayOrder(t *testing.T) {
	vs := func(name, ns, exportTo, prefix string) string {
		out := exportVS(name, ns, exportTo, "[istio-system/gw]")
		return strings.Replace(out, "  - route:", "  - match: [{uri: {prefix: "+prefix+"}}]\n    route:", 1)
	}
	a, _ := adaptInline(t, exportServices+`
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*/*"]
`+vs("public", "default", "", "/public")+
		vs("named", "default", "[istio-system]", "/named")+
		vs("private", "istio-system", `["."]`, "/private"))
	vh := a.vhost("gateway-8080", "www.example.com")
	if vh == nil {
		t.Fatalf("no virtual host www.example.com: %v", vhostSummary(a.servers["gateway-8080"]))
	}
	want := []string{"prefix /private -> " + altCluster, "prefix /named -> " + altCluster, "prefix /public -> " + altCluster}
	if got := routeSummary(vh.Routes); !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %q, want %q", got, want)
	}
}
