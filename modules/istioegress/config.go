package istioegress

import (
	"github.com/caddyserver/caddy/v2"
)

// This file holds the JSON configuration of the istio_egress handler: the
// contract between the adapter (which writes it from Sidecar
// outboundTrafficPolicy and the listener's virtual hosts) and the runtime.
//
// A complete example, on a mesh listener in front of istio_route:
//
//	{
//	  "handler": "istio_egress",
//	  "mode": "REGISTRY_ONLY",
//	  "route_hosts": ["reviews", "reviews.default.svc.cluster.local", "*.example.com:8080"],
//	  "allow": ["api.local:80", "*.example.org:443", "10.1.2.0/24"],
//	  "deny": ["evil.example.com"],
//	  "auth": [{"username": "app", "password": "$2a$14$..."}],
//	  "realm": "egress",
//	  "client_identities": ["spiffe://cluster.local/ns/default/sa/*"],
//	  "dial_timeout": "10s",
//	  "idle_timeout": "1h"
//	}

// How a request is decided, in order:
//
//  1. Who may use the proxy: ClientIdentities (403) and Auth (407).
//  2. A plain HTTP request (absolute form, origin form with Host, or an
//     HTTP/2 extended CONNECT) whose host is a RouteHosts entry or a
//     registry host on a port its service declares goes to the next
//     handler, unless Deny matches it.
//  3. Otherwise (and for every CONNECT): Deny refuses; a registry host on
//     a declared port is allowed and goes to its service's endpoints
//     (resolution STATIC/DNS with endpoints: the endpoints, never the
//     name the client asked for; NONE/DYNAMIC_DNS without endpoints: the
//     requested host on the port's target port; STATIC without endpoints
//     is refused); an Allow match is allowed to the requested host;
//     under REGISTRY_ONLY the rest is refused; under ALLOW_ANY it goes to
//     the requested host.
//  4. A requested host is resolved by the proxy (IP literals in every
//     form a resolver accepts are parsed, not resolved); each IP that is
//     loopback, link-local, private (RFC 1918, fc00::/7), CGNAT,
//     unspecified, multicast, reserved or an IPv4-embedding IPv6 form is
//     dropped unless an Allow entry or the registry service names it (see
//     Allow); only the remaining, checked IPs are dialled, so DNS
//     rebinding cannot reach what the check refused. None left: refused.
//
// A refused plain HTTP request gets 502 with an empty body (Envoy's
// block_all); a refused CONNECT gets 403 with the reason as text/plain; a
// CONNECT whose allowed destination does not answer gets 502. A CONNECT
// to any declared port is a raw TCP tunnel whatever the port's protocol:
// the VirtualService routing of that port does not apply inside it.
// absolute-form https:// requests (TLS by the proxy) get 400: clients
// use CONNECT for https URLs.

// Outbound traffic policy modes (Sidecar outboundTrafficPolicy.mode).
const (
	// ModeAllowAny lets requests for hosts outside the registry through to
	// the host the client asked for (Envoy's PassthroughCluster). Istio's
	// MeshConfig default.
	ModeAllowAny = "ALLOW_ANY"

	// ModeRegistryOnly lets through only hosts and ports of the registry
	// (ServiceEntries, Services) and of the allow list.
	ModeRegistryOnly = "REGISTRY_ONLY"
)

// Config is the JSON configuration of the handler; Handler embeds it.
type Config struct {
	// Mode is ALLOW_ANY or REGISTRY_ONLY. Default: ALLOW_ANY (Istio's
	// MeshConfig default; the adapter writes REGISTRY_ONLY for an explicit
	// `outboundTrafficPolicy: {}`, as Istio reads it).
	Mode string `json:"mode,omitempty"`

	// RouteHosts are the hosts the next handler (istio_route) routes on
	// this listener, as istio_route domains: "host", "host:port",
	// "*.suffix", "*.suffix:port" or "*". A plain HTTP request (absolute
	// form or origin form) for one of them, or for a registry host on a
	// port the service declares, goes to the next handler whatever the
	// mode. The registry needs no listing here; VirtualService hosts that
	// are not registry hosts do.
	RouteHosts []string `json:"route_hosts,omitempty"`

	// Allow lists destinations allowed besides the registry, as host
	// patterns: "host", "*.suffix" (any subdomain depth, not the bare
	// suffix), "*" (any host), an IP, or a CIDR, each optionally followed
	// by ":port" or ":*" ("[v6]:port" and "[v6/len]:port" for IPv6); no
	// port means any port. Under ALLOW_ANY everything is allowed anyway;
	// the allow list then only lifts the private address check (below).
	//
	// An allow entry that is an exact hostname, an IP or a CIDR "names"
	// those destinations: they may be loopback, link-local or private.
	// Wildcards ("*", "*.suffix") never lift that check.
	Allow []string `json:"allow,omitempty"`

	// Deny lists destinations refused whatever else allows them, in the
	// syntax of Allow. It is checked first, before the registry and
	// route hosts.
	Deny []string `json:"deny,omitempty"`

	// Auth, when set, requires Proxy-Authorization Basic credentials of
	// one of these accounts (the password is a bcrypt hash, in Modular
	// Crypt Format "$2a$..." or base64 of it, as Caddy's http_basic
	// accounts); otherwise 407 with Proxy-Authenticate. It applies to
	// every request the handler sees, mesh hosts included. The header is
	// removed once checked. Default: none.
	Auth []Account `json:"auth,omitempty"`

	// Realm of the Proxy-Authenticate challenge. Default: "istio-egress".
	Realm string `json:"realm,omitempty"`

	// ClientIdentities, when set, requires the client's TLS certificate
	// (the listener must do mTLS, e.g. the istio_mtls listener wrapper)
	// to carry one of these URI SANs (SPIFFE IDs); an entry ending in "*"
	// is a prefix. Otherwise 403. Default: no requirement. With both Auth
	// and ClientIdentities set, both are required.
	ClientIdentities []string `json:"client_identities,omitempty"`

	// DialTimeout bounds connecting to the destination. Default: 10s
	// (Istio's connectTimeout).
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// IdleTimeout closes a CONNECT tunnel with no bytes in either
	// direction for this long. Default: 1h (Envoy's tcp_proxy idle
	// timeout, Istio's default).
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
}

// Account is a user of the proxy.
type Account struct {
	Username string `json:"username"`
	// Password is the bcrypt hash of the password: "$2a$..." or base64 of it.
	Password string `json:"password"`
}
