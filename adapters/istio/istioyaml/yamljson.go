package istioyaml

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"unicode/utf8"

	yamlv2 "go.yaml.in/yaml/v2"
)

// yamlToTree decodes one YAML document into the tree that
// sigs.k8s.io/yaml.YAMLToJSON (kubectl's YAML 1.1 reading: unquoted yes/no
// are booleans, 0755 is octal) followed by a json.Decoder with UseNumber
// gives: map[string]any, []any, string, json.Number, bool and nil. It runs
// the same go.yaml.in/yaml/v2 parse and the same conversion but skips
// writing and re-reading JSON, which was a quarter of the decode time; the
// tests check it against YAMLToJSON.
//
// Most documents take fastYAMLTree's shortcut, which gives the same tree.
func yamlToTree(data []byte) (any, error) {
	if tree, ok := fastYAMLTree(data); ok {
		return tree, nil
	}
	return yamlV2Tree(data)
}

// yamlV2Tree is yamlToTree through go.yaml.in/yaml/v2 alone.
func yamlV2Tree(data []byte) (any, error) {
	var obj any
	if err := yamlv2.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	return jsonTree(obj)
}

// jsonTree converts a go.yaml.in/yaml/v2 value as YAMLToJSON's
// convertToJSONableObject and then encoding/json would.
func jsonTree(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool:
		return x, nil
	case string:
		return jsonString(x), nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case float64:
		return jsonFloat(x)
	case []any:
		out := make([]any, len(x))
		for i, elem := range x {
			var err error
			if out[i], err = jsonTree(elem); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, elem := range x {
			key, err := jsonKey(k, elem)
			if err != nil {
				return nil, err
			}
			if out[key], err = jsonTree(elem); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	// go.yaml.in/yaml/v2 gives no other type for an interface{} target.
	return nil, fmt.Errorf("unsupported YAML value of type %T", v)
}

// jsonKey turns a YAML map key into a JSON object key like YAMLToJSON.
func jsonKey(k, v any) (string, error) {
	switch key := k.(type) {
	case string:
		return jsonString(key), nil
	case int:
		return strconv.Itoa(key), nil
	case int64:
		return strconv.FormatInt(key, 10), nil
	case float64:
		s := strconv.FormatFloat(key, 'g', -1, 32)
		switch s {
		case "+Inf":
			s = ".inf"
		case "-Inf":
			s = "-.inf"
		case "NaN":
			s = ".nan"
		}
		return s, nil
	case bool:
		if key {
			return "true", nil
		}
		return "false", nil
	}
	return "", fmt.Errorf("unsupported map key of type: %s, key: %+#v, value: %+#v", reflect.TypeOf(k), k, v)
}

// jsonString gives the string JSON encoding and decoding would: each byte
// of invalid UTF-8 becomes U+FFFD.
func jsonString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

// jsonFloat formats a float64 as encoding/json does (ES6 style), so that
// e.g. a YAML 90.0 reads as the integer 90.
func jsonFloat(f float64) (any, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64))
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b := strconv.AppendFloat(make([]byte, 0, 24), f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return json.Number(b), nil
}
