package istioyaml

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/golang/protobuf/jsonpb"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// buildMessage fills m from a JSON object that the schema walk accepted,
// giving the same message as strict golang/protobuf jsonpb (the decoder
// behind istio.io/api's UnmarshalJSON, whose Go-style durations like "1.5s"
// Istio users write) would. It reuses the walked tree instead of running
// jsonpb, which re-parses every nested object and was half of the decode
// time; the tests check that both agree on every input.
//
// The walk has rejected every value that does not fit, so errors here mean
// a disagreement between the walk and this function.
func buildMessage(m protoreflect.Message, obj map[string]any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("building %s: %v", m.Descriptor().FullName(), r)
		}
	}()
	return buildFields(m, obj)
}

func buildFields(m protoreflect.Message, obj map[string]any) error {
	fields := m.Descriptor().Fields()
	for key, val := range obj {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(key))
		}
		if fd == nil {
			return fmt.Errorf("unknown field %q in %s", key, m.Descriptor().FullName())
		}
		if val == nil && !isValueField(fd) {
			continue
		}
		if err := buildField(m, fd, val); err != nil {
			return err
		}
	}
	return nil
}

func buildField(m protoreflect.Message, fd protoreflect.FieldDescriptor, v any) error {
	switch {
	case fd.IsList():
		elems, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array", fd.FullName())
		}
		list := m.Mutable(fd).List()
		for _, elem := range elems {
			value, err := buildValue(fd, elem, list.NewElement)
			if err != nil {
				return err
			}
			list.Append(value)
		}
	case fd.IsMap():
		entries, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object", fd.FullName())
		}
		mp := m.Mutable(fd).Map()
		keyFD, valueFD := fd.MapKey(), fd.MapValue()
		for k, elem := range entries {
			key, err := buildMapKey(keyFD, k)
			if err != nil {
				return err
			}
			value, err := buildValue(valueFD, elem, mp.NewValue)
			if err != nil {
				return err
			}
			mp.Set(key, value)
		}
	default:
		value, err := buildValue(fd, v, func() protoreflect.Value { return m.NewField(fd) })
		if err != nil {
			return err
		}
		m.Set(fd, value)
	}
	return nil
}

func buildMapKey(fd protoreflect.FieldDescriptor, key string) (protoreflect.MapKey, error) {
	if fd.Kind() == protoreflect.StringKind {
		return protoreflect.ValueOfString(key).MapKey(), nil
	}
	// jsonpb reads other key kinds as the JSON text of the scalar.
	var v any
	if err := unmarshalUseNumber([]byte(key), &v); err != nil {
		return protoreflect.MapKey{}, fmt.Errorf("map key %q: %v", key, err)
	}
	value, err := buildValue(fd, v, nil)
	if err != nil {
		return protoreflect.MapKey{}, err
	}
	return value.MapKey(), nil
}

// buildValue converts one JSON value (null for an element means the zero
// value, as in jsonpb) of fd's type; newValue makes an empty message for
// message kinds.
func buildValue(fd protoreflect.FieldDescriptor, v any, newValue func() protoreflect.Value) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		b, _ := v.(bool)
		return protoreflect.ValueOfBool(b), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		var i int32
		err := decodeIntegerInto(v, &i)
		return protoreflect.ValueOfInt32(i), err
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		var i int64
		err := decodeIntegerInto(v, &i)
		return protoreflect.ValueOfInt64(i), err
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		var i uint32
		err := decodeIntegerInto(v, &i)
		return protoreflect.ValueOfUint32(i), err
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		var i uint64
		err := decodeIntegerInto(v, &i)
		return protoreflect.ValueOfUint64(i), err
	case protoreflect.FloatKind:
		var f float32
		err := decodeFloatInto(v, &f)
		return protoreflect.ValueOfFloat32(f), err
	case protoreflect.DoubleKind:
		var f float64
		err := decodeFloatInto(v, &f)
		return protoreflect.ValueOfFloat64(f), err
	case protoreflect.StringKind:
		s, _ := v.(string)
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BytesKind:
		s, _ := v.(string)
		b, err := base64.StdEncoding.DecodeString(s)
		return protoreflect.ValueOfBytes(b), err
	case protoreflect.EnumKind:
		return buildEnum(fd.Enum(), v)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		value := newValue()
		if v == nil && fd.Message().FullName() != "google.protobuf.Value" {
			return value, nil // an empty message, as jsonpb appends for null
		}
		return value, buildMessageValue(value.Message(), v)
	}
	return protoreflect.Value{}, fmt.Errorf("unsupported field kind %s", fd.Kind())
}

// decodeIntegerInto reads a JSON number, or an integer written as a string,
// the way jsonpb does (it strips the quotes and decodes the rest as JSON).
func decodeIntegerInto(v any, target any) error {
	switch x := v.(type) {
	case nil:
		return nil
	case json.Number:
		return json.Unmarshal([]byte(x), target)
	case string:
		return json.Unmarshal([]byte(x), target)
	}
	return fmt.Errorf("want an integer, got %s", describe(v))
}

func decodeFloatInto(v any, target any) error {
	if s, ok := v.(string); ok {
		var f float64
		switch s {
		case "NaN":
			f = math.NaN()
		case "Infinity":
			f = math.Inf(1)
		case "-Infinity":
			f = math.Inf(-1)
		default:
			return json.Unmarshal([]byte(s), target)
		}
		switch t := target.(type) {
		case *float32:
			*t = float32(f)
		case *float64:
			*t = f
		}
		return nil
	}
	return decodeIntegerInto(v, target)
}

func buildEnum(ed protoreflect.EnumDescriptor, v any) (protoreflect.Value, error) {
	switch x := v.(type) {
	case nil:
		return protoreflect.ValueOfEnum(0), nil
	case string:
		vd := ed.Values().ByName(protoreflect.Name(x))
		if vd == nil {
			return protoreflect.Value{}, fmt.Errorf("unknown value %q for enum %s", x, ed.FullName())
		}
		return protoreflect.ValueOfEnum(vd.Number()), nil
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 32)
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), err
	}
	return protoreflect.Value{}, fmt.Errorf("enum %s: got %s", ed.FullName(), describe(v))
}

// buildMessageValue fills m from the JSON form of a message, well-known
// types included.
func buildMessageValue(m protoreflect.Message, v any) error {
	md := m.Descriptor()
	fields := md.Fields()
	switch md.FullName() {
	case "google.protobuf.Duration":
		s, _ := v.(string)
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("bad Duration: %v", err)
		}
		// As jsonpb: seconds and nanos both carry the sign.
		m.Set(fields.ByNumber(1), protoreflect.ValueOfInt64(d.Nanoseconds()/1e9))
		m.Set(fields.ByNumber(2), protoreflect.ValueOfInt32(int32(d.Nanoseconds()%1e9)))
		return nil
	case "google.protobuf.Timestamp":
		s, _ := v.(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("bad Timestamp: %v", err)
		}
		m.Set(fields.ByNumber(1), protoreflect.ValueOfInt64(t.Unix()))
		m.Set(fields.ByNumber(2), protoreflect.ValueOfInt32(int32(t.Nanosecond())))
		return nil
	case "google.protobuf.BoolValue", "google.protobuf.BytesValue", "google.protobuf.StringValue",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value", "google.protobuf.DoubleValue":
		fd := fields.ByNumber(1)
		value, err := buildValue(fd, v, nil)
		if err != nil {
			return err
		}
		m.Set(fd, value)
		return nil
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any":
		// Rare in networking specs: let jsonpb do these from the JSON text.
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return (&jsonpb.Unmarshaler{}).Unmarshal(bytes.NewReader(raw), protoV1(m.Interface()))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: want an object, got %s", md.FullName(), describe(v))
	}
	return buildFields(m, obj)
}
