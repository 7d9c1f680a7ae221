package istioegress

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// fakeResolver answers from a map; any other name is unknown, so tests
// never ask real DNS.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ips, ok := f[host]
	if !ok {
		return nil, fmt.Errorf("lookup %s: no such host (test resolver)", host)
	}
	var out []netip.Addr
	for _, ip := range ips {
		out = append(out, netip.MustParseAddr(ip))
	}
	return out, nil
}

func TestParseIPLiteral(t *testing.T) {
	for _, tc := range []struct {
		host string
		want string // "" for not a literal
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0X7F000001", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"0177.0.0.01", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"169.254.169.254", "169.254.169.254"},
		{"2852039166", "169.254.169.254"},
		{"0xa9fea9fe", "169.254.169.254"},
		{"::1", "::1"},
		{"[::1]", "::1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"[::ffff:7f00:1]", "127.0.0.1"},
		{"fe80::1%eth0", "fe80::1"},
		{"0", "0.0.0.0"},
		{"api.example.com", ""},
		{"1.2.3.4.5", ""},
		{"256.0.0.1", ""},
		{"08.0.0.1", ""}, // 8 is not an octal digit
		{"4294967296", ""},
		{"1.2.65536", ""},
		{"", ""},
	} {
		ip, ok := parseIPLiteral(tc.host)
		got := ""
		if ok {
			got = ip.String()
		}
		if got != tc.want {
			t.Errorf("parseIPLiteral(%q) = %q, want %q", tc.host, got, tc.want)
		}
	}
}

func TestPrivateReason(t *testing.T) {
	for _, tc := range []struct {
		ip, want string
	}{
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"169.254.169.254", "link-local"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"100.64.0.1", "shared (CGNAT)"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:169.254.169.254", "link-local"},
		{"::127.0.0.1", "IPv4-compatible"},
		{"fe80::1", "link-local"},
		{"fd00::1", "private"},
		{"64:ff9b::7f00:1", "NAT64"},
		{"224.0.0.1", "multicast"},
		{"8.8.8.8", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"2001:db8::1", ""},
	} {
		if got := privateReason(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("privateReason(%s) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

func TestParseHostPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		host    string
		port    uint32
		want    bool
	}{
		{"api.example.com", "api.example.com", 443, true},
		{"API.example.com.", "api.example.com", 443, true},
		{"api.example.com:443", "api.example.com", 443, true},
		{"api.example.com:443", "api.example.com", 80, false},
		{"api.example.com:*", "api.example.com", 80, true},
		{"*.example.com", "api.example.com", 443, true},
		{"*.example.com", "a.b.example.com", 443, true},
		{"*.example.com", "example.com", 443, false},
		{"*.example.com:443", "api.example.com", 80, false},
		{"*", "anything", 1, true},
		{"*:443", "anything", 443, true},
		{"*:443", "anything", 80, false},
		{"127.0.0.1", "127.0.0.1", 80, true},
		{"127.0.0.1", "2130706433", 80, true}, // the same IP, another form
		{"127.0.0.0/8:80", "127.0.0.5", 80, true},
		{"127.0.0.0/8:80", "127.0.0.5", 81, false},
		{"[::1]:443", "::1", 443, true},
		{"[fd00::/8]", "fd12::1", 1, true},
		{"::1", "::1", 443, true},
		{"10.0.0.0/8", "api.example.com", 80, false}, // names are not IPs
	} {
		p, err := parseHostPattern(tc.pattern)
		if err != nil {
			t.Errorf("parseHostPattern(%q): %v", tc.pattern, err)
			continue
		}
		d := &destination{host: tc.host, port: tc.port}
		d.literal, _ = parseIPLiteral(tc.host)
		if got := p.matchesHost(d); got != tc.want {
			t.Errorf("%q matches %s = %v, want %v", tc.pattern, d, got, tc.want)
		}
	}
	for _, bad := range []string{"", "api.example.com:", "api.example.com:0", "api.example.com:99999",
		"api.*.com", "*example.com", "*.", "[::1", "[::1]x", "a/b", ":80"} {
		if _, err := parseHostPattern(bad); err == nil {
			t.Errorf("parseHostPattern(%q): no error", bad)
		}
	}
}

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		authority string
		port      uint32
		want      string
		wantErr   bool
	}{
		{"api.example.com:443", 0, "api.example.com:443", false},
		{"API.Example.com.:443", 0, "api.example.com:443", false},
		{"api.example.com", 80, "api.example.com:80", false},
		{"[::1]:8080", 0, "[::1]:8080", false},
		{"api.example.com", 0, "", true},
		{"api.example.com:x", 0, "", true},
		{"::1:80", 0, "", true},
		{"", 80, "", true},
		{"user@host:80", 0, "", true},
	} {
		d, err := parseDestination(tc.authority, tc.port)
		if tc.wantErr {
			if err == nil {
				t.Errorf("parseDestination(%q): got %s, want an error", tc.authority, d)
			}
			continue
		}
		if err != nil || d.String() != tc.want {
			t.Errorf("parseDestination(%q) = %v, %v; want %s", tc.authority, d, err, tc.want)
		}
	}
}

// registryJSON is an istio app with ServiceEntries of each kind.
const registryJSON = `{
	"services": [
		{"hostname": "api.example.test", "resolution": "STATIC",
		 "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}, {"number": 80, "name": "http", "protocol": "HTTP"}],
		 "endpoints": [{"address": "127.0.0.10"}, {"address": "127.0.0.11", "ports": {"tls": 8443}}]},
		{"hostname": "*.wild.test", "resolution": "NONE",
		 "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]},
		{"hostname": "internal.test", "resolution": "NONE",
		 "ports": [{"number": 5432, "name": "tcp", "protocol": "TCP"}]},
		{"hostname": "dns.test", "resolution": "DNS",
		 "ports": [{"number": 443, "name": "tls", "protocol": "TLS", "target_port": 8443}]},
		{"hostname": "empty.test", "resolution": "STATIC",
		 "ports": [{"number": 443, "name": "tls"}]},
		{"hostname": "vip.test", "resolution": "NONE", "addresses": ["10.9.0.0/16"],
		 "ports": [{"number": 9000, "name": "tcp", "protocol": "TCP"}]},
		{"hostname": "reviews.default.svc.cluster.local", "resolution": "STATIC",
		 "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
		 "endpoints": [{"address": "127.0.0.20"}]}
	]
}`

// testResolver maps the names the policy tests use.
var testResolver = fakeResolver{
	"public.test":      {"93.184.216.34"},
	"a.wild.test":      {"93.184.216.35"},
	"evil.wild.test":   {"169.254.169.254"},
	"rebind.test":      {"127.0.0.1"},
	"mixed.test":       {"127.0.0.1", "93.184.216.36"},
	"internal.test":    {"10.1.2.3"},
	"allowed.internal": {"10.1.2.4"},
}

// newTestHandler provisions a handler from its JSON, with the istio app of
// appJSON (none if empty) and the test resolver.
func newTestHandler(t testing.TB, appJSON, handlerJSON string) *Handler {
	t.Helper()
	cfg := &caddy.Config{AppsRaw: caddy.ModuleMap{}}
	if appJSON != "" {
		cfg.AppsRaw["istio"] = json.RawMessage(appJSON)
	}
	ctx, err := caddy.ProvisionContext(cfg)
	if err != nil {
		t.Fatalf("provisioning context: %v", err)
	}
	if appJSON != "" {
		app, err := ctx.App("istio")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = app.(*istioapp.App).Cleanup() })
	}
	hctx, cancel := caddy.NewContext(ctx)
	t.Cleanup(cancel)
	h := new(Handler)
	if err := json.Unmarshal([]byte(handlerJSON), h); err != nil {
		t.Fatal(err)
	}
	h.resolver = testResolver
	if err := h.Provision(hctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
}

func TestDecide(t *testing.T) {
	allowAny := newTestHandler(t, registryJSON, `{"deny": ["blocked.test"], "allow": ["allowed.internal:5432"]}`)
	registryOnly := newTestHandler(t, registryJSON, `{"mode": "REGISTRY_ONLY", "allow": ["*.allowed.test:443", "127.0.0.0/8:9999", "allowed.internal"], "deny": ["no.wild.test"]}`)
	for _, tc := range []struct {
		name      string
		h         *Handler
		authority string
		want      string // dials joined by space, or "refused: <reason substring>"
	}{
		// registry: ServiceEntry endpoints decide where the host goes
		{"static endpoints", registryOnly, "api.example.test:443", "127.0.0.10:443 127.0.0.11:8443"},
		{"static endpoints http port", registryOnly, "api.example.test:80", "127.0.0.10:80 127.0.0.11:80"},
		{"undeclared port", registryOnly, "api.example.test:8080", "refused: port 8080 is not declared by service api.example.test"},
		{"case and trailing dot", registryOnly, "API.example.TEST.:443", "127.0.0.10:443 127.0.0.11:8443"},
		{"wildcard entry", registryOnly, "a.wild.test:443", "93.184.216.35:443"},
		{"wildcard entry resolving to metadata", registryOnly, "evil.wild.test:443", "refused: link-local"},
		{"wildcard entry bare domain", registryOnly, "wild.test:443", "refused: not in the registry"},
		{"deny beats registry", registryOnly, "no.wild.test:443", "refused: is denied"},
		{"resolution NONE named host may be private", registryOnly, "internal.test:5432", "10.1.2.3:5432"},
		{"DNS without endpoints dials the hostname", registryOnly, "dns.test:443", "dns.test:8443"},
		{"STATIC without endpoints", registryOnly, "empty.test:443", "refused: no endpoints"},
		{"address of a service", registryOnly, "10.9.1.1:9000", "10.9.1.1:9000"},
		{"kubernetes service", registryOnly, "reviews.default.svc.cluster.local:9080", "127.0.0.20:9080"},
		// allow list
		{"allow wildcard", registryOnly, "x.allowed.test:443", "refused: cannot resolve"},
		{"allow cidr names loopback", registryOnly, "127.0.0.1:9999", "127.0.0.1:9999"},
		{"allow cidr decimal form", registryOnly, "2130706433:9999", "127.0.0.1:9999"},
		{"allow cidr other port", registryOnly, "127.0.0.1:9998", "refused: not in the registry"},
		{"allow exact name lifts private check", registryOnly, "allowed.internal:22", "10.1.2.4:22"},
		{"unknown host", registryOnly, "public.test:443", "refused: not in the registry"},
		// ALLOW_ANY: anything public
		{"allow any public", allowAny, "public.test:443", "93.184.216.34:443"},
		{"allow any unknown name", allowAny, "nowhere.test:443", "refused: cannot resolve"},
		{"allow any denied", allowAny, "blocked.test:443", "refused: is denied"},
		{"allow any loopback", allowAny, "127.0.0.1:80", "refused: loopback"},
		{"allow any decimal loopback", allowAny, "2130706433:80", "refused: loopback"},
		{"allow any hex loopback", allowAny, "0x7f000001:80", "refused: loopback"},
		{"allow any octal loopback", allowAny, "0177.0.0.1:80", "refused: loopback"},
		{"allow any mapped loopback", allowAny, "[::ffff:127.0.0.1]:80", "refused: loopback"},
		{"allow any v6 loopback", allowAny, "[::1]:80", "refused: loopback"},
		{"allow any metadata", allowAny, "169.254.169.254:80", "refused: link-local"},
		{"allow any link-local v6", allowAny, "[fe80::1]:80", "refused: link-local"},
		{"allow any private", allowAny, "192.168.0.1:80", "refused: private"},
		{"allow any cgnat", allowAny, "100.64.0.1:80", "refused: CGNAT"},
		{"allow any unspecified", allowAny, "0.0.0.0:80", "refused: unspecified"},
		{"allow any unique local", allowAny, "[fd00::1]:80", "refused: private"},
		{"allow any rebinding name", allowAny, "rebind.test:80", "refused: loopback"},
		{"allow any mixed answer keeps the public IP", allowAny, "mixed.test:80", "93.184.216.36:80"},
		{"allow any private name allowed by exact entry", allowAny, "allowed.internal:5432", "10.1.2.4:5432"},
		{"allow any private name other port", allowAny, "allowed.internal:22", "refused: private"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := parseDestination(tc.authority, 0)
			if err != nil {
				t.Fatal(err)
			}
			dec := tc.h.decide(context.Background(), d)
			got := strings.Join(dec.dials, " ")
			if dec.refused {
				got = "refused: " + dec.reason
			}
			if want, isRefusal := strings.CutPrefix(tc.want, "refused: "); isRefusal {
				if !dec.refused || !strings.Contains(dec.reason, want) {
					t.Fatalf("got %q, want a refusal containing %q", got, want)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestIsMeshHost(t *testing.T) {
	h := newTestHandler(t, registryJSON, `{"route_hosts": ["reviews", "*.mesh.test:8080"]}`)
	for _, tc := range []struct {
		authority string
		want      bool
	}{
		{"reviews.default.svc.cluster.local:9080", true},
		{"reviews.default.svc.cluster.local:80", false},
		{"reviews:80", true},
		{"a.mesh.test:8080", true},
		{"a.mesh.test:80", false},
		{"api.example.test:80", true},
		{"api.example.test:8080", false},
		{"public.test:80", false},
	} {
		d, _ := parseDestination(tc.authority, 0)
		if got := h.isMeshHost(d); got != tc.want {
			t.Errorf("isMeshHost(%s) = %v, want %v", tc.authority, got, tc.want)
		}
	}
}

func TestProvisionErrors(t *testing.T) {
	for _, tc := range []struct {
		json, want string
	}{
		{`{"allow": ["a.*.com"]}`, "allow[0]"},
		{`{"deny": [""]}`, "deny[0]: empty host pattern"},
		{`{"route_hosts": ["x:0"]}`, "route_hosts[0]"},
		{`{"auth": [{"username": "u", "password": "plain"}]}`, "auth[0]"},
		{`{"auth": [{"username": "u", "password": "$2a$04$x"}, {"username": "u", "password": "$2a$04$y"}]}`, "more than once"},
	} {
		h := new(Handler)
		if err := json.Unmarshal([]byte(tc.json), h); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.json, err, tc.want)
		}
	}
	h := &Handler{Config: Config{Mode: "DENY_ALL"}}
	if err := h.Validate(); err == nil {
		t.Error("mode DENY_ALL: no error")
	}
}

func TestLookupServiceWildcardPrecedence(t *testing.T) {
	h := newTestHandler(t, `{"services": [
		{"hostname": "*.example.test", "ports": [{"number": 443}]},
		{"hostname": "*.api.example.test", "ports": [{"number": 8443}]},
		{"hostname": "exact.api.example.test", "ports": [{"number": 9443}]}]}`, `{}`)
	for _, tc := range []struct {
		host, want string
	}{
		{"x.example.test", "*.example.test"},
		{"x.api.example.test", "*.api.example.test"},
		{"exact.api.example.test", "exact.api.example.test"},
		{"example.test", ""},
	} {
		svc, _, _ := h.app.LookupService(tc.host, 1)
		got := ""
		if svc != nil {
			got = svc.Hostname
		}
		if got != tc.want {
			t.Errorf("LookupService(%s) = %q, want %q", tc.host, got, tc.want)
		}
	}
	if _, _, ok := h.app.LookupService("x.api.example.test", 8443); !ok {
		t.Error("declared port not found")
	}
	if svc, port, ok := h.app.LookupService("x.api.example.test", 443); ok || port != nil || svc == nil {
		t.Error("undeclared port: want the service, no port, not ok")
	}
	if !slices.Equal(h.app.ServiceDials(nil, nil), nil) {
		t.Error("ServiceDials(nil) not nil")
	}
}
