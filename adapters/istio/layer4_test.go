package istio

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// layer4Summary adapts input and renders the layer4 app as, per server,
// its listen address then one line per route: "MATCH -> DIAL/WEIGHT ...",
// MATCH being the SNI ("~regexp" for sni_regexp, "tls" for any TLS, "*"
// for none); and the warnings as "field: message".
func layer4Summary(t *testing.T, input string) (map[string][]string, []string) {
	t.Helper()
	out, warnings, err := Adapter{}.Adapt([]byte(strings.TrimSpace(input)+"\n"), nil)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	var raw struct {
		Apps struct {
			Layer4 struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
					Routes []struct {
						Match []map[string]struct {
							SNI       []string `json:"sni"`
							SNIRegexp *struct {
								Pattern string `json:"pattern"`
							} `json:"sni_regexp"`
						} `json:"match"`
						Handle []struct {
							Handler       string `json:"handler"`
							LoadBalancing struct {
								Selection struct {
									Policy string `json:"policy"`
								} `json:"selection"`
							} `json:"load_balancing"`
							Upstreams []struct {
								Dial   []string `json:"dial"`
								Weight int      `json:"weight"`
							} `json:"upstreams"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"layer4"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("decoding output: %v\n%s", err, out)
	}
	servers := make(map[string][]string)
	for name, s := range raw.Apps.Layer4.Servers {
		lines := []string{strings.Join(s.Listen, ",")}
		for _, r := range s.Routes {
			match := "*"
			for _, m := range r.Match {
				tls := m["tls"]
				switch {
				case len(tls.SNI) > 0:
					match = strings.Join(tls.SNI, ",")
				case tls.SNIRegexp != nil:
					match = "~" + tls.SNIRegexp.Pattern
				default:
					match = "tls"
				}
			}
			if len(r.Handle) != 1 || r.Handle[0].Handler != "proxy" {
				t.Fatalf("server %s: want one proxy handler per route: %s", name, out)
			}
			h := r.Handle[0]
			var ups []string
			for _, u := range h.Upstreams {
				up := strings.Join(u.Dial, "+")
				if u.Weight != 0 {
					up += fmt.Sprintf("/%d", u.Weight)
				}
				ups = append(ups, up)
			}
			lines = append(lines, fmt.Sprintf("%s -> %s %s", match, h.LoadBalancing.Selection.Policy, strings.Join(ups, " ")))
		}
		servers[name] = lines
	}
	var ws []string
	resource := regexp.MustCompile(`^[A-Za-z]+ [^ /]*/[^ :]*: `)
	for _, w := range warnings {
		ws = append(ws, w.Directive+": "+resource.ReplaceAllString(w.Message, ""))
	}
	return servers, ws
}

// layer4Registry is a registry for the layer4 tests: echo (port 9000,
// two v1 endpoints and one v2), and the TLS services a and b.
const layer4Registry = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo}
spec:
  hosts: [echo.internal]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v1}, ports: {tcp: 9001}}
  - {address: 10.0.0.3, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo.internal
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tls}
spec:
  hosts: [a.internal, b.internal]
  ports: [{number: 443, name: tls, protocol: TLS}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 10.0.1.1}
`

func TestLayer4Routes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		input    string
		servers  map[string][]string
		warnings []string // each must be among the warnings
	}{
		{
			name: "sni chains: most specific first; a match with a name already routed is skipped whole",
			input: `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: first}
spec:
  hosts: ["*"]
  gateways: [gw]
  tls:
  - match:
    - sniHosts: ["*", "*.example.com", "*.a.example.com", x.example.com]
    route:
    - destination: {host: a.internal}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: second}
spec:
  hosts: ["*.example.com"]
  gateways: [gw]
  tls:
  - match:
    - sniHosts: [x.example.com, y.example.com]
    route:
    - destination: {host: b.internal}
`,
			servers: map[string][]string{"gateway-443": {
				":443",
				"x.example.com -> least_conn 10.0.1.1:443",
				`~(?i)^.+\.a\.example\.com$ -> least_conn 10.0.1.1:443`,
				`~(?i)^.+\.example\.com$ -> least_conn 10.0.1.1:443`,
				"tls -> least_conn 10.0.1.1:443",
			}},
			warnings: []string{"spec.tls[0].match[0].sniHosts: x.example.com is already routed on port 443: this match is skipped, as Istio does"},
		},
		{
			name: "tcp: first route that applies; weights shared among endpoints",
			input: `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: ["*"]
  gateways: [gw]
  tcp:
  - match: [{port: 31401}]
    route: [{destination: {host: echo.internal, subset: v2}}]
  - match: [{gateways: [other]}]
    route: [{destination: {host: echo.internal, subset: v2}}]
  - route:
    - {destination: {host: echo.internal, subset: v1}, weight: 75}
    - {destination: {host: echo.internal, subset: v2}, weight: 25}
    - {destination: {host: echo.internal}, weight: 0}
`,
			servers: map[string][]string{"gateway-31400": {
				":31400",
				"* -> weighted_round_robin 10.0.0.1:9000/75 10.0.0.2:9001/75 10.0.0.3:9000/50",
			}},
			warnings: []string{
				"spec.tcp[0]: not served: no TCP Gateway server or Sidecar TCP egress listener this route applies to",
				"spec.tcp[1]: not served",
			},
		},
		{
			name: "auto passthrough: clusters of the mesh-internal services the server hosts cover",
			input: `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [external.internal]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.internal"]
    tls: {mode: AUTO_PASSTHROUGH}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{name: http, port: 80}]
`,
			servers: map[string][]string{"gateway-15443": {
				":15443",
				"outbound_.9000_._.echo.internal -> least_conn 10.0.0.1:9000 10.0.0.2:9001 10.0.0.3:9000",
				"outbound_.9000_.v1_.echo.internal -> least_conn 10.0.0.1:9000 10.0.0.2:9001",
				"outbound_.9000_.v2_.echo.internal -> least_conn 10.0.0.3:9000",
				"outbound_.443_._.a.internal -> least_conn 10.0.1.1:443",
				"outbound_.443_._.b.internal -> least_conn 10.0.1.1:443",
			}},
		},
		{
			name: "sidecar: HTTPS passed through by service hostname, TCP to the only service of the port",
			input: `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*/a.internal"]
  - port: {number: 9000, name: tcp, protocol: TCP}
    bind: 127.0.0.2
    hosts: ["*/*"]
`,
			servers: map[string][]string{
				"mesh-127.0.0.1-443":  {"tcp/127.0.0.1:443", "a.internal -> least_conn 10.0.1.1:443"},
				"mesh-127.0.0.2-9000": {"tcp/127.0.0.2:9000", "* -> least_conn 10.0.0.1:9000 10.0.0.2:9001 10.0.0.3:9000"},
			},
		},
		{
			name: "a TLS port already used by a TCP server, HTTP beside TCP, HTTPS beside TLS passthrough",
			input: `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 9000, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8080, name: mongo, protocol: MONGO}
    hosts: ["*"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [secure.example.com]
    tls: {mode: SIMPLE, serverCertificate: /etc/c.pem, privateKey: /etc/c.key}
  - port: {number: 443, name: tls-a, protocol: TLS}
    hosts: [a.example.com]
    tls: {mode: PASSTHROUGH}
`,
			servers: map[string][]string{},
			warnings: []string{
				"spec.servers[1].port.protocol: not served: this port is already a TCP listener",
				"spec.servers[3].port.number: not served: the http server gateway-8080 listens on :8080 (HTTP and TCP on one port is not implemented yet)",
				"spec.servers[0].port.number: no route: every connection to :9000 is closed",
				"spec.servers[5].port.number: not served: the http server gateway-443 listens on :443 (HTTP and TLS passthrough on one port is not implemented yet)",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers, warnings := layer4Summary(t, layer4Registry+"---\n"+strings.TrimSpace(tc.input))
			for name := range servers {
				if _, ok := tc.servers[name]; !ok && len(tc.servers) > 0 {
					t.Errorf("unexpected server %s: %q", name, servers[name])
				}
			}
			for name, want := range tc.servers {
				if got := servers[name]; !reflect.DeepEqual(got, want) {
					t.Errorf("server %s:\ngot  %q\nwant %q", name, got, want)
				}
			}
			for _, w := range tc.warnings {
				found := false
				for _, g := range warnings {
					if strings.HasPrefix(g, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing warning %q in:\n%s", w, strings.Join(warnings, "\n"))
				}
			}
		})
	}
}
