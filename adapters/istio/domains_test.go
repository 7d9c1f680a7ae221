package istio

import (
	"reflect"
	"strings"
	"testing"
)

// TestMeshDomains checks the domains of mesh virtual hosts.
func TestMeshDomains(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  map[string][]string // server -> "vhost=domains"
	}{
		{
			name: "single-port service answers without port too",
			input: `
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]`,
			want: map[string][]string{"mesh": {
				"reviews.default.svc.cluster.local:9080=reviews.default.svc.cluster.local:9080,reviews:9080,reviews.default:9080,reviews.default.svc:9080,reviews.default.svc.cluster.local,reviews,reviews.default,reviews.default.svc",
			}},
		},
		{
			name: "multi-port service: port-less names go to port 80; TCP ports are not served",
			input: `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80}, {name: http-admin, port: 9000}, {name: tcp-db, port: 5432}]`,
			want: map[string][]string{"mesh": {
				"web.shop.svc.cluster.local:80=web.shop.svc.cluster.local:80,web:80,web.shop:80,web.shop.svc:80,web.shop.svc.cluster.local,web,web.shop,web.shop.svc",
				"web.shop.svc.cluster.local:9000=web.shop.svc.cluster.local:9000,web:9000,web.shop:9000,web.shop.svc:9000",
			}},
		},
		{
			name: "ServiceEntry hosts have no short forms; IP addresses are domains",
			input: `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  addresses: [192.0.2.1, 198.51.100.0/24]
  ports: [{number: 8080, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}]`,
			want: map[string][]string{"mesh": {
				"api.example.com:8080=api.example.com:8080,192.0.2.1:8080,api.example.com,192.0.2.1",
			}},
		},
		{
			name: "a VirtualService host that is no service",
			input: `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy, legacy.example.com]
  http:
  - route: [{destination: {host: legacy.example.com}}]`,
			want: map[string][]string{"mesh": {
				"legacy.default.svc.cluster.local=legacy.default.svc.cluster.local,legacy,legacy.default,legacy.default.svc,legacy.example.com",
			}},
		},
		{
			name: "a Sidecar port listener serves that port, with and without port",
			input: `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80}, {name: http-alt, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - port: {number: 8080, protocol: HTTP, name: http}
    hosts: ["*/*"]`,
			want: map[string][]string{"mesh-127.0.0.1-8080": {
				"web.default.svc.cluster.local:8080=web.default.svc.cluster.local:8080,web:8080,web.default:8080,web.default.svc:8080,web.default.svc.cluster.local,web,web.default,web.default.svc",
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := adaptInline(t, tc.input)
			got := make(map[string][]string)
			for name, s := range a.servers {
				got[name] = vhostSummary(s)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("virtual hosts:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestDomainConflicts checks that a domain is served by one virtual host
// only: the first, in hostname order.
func TestDomainConflicts(t *testing.T) {
	a, warnings := adaptInline(t, `
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: zoo}
spec:
  ports: [{name: http, port: 9080}]
`)
	got := vhostSummary(a.servers["mesh"])
	want := []string{
		"reviews.default.svc.cluster.local:9080=reviews.default.svc.cluster.local:9080,reviews:9080,reviews.default:9080,reviews.default.svc:9080,reviews.default.svc.cluster.local,reviews,reviews.default,reviews.default.svc",
		"reviews.zoo.svc.cluster.local:9080=reviews.zoo.svc.cluster.local:9080,reviews.zoo:9080,reviews.zoo.svc:9080,reviews.zoo.svc.cluster.local,reviews.zoo,reviews.zoo.svc",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("virtual hosts:\n got %q\nwant %q", got, want)
	}
	if !hasWarning(warnings, "domain reviews:9080 is already served by virtual host reviews.default.svc.cluster.local:9080") {
		t.Errorf("no conflict warning:\n%s", strings.Join(warnings, "\n"))
	}
}

// TestMeshVirtualServiceConflicts checks that the first mesh
// VirtualService for a host wins, also against a wildcard one.
func TestMeshVirtualServiceConflicts(t *testing.T) {
	a, warnings := adaptInline(t, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wildcard, namespace: default}
spec:
  hosts: ["*.example.com"]
  http:
  - route: [{destination: {host: first.example.net}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: exact, namespace: default}
spec:
  hosts: [api.example.com]
  http:
  - route: [{destination: {host: second.example.net}}]
`)
	got := vhostSummary(a.servers["mesh"])
	want := []string{"api.example.com:80=api.example.com:80,api.example.com"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("virtual hosts:\n got %q\nwant %q", got, want)
	}
	if r := routeSummary(a.vhost("mesh", "api.example.com:80").Routes); !reflect.DeepEqual(r, []string{"* -> outbound|80||first.example.net"}) {
		t.Errorf("routes = %q", r)
	}
	if !hasWarning(warnings, "spec.hosts[0]", "already routed by VirtualService default/wildcard") {
		t.Errorf("no conflict warning:\n%s", strings.Join(warnings, "\n"))
	}
}
