package istio

import (
	"reflect"
	"strings"
	"testing"
)

// meshVS is a Service svc (ports) plus a mesh VirtualService for it with
// the given http routes.
func meshVS(ports, http string) string {
	return `
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec:
  ports: ` + ports + `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: [svc]
  http:
` + http
}

// TestRouteTruncation checks that routes stop after the first one that
// matches every request (for the listener port), as Istio does.
func TestRouteTruncation(t *testing.T) {
	const host = "svc.default.svc.cluster.local"
	for _, tc := range []struct {
		name   string
		http   string
		vhost  string
		want   []string
		warned string // a warning that must be given ("" for none about reachability)
	}{
		{
			name: "no match ends the list",
			http: `
  - route: [{destination: {host: a.example.com}}]
  - match: [{uri: {prefix: /x}}]
    route: [{destination: {host: b.example.com}}]`,
			want: []string{"* -> outbound|80||a.example.com"},
		},
		{
			name: "prefix / ends the list",
			http: `
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com}}]`,
			want:   []string{"* -> outbound|80||a.example.com"},
			warned: "spec.http[1]: unreachable on port 80",
		},
		{
			name: "regex .* ends the list",
			http: `
  - match: [{uri: {regex: ".*"}}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com}}]`,
			want:   []string{"* -> outbound|80||a.example.com"},
			warned: "spec.http[1]: unreachable",
		},
		{
			name: "prefix / with a header is not a catch-all",
			http: `
  - match: [{uri: {prefix: /}, headers: {x-a: {exact: "1"}}}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com}}]`,
			want: []string{"prefix / -> outbound|80||a.example.com", "* -> outbound|80||b.example.com"},
		},
		{
			name: "prefix / with a method is not a catch-all",
			http: `
  - match: [{uri: {prefix: /}, method: {exact: GET}}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com}}]`,
			want: []string{"prefix / -> outbound|80||a.example.com", "* -> outbound|80||b.example.com"},
		},
		{
			name: "a catch-all alternative makes the route a catch-all",
			http: `
  - match: [{uri: {prefix: /a}}, {uri: {prefix: /}}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com}}]`,
			want: []string{"* -> outbound|80||a.example.com"},
		},
		{
			name: "match.port of another port drops the alternative",
			http: `
  - match: [{port: 8080}]
    route: [{destination: {host: a.example.com}}]
  - match: [{uri: {exact: /x}, port: 80}]
    route: [{destination: {host: b.example.com}}]
  - route: [{destination: {host: c.example.com}}]`,
			want: []string{"exact /x -> outbound|80||b.example.com", "* -> outbound|80||c.example.com"},
		},
		{
			name: "match.port of the listener port alone is a catch-all",
			http: `
  - match: [{port: 80}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com}}]`,
			want:   []string{"* -> outbound|80||a.example.com"},
			warned: "spec.http[1]: unreachable on port 80",
		},
		{
			name: "match.gateways of a gateway drops the alternative on the mesh",
			http: `
  - match: [{gateways: [default/gw]}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com}}]`,
			want: []string{"* -> outbound|80||b.example.com"},
		},
		{
			name: "sourceLabels drops the alternative on the default listener (no labels)",
			http: `
  - match: [{sourceLabels: {app: x}}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com}}]`,
			want: []string{"* -> outbound|80||b.example.com"},
		},
		{
			name: "sourceNamespace default is the default listener's namespace",
			http: `
  - match: [{sourceNamespace: default}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com}}]`,
			want:   []string{"* -> outbound|80||a.example.com"},
			warned: "spec.http[1]: unreachable on port 80",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, warnings := adaptInline(t, meshVS(`[{name: http, port: 80}]`, tc.http))
			vh := a.vhost("mesh", host+":80")
			if vh == nil {
				t.Fatalf("no virtual host; got %v", vhostSummary(a.servers["mesh"]))
			}
			if got := routeSummary(vh.Routes); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("routes:\n got %q\nwant %q", got, tc.want)
			}
			if tc.warned != "" && !hasWarning(warnings, tc.warned) {
				t.Errorf("missing warning %q in:\n%s", tc.warned, strings.Join(warnings, "\n"))
			}
		})
	}
}

// TestDestinationPort checks the destination port rule: explicit, else the
// service's only port, else the listener port.
func TestDestinationPort(t *testing.T) {
	a, warnings := adaptInline(t, `
apiVersion: v1
kind: Service
metadata: {name: one, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: two, namespace: default}
spec:
  ports: [{name: http, port: 80}, {name: http-alt, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: two, namespace: default}
spec:
  hosts: [two]
  http:
  - match: [{uri: {prefix: /one}}]
    route: [{destination: {host: one}}]
  - match: [{uri: {prefix: /explicit}}]
    route: [{destination: {host: two, port: {number: 80}}}]
  - route: [{destination: {host: two}}]
`)
	for _, tc := range []struct {
		vhost string
		want  []string
	}{
		{"two.default.svc.cluster.local:80", []string{
			"prefix /one -> outbound|9080||one.default.svc.cluster.local",
			"prefix /explicit -> outbound|80||two.default.svc.cluster.local",
			"* -> outbound|80||two.default.svc.cluster.local",
		}},
		{"two.default.svc.cluster.local:8080", []string{
			"prefix /one -> outbound|9080||one.default.svc.cluster.local",
			"prefix /explicit -> outbound|80||two.default.svc.cluster.local",
			"* -> outbound|8080||two.default.svc.cluster.local",
		}},
	} {
		vh := a.vhost("mesh", tc.vhost)
		if vh == nil {
			t.Fatalf("no virtual host %s: %v", tc.vhost, vhostSummary(a.servers["mesh"]))
		}
		if got := routeSummary(vh.Routes); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.vhost, got, tc.want)
		}
	}
	if len(warnings) != 0 {
		t.Errorf("unexpected warnings:\n%s", strings.Join(warnings, "\n"))
	}
}

// TestUnknownDestinations checks that destinations without a cluster keep
// their cluster name (the runtime answers 503) and are warned about.
func TestUnknownDestinations(t *testing.T) {
	a, warnings := adaptInline(t, meshVS(`[{name: http, port: 80}]`, `
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: nowhere.example.com}}]
  - match: [{uri: {prefix: /b}}]
    route: [{destination: {host: svc, subset: v9}}]
  - route: [{destination: {host: svc, port: {number: 81}}}]`))
	got := routeSummary(a.vhost("mesh", "svc.default.svc.cluster.local:80").Routes)
	want := []string{
		"prefix /a -> outbound|80||nowhere.example.com",
		"prefix /b -> outbound|80|v9|svc.default.svc.cluster.local",
		"* -> outbound|81||svc.default.svc.cluster.local",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("routes:\n got %q\nwant %q", got, want)
	}
	for _, w := range []string{
		"destination host nowhere.example.com is not a known service (no ServiceEntry or Service): requests to it get 503",
		`no DestinationRule defines subset "v9"`,
		"has no port 81",
	} {
		if !hasWarning(warnings, w) {
			t.Errorf("missing warning %q in:\n%s", w, strings.Join(warnings, "\n"))
		}
	}
	for _, c := range a.app.Clusters {
		if strings.Contains(c.Name, "nowhere") || strings.Contains(c.Name, "|v9|") || strings.HasPrefix(c.Name, "outbound|81|") {
			t.Errorf("cluster %s should not exist", c.Name)
		}
	}
}
