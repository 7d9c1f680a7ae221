// Package validation applies Istio's own validation rules to decoded Istio
// networking objects and reports every problem with the JSON path of the
// field at fault.
//
// The rules are ported by hand from istio.io/istio/pkg/config/validation
// (pseudo-version v0.0.0-20260827124520-eed52ebb66ad: validation.go,
// virtualservice.go, header_value_validator.go and agent/validation.go) and
// keep Istio's message texts, so a user can compare our output with what
// istiod's validating webhook says. On top of them come the CRD schema and
// CEL rules (manifests/charts/base/files/crd-all.gen.yaml) that kube-apiserver
// applies before the webhook, where the Go validator does not already reject
// the same input, and kube-apiserver's object metadata rules. Decode-level
// checks (unknown fields, JSON types, enum names, oneof conflicts) belong to
// package istioyaml.
//
// Where Istio joins a sub-check with appendErrors it drops that check's
// warnings (subset and port-level traffic policies, fault aborts, match and
// TCP gateway names); we drop them too. Field paths are camelCase JSON
// paths, map entries written as parent.key like kube-apiserver does.
//
// Rules that depend on whether a field was written at all, which the
// decoded struct cannot show (CRD "required" on a field Istio reads as 0,
// CEL on an explicit "targetPort: 0", has() and minItems on explicitly empty
// lists such as "endpoints: []"), ask istioyaml's Object.Has.
//
// Known differences, all on inputs users rarely write:
//   - Istio walks some maps in random order, so which two authorities
//     "authority header cannot be set multiple times" names, and for
//     overlapping distribute.to localities (us-east/* next to
//     us-east/zone1) even whether the overlap is reported, vary from run to
//     run there. We walk maps in sorted key order, which always reports
//     such an overlap.
//
// istio.io/istio is deliberately not imported: it would pull a few hundred
// modules into the plugin.
package validation

import (
	"fmt"
	"maps"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
)

// Validate checks obj the way Istio (CRD schema plus validating webhook)
// would, and returns Istio's warnings and errors, each located at the field
// at fault. An object is rejected by Istio exactly when errs is non-empty.
// Kubernetes Services get basic checks only.
func Validate(obj *istioyaml.Object) (warnings, errs []istioyaml.Problem) {
	c := &checker{obj: obj}
	switch {
	case obj.Service != nil:
		c.objectMeta(kubeDNS1035Label)
		c.kubeService(obj.Service)
	case obj.Spec == nil:
		c.err("spec", "no spec decoded for kind "+obj.Kind)
	default:
		c.objectMeta(kubeDNS1123Subdomain)
		if !c.istioMetadata() {
			break
		}
		switch spec := obj.Spec.(type) {
		case *networking.VirtualService:
			c.virtualService(spec)
		case *networking.DestinationRule:
			c.destinationRule(spec)
		case *networking.Gateway:
			c.gateway(spec)
		case *networking.ServiceEntry:
			c.serviceEntry(spec)
		case *networking.WorkloadEntry:
			c.workloadEntry(spec)
		case *networking.Sidecar:
			c.sidecar(spec)
		default:
			c.err("kind", fmt.Sprintf("validation of %T is not supported", obj.Spec))
		}
	}
	return c.warns, c.errs
}

// checker accumulates the problems found in one object.
type checker struct {
	obj   *istioyaml.Object
	errs  []istioyaml.Problem
	warns []istioyaml.Problem
	// muted > 0 drops warnings, where Istio joins a sub-check with
	// appendErrors, which keeps only its errors.
	muted int
}

// err records an error about field.
func (c *checker) err(field, msg string) {
	c.errs = append(c.errs, c.problem(field, msg))
}

// warn records a warning about field.
func (c *checker) warn(field, msg string) {
	if c.muted == 0 {
		c.warns = append(c.warns, c.problem(field, msg))
	}
}

// problem locates msg at field, on the field's own line when the object
// knows its source.
func (c *checker) problem(field, msg string) istioyaml.Problem {
	p := istioyaml.ProblemFor(c.obj, field, msg)
	p.Line = c.obj.LineOf(field)
	return p
}

// errorsOnly runs check with warnings dropped.
func (c *checker) errorsOnly(check func()) {
	c.muted++
	check()
	c.muted--
}

// add records e as an error about field when it is not nil; it mirrors
// Istio's appendErrors, which drops nil errors.
func (c *checker) add(field string, e error) {
	if e != nil {
		c.err(field, e.Error())
	}
}

// addAt is add for the field p+suffix; the path is only built when e is
// not nil, which keeps valid objects cheap.
func (c *checker) addAt(p, suffix string, e error) {
	if e != nil {
		c.err(p+suffix, e.Error())
	}
}

// errorCount lets a caller tell whether a sub-check added errors.
func (c *checker) errorCount() int { return len(c.errs) }

// Paths.

// indexPath returns p[i].
func indexPath(p string, i int) string {
	return p + "[" + strconv.Itoa(i) + "]"
}

// keyPath returns the path of map entry k under p as p.k, the way
// kube-apiserver and package istioyaml write it; an empty key is p[""].
func keyPath(p, k string) string {
	if k == "" {
		return p + `[""]`
	}
	return p + "." + k
}

// Names, hosts and addresses (pkg/config/labels, agent/validation.go).

const dns1123LabelMaxLength = 63

func isAlnum(b byte) bool {
	return ('0' <= b && b <= '9') || ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z')
}

// matchesDNS1123Label matches [a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?
// without a length limit.
func matchesDNS1123Label(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if !isAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// isDNS1123Label ports labels.IsDNS1123Label (upper case allowed).
func isDNS1123Label(s string) bool {
	return len(s) <= dns1123LabelMaxLength && matchesDNS1123Label(s)
}

// isWildcardDNS1123Label ports labels.IsWildcardDNS1123Label: `*`, or a
// label optionally prefixed by `*` or `*-`.
func isWildcardDNS1123Label(s string) bool {
	if len(s) > dns1123LabelMaxLength {
		return false
	}
	if s == "*" {
		return true
	}
	if strings.HasPrefix(s, "*-") && matchesDNS1123Label(s[2:]) {
		return true
	}
	if strings.HasPrefix(s, "*") {
		return matchesDNS1123Label(s[1:])
	}
	return matchesDNS1123Label(s)
}

// isQualifiedName matches (?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9].
func isQualifiedName(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if b := s[i]; !isAlnum(b) && b != '-' && b != '_' && b != '.' {
			return false
		}
	}
	return true
}

// validateTagKey ports labels.validateTagKey: an optional DNS-name prefix
// ending in '/' followed by a qualified name.
func validateTagKey(k string) error {
	prefix, name := "", k
	if i := strings.IndexByte(k, '/'); i >= 0 {
		prefix, name = k[:i], k[i+1:]
		ok := prefix != ""
		for _, l := range strings.Split(prefix, ".") {
			ok = ok && matchesDNS1123Label(l)
		}
		if !ok {
			return fmt.Errorf("invalid tag key: %q", k)
		}
	}
	if !isQualifiedName(name) {
		return fmt.Errorf("invalid tag key: %q", k)
	}
	if len(prefix) > 253 {
		return fmt.Errorf("invalid tag key: %q (DNS prefix is too long)", k)
	}
	if len(name) > dns1123LabelMaxLength {
		return fmt.Errorf("invalid tag key: %q (name is too long)", k)
	}
	return nil
}

// labels ports labels.Instance.Validate, locating each problem at its key.
func (c *checker) labels(p string, l map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(l)) {
		c.add(keyPath(p, k), validateTagKey(k))
		if v := l[k]; v != "" && !isQualifiedName(v) {
			c.err(keyPath(p, k), fmt.Sprintf("invalid tag value: %q", v))
		}
	}
}

func checkDNS1123Preconditions(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("domain name %q too long (max 255)", name)
	}
	if len(name) == 0 {
		return fmt.Errorf("empty domain name not allowed")
	}
	return nil
}

func validateDNS1123Labels(domain string) error {
	parts := strings.Split(domain, ".")
	topLevelDomain := parts[len(parts)-1]
	if _, err := strconv.Atoi(topLevelDomain); err == nil {
		return fmt.Errorf("domain name %q invalid (top level domain %q cannot be all-numeric)", domain, topLevelDomain)
	}
	for i, label := range parts {
		// The last label may be empty, for names like `istio.io.`.
		if i == len(parts)-1 && label == "" {
			return nil
		}
		if !isDNS1123Label(label) {
			return fmt.Errorf("domain name %q invalid (label %q invalid)", domain, label)
		}
	}
	return nil
}

// validateFQDN ports agent.ValidateFQDN.
func validateFQDN(fqdn string) error {
	if err := checkDNS1123Preconditions(fqdn); err != nil {
		return err
	}
	return validateDNS1123Labels(fqdn)
}

// validateWildcardDomain ports agent.ValidateWildcardDomain: an FQDN whose
// first label may be a wildcard.
func validateWildcardDomain(domain string) error {
	if err := checkDNS1123Preconditions(domain); err != nil {
		return err
	}
	first, rest, hasRest := strings.Cut(domain, ".")
	if !isWildcardDNS1123Label(first) {
		return fmt.Errorf("domain name %q invalid (label %q invalid)", domain, first)
	}
	if hasRest {
		return validateDNS1123Labels(rest)
	}
	return nil
}

const (
	outboundHostPrefix     = "outbound"
	outboundHostNameFormat = "outbound_.<PORT>_._.<HOSTNAME>"
)

// validateWildcardDomainForVirtualServiceBoundToGateway ports the agent
// function of that name: SNI hosts may use the outbound_.PORT_._.HOST form
// generated for AUTO_PASSTHROUGH.
func validateWildcardDomainForVirtualServiceBoundToGateway(sni bool, domain string) error {
	if err := checkDNS1123Preconditions(domain); err != nil {
		return err
	}
	if sni && strings.HasPrefix(domain, outboundHostPrefix+"_") {
		parts := strings.Split(domain, "_")
		if len(parts) < 4 {
			return fmt.Errorf("domain name %s invalid, should follow '%s' format", domain, outboundHostNameFormat)
		}
		direction, port, hostname := parts[0], strings.Trim(parts[1], "."), strings.Trim(parts[3], ".")
		if direction != outboundHostPrefix {
			return fmt.Errorf("domain name %q invalid (label %q invalid)", domain, direction)
		}
		// Istio uses unanchored regexps: one digit, or one letter, anywhere.
		if !strings.ContainsAny(port, "0123456789") {
			return fmt.Errorf("domain name %q invalid (label %q invalid). should follow %s format", domain, port, outboundHostNameFormat)
		}
		if !containsASCIILetter(hostname) {
			return fmt.Errorf("domain name %q invalid (label %q invalid). should follow %s format", domain, hostname, outboundHostNameFormat)
		}
		return nil
	}
	return validateWildcardDomain(domain)
}

func containsASCIILetter(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z') {
			return true
		}
	}
	return false
}

// validatePartialWildcard ports agent.ValidatePartialWildCard.
func validatePartialWildcard(host string) error {
	if strings.Contains(host, "*") && len(host) != 1 && !strings.HasPrefix(host, "*.") {
		return fmt.Errorf("partial wildcard %q not allowed", host)
	}
	return nil
}

// isValidIPAddress ports netutil.IsValidIPAddress.
func isValidIPAddress(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsValid()
}

// validateIPAddress ports agent.ValidateIPAddress.
func validateIPAddress(addr string) error {
	if _, err := netip.ParseAddr(addr); err != nil {
		return fmt.Errorf("%v is not a valid IP", addr)
	}
	return nil
}

// validateIPSubnet ports agent.ValidateIPSubnet: an IP or a CIDR block.
func validateIPSubnet(subnet string) error {
	if strings.Count(subnet, "/") == 1 {
		if _, err := netip.ParsePrefix(subnet); err != nil {
			return fmt.Errorf("%v is not a valid CIDR block", subnet)
		}
		return nil
	}
	return validateIPAddress(subnet)
}

// validatePort ports agent.ValidatePort.
func validatePort(port int) error {
	if 1 <= port && port <= 65535 {
		return nil
	}
	return fmt.Errorf("port number %d must be in the range 1..65535", port)
}

// validatePortName ports ValidatePortName.
func validatePortName(name string) error {
	if !isDNS1123Label(name) {
		return fmt.Errorf("invalid port name: %s", name)
	}
	return nil
}

// validateProtocol ports ValidateProtocol; empty means sniffing.
func validateProtocol(p string) error {
	if p != "" && parseProtocol(p) == protocolUnsupported {
		return fmt.Errorf("unsupported protocol: %s", p)
	}
	return nil
}

const unixAddressPrefix = "unix://"

// validateUnixAddress ports ValidateUnixAddress.
func validateUnixAddress(addr string) error {
	if len(addr) == 0 {
		return fmt.Errorf("unix address must not be empty")
	}
	// Abstract sockets start with @.
	if strings.HasPrefix(addr, "@") {
		return nil
	}
	if !path.IsAbs(addr) || strings.HasSuffix(addr, "/") {
		return fmt.Errorf("%s is not an absolute path to a file", addr)
	}
	return nil
}

// validateDuration ports agent.ValidateDuration: at least 1ms, whole ms.
func validateDuration(pd *durationpb.Duration) error {
	dur := pd.AsDuration()
	if dur < time.Millisecond {
		return fmt.Errorf("duration must be greater than 1ms")
	}
	if dur%time.Millisecond != 0 {
		return fmt.Errorf("only durations to ms precision are supported")
	}
	return nil
}

// validatePercent ports ValidatePercent (integer percentages).
func validatePercent(val int32) error {
	if val < 0 || val > 100 {
		return fmt.Errorf("percentage %v is not in range 0..100", val)
	}
	return nil
}

// validatePercentage ports validatePercentage (fractional percentages).
func validatePercentage(p *networking.Percent) error {
	if p != nil {
		if p.Value < 0.0 || p.Value > 100.0 || (p.Value > 0.0 && p.Value < 0.0001) {
			return fmt.Errorf("percentage %v is neither 0.0, nor in range [0.0001, 100.0]", p.Value)
		}
	}
	return nil
}

// Protocols (pkg/config/protocol).

type protocolKind int

const (
	protocolUnsupported protocolKind = iota
	protocolTCP
	protocolUDP
	protocolGRPC
	protocolGRPCWeb
	protocolHTTP
	protocolHTTPProxy
	protocolHTTP2
	protocolHTTPS
	protocolTLS
	protocolMongo
	protocolRedis
	protocolMySQL
)

// parseProtocol ports protocol.Parse (case-insensitive).
func parseProtocol(s string) protocolKind {
	switch strings.ToLower(s) {
	case "tcp":
		return protocolTCP
	case "udp":
		return protocolUDP
	case "grpc":
		return protocolGRPC
	case "grpc-web":
		return protocolGRPCWeb
	case "http":
		return protocolHTTP
	case "http_proxy":
		return protocolHTTPProxy
	case "http2":
		return protocolHTTP2
	case "https":
		return protocolHTTPS
	case "tls":
		return protocolTLS
	case "mongo":
		return protocolMongo
	case "redis":
		return protocolRedis
	case "mysql":
		return protocolMySQL
	}
	return protocolUnsupported
}

func (p protocolKind) isHTTP() bool {
	switch p {
	case protocolHTTP, protocolHTTP2, protocolHTTPProxy, protocolGRPC, protocolGRPCWeb:
		return true
	}
	return false
}

func (p protocolKind) isTCP() bool {
	switch p {
	case protocolTCP, protocolHTTPS, protocolTLS, protocolMongo, protocolRedis, protocolMySQL:
		return true
	}
	return false
}

func (p protocolKind) isTLS() bool {
	return p == protocolHTTPS || p == protocolTLS
}

// exportTo ports validateExportTo.
func (c *checker) exportTo(p string, exportTo []string, isServiceEntry, isDestinationRuleWithSelector bool) {
	if len(exportTo) == 0 {
		return
	}
	namespace := c.obj.Namespace
	seen := make(map[string]bool, len(exportTo))
	for i, e := range exportTo {
		key := e
		if e == "." {
			// Substitute the namespace to catch ". and namespace" duplicates.
			key = namespace
		}
		switch {
		case seen[key] && key != e:
			c.err(indexPath(p, i), fmt.Sprintf("duplicate entries in exportTo: . and current namespace %s", namespace))
		case seen[key]:
			c.err(indexPath(p, i), fmt.Sprintf("duplicate entries in exportTo for entry %s", e))
		case isServiceEntry && e == "~":
			// A ServiceEntry may be exported to no one but its own proxies.
			seen[key] = true
		default:
			if err := validateVisibility(key); err != nil {
				c.err(indexPath(p, i), err.Error())
			} else {
				seen[key] = true
			}
		}
	}
	if isDestinationRuleWithSelector && len(seen) > 0 {
		if seen[namespace] {
			if len(seen) > 1 {
				c.err(p, "destination rule with workload selector cannot have multiple entries in exportTo")
			}
		} else {
			c.err(p, "destination rule with workload selector cannot have exportTo beyond current namespace")
		}
	}
	if seen["*"] && len(exportTo) > 1 {
		c.err(p, "cannot have both public (*) and non-public exportTo values for a resource")
	}
	if seen["~"] && len(exportTo) > 1 {
		c.err(p, "cannot export service entry to no one (~) and someone")
	}
}

// validateVisibility ports visibility.Instance.Validate.
func validateVisibility(v string) error {
	switch v {
	case ".", "*":
		return nil
	case "~":
		return fmt.Errorf("exportTo ~ (none) is not allowed for Istio configuration objects")
	}
	if !isDNS1123Label(v) {
		return fmt.Errorf("only .,*, or a valid DNS 1123 label is allowed as exportTo entry")
	}
	return nil
}

// alphaWorkloadSelector ports ValidateAlphaWorkloadSelector for the
// networking WorkloadSelector of ServiceEntry and Sidecar. It reports
// whether the selector has errors (Istio then stops validating) and whether
// it has no labels (a warning the caller words).
func (c *checker) alphaWorkloadSelector(p string, selector *networking.WorkloadSelector) (failed, noLabels bool) {
	if selector == nil {
		return false, false
	}
	before := c.errorCount()
	for _, k := range slices.Sorted(maps.Keys(selector.Labels)) {
		v := selector.Labels[k]
		if k == "" {
			c.err(keyPath(p+".labels", k), fmt.Sprintf("empty key is not supported in selector: %q", k+"="+v))
		}
		if strings.Contains(k, "*") || strings.Contains(v, "*") {
			c.err(keyPath(p+".labels", k), fmt.Sprintf("wildcard is not supported in selector: %q", k+"="+v))
		}
	}
	return c.errorCount() > before, len(selector.Labels) == 0
}
