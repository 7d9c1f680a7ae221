package istioyaml

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/golang/protobuf/jsonpb"
	"google.golang.org/protobuf/proto"
)

// strictUnmarshaler is golang/protobuf's jsonpb with unknown fields refused:
// the decoder behind istio.io/api's own UnmarshalJSON (which reads Go-style
// durations such as "1.5s", unlike protojson), made strict. The schema walk
// has already checked the spec and located any problem; this builds the
// message.
var strictUnmarshaler = &jsonpb.Unmarshaler{}

// unmarshalStrict decodes the spec (the walked JSON value, encoded by
// appendTreeJSON) into m.
func unmarshalStrict(spec []byte, m proto.Message) error {
	return strictUnmarshaler.Unmarshal(bytes.NewReader(spec), protoV1(m))
}

// specJSON is the value of the member "spec" of the encoded object, or
// null.
func specJSON(object []byte) []byte {
	spec := []byte("null")
	jsonMembers(object, func(key string, v []byte) bool {
		if key == "spec" {
			spec = v
			return false
		}
		return true
	})
	return spec
}

// appendTreeJSON appends the JSON encoding of a decoded tree
// (map[string]any, []any, string, json.Number, bool, nil) to b: the bytes
// json.Marshal gives, without its reflection, which cost a tenth of the
// decode. Other types go through json.Marshal.
func appendTreeJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case string:
		return appendJSONString(b, x)
	case json.Number:
		if !validNumber(string(x)) {
			break
		}
		return append(b, x...), nil
	case []any:
		b = append(b, '[')
		for i, elem := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendTreeJSON(b, elem); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONString(b, k); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if b, err = appendTreeJSON(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, enc...), nil
}

// appendJSONString appends s quoted as json.Marshal quotes it: printable
// ASCII other than '"', '\\', '<', '>' and '&' as it is, anything else
// through json.Marshal.
func appendJSONString(b []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			return append(b, enc...), nil
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

// validNumber reports whether s is a JSON number literal, as json.Marshal
// checks a json.Number (encoding/json's isValidNumber).
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for s != "" && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for s != "" && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for s != "" && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
