package istioegress

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// privateRanges are the destinations refused unless a ServiceEntry or an
// allow entry names them: the proxy must not reach the host's own
// services, the cloud metadata endpoint or the internal network for
// whoever can talk to it (SSRF).
var privateRanges = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	// IPv4-compatible addresses (::a.b.c.d, deprecated) may reach IPv4.
	{netip.MustParsePrefix("::/96"), "IPv4-compatible"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fc00::/7"), "private"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	// NAT64 and 6to4 embed an IPv4 address the network may route to.
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64"},
	{netip.MustParsePrefix("2002::/16"), "6to4"},
}

// privateReason returns why ip is not a public destination, "" if it is.
// IPv4-mapped IPv6 addresses are judged as the IPv4 address they map.
func privateReason(ip netip.Addr) string {
	ip = ip.WithZone("").Unmap()
	for _, r := range privateRanges {
		if r.prefix.Contains(ip) {
			return r.why
		}
	}
	return ""
}

// parseIPLiteral returns the IP that host denotes for a resolver that
// accepts every IPv4 form of inet_aton (glibc's getaddrinfo does): dotted
// quads with decimal, octal (leading 0) or hex (0x) parts, fewer than four
// parts ("127.1", "2130706433", "0x7f000001"), and IPv6 literals with or
// without a zone. ok is false for host names.
func parseIPLiteral(host string) (ip netip.Addr, ok bool) {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if addr, err := netip.ParseAddr(host); err == nil {
		return addr.WithZone("").Unmap(), true
	}
	if strings.Contains(host, ":") {
		return netip.Addr{}, false
	}
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	values := make([]uint64, len(parts))
	for i, part := range parts {
		v, ok := parseInetAtonPart(part)
		if !ok {
			return netip.Addr{}, false
		}
		values[i] = v
	}
	// the last part fills the remaining bytes: a.b.c.d, a.b.cd, a.bcd, abcd
	var n uint64
	last := len(values) - 1
	for i := 0; i < last; i++ {
		if values[i] > 0xff {
			return netip.Addr{}, false
		}
		n |= values[i] << (8 * (3 - i))
	}
	if values[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= values[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// parseInetAtonPart parses one part of an inet_aton address: decimal,
// octal with a leading 0, or hex with 0x.
func parseInetAtonPart(part string) (uint64, bool) {
	if part == "" {
		return 0, false
	}
	base := 10
	digits := part
	switch {
	case strings.HasPrefix(part, "0x") || strings.HasPrefix(part, "0X"):
		base, digits = 16, part[2:]
	case len(part) > 1 && part[0] == '0':
		base, digits = 8, part[1:]
	}
	v, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, false
	}
	return v, true
}

// Resolver looks up the IPs of a host name. The handler uses
// net.DefaultResolver; tests set their own, so they never ask public DNS.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Interface guards
var _ Resolver = (*net.Resolver)(nil)
