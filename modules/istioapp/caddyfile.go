package istioapp

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the upstream source from Caddyfile tokens, in
// a reverse_proxy block:
//
//	dynamic istio [<service> <port> [<subset>]] {
//	    cluster <name>
//	    service <hostname>
//	    port    <number>
//	    subset  <name>
//	}
//
// For example `dynamic istio reviews.default.svc.cluster.local 9080 v1`, or
// `dynamic istio { cluster outbound|9080|v1|reviews.default.svc.cluster.local }`.
func (u *Upstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume upstream source name

	args := d.RemainingArgs()
	switch len(args) {
	case 0:
	case 2, 3:
		u.Service = args[0]
		port, err := parsePort(args[1])
		if err != nil {
			return d.Errf("bad port '%s': %v", args[1], err)
		}
		u.Port = port
		if len(args) == 3 {
			u.Subset = args[2]
		}
	default:
		return d.ArgErr()
	}

	for d.NextBlock(0) {
		subdirective := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		value := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch subdirective {
		case "cluster":
			if u.Cluster != "" {
				return d.Errf("a cluster has already been specified")
			}
			u.Cluster = value
		case "service":
			if u.Service != "" {
				return d.Errf("a service has already been specified")
			}
			u.Service = value
		case "port":
			if u.Port != 0 {
				return d.Errf("a port has already been specified")
			}
			port, err := parsePort(value)
			if err != nil {
				return d.Errf("bad port '%s': %v", value, err)
			}
			u.Port = port
		case "subset":
			if u.Subset != "" {
				return d.Errf("a subset has already been specified")
			}
			u.Subset = value
		default:
			return d.Errf("unrecognized istio upstreams option '%s'", subdirective)
		}
	}
	return nil
}

// parsePort parses a port number in 1..65535.
func parsePort(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, strconv.ErrRange
	}
	return uint32(n), nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Upstreams)(nil)
