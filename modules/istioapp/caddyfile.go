package istioapp

import (
	"fmt"
	"os"
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

// Source is Istio YAML named in a Caddyfile, by the `istio` global option
// or an istio_route directive: files read at adapt time and inline
// documents. The istio config adapter (package adapters/istio, which
// imports this one) registers that option and directive, and decodes,
// validates and translates the documents.
type Source struct {
	// Documents in the order they were given.
	Documents []*SourceDocument

	// Namespace of objects without metadata.namespace. Default: "default".
	Namespace string
}

// SourceDocument is one file or inline YAML text of a Source.
type SourceDocument struct {
	// Name is the file name, or "FILE:LINE" of the Caddyfile for inline
	// YAML; Istio problems are reported against it.
	Name string
	// Body is the YAML text (one or more documents).
	Body []byte
	// Token is the Caddyfile token that named the document, for errors.
	Token caddyfile.Token
}

// UnmarshalCaddyfile sets up the source from the tokens of the `istio`
// global option:
//
//	istio [<file.yaml>...]
//	istio [<file.yaml>...] {
//	    config    <file.yaml>...
//	    yaml      <<EOF
//	        <Istio YAML>
//	        EOF
//	    namespace <name>
//	}
//
// Files are read when the Caddyfile is adapted; relative paths are
// relative to the current directory, as Caddy's other file options. config
// and yaml may be repeated: every document counts, in order, as if they
// were one file. namespace is the namespace of objects that do not name
// one (default "default").
func (s *Source) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	for d.NextArg() {
		if err := s.readFile(d); err != nil {
			return err
		}
	}
	for d.NextBlock(0) {
		subdirective := d.Val()
		ok, err := s.UnmarshalSubdirective(d)
		if err != nil {
			return err
		}
		if !ok {
			return d.Errf("unrecognized subdirective '%s'", subdirective)
		}
	}
	if len(s.Documents) == 0 {
		return d.Err("no Istio configuration: give a file or a yaml block")
	}
	return nil
}

// UnmarshalSubdirective parses one of the source subdirectives (config,
// yaml, namespace) at the dispenser's current token, and reports whether
// it was one.
func (s *Source) UnmarshalSubdirective(d *caddyfile.Dispenser) (bool, error) {
	switch d.Val() {
	case "config":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		if err := s.readFile(d); err != nil {
			return true, err
		}
		for d.NextArg() {
			if err := s.readFile(d); err != nil {
				return true, err
			}
		}
	case "yaml":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		tok := d.Token()
		s.Documents = append(s.Documents, &SourceDocument{
			Name:  fmt.Sprintf("%s:%d", tok.File, tok.Line),
			Body:  []byte(d.Val()),
			Token: tok,
		})
		if d.NextArg() {
			return true, d.ArgErr()
		}
	case "namespace":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		if s.Namespace != "" {
			return true, d.Err("a namespace has already been specified")
		}
		s.Namespace = d.Val()
		if d.NextArg() {
			return true, d.ArgErr()
		}
	default:
		return false, nil
	}
	return true, nil
}

// readFile reads the file named by the current token.
func (s *Source) readFile(d *caddyfile.Dispenser) error {
	name := d.Val()
	body, err := os.ReadFile(name)
	if err != nil {
		return d.Errf("reading Istio configuration: %v", err)
	}
	s.Documents = append(s.Documents, &SourceDocument{Name: name, Body: body, Token: d.Token()})
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Upstreams)(nil)
	_ caddyfile.Unmarshaler = (*Source)(nil)
)
