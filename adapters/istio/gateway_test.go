package istio

import (
	"reflect"
	"strings"
	"testing"
)

// gatewayYAML is a Gateway "gw" in namespace "edge" with one HTTP server on
// port 80 for hosts, and a Service web in default.
func gatewayYAML(hosts string) string {
	return `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 8000}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ` + hosts + `
`
}

// vsYAML is a VirtualService "vs" in namespace ns for hosts and gateways,
// routing everything to web.
func vsYAML(ns, hosts, gateways string) string {
	return `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: ` + ns + `}
spec:
  hosts: ` + hosts + `
  gateways: ` + gateways + `
  http:
  - route:
    - destination: {host: web.default.svc.cluster.local}
`
}

// TestGatewayBinding checks which VirtualServices bind to a gateway server
// and with which domains: gateway references, server host namespaces and
// host intersection.
func TestGatewayBinding(t *testing.T) {
	for _, tc := range []struct {
		name        string
		serverHosts string
		vsNamespace string
		vsHosts     string
		gateways    string
		want        []string // domains of the gateway server's virtual hosts
	}{
		{"star server, star VS", `["*"]`, "edge", `["*"]`, `[gw]`, []string{"*"}},
		{"star server, named VS", `["*"]`, "edge", `[a.example.com, b.example.com]`, `[gw]`, []string{"a.example.com", "b.example.com"}},
		{"wildcard server takes a subdomain", `["*.example.com"]`, "edge", `[dev.example.com]`, `[gw]`, []string{"dev.example.com"}},
		{"wildcard server refuses the bare domain", `["*.example.com"]`, "edge", `[example.com]`, `[gw]`, nil},
		{"star VS narrowed by the server", `["*.example.com"]`, "edge", `["*"]`, `[gw]`, []string{"*.example.com"}},
		{"wildcard VS narrowed by a named server", `[api.example.com]`, "edge", `["*.example.com"]`, `[gw]`, []string{"api.example.com"}},
		{"disjoint hosts", `[api.example.com]`, "edge", `[www.example.com]`, `[gw]`, nil},
		{"short VS host expands in the VS namespace", `["*"]`, "edge", `[web]`, `[gw]`, []string{"web.edge.svc.cluster.local"}},
		{"reference ns/name", `["*"]`, "default", `[a.example.com]`, `[edge/gw]`, []string{"a.example.com"}},
		{"reference name is in the VS namespace", `["*"]`, "default", `[a.example.com]`, `[gw]`, nil},
		{"legacy reference name.ns", `["*"]`, "default", `[a.example.com]`, `[gw.edge]`, []string{"a.example.com"}},
		{"mesh-only VS", `["*"]`, "edge", `[a.example.com]`, `[mesh]`, nil},
		{"server ns . is the gateway namespace", `["./a.example.com"]`, "edge", `[a.example.com]`, `[gw]`, []string{"a.example.com"}},
		{"server ns . refuses other namespaces", `["./a.example.com"]`, "default", `[a.example.com]`, `[edge/gw]`, nil},
		{"server ns names the VS namespace", `["default/a.example.com"]`, "default", `[a.example.com]`, `[edge/gw]`, []string{"a.example.com"}},
		{"server ns names another namespace", `["other/a.example.com"]`, "default", `[a.example.com]`, `[edge/gw]`, nil},
		{"server ns star", `["*/a.example.com"]`, "default", `[a.example.com]`, `[edge/gw]`, []string{"a.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, warnings := adaptInline(t, gatewayYAML(tc.serverHosts)+vsYAML(tc.vsNamespace, tc.vsHosts, tc.gateways))
			unbound := hasWarning(warnings, "spec.gateways[0]: no host of the VirtualService matches a host of gateway edge/gw")
			if want := len(tc.want) == 0 && tc.gateways != "[mesh]" && tc.name != "reference name is in the VS namespace"; unbound != want {
				t.Errorf("warning about unmatched hosts: %v, want %v; warnings:\n%s", unbound, want, strings.Join(warnings, "\n"))
			}
			s, ok := a.servers["gateway-80"]
			if !ok {
				t.Fatalf("no gateway server; servers: %v", a.servers)
			}
			if s.listen != ":80" {
				t.Errorf("listen = %q, want :80", s.listen)
			}
			var got []string
			for _, vh := range s.vhosts {
				if len(vh.Domains) != 1 || vh.Domains[0] != vh.Name {
					t.Errorf("virtual host %s: domains %v, want just its name", vh.Name, vh.Domains)
				}
				got = append(got, vh.Name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("domains = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestGatewayMerge checks that servers of several Gateways on one port
// make one Caddy server, that another bind makes another, and that the
// VirtualServices for one host merge with catch-all routes last.
func TestGatewayMerge(t *testing.T) {
	a, warnings := adaptInline(t, `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: a, namespace: default}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: b, namespace: default}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP2}
    hosts: [shop.example.com]
  - port: {number: 80, name: http-local, protocol: HTTP}
    bind: 127.0.0.5
    hosts: ["*"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: first, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [a]
  http:
  - route:
    - destination: {host: first.example.com}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: second, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [b]
  http:
  - match:
    - uri: {prefix: /api}
    route:
    - destination: {host: second.example.com}
  - match:
    - uri: {prefix: /}
    route:
    - destination: {host: second-default.example.com}
`)
	if len(a.servers) != 2 {
		t.Fatalf("servers = %v, want gateway-80 and gateway-127.0.0.5-80", a.servers)
	}
	if l := a.servers["gateway-127.0.0.5-80"].listen; l != "tcp/127.0.0.5:80" {
		t.Errorf("bound listener = %q", l)
	}
	vh := a.vhost("gateway-80", "shop.example.com")
	if vh == nil {
		t.Fatalf("no shop.example.com virtual host: %v", vhostSummary(a.servers["gateway-80"]))
	}
	got := routeSummary(vh.Routes)
	want := []string{
		"prefix /api -> outbound|80||second.example.com",
		"* -> outbound|80||first.example.com",
		"* -> outbound|80||second-default.example.com",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged routes:\n got %q\nwant %q", got, want)
	}
	if vh := a.vhost("gateway-127.0.0.5-80", "shop.example.com"); vh == nil || len(vh.Routes) != 2 {
		t.Errorf("bound listener: %v", vhostSummary(a.servers["gateway-127.0.0.5-80"]))
	}
	if !hasWarning(warnings, "spec.servers[2].tls.credentialName", "not served") {
		t.Errorf("no warning for the HTTPS server: %s", strings.Join(warnings, "\n"))
	}
}
