package istio

import (
	"net"
	"strconv"
	"strings"
)

// clusterDomainSuffix ends the hostname of every Kubernetes Service:
// NAME.NAMESPACE.svc.cluster.local.
const clusterDomainSuffix = ".svc.cluster.local"

// expandHost turns a short host name (no dot) into the fully qualified
// Kubernetes name in namespace, as Istio does for the hosts written in a
// VirtualService or DestinationRule: "reviews" in "foo" is
// "reviews.foo.svc.cluster.local". A name with a dot ("reviews.default",
// "api.example.com", an IP) and "*" are left alone.
func expandHost(host, namespace string) string {
	if host == "" || host == "*" || strings.Contains(host, ".") {
		return host
	}
	return host + "." + namespace + clusterDomainSuffix
}

// kubeServiceHostname is the hostname of Kubernetes Service name in namespace.
func kubeServiceHostname(name, namespace string) string {
	return name + "." + namespace + clusterDomainSuffix
}

// kubeShortForms returns the names a client in the cluster may use for a
// Kubernetes-style hostname NAME.NS.svc.cluster.local: NAME, NAME.NS and
// NAME.NS.svc. Other hostnames have none.
func kubeShortForms(hostname string) []string {
	if !strings.HasSuffix(hostname, clusterDomainSuffix) {
		return nil
	}
	labels := strings.Split(strings.TrimSuffix(hostname, clusterDomainSuffix), ".")
	if len(labels) != 2 || labels[0] == "" || labels[1] == "" || labels[0] == "*" {
		return nil
	}
	name, ns := labels[0], labels[1]
	return []string{name, name + "." + ns, name + "." + ns + ".svc"}
}

// isWildcard reports whether host is "*" or starts with "*.".
func isWildcard(host string) bool {
	return host == "*" || strings.HasPrefix(host, "*.")
}

// hostCovers reports whether pattern matches every name that host matches,
// following Istio's host matching: "*" covers everything; "*.example.com"
// covers "a.example.com", "a.b.example.com" and "*.a.example.com" but not
// "example.com"; otherwise the names must be equal (case-insensitively).
func hostCovers(pattern, host string) bool {
	pattern, host = strings.ToLower(pattern), strings.ToLower(host)
	if pattern == host || pattern == "*" {
		return true
	}
	if !strings.HasPrefix(pattern, "*.") {
		return false
	}
	suffix := pattern[1:] // ".example.com"
	return len(host) > len(suffix) && strings.HasSuffix(host, suffix) && host != "*"
}

// intersectHosts returns the more specific of a and b when one covers the
// other: the names both match. ok is false when they have none in common.
func intersectHosts(a, b string) (string, bool) {
	switch {
	case hostCovers(a, b):
		return b, true
	case hostCovers(b, a):
		return a, true
	}
	return "", false
}

// mostSpecific picks, among patterns, the one that best matches host:
// host itself, else the longest wildcard covering it. It returns -1 when
// none matches.
func mostSpecific(host string, patterns []string) int {
	best := -1
	for i, p := range patterns {
		if !hostCovers(p, host) {
			continue
		}
		if strings.EqualFold(p, host) {
			return i
		}
		if best < 0 || len(p) > len(patterns[best]) {
			best = i
		}
	}
	return best
}

// splitNamespacedHost splits a Gateway server host or Sidecar egress host
// "ns/dnsName" into its namespace and name. A host without "/" has
// namespace "*" (any).
func splitNamespacedHost(h string) (ns, name string) {
	if i := strings.IndexByte(h, '/'); i >= 0 {
		return h[:i], h[i+1:]
	}
	return "*", h
}

// namespaceSelected reports whether filter (from "ns/dnsName": "*" any,
// "." own namespace, "~" none, or a name) selects namespace ns; own is the
// namespace of the object that wrote the filter.
func namespaceSelected(filter, own, ns string) bool {
	switch filter {
	case "*":
		return true
	case "~":
		return false
	case ".":
		return ns == own
	}
	return ns == filter
}

// hostPort is host:port with IPv6 literals bracketed.
func hostPort(host string, port uint32) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// listenAddress is the Caddy listen address for bind and port: ":PORT"
// without bind, "tcp/BIND:PORT" with an IP, "unix//path" for unix://path.
func listenAddress(bind string, port uint32) string {
	if path, ok := strings.CutPrefix(bind, "unix://"); ok {
		return "unix/" + path
	}
	if bind == "" {
		return ":" + strconv.FormatUint(uint64(port), 10)
	}
	return "tcp/" + net.JoinHostPort(bind, strconv.FormatUint(uint64(port), 10))
}
