package istioyaml

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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

// message checks a JSON object against a message descriptor.
func (w *schemaWalker) message(md protoreflect.MessageDescriptor, obj map[string]any) {
	fields := md.Fields()
	var seenBuf [16]protoreflect.FieldDescriptor
	seen := seenBuf[:0]
	oneofConflict := false
	for key, val := range obj {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(key))
		}
		if fd == nil {
			n := w.push(key)
			w.fail(fmt.Sprintf("unknown field %q in %s", key, md.FullName()))
			w.pop(n)
			continue
		}
		if val == nil && !isValueField(fd) {
			continue // null means unset, as in jsonpb
		}
		for _, s := range seen {
			if s == fd {
				n := w.push(fd.JSONName())
				w.fail(fmt.Sprintf("set twice, as %q and %q", fd.JSONName(), fd.Name()))
				w.pop(n)
			} else if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && s.ContainingOneof() == od {
				oneofConflict = true
			}
		}
		seen = append(seen, fd)
		n := w.push(fd.JSONName())
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
		for i, elem := range list {
			if elem == nil {
				continue // jsonpb appends a zero value
			}
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
			n := w.push(key)
			if keyFD.Kind() != protoreflect.StringKind {
				w.mapKey(keyFD, key)
			}
			if elem != nil {
				w.singular(valueFD, elem)
			}
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
		s, ok := v.(string)
		if !ok {
			w.fail("must be a base64 string, got " + describe(v))
		} else if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			w.fail("must be a base64 string: " + err.Error())
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

// integer checks an integer of the given kind. Like jsonpb it also accepts
// the integer written as a string ("50").
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
	switch x := v.(type) {
	case json.Number:
		if err := parseInteger(string(x), bits, unsigned); err != nil {
			if strings.ContainsAny(string(x), ".eE") {
				w.fail(fmt.Sprintf("must be an integer (%s), got number %s", kind, x))
			} else {
				w.fail(fmt.Sprintf("number %s is out of range for %s (%s)", x, kind, integerRange(bits, unsigned)))
			}
		}
	case string:
		// jsonpb strips the quotes and decodes the rest as JSON.
		if hasControlChars(x) || jsonUnmarshalInteger(x, bits, unsigned) != nil {
			w.fail(fmt.Sprintf("must be an integer (%s), got %s", kind, describe(v)))
		}
	default:
		w.fail(fmt.Sprintf("must be an integer (%s), got %s", kind, describe(v)))
	}
}

// parseInteger parses a JSON number literal the way encoding/json does for
// Go integer types.
func parseInteger(s string, bits int, unsigned bool) error {
	var err error
	if unsigned {
		_, err = strconv.ParseUint(s, 10, bits)
	} else {
		_, err = strconv.ParseInt(s, 10, bits)
	}
	return err
}

func jsonUnmarshalInteger(s string, bits int, unsigned bool) error {
	b := []byte(s)
	switch {
	case bits == 32 && unsigned:
		var i uint32
		return json.Unmarshal(b, &i)
	case bits == 32:
		var i int32
		return json.Unmarshal(b, &i)
	case unsigned:
		var i uint64
		return json.Unmarshal(b, &i)
	default:
		var i int64
		return json.Unmarshal(b, &i)
	}
}

func integerRange(bits int, unsigned bool) string {
	switch {
	case bits == 32 && unsigned:
		return "0 to 4294967295"
	case bits == 32:
		return "-2147483648 to 2147483647"
	case unsigned:
		return "0 to 18446744073709551615"
	default:
		return "-9223372036854775808 to 9223372036854775807"
	}
}

func hasControlChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 {
			return true
		}
	}
	return false
}

// float checks a float or double. Like jsonpb it accepts numbers written as
// strings and "NaN", "Infinity", "-Infinity".
func (w *schemaWalker) float(bits int, v any) {
	name := "double"
	if bits == 32 {
		name = "float"
	}
	switch x := v.(type) {
	case json.Number:
		if _, err := strconv.ParseFloat(string(x), bits); err != nil {
			w.fail(fmt.Sprintf("number %s is out of range for %s", x, name))
		}
	case string:
		switch x {
		case "NaN", "Infinity", "-Infinity":
			return
		}
		var err error
		if bits == 32 {
			var f float32
			err = json.Unmarshal([]byte(x), &f)
		} else {
			var f float64
			err = json.Unmarshal([]byte(x), &f)
		}
		if hasControlChars(x) || err != nil {
			w.fail(fmt.Sprintf("must be a number (%s), got %s", name, describe(v)))
		}
	default:
		w.fail(fmt.Sprintf("must be a number (%s), got %s", name, describe(v)))
	}
}

// enum checks an enum: a value name as in the proto, or the number of a
// defined value (jsonpb would keep any int32).
func (w *schemaWalker) enum(ed protoreflect.EnumDescriptor, v any) {
	values := ed.Values()
	switch x := v.(type) {
	case string:
		if values.ByName(protoreflect.Name(x)) == nil {
			w.fail(fmt.Sprintf("unknown value %q for enum %s (want one of %s)", x, ed.FullName(), enumNames(ed)))
		}
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 32)
		if err != nil || values.ByNumber(protoreflect.EnumNumber(n)) == nil {
			w.fail(fmt.Sprintf("%s is not a value of enum %s (want one of %s)", x, ed.FullName(), enumNames(ed)))
		}
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
