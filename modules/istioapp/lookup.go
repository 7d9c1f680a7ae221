package istioapp

import (
	"net"
	"net/netip"
	"strings"
)

// This file is the read-only lookup API of the registry for other modules
// (the istio_egress handler): which service a requested host and port
// belong to, and where its endpoints are. The app is immutable once
// provisioned, so these need no locks.

// LookupService finds the registry service of a requested host and port as
// Istio matches ServiceEntry hosts: an exact hostname first, then the most
// specific wildcard host ("*.example.com" matches "api.example.com" and
// "a.b.example.com", not "example.com"). An IP literal also matches a
// service whose addresses (IPs or CIDRs) contain it. host is a bare name
// or IP, without port or brackets; matching ignores case and a trailing
// dot. ok is true only when the service declares that port number; when
// the host matches but the port does not, svc is returned with a nil port
// and ok false, so callers can tell "unknown host" from "undeclared port".
func (a *App) LookupService(host string, port uint32) (svc *Service, sp *ServicePort, ok bool) {
	if a == nil || a.registry == nil {
		return nil, nil, false
	}
	svc = a.registry.lookupHost(host)
	if svc == nil {
		return nil, nil, false
	}
	sp = svc.port(port)
	return svc, sp, sp != nil
}

// ServiceDials returns the dial addresses (host:port, or unix/path) of the
// endpoints of a service port, as its cluster would balance over them
// without a subset: the inline endpoints and selected WorkloadEntries, or,
// for DNS and DNS_ROUND_ROBIN services without endpoints, the service
// hostname on the target port. Nil means the service has nothing of its
// own to dial: with resolution NONE or DYNAMIC_DNS the caller dials the
// host the client asked for; with STATIC there is no endpoint.
func (a *App) ServiceDials(svc *Service, port *ServicePort) []string {
	if a == nil || a.registry == nil || svc == nil || port == nil {
		return nil
	}
	return append([]string(nil), a.registry.endpointSet(svc, port, nil).dials...)
}

// ServiceResolution returns the resolution of svc with its default: NONE
// when unset.
func ServiceResolution(svc *Service) string {
	return resolution(svc)
}

// lookupHost returns the service of host: exact, longest wildcard suffix,
// then by address for IP literals.
func (reg *registry) lookupHost(host string) *Service {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return nil
	}
	if svc := reg.services[host]; svc != nil {
		return svc
	}
	var best *Service
	bestLen := -1
	for name, svc := range reg.services {
		name = strings.ToLower(name)
		if name == host {
			return svc
		}
		suffix, isWildcard := strings.CutPrefix(name, "*")
		if !isWildcard {
			continue
		}
		// "*" alone matches every host; "*.example.com" needs at least one
		// character before ".example.com".
		if len(host) > len(suffix) && strings.HasSuffix(host, suffix) && len(suffix) > bestLen {
			best, bestLen = svc, len(suffix)
		}
	}
	if best != nil {
		return best
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	// the most specific address wins, the smallest hostname on a tie, so
	// the answer does not depend on map order
	ip = ip.Unmap()
	bestBits := -1
	for name, svc := range reg.services {
		bits := addressMatch(svc.Addresses, ip)
		if bits > bestBits || (bits == bestBits && bits >= 0 && name < best.Hostname) {
			best, bestBits = svc, bits
		}
	}
	return best
}

// addressMatch returns the prefix length of the most specific of the IPs
// or CIDRs of addresses that contains ip, -1 when none does.
func addressMatch(addresses []string, ip netip.Addr) int {
	best := -1
	for _, a := range addresses {
		if prefix, err := netip.ParsePrefix(a); err == nil {
			if prefix.Masked().Contains(ip) && prefix.Bits() > best {
				best = prefix.Bits()
			}
			continue
		}
		host := a
		if h, _, err := net.SplitHostPort(a); err == nil {
			host = h
		}
		if addr, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && addr.Unmap() == ip {
			best = max(best, ip.BitLen())
		}
	}
	return best
}
