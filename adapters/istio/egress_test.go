package istio

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// egressEntries are a ServiceEntry (registry host) and a VirtualService
// for a host that is no service, the inputs of the egress tests.
const egressEntries = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api
spec:
  hosts: [api.example.test]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints:
  - address: 127.0.0.5
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: legacy
spec:
  hosts: [legacy.example.test]
  http:
  - route:
    - destination: {host: api.example.test}
`

func TestEgressPolicy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sidecar  string // Sidecar spec lines, "" for no Sidecar
		server   string
		mode     string // "" is ALLOW_ANY, the handler's default
		warnings []string
	}{
		{name: "no Sidecar: ALLOW_ANY", server: "mesh"},
		{
			name:    "Sidecar without outboundTrafficPolicy: ALLOW_ANY",
			sidecar: "  egress:\n  - hosts: [\"*/*\"]\n",
			server:  "mesh",
		},
		{
			name:    "REGISTRY_ONLY",
			sidecar: "  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n",
			server:  "mesh", mode: "REGISTRY_ONLY",
		},
		{
			name:    "explicit ALLOW_ANY",
			sidecar: "  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n",
			server:  "mesh",
		},
		{
			name:    "empty outboundTrafficPolicy is REGISTRY_ONLY",
			sidecar: "  outboundTrafficPolicy: {}\n",
			server:  "mesh", mode: "REGISTRY_ONLY",
		},
		{
			name:    "port listener",
			sidecar: "  egress:\n  - port: {number: 8080, protocol: HTTP, name: http}\n    bind: 127.0.0.9\n    hosts: [\"*/*\"]\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
			server:  "mesh-127.0.0.9-8080", mode: "REGISTRY_ONLY",
		},
		{
			name:     "open proxy on a non-loopback bind",
			sidecar:  "  egress:\n  - port: {number: 8080, protocol: HTTP, name: http}\n    bind: 0.0.0.0\n    hosts: [\"*/*\"]\n",
			server:   "mesh-0.0.0.0-8080",
			warnings: []string{"spec.egress[0].bind: the mesh listener 0.0.0.0:8080 is reachable from other hosts and its egress proxy (istio_egress) requires no authentication: an open proxy for everyone who can reach it; bind it to a loopback address, or add auth or client_identities to the istio_egress handler"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := egressEntries
			if tc.sidecar != "" {
				input += "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: default\nspec:\n" + tc.sidecar
			}
			a, warnings := adaptInline(t, input)
			srv, ok := a.servers[tc.server]
			if !ok {
				t.Fatalf("no server %s: %v", tc.server, a.servers)
			}
			if srv.egress == nil {
				t.Fatalf("server %s has no istio_egress handler", tc.server)
			}
			if srv.egress.Mode != tc.mode {
				t.Errorf("mode %q, want %q", srv.egress.Mode, tc.mode)
			}
			// The VirtualService host that is no service is a route host;
			// the registry host is not (the handler checks its ports).
			for _, h := range srv.egress.RouteHosts {
				if !strings.HasPrefix(h, "legacy.example.test") {
					t.Errorf("route_hosts %q: want only legacy.example.test (with its port on a port listener)", srv.egress.RouteHosts)
				}
			}
			if !slices.Contains(srv.egress.RouteHosts, "legacy.example.test") {
				t.Errorf("route_hosts %q lack legacy.example.test", srv.egress.RouteHosts)
			}
			if !slices.Equal(warnings, tc.warnings) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(tc.warnings, "\n"))
			}
		})
	}
}

// TestEgressSidecarsDisagree: two Sidecars on one listener with different
// modes get REGISTRY_ONLY, with a warning on each.
func TestEgressSidecarsDisagree(t *testing.T) {
	a, warnings := adaptInline(t, egressEntries+`---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: strict, namespace: a}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: open, namespace: b}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}
`)
	if got := a.servers["mesh"].egress; got == nil || got.Mode != "REGISTRY_ONLY" {
		t.Fatalf("egress %+v, want REGISTRY_ONLY", got)
	}
	n := 0
	for _, w := range warnings {
		if strings.Contains(w, "disagree on the mode") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("want 2 disagreement warnings, got %q", warnings)
	}
}

// TestEgressRouteHostsNeverAll: route_hosts never has "*", which would
// bypass the policy; short names of mesh services are route hosts; their
// full registry names are not, except with port 80 for a single-port
// service that answers a Host without port (the handler reads such a Host
// as port 80).
func TestEgressRouteHostsNeverAll(t *testing.T) {
	a, _ := adaptInline(t, `
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{port: 9080, name: http}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild}
spec:
  hosts: ["*.wild.test"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sub}
spec:
  hosts: [a.wild.test]
  http:
  - route:
    - destination: {host: reviews}
`)
	got := a.servers["mesh"].egress.RouteHosts
	for _, h := range got {
		if h == "*" || strings.HasPrefix(h, "reviews.default.svc.cluster.local") && h != "reviews.default.svc.cluster.local:80" || strings.Contains(h, "wild.test") {
			t.Errorf("route_hosts has %q: %q", h, got)
		}
	}
	for _, want := range []string{"reviews", "reviews:9080", "reviews.default.svc.cluster.local:80"} {
		if !slices.Contains(got, want) {
			t.Errorf("route_hosts %q lack %s", got, want)
		}
	}
}

// TestDestinationRuleCredentialName: credentialName takes the client
// certificate, key and CA from the credentials directory
// (DIR/NAMESPACE/NAME/tls.crt, tls.key, ca.crt); a missing one is warned
// about.
func TestDestinationRuleCredentialName(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "credentials", "default", "client-credential")
	if err := os.MkdirAll(secret, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(secret, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	input := egressEntries + `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.example.test
  trafficPolicy:
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: MUTUAL, credentialName: client-credential, sni: api.example.test}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: missing, namespace: other}
spec:
  host: nowhere.example.test
  trafficPolicy:
    tls: {mode: SIMPLE, credentialName: nope}
`
	out, warnings, err := Adapter{}.Adapt([]byte(input), map[string]any{"filename": filepath.Join(dir, "mesh.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{
		`"client_certificate_file":"` + filepath.Join(secret, "tls.crt") + `"`,
		`"client_certificate_key_file":"` + filepath.Join(secret, "tls.key") + `"`,
		`"pem_files":["` + filepath.Join(secret, "ca.crt") + `"]`,
		`"server_name":"api.example.test"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %s:\n%s", want, s)
		}
	}
	var msgs []string
	for _, w := range warnings {
		msgs = append(msgs, w.Directive+": "+w.Message)
	}
	all := strings.Join(msgs, "\n")
	if strings.Contains(all, "client-credential") {
		t.Errorf("unexpected warning about the credential that exists:\n%s", all)
	}
	if !strings.Contains(all, `spec.trafficPolicy.tls.credentialName: DestinationRule other/missing: credential "nope" not found (looked in `+filepath.Join(dir, "credentials", "other", "nope")) {
		t.Errorf("no warning about the missing credential:\n%s", all)
	}
}

// TestEgressOpenDefaultListener: the default mesh listener on an address
// other hosts reach is warned about, without a resource to name (the
// address is an adapter option).
func TestEgressOpenDefaultListener(t *testing.T) {
	objs, _, err := DecodeAndValidate("mesh.yaml", []byte(egressEntries), "")
	if err != nil {
		t.Fatal(err)
	}
	_, problems := Translate(objs, Options{MeshListen: "0.0.0.0:15001"})
	found := false
	for _, p := range problems {
		if strings.Contains(p.Message, "the mesh listener 0.0.0.0:15001 is reachable from other hosts") && strings.Contains(p.Message, "an adapter option") {
			found = true
		}
	}
	if !found {
		t.Errorf("no open proxy warning: %v", problems)
	}
	_, problems = Translate(objs, Options{MeshListen: "127.0.0.1:15001"})
	for _, p := range problems {
		if strings.Contains(p.Message, "open proxy") {
			t.Errorf("unexpected warning on loopback: %v", p)
		}
	}
}

// TestEgressProxy: under ALLOW_ANY, outboundTrafficPolicy.egressProxy sends
// plain HTTP for hosts without a virtual host to the egress proxy's
// cluster: every host is a route host, and a catch-all virtual host comes
// last. CONNECT is not covered (warned).
func TestEgressProxy(t *testing.T) {
	a, warnings := adaptInline(t, egressEntries+`---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: api.example.test
      port: {number: 80}
`)
	srv := a.servers["mesh"]
	if srv.egress == nil || srv.egress.Mode != "" || !slices.Equal(srv.egress.RouteHosts, []string{"*"}) {
		t.Fatalf("egress %+v, want ALLOW_ANY with route_hosts [*]", srv.egress)
	}
	last := srv.vhosts[len(srv.vhosts)-1]
	if !slices.Equal(last.Domains, []string{"*"}) || len(last.Routes) != 1 || len(last.Routes[0].Route) != 1 ||
		last.Routes[0].Route[0].Cluster != "outbound|80||api.example.test" || last.Routes[0].Retries != nil {
		t.Errorf("last virtual host %+v, want * to outbound|80||api.example.test without retries", last)
	}
	want := []string{"spec.outboundTrafficPolicy.egressProxy: applies to plain HTTP requests only: CONNECT tunnels to hosts outside the registry still go directly to the host the application asked for"}
	if !slices.Equal(warnings, want) {
		t.Errorf("warnings %q, want %q", warnings, want)
	}
}
