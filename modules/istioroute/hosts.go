package istioroute

import (
	"fmt"
	"sort"
	"strings"
)

// hostTable finds the virtual host of a request host as Envoy does: exact
// name with port, exact name, longest wildcard suffix, then "*". The exact
// names are one map lookup; only wildcard domains are scanned.
type hostTable struct {
	// exact maps lower-cased "host:port" and "host" domains.
	exact map[string]*virtualHost

	// wildcards are the "*suffix" domains, most specific first.
	wildcards []wildcardDomain

	// any is the virtual host of the domain "*", if there is one.
	any *virtualHost
}

// wildcardDomain is a domain "*suffix", e.g. "*.example.com" whose suffix
// ".example.com" must follow at least one character of the host.
type wildcardDomain struct {
	suffix string
	// withPort is true for domains such as "*.example.com:8080", matched
	// against the host with its port; others are matched without it.
	withPort bool
	vh       *virtualHost
}

// add registers the domains of vh. A domain may belong to one virtual host
// only, as in Envoy.
func (t *hostTable) add(domain string, vh *virtualHost, owners map[string]string) error {
	if domain == "" {
		return fmt.Errorf("empty domain")
	}
	domain = strings.ToLower(domain)
	if other, dup := owners[domain]; dup {
		return fmt.Errorf("domain %q is already served by virtual host %q", domain, other)
	}
	owners[domain] = vh.name

	if domain == "*" {
		t.any = vh
		return nil
	}
	suffix, isWildcard := strings.CutPrefix(domain, "*")
	if strings.Contains(suffix, "*") || (isWildcard && suffix == "") {
		return fmt.Errorf("domain %q: a wildcard is allowed only as the first character", domain)
	}
	if !isWildcard {
		if t.exact == nil {
			t.exact = make(map[string]*virtualHost)
		}
		t.exact[domain] = vh
		return nil
	}
	_, hasPort := splitPort(suffix)
	t.wildcards = append(t.wildcards, wildcardDomain{suffix: suffix, withPort: hasPort, vh: vh})
	return nil
}

// sortWildcards orders wildcard domains most specific first: the longest
// suffix (ignoring its port), then those with a port.
func (t *hostTable) sortWildcards() {
	sort.SliceStable(t.wildcards, func(i, j int) bool {
		a, _ := splitPort(t.wildcards[i].suffix)
		b, _ := splitPort(t.wildcards[j].suffix)
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return t.wildcards[i].withPort && !t.wildcards[j].withPort
	})
}

// lookup returns the virtual host for the request host (Host header or
// absolute-form authority, with its port if the client sent one), or nil.
func (t *hostTable) lookup(host string) *virtualHost {
	host = lowerASCII(host)
	if vh := t.exact[host]; vh != nil {
		return vh
	}
	bare, hasPort := splitPort(host)
	if hasPort {
		if vh := t.exact[bare]; vh != nil {
			return vh
		}
	}
	for i := range t.wildcards {
		w := &t.wildcards[i]
		name := bare
		if w.withPort {
			if !hasPort {
				continue
			}
			name = host
		}
		if len(name) > len(w.suffix) && strings.HasSuffix(name, w.suffix) {
			return w.vh
		}
	}
	return t.any
}

// splitPort returns host without its ":port" and whether it had one. IPv6
// literals keep their brackets ("[::1]:80" gives "[::1]").
func splitPort(host string) (string, bool) {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || i < strings.LastIndexByte(host, ']') {
		return host, false
	}
	if host[0] != '[' && strings.IndexByte(host, ':') != i {
		return host, false // a bare IPv6 address, not host:port
	}
	return host[:i], true
}

// lowerASCII lower-cases s, allocating only if s has upper-case letters.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
