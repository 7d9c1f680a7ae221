package istioroute

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// CaddyfileMesh is the listener name of the mesh, the default listener
// of istio_route.
const CaddyfileMesh = "mesh"

// CaddyfileConfig is what an istio_route directive of a Caddyfile says:
// which Istio YAML to take the VirtualServices from, and which listener's
// routes to serve. The istio config adapter (package adapters/istio, which
// imports this one) registers the directive, because turning the YAML
// into the handler's virtual hosts is its job: it translates the YAML and
// takes the virtual hosts of that listener.
type CaddyfileConfig struct {
	// Listener is "mesh" (the default) or a Gateway as "namespace/name".
	Listener string

	// Port picks the listener's port: for a Gateway, the port of its
	// servers (0: the only one); for the mesh, a Sidecar egress listener
	// port (0: the mesh listener without port, which serves every service
	// port by the Host header).
	Port uint32

	// Source is the YAML the directive adds to the `istio` global
	// option's; nil when it adds none.
	Source *istioapp.Source

	// PathNormalization is the handler's path_normalization.
	PathNormalization string
}

// UnmarshalCaddyfile sets up the directive from Caddyfile tokens. Syntax:
//
//	istio_route [<matcher>] [mesh [<port>] | gateway <namespace/name> [<port>]] {
//	    mesh               [<port>]
//	    gateway            <namespace/name> [<port>]
//	    config             <file.yaml>...
//	    yaml               <<EOF
//	        <Istio YAML>
//	        EOF
//	    namespace          <name>
//	    path_normalization NONE|BASE|MERGE_SLASHES|DECODE_AND_MERGE_SLASHES
//	}
//
// The listener is given once, inline or in the block:
//
//   - mesh (the default) serves what a sidecar serves: every registry
//     service's port by its host names, routed by the VirtualServices
//     bound to mesh or straight to the service, and the other hosts of
//     mesh VirtualServices. With a port, the Sidecar egress listener of that
//     port.
//   - gateway serves a Gateway: the VirtualServices bound to it, for
//     their hosts that match the hosts of its HTTP servers. The port picks
//     among the Gateway's server ports when it has several.
//
// The YAML is the `istio` global option's, which is required: the
// clusters that routes name live in the istio app it defines. config, yaml
// and namespace (as the global option's subdirectives) add the directive's
// own objects after the global option's: they see its registry, and
// replace its objects of the same kind, namespace and name. Destinations
// that the istio app does not define answer 503; a warning is logged for
// each.
//
// path_normalization is Istio's MeshConfig pathNormalization (DEFAULT is
// BASE). Default: BASE.
func (c *CaddyfileConfig) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		if err := c.unmarshalListener(d); err != nil {
			return err
		}
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "mesh", "gateway":
			if err := c.unmarshalListener(d); err != nil {
				return err
			}
		case "path_normalization":
			if c.PathNormalization != "" {
				return d.Err("path_normalization has already been specified")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			mode := d.Val()
			if _, err := parsePathNormalization(mode); err != nil || mode == "" {
				return d.Errf("bad path_normalization '%s': want NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES", mode)
			}
			c.PathNormalization = mode
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			if c.Source == nil {
				c.Source = new(istioapp.Source)
			}
			subdirective := d.Val()
			ok, err := c.Source.UnmarshalSubdirective(d)
			if err != nil {
				return err
			}
			if !ok {
				return d.Errf("unrecognized subdirective '%s'", subdirective)
			}
		}
	}
	if c.Source != nil && len(c.Source.Documents) == 0 {
		return d.Err("namespace needs a config or yaml subdirective: it applies to the directive's own Istio configuration")
	}
	if c.Listener == "" {
		c.Listener = CaddyfileMesh
	}
	return nil
}

// unmarshalListener parses `mesh [<port>]` or `gateway <ns/name>
// [<port>]` at the current token.
func (c *CaddyfileConfig) unmarshalListener(d *caddyfile.Dispenser) error {
	if c.Listener != "" {
		return d.Err("a listener (mesh or gateway) has already been specified")
	}
	switch d.Val() {
	case "mesh":
		c.Listener = CaddyfileMesh
	case "gateway":
		if !d.NextArg() {
			return d.ArgErr()
		}
		ref := d.Val()
		ns, name, ok := strings.Cut(ref, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return d.Errf("bad gateway '%s': want namespace/name", ref)
		}
		c.Listener = ref
	default:
		return d.Errf("unrecognized listener '%s': want mesh or gateway <namespace/name>", d.Val())
	}
	if d.NextArg() {
		port, err := strconv.ParseUint(d.Val(), 10, 16)
		if err != nil || port == 0 {
			return d.Errf("bad port '%s': want 1-65535", d.Val())
		}
		c.Port = uint32(port)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*CaddyfileConfig)(nil)
