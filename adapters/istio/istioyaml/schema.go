package istioyaml

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	protov1 "github.com/golang/protobuf/proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/runtime/protoiface"
)

// issue is one problem found by the schema walk, before it becomes a
// Problem.
type issue struct {
	field   string // path relative to the object, e.g. spec.http[0].timeout
	message string
	// refine, if set, rewrites message given the YAML source of the value
	// (e.g. "yes" or "true"), to give the right hint.
	refine    func(scalar string) string
	line, col int // position in the file, for ordering
}

// maxIssues bounds the work and memory spent on a hopeless document; only
// the first issue is reported anyway.
const maxIssues = 1000

// schemaWalker checks decoded JSON (numbers as json.Number) against protobuf
// message descriptors the way golang/protobuf's jsonpb reads it, plus the
// checks jsonpb lacks (oneof conflicts, undefined enum numbers), and records
// every issue with its JSON path.
type schemaWalker struct {
	path   []byte
	issues []issue
}

func newSchemaWalker() *schemaWalker {
	return &schemaWalker{path: make([]byte, 0, 128)}
}

// add records an issue at an explicit path.
func (w *schemaWalker) add(field, message string) {
	if len(w.issues) < maxIssues {
		w.issues = append(w.issues, issue{field: field, message: message})
	}
}

// fail records an issue at the current path.
func (w *schemaWalker) fail(message string) {
	w.add(string(w.path), message)
}

// failRefined records an issue at the current path whose message depends on
// how the value was written in YAML.
func (w *schemaWalker) failRefined(message string, refine func(string) string) {
	if len(w.issues) < maxIssues {
		w.issues = append(w.issues, issue{field: string(w.path), message: message, refine: refine})
	}
}

// push appends a field name to the current path and returns the length to
// pop back to.
func (w *schemaWalker) push(name string) int {
	n := len(w.path)
	if n > 0 {
		w.path = append(w.path, '.')
	}
	w.path = append(w.path, name...)
	return n
}

// pushIndex appends a list index to the current path.
func (w *schemaWalker) pushIndex(i int) int {
	n := len(w.path)
	w.path = append(w.path, '[')
	w.path = strconv.AppendInt(w.path, int64(i), 10)
	w.path = append(w.path, ']')
	return n
}

func (w *schemaWalker) pop(n int) { w.path = w.path[:n] }

// withPath runs fn with name appended to the current path.
func (w *schemaWalker) withPath(name string, fn func()) {
	n := w.push(name)
	fn()
	w.pop(n)
}

// crdAltNames are the fields whose proto name the CRD schema declares
// beside the JSON name (+kubebuilder:altName). When both are written,
// jsonpb keeps the JSON name's value, for Istio and for us alike.
var crdAltNames = map[protoreflect.FullName]bool{
	"istio.networking.v1alpha3.HTTPRoute.mirror_percent": true,
}

// message checks a JSON object against a message descriptor.
func (w *schemaWalker) message(md protoreflect.MessageDescriptor, obj map[string]any) {
	fields := md.Fields()
	var seenBuf [16]protoreflect.FieldDescriptor
	seen := seenBuf[:0]
	oneofConflict := false
	for key, val := range obj {
		fd := fields.ByJSONName(key)
		if fd == nil {
			// jsonpb also reads the proto name (mirror_percentage), but
			// the CRD schema knows only the JSON name and its altNames, so
			// kube-apiserver rejects any other.
			byName := fields.ByName(protoreflect.Name(key))
			if byName != nil && crdAltNames[byName.FullName()] {
				fd = byName
			} else {
				message := fmt.Sprintf("unknown field %q in %s", key, md.FullName())
				if byName != nil {
					message += fmt.Sprintf(" (write %q)", byName.JSONName())
				}
				n := w.push(key)
				w.fail(message)
				w.pop(n)
				continue
			}
		}
		if val == nil && !isValueField(fd) {
			continue // null means unset, as in jsonpb
		}
		for _, s := range seen {
			if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && s.ContainingOneof() == od {
				oneofConflict = true
			}
		}
		seen = append(seen, fd)
		n := w.push(key)
		w.field(fd, val)
		w.pop(n)
	}
	if oneofConflict {
		w.oneofConflicts(md, seen)
	}
}

// oneofConflicts reports each real oneof of md with more than one member
// set; jsonpb would silently keep one of them.
func (w *schemaWalker) oneofConflicts(md protoreflect.MessageDescriptor, set []protoreflect.FieldDescriptor) {
	oneofs := md.Oneofs()
	for i := 0; i < oneofs.Len(); i++ {
		od := oneofs.Get(i)
		if od.IsSynthetic() {
			continue
		}
		count := 0
		for _, fd := range set {
			if fd.ContainingOneof() == od {
				count++
			}
		}
		if count < 2 {
			continue
		}
		members := od.Fields()
		names := make([]string, members.Len())
		for j := range names {
			names[j] = members.Get(j).JSONName()
		}
		w.fail("only one of " + strings.Join(names, ", ") + " may be set")
	}
}

// isValueField reports whether null is a value (google.protobuf.Value's
// null_value) rather than "unset" for fd.
func isValueField(fd protoreflect.FieldDescriptor) bool {
	if fd.Cardinality() == protoreflect.Repeated {
		return false
	}
	if md := fd.Message(); md != nil {
		return md.FullName() == "google.protobuf.Value"
	}
	if ed := fd.Enum(); ed != nil {
		return ed.FullName() == "google.protobuf.NullValue"
	}
	return false
}

// field checks the value of one field, list or map included.
func (w *schemaWalker) field(fd protoreflect.FieldDescriptor, v any) {
	switch {
	case fd.IsList():
		list, ok := v.([]any)
		if !ok {
			w.fail("must be an array, got " + describe(v))
			return
		}
		// kube-apiserver keeps a null element (only null map values and
		// fields are pruned) and its schema rejects it; jsonpb would append
		// a zero value. singular reports it as the wrong type.
		for i, elem := range list {
			n := w.pushIndex(i)
			w.singular(fd, elem)
			w.pop(n)
		}
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			w.fail("must be an object, got " + describe(v))
			return
		}
		keyFD, valueFD := fd.MapKey(), fd.MapValue()
		for key, elem := range m {
			if elem == nil {
				// kube-apiserver prunes a null map value before its checks,
				// so the entry is absent for Istio; jsonpb would add a zero
				// value (port 0).
				delete(m, key)
				continue
			}
			n := w.push(key)
			if keyFD.Kind() != protoreflect.StringKind {
				w.mapKey(keyFD, key)
			}
			w.singular(valueFD, elem)
			w.pop(n)
		}
	default:
		w.singular(fd, v)
	}
}

// mapKey checks a map key of a non-string key type; jsonpb parses it as
// the JSON text of the key's scalar.
func (w *schemaWalker) mapKey(fd protoreflect.FieldDescriptor, key string) {
	var err error
	switch fd.Kind() {
	case protoreflect.BoolKind:
		var b bool
		err = json.Unmarshal([]byte(key), &b)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		var i int32
		err = json.Unmarshal([]byte(key), &i)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		var i int64
		err = json.Unmarshal([]byte(key), &i)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		var i uint32
		err = json.Unmarshal([]byte(key), &i)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		var i uint64
		err = json.Unmarshal([]byte(key), &i)
	}
	if err != nil {
		w.fail(fmt.Sprintf("map key %q is not a valid %s", key, fd.Kind()))
	}
}

// singular checks one non-null value of fd's type (an element, for lists
// and maps).
func (w *schemaWalker) singular(fd protoreflect.FieldDescriptor, v any) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			w.fail("must be a boolean, got " + describe(v))
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		w.integer(fd.Kind(), v)
	case protoreflect.FloatKind:
		w.float(32, v)
	case protoreflect.DoubleKind:
		w.float(64, v)
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			w.notString(v)
		}
	case protoreflect.BytesKind:
		if s, ok := v.(string); !ok || !base64RE.MatchString(s) {
			w.fail(`must be a base64 string (standard alphabet, "=" padded, not empty), got ` + describe(v))
		}
	case protoreflect.EnumKind:
		w.enum(fd.Enum(), v)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		w.messageValue(fd.Message(), v)
	default:
		w.fail(fmt.Sprintf("unsupported field kind %s", fd.Kind()))
	}
}

// notString reports a non-string value where a string is needed, with a
// hint for the YAML 1.1 scalars that sigs.k8s.io/yaml turns into booleans
// and numbers.
func (w *schemaWalker) notString(v any) {
	base := "must be a string, got " + describe(v)
	if _, isBool := v.(bool); isBool {
		w.failRefined(base+yaml11BoolHint, func(scalar string) string {
			switch strings.ToLower(scalar) {
			case "true", "false":
				return base + " (quote it to make it a string)"
			}
			return base + yaml11BoolHint
		})
		return
	}
	w.fail(base + stringHint(v))
}

const yaml11BoolHint = " (YAML 1.1 reads unquoted yes/no/on/off as booleans; quote it)"

// stringHint suggests quoting for a scalar that YAML did not read as a
// string.
func stringHint(v any) string {
	switch v.(type) {
	case bool:
		return yaml11BoolHint
	case json.Number:
		return " (quote it)"
	}
	return ""
}

// integer checks an integer of the given kind. Unlike jsonpb, which also
// reads "50", the CRD schema ("type: integer") takes only a JSON number.
func (w *schemaWalker) integer(kind protoreflect.Kind, v any) {
	bits := 64
	unsigned := false
	switch kind {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		bits = 32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		bits, unsigned = 32, true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		unsigned = true
	}
	x, ok := v.(json.Number)
	if !ok {
		w.fail(fmt.Sprintf("must be an integer (%s), got %s%s", kind, describe(v), quotedNumberHint(v)))
		return
	}
	if err := parseInteger(string(x), bits, unsigned); err != nil {
		if strings.ContainsAny(string(x), ".eE") {
			w.fail(fmt.Sprintf("must be an integer (%s), got number %s", kind, x))
		} else {
			w.fail(fmt.Sprintf("number %s is out of range for %s (%s)", x, kind, integerRange(bits, unsigned)))
		}
	}
}

// quotedNumberHint suggests dropping the quotes of a number written as a
// string, which jsonpb would read but the CRD schema rejects.
func quotedNumberHint(v any) string {
	if s, ok := v.(string); ok && isJSONNumber(s) {
		return " (write the number without quotes)"
	}
	return ""
}

// isJSONNumber reports whether s is a JSON number literal.
func isJSONNumber(s string) bool {
	var n json.Number
	return s != "" && json.Unmarshal([]byte(s), &n) == nil
}

// parseInteger parses a JSON number literal the way encoding/json does for
// Go integer types. A 64-bit unsigned integer is limited to the int64 range:
// kube-apiserver reads a larger number as a float, which "type: integer"
// rejects.
func parseInteger(s string, bits int, unsigned bool) error {
	var err error
	switch {
	case unsigned && bits == 64:
		var n uint64
		if n, err = strconv.ParseUint(s, 10, 64); err == nil && n > math.MaxInt64 {
			err = strconv.ErrRange
		}
	case unsigned:
		_, err = strconv.ParseUint(s, 10, bits)
	default:
		_, err = strconv.ParseInt(s, 10, bits)
	}
	return err
}

func integerRange(bits int, unsigned bool) string {
	switch {
	case bits == 32 && unsigned:
		return "0 to 4294967295"
	case bits == 32:
		return "-2147483648 to 2147483647"
	case unsigned:
		return "0 to 9223372036854775807, the largest integer kube-apiserver reads"
	default:
		return "-9223372036854775808 to 9223372036854775807"
	}
}

// float checks a float or double. Unlike jsonpb, which also reads "1.5",
// "NaN" and "Infinity", the CRD schema ("type: number") takes only a JSON
// number.
func (w *schemaWalker) float(bits int, v any) {
	name := "double"
	if bits == 32 {
		name = "float"
	}
	x, ok := v.(json.Number)
	if !ok {
		w.fail(fmt.Sprintf("must be a number (%s), got %s%s", name, describe(v), quotedNumberHint(v)))
		return
	}
	if _, err := strconv.ParseFloat(string(x), bits); err != nil {
		w.fail(fmt.Sprintf("number %s is out of range for %s", x, name))
	}
}

// enum checks an enum: a value name as in the proto. The CRD schema
// ("type: string" with an enum list) rejects the value's number, which
// jsonpb would read.
func (w *schemaWalker) enum(ed protoreflect.EnumDescriptor, v any) {
	values := ed.Values()
	switch x := v.(type) {
	case string:
		if values.ByName(protoreflect.Name(x)) == nil {
			w.fail(fmt.Sprintf("unknown value %q for enum %s (want one of %s)", x, ed.FullName(), enumNames(ed)))
		}
	case json.Number:
		hint := "write one of " + enumNames(ed)
		if n, err := strconv.ParseInt(string(x), 10, 32); err == nil {
			if vd := values.ByNumber(protoreflect.EnumNumber(n)); vd != nil {
				hint = "write its name, " + string(vd.Name())
			}
		}
		w.fail(fmt.Sprintf("must be a string (enum %s), got number %s: %s", ed.FullName(), x, hint))
	default:
		w.fail(fmt.Sprintf("must be a string (enum %s), got %s", ed.FullName(), describe(v)))
	}
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	values := ed.Values()
	names := make([]string, values.Len())
	for i := range names {
		names[i] = string(values.Get(i).Name())
	}
	return strings.Join(names, ", ")
}

// messageValue checks the JSON form of a message, well-known types included.
func (w *schemaWalker) messageValue(md protoreflect.MessageDescriptor, v any) {
	switch md.FullName() {
	case "google.protobuf.Duration":
		s, ok := v.(string)
		if !ok {
			w.fail(`must be a string (google.protobuf.Duration, e.g. "5s"), got ` + describe(v))
			return
		}
		if _, err := time.ParseDuration(s); err != nil {
			w.fail("bad Duration: " + err.Error())
		}
	case "google.protobuf.Timestamp":
		s, ok := v.(string)
		if !ok {
			w.fail(`must be a string (google.protobuf.Timestamp, RFC 3339), got ` + describe(v))
			return
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			w.fail("bad Timestamp: " + err.Error())
		}
	case "google.protobuf.BoolValue", "google.protobuf.BytesValue", "google.protobuf.StringValue",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value", "google.protobuf.DoubleValue":
		// Wrappers take the bare scalar.
		w.singular(md.Fields().ByNumber(1), v)
	case "google.protobuf.Struct":
		m, ok := v.(map[string]any)
		if !ok {
			w.fail("must be an object (google.protobuf.Struct), got " + describe(v))
			return
		}
		for key, elem := range m {
			n := w.push(key)
			w.jsonValue(elem)
			w.pop(n)
		}
	case "google.protobuf.Value":
		w.jsonValue(v)
	case "google.protobuf.ListValue":
		list, ok := v.([]any)
		if !ok {
			w.fail("must be an array (google.protobuf.ListValue), got " + describe(v))
			return
		}
		for i, elem := range list {
			n := w.pushIndex(i)
			w.jsonValue(elem)
			w.pop(n)
		}
	case "google.protobuf.Any":
		w.anyValue(v)
	default:
		m, ok := v.(map[string]any)
		if !ok {
			w.fail(fmt.Sprintf("must be an object (%s), got %s", md.FullName(), describe(v)))
			return
		}
		w.message(md, m)
	}
}

// jsonValue checks a google.protobuf.Value: any JSON, but numbers must fit
// a double.
func (w *schemaWalker) jsonValue(v any) {
	switch x := v.(type) {
	case json.Number:
		if _, err := strconv.ParseFloat(string(x), 64); err != nil {
			w.fail(fmt.Sprintf("number %s is out of range for double", x))
		}
	case []any:
		for i, elem := range x {
			n := w.pushIndex(i)
			w.jsonValue(elem)
			w.pop(n)
		}
	case map[string]any:
		for key, elem := range x {
			n := w.push(key)
			w.jsonValue(elem)
			w.pop(n)
		}
	}
}

// anyValue checks a google.protobuf.Any: "@type" names a registered message,
// whose fields sit beside it ("value" for well-known types).
func (w *schemaWalker) anyValue(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		w.fail("must be an object (google.protobuf.Any), got " + describe(v))
		return
	}
	typeURL, ok := m["@type"].(string)
	if !ok {
		w.fail(`google.protobuf.Any needs a string "@type"`)
		return
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		if errors.Is(err, protoregistry.NotFound) {
			w.fail("could not resolve Any message type: " + typeURL)
		} else {
			w.fail(err.Error())
		}
		return
	}
	md := mt.Descriptor()
	if md.FullName().Parent() == "google.protobuf" && isWellKnown(md.Name()) {
		value, ok := m["value"]
		if !ok {
			w.fail(`google.protobuf.Any of a well-known type needs "value"`)
			return
		}
		n := w.push("value")
		w.messageValue(md, value)
		w.pop(n)
		return
	}
	rest := make(map[string]any, len(m)-1)
	for k, val := range m {
		if k != "@type" {
			rest[k] = val
		}
	}
	w.message(md, rest)
}

func isWellKnown(name protoreflect.Name) bool {
	switch name {
	case "Empty", "Any", "BoolValue", "BytesValue", "StringValue", "Int32Value", "UInt32Value",
		"FloatValue", "Int64Value", "UInt64Value", "DoubleValue", "Duration", "Timestamp",
		"NullValue", "Struct", "Value", "ListValue":
		return true
	}
	return false
}

// base64RE is the "format: byte" check of kube-apiserver's OpenAPI
// validation (kube-openapi's govalidator.IsBase64): standard alphabet, "="
// padding, no line breaks, and not empty. Go's base64 decoding, which jsonpb
// uses, would also take "" and skip line breaks.
var base64RE = regexp.MustCompile(`^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$`)

// describe names the JSON type of v, with the value for short scalars:
// `number 5`, `string "5sec"`, `boolean`, `object`, `array`, `null`.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number " + string(x)
	case string:
		if len(x) > 40 {
			x = x[:37] + "..."
		}
		return "string " + strconv.Quote(x)
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// protoV1 adapts a message to the golang/protobuf (APIv1) interface that
// jsonpb takes.
func protoV1(m proto.Message) protoiface.MessageV1 {
	return protov1.MessageV1(m)
}
