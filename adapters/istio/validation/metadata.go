package validation

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
)

// Istio's internal and dry-run annotations, rejected on every networking
// object by validateMetadata.
const (
	annotationDryRun                   = "istio.io/dry-run"
	annotationAlwaysReject             = "internal.istio.io/webhook-always-reject"
	annotationInternalParentNS         = "internal.istio.io/parent-namespace"
	annotationInternalParentNames      = "internal.istio.io/parents"
	annotationInternalRouteSemantics   = "internal.istio.io/route-semantics"
	annotationInternalGatewaySemantics = "internal.istio.io/gateway-semantics"
	semanticsGateway                   = "gateway"
)

// istioMetadata ports Istio's validateMetadata wrapper. Like Istio it stops
// the validation at the first annotation problem; it reports whether to go
// on.
func (c *checker) istioMetadata() bool {
	ann := c.obj.Annotations
	if _, found := ann[annotationDryRun]; found {
		// Only AuthorizationPolicy supports the dry-run annotation.
		c.err(keyPath("metadata.annotations", annotationDryRun), fmt.Sprintf("%s/%s has unsupported annotation %s, please remove the annotation",
			c.obj.Namespace, c.obj.Name, annotationDryRun))
		return false
	}
	for _, a := range []string{annotationAlwaysReject} {
		if _, found := ann[a]; found {
			c.err(keyPath("metadata.annotations", a), fmt.Sprintf("%q annotation found, rejecting", a))
			return false
		}
	}
	for _, a := range []string{annotationInternalParentNS, annotationInternalParentNames} {
		if _, found := ann[a]; found {
			c.err(keyPath("metadata.annotations", a), fmt.Sprintf("%q annotation found, this may not be set by users", a))
			return false
		}
	}
	return true
}

// kubeService runs basic checks on a Kubernetes Service: the ones
// kube-apiserver would apply to the ports Istio reads.
func (c *checker) kubeService(svc *istioyaml.KubeService) {
	names := make(map[string]bool, len(svc.Ports))
	for i, p := range svc.Ports {
		pp := indexPath("spec.ports", i)
		if len(svc.Ports) > 1 && p.Name == "" {
			c.err(pp+".name", "Required value")
		}
		if p.Name != "" {
			for _, msg := range kubeDNS1123Label(p.Name) {
				c.err(pp+".name", fmt.Sprintf("Invalid value: %q: %s", p.Name, msg))
			}
			if names[p.Name] {
				c.err(pp+".name", fmt.Sprintf("Duplicate value: %q", p.Name))
			}
			names[p.Name] = true
		}
		if p.Port < 1 || p.Port > 65535 {
			c.err(pp+".port", fmt.Sprintf("Invalid value: %d: must be between 1 and 65535, inclusive", p.Port))
		}
		if p.TargetPortIsInt && (p.TargetPortInt < 1 || p.TargetPortInt > 65535) {
			c.err(pp+".targetPort", fmt.Sprintf("Invalid value: %d: must be between 1 and 65535, inclusive", p.TargetPortInt))
		}
	}
}

// objectMeta ports kube-apiserver's ValidateObjectMetaAccessor for the
// parts of metadata an Object keeps: name, namespace, labels, annotations.
// nameCheck is the kind's name rule (DNS-1123 subdomain for Istio custom
// resources, DNS-1035 label for Services).
func (c *checker) objectMeta(nameCheck func(string) []string) {
	o := c.obj
	if o.Name == "" {
		c.err("metadata.name", "Required value: name or generateName is required")
	} else {
		for _, msg := range nameCheck(o.Name) {
			c.err("metadata.name", fmt.Sprintf("Invalid value: %q: %s", o.Name, msg))
		}
	}
	if o.Namespace == "" {
		c.err("metadata.namespace", "Required value")
	} else {
		for _, msg := range kubeDNS1123Label(o.Namespace) {
			c.err("metadata.namespace", fmt.Sprintf("Invalid value: %q: %s", o.Namespace, msg))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
		for _, msg := range kubeLabelKey(k) {
			c.err("metadata.labels", fmt.Sprintf("Invalid value: %q: %s", k, msg))
		}
		for _, msg := range kubeLabelValue(o.Labels[k]) {
			c.err("metadata.labels", fmt.Sprintf("Invalid value: %q: %s", o.Labels[k], msg))
		}
	}
	size := 0
	for _, k := range slices.Sorted(maps.Keys(o.Annotations)) {
		size += len(k) + len(o.Annotations[k])
		// Annotation keys are label keys, case-insensitively.
		for _, msg := range kubeLabelKey(strings.ToLower(k)) {
			c.err("metadata.annotations", fmt.Sprintf("Invalid value: %q: %s", k, msg))
		}
	}
	const totalAnnotationSizeLimit = 256 * 1024
	if size > totalAnnotationSizeLimit {
		c.err("metadata.annotations", fmt.Sprintf("Too long: may not be more than %d bytes", totalAnnotationSizeLimit))
	}
}

// Kubernetes name formats (k8s.io/apimachinery/pkg/api/validate/content),
// returning kube-apiserver's messages.

const (
	kubeDNS1123LabelFmt     = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
	kubeDNS1123SubdomainFmt = kubeDNS1123LabelFmt + "(\\." + kubeDNS1123LabelFmt + ")*"
	kubeDNS1035LabelFmt     = "[a-z]([-a-z0-9]*[a-z0-9])?"
	kubeLabelKeyFmt         = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
	kubeLabelKeyErrMsg      = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)

// kubeMaxLenError words a length limit; object names count "characters",
// label keys and values (content.MaxLenError) "bytes".
func kubeMaxLenError(n int, unit string) string {
	return fmt.Sprintf("must be no more than %d %s", n, unit)
}

func kubeRegexError(msg, format string, examples ...string) string {
	msg += " (e.g. "
	for i, e := range examples {
		if i > 0 {
			msg += " or "
		}
		msg += "'" + e + "', "
	}
	return msg + "regex used for validation is '" + format + "')"
}

// isKubeLabel matches a lower-case DNS label without a length limit;
// firstAlpha demands a letter first (DNS-1035).
func isKubeLabel(s string, firstAlpha bool) bool {
	lowerAlnum := func(b byte) bool { return ('a' <= b && b <= 'z') || ('0' <= b && b <= '9') }
	if s == "" || !lowerAlnum(s[0]) || !lowerAlnum(s[len(s)-1]) || (firstAlpha && !('a' <= s[0] && s[0] <= 'z')) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if !lowerAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func isKubeSubdomain(s string) bool {
	for _, l := range strings.Split(s, ".") {
		if !isKubeLabel(l, false) {
			return false
		}
	}
	return true
}

func kubeDNS1123Label(v string) []string {
	var errs []string
	if len(v) > 63 {
		errs = append(errs, kubeMaxLenError(63, "characters"))
	}
	if !isKubeLabel(v, false) {
		if isKubeSubdomain(v) {
			errs = append(errs, "must not contain dots")
		} else {
			errs = append(errs, kubeRegexError("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
				kubeDNS1123LabelFmt, "my-name", "123-abc"))
		}
	}
	return errs
}

func kubeDNS1123Subdomain(v string) []string {
	return kubeSubdomain(v, "characters")
}

func kubeSubdomain(v, unit string) []string {
	var errs []string
	if len(v) > 253 {
		errs = append(errs, kubeMaxLenError(253, unit))
	}
	if !isKubeSubdomain(v) {
		errs = append(errs, kubeRegexError("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
			kubeDNS1123SubdomainFmt, "example.com"))
	}
	return errs
}

func kubeDNS1035Label(v string) []string {
	var errs []string
	if len(v) > 63 {
		errs = append(errs, kubeMaxLenError(63, "characters"))
	}
	if !isKubeLabel(v, true) {
		errs = append(errs, kubeRegexError("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
			kubeDNS1035LabelFmt, "my-name", "abc-123"))
	}
	return errs
}

// kubeLabelKey ports content.IsLabelKey: an optional DNS subdomain prefix
// and '/', then a name.
func kubeLabelKey(v string) []string {
	var errs []string
	parts := strings.Split(v, "/")
	var name string
	switch len(parts) {
	case 1:
		name = parts[0]
	case 2:
		prefix := parts[0]
		name = parts[1]
		if prefix == "" {
			errs = append(errs, "prefix part must be non-empty")
		} else {
			for _, msg := range kubeSubdomain(prefix, "bytes") {
				errs = append(errs, "prefix part "+msg)
			}
		}
	default:
		return append(errs, "a valid label key "+kubeRegexError(kubeLabelKeyErrMsg, kubeLabelKeyFmt, "MyName", "my.name", "123-abc")+
			" with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
	}
	if name == "" {
		errs = append(errs, "name part must be non-empty")
	} else if len(name) > 63 {
		errs = append(errs, "name part "+kubeMaxLenError(63, "bytes"))
	}
	if !isQualifiedName(name) {
		errs = append(errs, "name part "+kubeRegexError(kubeLabelKeyErrMsg, kubeLabelKeyFmt, "MyName", "my.name", "123-abc"))
	}
	return errs
}

// kubeLabelValue ports content.IsLabelValue.
func kubeLabelValue(v string) []string {
	var errs []string
	if len(v) > 63 {
		errs = append(errs, kubeMaxLenError(63, "bytes"))
	}
	if v != "" && !isQualifiedName(v) {
		errs = append(errs, kubeRegexError("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
			"("+kubeLabelKeyFmt+")?", "MyValue", "my_value", "12345"))
	}
	return errs
}
