package istioyaml

import (
	"encoding/json"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
)

// fastYAMLTree reads the plain block-style YAML that kubectl and most
// people write (block mappings and sequences, one scalar per line, plain,
// single- or double-quoted without escapes, comments) straight into the
// tree yamlToTree gives, several times faster than go.yaml.in/yaml/v2's
// general parser. ok is false for anything else (flow collections,
// anchors, tags, block or multi-line scalars, escapes, tabs, non-ASCII
// text, duplicate keys, ...) and for what is not valid YAML: the caller
// then parses the document with yaml/v2, which gives the exact result or
// error. Plain scalars are resolved as yaml/v2 resolves them (YAML 1.1:
// yes/no/on/off are booleans, 0755 is octal): the common ones here, any
// other by yaml/v2 itself.
func fastYAMLTree(data []byte) (tree any, ok bool) {
	p := fastYAML{}
	if !p.split(data) {
		return nil, false
	}
	if len(p.lines) == 0 {
		return nil, true
	}
	v, ok := p.node(-1)
	if !ok || p.i != len(p.lines) {
		return nil, false
	}
	return v, true
}

// fastYAML is the state of one fastYAMLTree call: the document's content
// lines (no blank or comment-only lines) and the next one to read.
type fastYAML struct {
	lines []fastLine
	i     int
}

// fastLine is a content line: its indentation and its text after it, with
// trailing spaces removed. A sequence entry "- x" is read as an entry and
// then as the line "x" indented by the entry's width (see entry).
type fastLine struct {
	indent int
	text   string
}

// split cuts data into content lines; false when data has what the fast
// reader does not handle anywhere: tabs, carriage returns, control
// characters, non-ASCII bytes (YAML 1.1 has line breaks beyond '\n'), and
// directives or document markers.
func (p *fastYAML) split(data []byte) bool {
	for _, b := range data {
		if b >= 0x7f || (b < 0x20 && b != '\n') {
			return false
		}
	}
	s := string(data)
	p.lines = make([]fastLine, 0, strings.Count(s, "\n")+1)
	for s != "" {
		line := s
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		text := strings.TrimLeft(line, " ")
		if text == "" || text[0] == '#' {
			continue
		}
		indent := len(line) - len(text)
		if indent == 0 && (text[0] == '%' || strings.HasPrefix(text, "---") || strings.HasPrefix(text, "...")) {
			return false
		}
		p.lines = append(p.lines, fastLine{indent: indent, text: strings.TrimRight(text, " ")})
	}
	return true
}

// node reads the block node at the current line, which must be indented
// more than parent.
func (p *fastYAML) node(parent int) (any, bool) {
	l := p.lines[p.i]
	if l.indent <= parent {
		return nil, false
	}
	if isEntry(l.text) {
		return p.sequence(l.indent)
	}
	return p.mapping(l.indent)
}

// isEntry reports whether text starts a block sequence entry.
func isEntry(text string) bool {
	return text[0] == '-' && (len(text) == 1 || text[1] == ' ')
}

// sequence reads the entries at indent.
func (p *fastYAML) sequence(indent int) (any, bool) {
	out := []any{}
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent != indent || !isEntry(l.text) {
			if l.indent > indent {
				return nil, false
			}
			break
		}
		rest := strings.TrimLeft(l.text[1:], " ")
		if rest == "" || rest[0] == '#' {
			// the entry's value is on the next lines, or null
			p.i++
			if p.i < len(p.lines) && p.lines[p.i].indent > indent {
				v, ok := p.node(indent)
				if !ok {
					return nil, false
				}
				out = append(out, v)
			} else {
				out = append(out, nil)
			}
			continue
		}
		if isEntry(rest) {
			return nil, false // "- - x"
		}
		// The rest of the line as a line of its own, at its column.
		p.lines[p.i] = fastLine{indent: indent + len(l.text) - len(rest), text: rest}
		if _, _, isKey := splitKey(rest); isKey {
			v, ok := p.mapping(p.lines[p.i].indent)
			if !ok {
				return nil, false
			}
			out = append(out, v)
			continue
		}
		v, ok := scalarValue(rest)
		if !ok {
			return nil, false
		}
		p.i++
		if p.i < len(p.lines) && p.lines[p.i].indent > indent {
			return nil, false // a multi-line scalar
		}
		out = append(out, v)
	}
	return out, true
}

// mapping reads the entries at indent.
func (p *fastYAML) mapping(indent int) (any, bool) {
	out := make(map[string]any)
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent != indent {
			if l.indent > indent {
				return nil, false
			}
			break
		}
		rawKey, rest, isKey := splitKey(l.text)
		if !isKey {
			if isEntry(l.text) {
				break // the next entry of a sequence at this indentation
			}
			return nil, false
		}
		key, ok := keyOf(rawKey)
		if !ok {
			return nil, false
		}
		if _, dup := out[key]; dup {
			return nil, false
		}
		p.i++
		if rest == "" {
			// The value is on the next lines: more indented, or a sequence
			// at this indentation; else null.
			switch {
			case p.i < len(p.lines) && p.lines[p.i].indent > indent:
				v, ok := p.node(indent)
				if !ok {
					return nil, false
				}
				out[key] = v
			case p.i < len(p.lines) && p.lines[p.i].indent == indent && isEntry(p.lines[p.i].text):
				v, ok := p.sequence(indent)
				if !ok {
					return nil, false
				}
				out[key] = v
			default:
				out[key] = nil
			}
			continue
		}
		v, ok := scalarValue(rest)
		if !ok {
			return nil, false
		}
		if p.i < len(p.lines) && p.lines[p.i].indent > indent {
			return nil, false // a multi-line scalar
		}
		out[key] = v
	}
	return out, true
}

// splitKey splits a mapping entry line into its key's text and its value's
// text ("" when the value is on the next lines, comments removed). isKey
// is false when the line is not "key:" or "key: value" with a plain or
// quoted key.
func splitKey(text string) (key, rest string, isKey bool) {
	var end int // index of the ':'
	switch text[0] {
	case '"', '\'':
		n, ok := quotedLength(text)
		if !ok || n >= len(text) || text[n] != ':' || (n+1 < len(text) && text[n+1] != ' ') {
			return "", "", false
		}
		end = n
	default:
		if strings.IndexByte(plainIndicators, text[0]) >= 0 {
			return "", "", false
		}
		end = -1
		for i := 0; i < len(text); i++ {
			if text[i] == ':' && (i+1 == len(text) || text[i+1] == ' ') {
				end = i
				break
			}
			if text[i] == '#' && i > 0 && text[i-1] == ' ' {
				return "", "", false // a comment before any ':'
			}
		}
		if end <= 0 || end > 1000 || text[end-1] == ' ' {
			return "", "", false
		}
	}
	key = text[:end]
	rest = strings.TrimLeft(text[end+1:], " ")
	if rest != "" && rest[0] == '#' {
		rest = ""
	}
	return key, rest, true
}

// plainIndicators are the characters a plain scalar or key must not start
// with (YAML's indicators; "-" is handled apart).
const plainIndicators = "-?:,[]{}#&*!|>'\"%@`"

// quotedLength returns the length of the quoted scalar that text starts
// with, quotes included; false when it has escapes or does not end on
// this line.
func quotedLength(text string) (int, bool) {
	q := text[0]
	for i := 1; i < len(text); i++ {
		switch {
		case q == '"' && text[i] == '\\':
			return 0, false
		case text[i] == q:
			if q == '\'' && i+1 < len(text) && text[i+1] == '\'' {
				i++ // '' is a quote
				continue
			}
			return i + 1, true
		}
	}
	return 0, false
}

// unquote gives the value of a quoted scalar checked by quotedLength.
func unquote(s string) string {
	if s[0] == '\'' {
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'")
	}
	return s[1 : len(s)-1]
}

// keyOf gives the JSON object key of a mapping key's text, as yaml/v2
// resolves it and YAMLToJSON turns it into a string; false for the keys
// left to yaml/v2 (merge keys, null, numbers other than decimal integers).
func keyOf(raw string) (string, bool) {
	switch raw[0] {
	case '"', '\'':
		return unquote(raw), true
	case '+', '-', '.', '~', '<':
		return "", false
	case 'y', 'Y', 'n', 'N', 't', 'T', 'f', 'F', 'o', 'O':
		v, special := yaml11Words[raw]
		if !special {
			return raw, true
		}
		switch v {
		case true:
			return "true", true
		case false:
			return "false", true
		}
		return "", false
	case '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return raw, isDecimal(raw)
	}
	return raw, true
}

// scalarValue reads the value after "key: " or "- ": a quoted or plain
// scalar, then at most a comment.
func scalarValue(text string) (any, bool) {
	if text[0] == '"' || text[0] == '\'' {
		n, ok := quotedLength(text)
		if !ok {
			return nil, false
		}
		if rest := strings.TrimLeft(text[n:], " "); rest != "" && (rest[0] != '#' || rest == text[n:]) {
			return nil, false
		}
		return unquote(text[:n]), true
	}
	if strings.HasPrefix(text, "{}") || strings.HasPrefix(text, "[]") {
		if rest := text[2:]; rest != "" && !strings.HasPrefix(rest, " #") {
			return nil, false
		}
		if text[0] == '{' {
			return map[string]any{}, true
		}
		return []any{}, true
	}
	if text[0] == '-' {
		if len(text) == 1 || text[1] == ' ' {
			return nil, false
		}
	} else if strings.IndexByte(plainIndicators, text[0]) >= 0 {
		return nil, false
	}
	if i := strings.Index(text, " #"); i >= 0 {
		text = strings.TrimRight(text[:i], " ")
	}
	if strings.Contains(text, ": ") || text[len(text)-1] == ':' {
		return nil, false
	}
	return plainScalar(text)
}

// plainScalar resolves a plain scalar as yaml/v2 does for an interface{}
// target, in yamlToTree's types.
func plainScalar(s string) (any, bool) {
	switch s[0] {
	case '+', '-', '.', '~':
	case 'y', 'Y', 'n', 'N', 't', 'T', 'f', 'F', 'o', 'O':
		if v, special := yaml11Words[s]; special {
			return v, true
		}
		return s, true
	case '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if isDecimal(s) {
			return json.Number(s), true
		}
	default:
		return s, true
	}
	if strings.Count(s, ".") >= 2 {
		// an address or a version: no YAML 1.1 number or timestamp has
		// two dots
		return s, true
	}
	// Numbers in other forms, .inf, null, ...: yaml/v2 itself.
	var v any
	if err := yamlv2.Unmarshal([]byte(s), &v); err != nil {
		return nil, false
	}
	switch v.(type) {
	case map[any]any, []any:
		return nil, false
	}
	tree, err := jsonTree(v)
	if err != nil {
		return nil, false
	}
	return tree, true
}

// yaml11Words are the plain scalars starting with a letter that yaml/v2
// does not read as strings.
var yaml11Words = map[string]any{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"true": true, "True": true, "TRUE": true,
	"on": true, "On": true, "ON": true,
	"n": false, "N": false, "no": false, "No": false, "NO": false,
	"false": false, "False": false, "FALSE": false,
	"off": false, "Off": false, "OFF": false,
	"null": nil, "Null": nil, "NULL": nil,
}

// isDecimal reports whether s is a decimal integer without leading zero
// that fits an int64 for sure (yaml/v2 reads "0755" as octal).
func isDecimal(s string) bool {
	if len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
