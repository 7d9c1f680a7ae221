package istioegress

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// hostPattern is one entry of an allow or deny list, or of route_hosts.
type hostPattern struct {
	// exact is a lower-case hostname; suffix is ".example.com" for
	// "*.example.com"; any is "*"; prefix is an IP or CIDR. One is set.
	exact  string
	suffix string
	any    bool
	prefix netip.Prefix
	isIP   bool

	// port is the port the pattern requires, 0 for any.
	port uint32
}

// parseHostPattern parses "host", "*.suffix", "*", "IP", "CIDR", each
// optionally followed by ":port" or ":*"; IPv6 addresses and CIDRs with a
// port are bracketed.
func parseHostPattern(s string) (hostPattern, error) {
	var p hostPattern
	if s == "" {
		return p, fmt.Errorf("empty host pattern")
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return p, fmt.Errorf("host pattern %q: missing ']'", s)
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			var ok bool
			if port, ok = strings.CutPrefix(port, ":"); !ok {
				return p, fmt.Errorf("host pattern %q: unexpected text after ']'", s)
			}
		}
	} else if strings.Count(s, ":") == 1 {
		host, port, _ = strings.Cut(s, ":")
	}
	switch port {
	case "":
		if strings.HasSuffix(s, ":") {
			return p, fmt.Errorf("host pattern %q: empty port", s)
		}
	case "*":
	default:
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return p, fmt.Errorf("host pattern %q: port must be 1-65535 or *", s)
		}
		p.port = uint32(n)
	}
	if strings.HasSuffix(host, "*.") {
		return p, fmt.Errorf("host pattern %q: a wildcard must be '*' or '*.domain'", s)
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return p, fmt.Errorf("host pattern %q: empty host", s)
	}
	if prefix, err := netip.ParsePrefix(host); err == nil {
		p.prefix, p.isIP = prefix.Masked(), true
		if p.prefix.Addr().Is4In6() {
			p.prefix = netip.PrefixFrom(p.prefix.Addr().Unmap(), p.prefix.Bits()-96)
		}
		return p, nil
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		addr = addr.Unmap()
		p.prefix, p.isIP = netip.PrefixFrom(addr, addr.BitLen()), true
		return p, nil
	}
	if host == "*" {
		p.any = true
		return p, nil
	}
	if suffix, ok := strings.CutPrefix(host, "*"); ok {
		if !strings.HasPrefix(suffix, ".") || len(suffix) < 2 {
			return p, fmt.Errorf("host pattern %q: a wildcard must be '*' or '*.domain'", s)
		}
		host = suffix[1:]
		p.suffix = suffix
	} else {
		p.exact = host
	}
	if strings.ContainsAny(host, "*/[]@ ") {
		return p, fmt.Errorf("host pattern %q: invalid host", s)
	}
	return p, nil
}

// matchesHost reports whether the pattern covers the destination: its
// host name as the client wrote it (lower case, no trailing dot), the IP
// the host is (literal forms included), if any, and its port.
func (p *hostPattern) matchesHost(d *destination) bool {
	if p.port != 0 && p.port != d.port {
		return false
	}
	switch {
	case p.any:
		return true
	case p.isIP:
		return d.literal.IsValid() && p.prefix.Contains(d.literal)
	case p.suffix != "":
		return len(d.host) > len(p.suffix) && strings.HasSuffix(d.host, p.suffix)
	default:
		return d.host == p.exact
	}
}

// namesIP reports whether the pattern names ip on the destination's port
// explicitly: an exact hostname equal to the destination's host, or an IP
// or CIDR containing ip. Such an entry lifts the private address check.
func (p *hostPattern) namesIP(d *destination, ip netip.Addr) bool {
	if p.port != 0 && p.port != d.port {
		return false
	}
	switch {
	case p.isIP:
		return p.prefix.Contains(ip)
	case p.exact != "":
		return d.host == p.exact
	}
	return false
}

// patternList is a parsed allow, deny or route_hosts list.
type patternList []hostPattern

func parsePatterns(field string, list []string) (patternList, error) {
	var out patternList
	for i, s := range list {
		p, err := parseHostPattern(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %v", field, i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (l patternList) matches(d *destination) bool {
	for i := range l {
		if l[i].matchesHost(d) {
			return true
		}
	}
	return false
}

func (l patternList) namesIP(d *destination, ip netip.Addr) bool {
	for i := range l {
		if l[i].namesIP(d, ip) {
			return true
		}
	}
	return false
}

// hostIndex matches a destination as a patternList does, with the exact
// host patterns in a map: one lookup, whatever their number, and only the
// wildcard, "*" and IP patterns scanned.
type hostIndex struct {
	// exact maps a host to the ports its patterns require, 0 for any.
	exact  map[string][]uint32
	others patternList
	// small is a short list, which a scan beats hashing the host for.
	small patternList
}

// smallHostList is the length up to which a list is scanned.
const smallHostList = 8

func newHostIndex(l patternList) hostIndex {
	var x hostIndex
	if len(l) <= smallHostList {
		x.small = l
		return x
	}
	for _, p := range l {
		if p.exact == "" {
			x.others = append(x.others, p)
			continue
		}
		if x.exact == nil {
			x.exact = make(map[string][]uint32)
		}
		x.exact[p.exact] = append(x.exact[p.exact], p.port)
	}
	return x
}

func (x *hostIndex) matches(d *destination) bool {
	if x.small != nil {
		return x.small.matches(d)
	}
	for _, port := range x.exact[d.host] {
		if port == 0 || port == d.port {
			return true
		}
	}
	return x.others.matches(d)
}

// destination is where a client asked to go.
type destination struct {
	// host is the lower-case host name or IP text without brackets,
	// port and trailing dot, as the client wrote it.
	host string
	port uint32
	// literal is the IP the host denotes when it is an IP literal in any
	// form an OS resolver accepts (dotted, decimal, octal, hex, short,
	// IPv4-mapped IPv6), unmapped; invalid for names.
	literal netip.Addr
}

// String is host:port, for logs and messages.
func (d *destination) String() string {
	if strings.Contains(d.host, ":") {
		return "[" + d.host + "]:" + strconv.FormatUint(uint64(d.port), 10)
	}
	return d.host + ":" + strconv.FormatUint(uint64(d.port), 10)
}

// parseDestination splits an authority ("host:port", "[v6]:port", or a
// host alone with defaultPort) into a destination.
func parseDestination(authority string, defaultPort uint32) (*destination, error) {
	d, err := splitDestination(authority, defaultPort)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// splitDestination is parseDestination without the allocation, for the
// requests that go on to istio_route.
func splitDestination(authority string, defaultPort uint32) (destination, error) {
	var none destination
	if authority == "" {
		return none, fmt.Errorf("missing host")
	}
	host, port := authority, ""
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return none, fmt.Errorf("bad host %q", authority)
		}
		host, port = authority[1:end], authority[end+1:]
		if port != "" {
			var ok bool
			if port, ok = strings.CutPrefix(port, ":"); !ok {
				return none, fmt.Errorf("bad host %q", authority)
			}
		}
	} else if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		if strings.Count(authority, ":") > 1 {
			return none, fmt.Errorf("bad host %q: IPv6 addresses must be bracketed", authority)
		}
		host, port = authority[:i], authority[i+1:]
	}
	d := destination{host: strings.TrimSuffix(strings.ToLower(host), "."), port: defaultPort}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return none, fmt.Errorf("bad port %q", port)
		}
		d.port = uint32(n)
	}
	if d.port == 0 {
		return none, fmt.Errorf("missing port in %q", authority)
	}
	if d.host == "" || strings.ContainsAny(d.host, "/@ \\%") && !strings.Contains(d.host, ":") {
		return none, fmt.Errorf("bad host %q", authority)
	}
	if mayBeIPLiteral(d.host) {
		d.literal, _ = parseIPLiteral(d.host)
	}
	return d, nil
}

// mayBeIPLiteral reports whether host can be an IP literal: IPv6 has a
// ':', and every IPv4 form an OS resolver accepts (dotted, decimal, octal,
// hex, short) starts with a digit. Host names skip the parse, and the
// allocations of its errors.
func mayBeIPLiteral(host string) bool {
	return host != "" && ('0' <= host[0] && host[0] <= '9' || strings.IndexByte(host, ':') >= 0)
}
