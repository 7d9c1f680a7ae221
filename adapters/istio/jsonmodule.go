package istio

import (
	"bytes"
	"encoding/json"
	"slices"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// jsonModuleObject gives exactly what caddyconfig.JSONModuleObject gives:
// val encoded as a JSON object with the field fieldName set to fieldVal.
// JSONModuleObject decodes the encoding into map[string]any and encodes
// that again, which sorts the keys of every object and rounds every number
// through float64; for the istio_route handler of thousands of virtual
// hosts that was a fifth of the adapt time. This rewrites the encoding
// in one pass to the same bytes instead, and falls back to
// JSONModuleObject for what it does not expect (duplicate keys).
func jsonModuleObject(val any, fieldName, fieldVal string, warnings *[]caddyconfig.Warning) json.RawMessage {
	enc, err := json.Marshal(val)
	if err != nil {
		return caddyconfig.JSONModuleObject(val, fieldName, fieldVal, warnings)
	}
	out, ok := canonicalModuleObject(enc, fieldName, fieldVal)
	if !ok {
		return caddyconfig.JSONModuleObject(val, fieldName, fieldVal, warnings)
	}
	return out
}

// canonicalModuleObject rewrites enc, the encoding/json encoding of an
// object, as JSONModuleObject encodes it again with fieldName set to
// fieldVal; ok is false for what it does not handle.
func canonicalModuleObject(enc []byte, fieldName, fieldVal string) (out []byte, ok bool) {
	c := jsonCanonicalizer{in: enc, out: make([]byte, 0, len(enc)+len(fieldName)+len(fieldVal)+8)}
	c.skipSpace()
	if c.pos >= len(c.in) || c.in[c.pos] != '{' {
		return nil, false
	}
	extra, err := json.Marshal(fieldName)
	if err != nil {
		return nil, false
	}
	v, err := json.Marshal(fieldVal)
	if err != nil {
		return nil, false
	}
	extra = append(append(extra, ':'), v...)
	c.object(&member{key: []byte(fieldName), raw: extra})
	c.skipSpace()
	if c.failed || c.pos != len(c.in) {
		return nil, false
	}
	return c.out, true
}

// appendCanonicalJSON appends enc (encoding/json output) to b as
// JSONModuleObject would encode the value decoded from it: objects' keys
// sorted, numbers through float64; ok is false for what it does not handle.
func appendCanonicalJSON(b, enc []byte) (out []byte, ok bool) {
	var c jsonCanonicalizer
	return c.appendCanonical(b, enc)
}

// appendCanonical is appendCanonicalJSON reusing c's buffers.
func (c *jsonCanonicalizer) appendCanonical(b, enc []byte) (out []byte, ok bool) {
	c.in, c.pos, c.out, c.failed, c.stack = enc, 0, b, false, c.stack[:0]
	c.value()
	c.skipSpace()
	out, c.out, c.in = c.out, nil, nil
	if c.failed || c.pos != len(enc) {
		return nil, false
	}
	return out, true
}

// jsonCanonicalizer rewrites JSON as decoding it into any and encoding
// that with encoding/json would: object keys sorted, numbers through
// float64, strings re-escaped. The input is encoding/json output (valid
// JSON); anything else sets failed.
type jsonCanonicalizer struct {
	in     []byte
	pos    int
	out    []byte
	failed bool
	tmp    []byte   // reused to reorder object members
	stack  []member // the members of the objects being read
}

// member is an object member written to out at [start, end) ("key":value),
// or, with raw set, one to add.
type member struct {
	key []byte // the key's value

	start, end int
	raw        []byte
}

func (c *jsonCanonicalizer) skipSpace() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *jsonCanonicalizer) value() {
	c.skipSpace()
	if c.failed || c.pos >= len(c.in) {
		c.failed = true
		return
	}
	switch b := c.in[c.pos]; {
	case b == '{':
		c.object(nil)
	case b == '[':
		c.array()
	case b == '"':
		c.string()
	case b == 't':
		c.literal("true")
	case b == 'f':
		c.literal("false")
	case b == 'n':
		c.literal("null")
	case b == '-' || ('0' <= b && b <= '9'):
		c.number()
	default:
		c.failed = true
	}
}

func (c *jsonCanonicalizer) literal(lit string) {
	if !bytes.HasPrefix(c.in[c.pos:], []byte(lit)) {
		c.failed = true
		return
	}
	c.out = append(c.out, lit...)
	c.pos += len(lit)
}

// object rewrites the object at pos with its members sorted by key, extra
// (if not nil) among them, replacing a member of the same key as a map
// assignment does.
func (c *jsonCanonicalizer) object(extra *member) {
	c.pos++ // {
	objStart := len(c.out)
	c.out = append(c.out, '{')
	// The members go on a stack shared with the nested objects, which
	// are done with theirs before this one adds the next.
	base := len(c.stack)
	defer func() { c.stack = c.stack[:base] }()
	sorted := true
	for {
		c.skipSpace()
		if c.pos >= len(c.in) {
			c.failed = true
			return
		}
		if c.in[c.pos] == '}' {
			c.pos++
			break
		}
		if len(c.stack) > base {
			if c.in[c.pos] != ',' {
				c.failed = true
				return
			}
			c.pos++
			c.skipSpace()
			c.out = append(c.out, ',')
		}
		if c.pos >= len(c.in) || c.in[c.pos] != '"' {
			c.failed = true
			return
		}
		m := member{start: len(c.out)}
		m.key = c.string()
		c.skipSpace()
		if c.failed || c.pos >= len(c.in) || c.in[c.pos] != ':' {
			c.failed = true
			return
		}
		c.pos++
		c.out = append(c.out, ':')
		c.value()
		if c.failed {
			return
		}
		m.end = len(c.out)
		if n := len(c.stack); n > base && bytes.Compare(c.stack[n-1].key, m.key) >= 0 {
			sorted = false
		}
		c.stack = append(c.stack, m)
	}
	if extra != nil {
		members := c.stack[base:]
		if i := slices.IndexFunc(members, func(m member) bool { return bytes.Equal(m.key, extra.key) }); i >= 0 {
			members[i] = *extra
		} else {
			c.stack = append(c.stack, *extra)
		}
		sorted = false
	}
	if !sorted {
		members := c.stack[base:]
		slices.SortFunc(members, func(a, b member) int { return bytes.Compare(a.key, b.key) })
		for i := 1; i < len(members); i++ {
			if bytes.Equal(members[i-1].key, members[i].key) {
				// duplicate keys: the last one wins when decoding; leave
				// that to the fallback
				c.failed = true
				return
			}
		}
		c.tmp = append(c.tmp[:0], c.out[objStart+1:]...)
		c.out = c.out[:objStart+1]
		for i, m := range members {
			if i > 0 {
				c.out = append(c.out, ',')
			}
			if m.raw != nil {
				c.out = append(c.out, m.raw...)
			} else {
				c.out = append(c.out, c.tmp[m.start-objStart-1:m.end-objStart-1]...)
			}
		}
	}
	c.out = append(c.out, '}')
}

func (c *jsonCanonicalizer) array() {
	c.pos++ // [
	c.out = append(c.out, '[')
	for n := 0; ; n++ {
		c.skipSpace()
		if c.pos >= len(c.in) {
			c.failed = true
			return
		}
		if c.in[c.pos] == ']' {
			c.pos++
			break
		}
		if n > 0 {
			if c.in[c.pos] != ',' {
				c.failed = true
				return
			}
			c.pos++
			c.out = append(c.out, ',')
		}
		c.value()
		if c.failed {
			return
		}
	}
	c.out = append(c.out, ']')
}

// string rewrites the string at pos and returns its value (for one
// without escapes, in the input). One without
// escapes in valid UTF-8 is what encoding/json writes for its value
// (encoding/json escapes everything it would escape); any other is decoded
// and encoded again.
func (c *jsonCanonicalizer) string() []byte {
	start := c.pos
	plain := true
	i := start + 1
	for ; i < len(c.in); i++ {
		b := c.in[i]
		if b == '\\' {
			plain = false
			i++
			continue
		}
		if b == '"' {
			break
		}
		if b < 0x20 || b >= utf8.RuneSelf {
			plain = false
		}
	}
	if i >= len(c.in) {
		c.failed = true
		return nil
	}
	c.pos = i + 1
	raw := c.in[start:c.pos]
	if plain {
		c.out = append(c.out, raw...)
		return raw[1 : len(raw)-1]
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		c.failed = true
		return nil
	}
	enc, err := json.Marshal(s)
	if err != nil {
		c.failed = true
		return nil
	}
	c.out = append(c.out, enc...)
	return []byte(s)
}

// number rewrites the number at pos as encoding/json writes the float64
// it decodes to. Integers of up to 15 digits are exact in a float64 and
// written back as they are.
func (c *jsonCanonicalizer) number() {
	start := c.pos
	digits, simple := 0, true
	if c.in[c.pos] == '-' {
		c.pos++
	}
	for ; c.pos < len(c.in); c.pos++ {
		b := c.in[c.pos]
		switch {
		case '0' <= b && b <= '9':
			digits++
		case b == '.' || b == 'e' || b == 'E' || b == '+' || b == '-':
			simple = false
		default:
			goto done
		}
	}
done:
	raw := c.in[start:c.pos]
	negZero := len(raw) == 2 && raw[0] == '-' && raw[1] == '0'
	if simple && digits > 0 && digits <= 15 && !negZero && (raw[len(raw)-digits] != '0' || digits == 1) {
		c.out = append(c.out, raw...)
		return
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		c.failed = true
		return
	}
	enc, err := json.Marshal(f)
	if err != nil {
		c.failed = true
		return
	}
	c.out = append(c.out, enc...)
}
