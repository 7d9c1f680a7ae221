package istioyaml

import "encoding/json"

// Readers of the compact JSON that appendTreeJSON writes (Object.fields):
// no whitespace, strings escaped as encoding/json escapes them.

// jsonMembers calls fn with the key and value of each member of the JSON
// object obj, in order, until fn returns false.
func jsonMembers(obj []byte, fn func(key string, value []byte) bool) {
	i := 1 // after '{'
	for i < len(obj) && obj[i] != '}' {
		if obj[i] == ',' {
			i++
		}
		keyEnd, ok := jsonValueEnd(obj, i)
		if !ok || keyEnd >= len(obj) || obj[keyEnd] != ':' {
			return
		}
		key := jsonStringValue(obj[i:keyEnd])
		valueEnd, ok := jsonValueEnd(obj, keyEnd+1)
		if !ok {
			return
		}
		if !fn(key, obj[keyEnd+1:valueEnd]) {
			return
		}
		i = valueEnd
	}
}

// jsonArrayElement returns element i of the JSON array arr.
func jsonArrayElement(arr []byte, i int) ([]byte, bool) {
	pos := 1 // after '['
	for n := 0; pos < len(arr) && arr[pos] != ']'; n++ {
		if arr[pos] == ',' {
			pos++
		}
		end, ok := jsonValueEnd(arr, pos)
		if !ok {
			return nil, false
		}
		if n == i {
			return arr[pos:end], true
		}
		pos = end
	}
	return nil, false
}

// jsonStringValue gives the value of the JSON string s (quotes included).
func jsonStringValue(s []byte) string {
	for _, c := range s {
		if c == '\\' {
			var v string
			if json.Unmarshal(s, &v) == nil {
				return v
			}
			break
		}
	}
	if len(s) < 2 {
		return ""
	}
	return string(s[1 : len(s)-1])
}

// jsonValueEnd returns the end of the JSON value that starts at i.
func jsonValueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return 0, false
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := jsonValueEnd(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ':' {
			j++
		}
		return j, j > i
	}
}
