package istioyaml

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
)

// Object is one decoded Kubernetes-style document of an Istio configuration
// file: an Istio networking resource (Spec set) or a Kubernetes Service
// (Service set).
type Object struct {
	// Where the object came from, for messages.
	File string // file name as given to Decode ("" for stdin or the admin API)
	Doc  int    // 1-based document number within File
	Line int    // 1-based line where the document starts in File

	APIVersion  string
	Kind        string // VirtualService, DestinationRule, Gateway, ServiceEntry, WorkloadEntry, Sidecar or Service
	Name        string
	Namespace   string // metadata.namespace, or the default namespace when empty
	Labels      map[string]string
	Annotations map[string]string

	// Spec is the strictly decoded istio.io/api message (a pointer to
	// networking/v1alpha3.VirtualService, DestinationRule, Gateway,
	// ServiceEntry, WorkloadEntry or Sidecar). Nil for a Kubernetes Service.
	Spec proto.Message

	// Service is the decoded spec of a Kubernetes Service (kind Service,
	// apiVersion v1). Nil for Istio kinds.
	Service *KubeService

	// The object's YAML source, for LineOf: its document, or for an item of
	// a List document, the item's own lines when they can be cut out.
	src          []byte
	srcFirstLine int    // file line of src's first byte
	srcPrefix    string // path of the object within src: "", "[0]." (a cut-out item) or "items[i]."

	// fields is the object as decoded JSON, null map values pruned, for Has:
	// its JSON encoding (compact, keys sorted), which the garbage collector
	// need not scan, unlike the decoded tree.
	fields []byte
}

// Has reports whether the object's document wrote field (a path like
// Problem.Field: spec.ports[0].targetPort, camelCase names, matching
// snake_case keys too) with a value other than null. kube-apiserver's
// schema rules that use CRD "required", CEL has() or minItems depend on it,
// and the decoded message cannot tell a field written as its zero value
// ("targetPort: 0", "endpoints: []") from an absent one. An object not made
// by Decode has no such record: Has reports false, as for a zero value.
func (o *Object) Has(field string) bool {
	v := o.fields
	if v == nil {
		v = []byte("{}")
	}
	for path := field; path != ""; {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 || v[0] != '[' {
				return false
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil || i < 0 {
				return false
			}
			elem, ok := jsonArrayElement(v, i)
			if !ok {
				return false
			}
			v, path = elem, path[end+1:]
		default:
			if v[0] != '{' {
				return false
			}
			var size int
			if v, size = fieldValue(v, path); size == 0 {
				return false
			}
			path = path[size:]
		}
	}
	return string(v) != "null"
}

// fieldValue finds the member of the JSON object obj that path starts with
// and returns its value and the length of the key in path (0 if none).
// Keys may contain dots, like label keys, so the longest match wins; a
// snake_case key matches its camelCase form.
func fieldValue(obj []byte, path string) (value []byte, size int) {
	end := strings.IndexAny(path, ".[")
	jsonMembers(obj, func(key string, v []byte) bool {
		if end > 0 {
			if key == path[:end] {
				value, size = v, end
			}
		} else if key == path {
			value, size = v, len(path)
			return false
		}
		return true
	})
	if end < 0 && size > 0 {
		return value, size
	}
	jsonMembers(obj, func(key string, v []byte) bool {
		name := key
		if strings.IndexByte(key, '_') >= 0 {
			name = jsonCamelCase(key)
		}
		if len(name) > size && segmentMatches(path, name) {
			value, size = v, len(name)
		}
		return true
	})
	return value, size
}

// Ref names the object for messages: "VirtualService default/reviews".
func (o *Object) Ref() string {
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// KubeService is the part of a Kubernetes core/v1 Service that Istio uses to
// build a service in its registry: ports and the pod (or WorkloadEntry)
// selector.
type KubeService struct {
	Selector map[string]string `json:"selector,omitempty"`
	Ports    []KubeServicePort `json:"ports,omitempty"`
	// ClusterIP is kept for completeness; "None" marks a headless service.
	ClusterIP string `json:"clusterIP,omitempty"`
}

// KubeServicePort is one entry of a Service's spec.ports.
type KubeServicePort struct {
	Name        string `json:"name,omitempty"`
	Protocol    string `json:"protocol,omitempty"` // TCP (default), UDP, SCTP
	AppProtocol string `json:"appProtocol,omitempty"`
	Port        int32  `json:"port"`
	// TargetPort is the endpoint port: a number, or the name of a container
	// (or WorkloadEntry) port. Empty means the same as Port.
	TargetPort      string `json:"-"`
	TargetPortInt   int32  `json:"-"` // set when targetPort is a number
	TargetPortIsInt bool   `json:"-"`
}

// Problem is an error or a warning about one field of one document. Its
// Error text is one line naming file, document, resource and field, e.g.
//
//	mesh.yaml: document 3 (VirtualService default/reviews): spec.http[0].route[1].weight: weight -10 < 0
type Problem struct {
	File      string
	Doc       int // 1-based; 0 when the problem is about the whole file
	Line      int // 1-based line of the problem: its field's line when known, else the document start; 0 if unknown
	Kind      string
	Namespace string
	Name      string
	Field     string // JSON path with camelCase names, e.g. spec.http[0].route[1].weight; "" for the whole document
	Message   string
}

// Error formats the problem as one line.
func (p Problem) Error() string {
	var b strings.Builder
	file := p.File
	if file == "" {
		file = "<input>"
	}
	b.WriteString(file)
	if p.Doc > 0 {
		fmt.Fprintf(&b, ": document %d", p.Doc)
		if p.Kind != "" {
			b.WriteString(" (")
			b.WriteString(p.Kind)
			if p.Name != "" || p.Namespace != "" {
				b.WriteString(" ")
				b.WriteString(p.Namespace)
				b.WriteString("/")
				b.WriteString(p.Name)
			}
			b.WriteString(")")
		}
	}
	if p.Field != "" {
		b.WriteString(": ")
		b.WriteString(p.Field)
	}
	b.WriteString(": ")
	b.WriteString(strings.ReplaceAll(p.Message, "\n", "; "))
	return b.String()
}

// ProblemFor starts a Problem located at obj and field.
func ProblemFor(obj *Object, field, message string) Problem {
	return Problem{
		File: obj.File, Doc: obj.Doc, Line: obj.Line,
		Kind: obj.Kind, Namespace: obj.Namespace, Name: obj.Name,
		Field: field, Message: message,
	}
}
