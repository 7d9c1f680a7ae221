package istioegress

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("istio_egress", parseCaddyfile)
	// The forward proxy decides before any handler answers or proxies: it
	// passes only mesh hosts on. Ordering it before "abort", the first of
	// the standard responding handlers, puts it before respond too, and
	// before istio_route and istio_fault (ordered before reverse_proxy)
	// whichever package registers first.
	httpcaddyfile.RegisterDirectiveOrder("istio_egress", httpcaddyfile.Before, "abort")
}

// parseCaddyfile sets up the handler from Caddyfile tokens.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	istio_egress [<matcher>] {
//	    mode              ALLOW_ANY|REGISTRY_ONLY
//	    allow             <host_pattern...>
//	    deny              <host_pattern...>
//	    route_hosts       <host_pattern...>
//	    auth              <username> <bcrypt_hash>
//	    realm             <name>
//	    client_identities <uri...>
//	    dial_timeout      <duration>
//	    idle_timeout      <duration>
//	}
//
// A host pattern is host, *.domain, *, an IP or a CIDR, optionally with
// :port or :* ([v6]:port for IPv6). allow, deny, route_hosts, auth and
// client_identities may be repeated; they add up. Every subdirective is
// optional: `istio_egress` alone is an ALLOW_ANY proxy with the private
// address check. Note that allow restricts nothing under ALLOW_ANY (the
// default, as Istio's): write `mode REGISTRY_ONLY` to allow only the
// registry and the allow list.
//
// The site must not match on host (write ":15001" or "http://:15001",
// with `bind 127.0.0.1` to listen on loopback only): a proxy request's
// Host is its destination, so a site address such as
// "http://127.0.0.1:15001" would never see it. istio_egress runs before
// respond, istio_fault, istio_route and reverse_proxy; a local endpoint on
// the same site (a health check) belongs in a handle block, which runs
// first.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch sub := d.Val(); sub {
		case "mode":
			if h.Mode != "" {
				return d.Err("duplicate mode")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			mode := strings.ToUpper(d.Val())
			if mode != ModeAllowAny && mode != ModeRegistryOnly {
				return d.Errf("bad mode '%s': want ALLOW_ANY or REGISTRY_ONLY", d.Val())
			}
			h.Mode = mode
			if d.NextArg() {
				return d.ArgErr()
			}

		case "allow", "deny", "route_hosts":
			patterns := d.RemainingArgs()
			if len(patterns) == 0 {
				return d.ArgErr()
			}
			for _, p := range patterns {
				if _, err := parseHostPattern(p); err != nil {
					return d.Errf("%s: %v", sub, err)
				}
			}
			switch sub {
			case "allow":
				h.Allow = append(h.Allow, patterns...)
			case "deny":
				h.Deny = append(h.Deny, patterns...)
			default:
				h.RouteHosts = append(h.RouteHosts, patterns...)
			}

		case "auth":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("auth needs a username and a bcrypt password hash")
			}
			for _, a := range h.Auth {
				if a.Username == args[0] {
					return d.Errf("auth: user '%s' defined more than once", args[0])
				}
			}
			account := Account{Username: args[0], Password: args[1]}
			if _, _, err := loadAccounts([]Account{account}); err != nil {
				return d.Errf("auth: user '%s': %v", args[0], strings.TrimPrefix(err.Error(), "auth[0]: "))
			}
			h.Auth = append(h.Auth, account)

		case "realm":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Realm = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}

		case "client_identities":
			ids := d.RemainingArgs()
			if len(ids) == 0 {
				return d.ArgErr()
			}
			h.ClientIdentities = append(h.ClientIdentities, ids...)

		case "dial_timeout", "idle_timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("bad %s '%s': want a positive duration", sub, d.Val())
			}
			if sub == "dial_timeout" {
				h.DialTimeout = caddy.Duration(dur)
			} else {
				h.IdleTimeout = caddy.Duration(dur)
			}
			if d.NextArg() {
				return d.ArgErr()
			}

		default:
			return d.Errf("unrecognized subdirective '%s'", sub)
		}
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
