package istioyaml

import (
	"strconv"
	"strings"
	"sync"

	yamlv3 "go.yaml.in/yaml/v3"
)

// LineOf returns the 1-based line in o's file of field, a path like
// Problem.Field (spec.http[0].route[1].weight, camelCase names, matching
// snake_case keys too). For a path that is only partly present it gives the
// line of the deepest part found; when nothing is found, o.Line.
//
// It parses the object's document again (tens of microseconds; the last
// document parsed is cached), so it is meant for messages, not hot paths.
func (o *Object) LineOf(field string) (line int) {
	if len(o.src) == 0 || field == "" {
		return o.Line
	}
	defer func() {
		if recover() != nil {
			line = o.Line
		}
	}()
	t := cachedYAMLTree(o.src, o.srcFirstLine)
	if t == nil {
		return o.Line
	}
	path := field
	if !strings.HasPrefix(field, o.srcPrefix) {
		path = o.srcPrefix + field
	}
	if l, _ := t.position(path); l > 0 {
		return l
	}
	return o.Line
}

// lastTree caches the most recently parsed document: callers usually ask
// for several fields of one object in a row, and parsing costs far more
// than a lookup. The trees are read-only once built, so they can be shared.
var lastTree struct {
	sync.Mutex
	src       *byte
	size      int
	firstLine int
	tree      *yamlTree
}

func cachedYAMLTree(src []byte, firstLine int) *yamlTree {
	if len(src) == 0 {
		return nil
	}
	lastTree.Lock()
	defer lastTree.Unlock()
	if lastTree.src != &src[0] || lastTree.size != len(src) || lastTree.firstLine != firstLine {
		lastTree.src, lastTree.size, lastTree.firstLine = &src[0], len(src), firstLine
		lastTree.tree = parseYAMLTree(src, firstLine)
	}
	return lastTree.tree
}

// yamlTree is a document parsed with node positions.
type yamlTree struct {
	root       *yamlv3.Node
	lineOffset int // add to node lines to get file lines
}

// parseYAMLTree parses one document for positions; nil if it does not parse.
// It uses go.yaml.in/yaml/v3 (what sigs.k8s.io/yaml/goyaml.v3 aliases),
// because the YAML 1.1 parser behind YAMLToJSON keeps no positions; the two
// agree on structure, which is all positions need.
func parseYAMLTree(data []byte, firstLine int) (t *yamlTree) {
	defer func() {
		if recover() != nil {
			t = nil
		}
	}()
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(data, &root); err != nil {
		return nil
	}
	return &yamlTree{root: &root, lineOffset: firstLine - 1}
}

// position gives the file line and column of path: of its key for a map
// entry, of the element for a list entry.
func (t *yamlTree) position(path string) (line, col int) {
	at, _ := t.lookup(path)
	if at == nil || at.Line == 0 {
		return 0, 0
	}
	return at.Line + t.lineOffset, at.Column
}

// scalar gives the YAML source text of the scalar at path, or "".
func (t *yamlTree) scalar(path string) string {
	at, value := t.lookup(path)
	if at == nil || value == nil {
		return ""
	}
	value = resolveAlias(value)
	if value.Kind != yamlv3.ScalarNode {
		return ""
	}
	return value.Value
}

// lookup walks path and returns the node naming its deepest part found (a
// map key or a list element) and, when the whole path was found, its value.
func (t *yamlTree) lookup(path string) (at, value *yamlv3.Node) {
	n := t.root
	if n.Kind == yamlv3.DocumentNode {
		if len(n.Content) == 0 {
			return nil, nil
		}
		n = n.Content[0]
	}
	at = n
	for path != "" {
		n = resolveAlias(n)
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return at, nil
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil || n.Kind != yamlv3.SequenceNode || i < 0 || i >= len(n.Content) {
				return at, nil
			}
			n = n.Content[i]
			at = n
			path = path[end+1:]
		default:
			key, val, size := findKey(n, path, 0)
			if key == nil {
				return at, nil
			}
			at, n = key, val
			path = path[size:]
		}
	}
	return at, n
}

// findKey finds the mapping entry whose key (or its camelCase form) is the
// longest prefix of path ending at a path separator: map keys may contain
// dots ("app.kubernetes.io/name"). Keys merged in with "<<" count when the
// mapping has no such key itself.
func findKey(n *yamlv3.Node, path string, depth int) (key, value *yamlv3.Node, size int) {
	n = resolveAlias(n)
	if n.Kind != yamlv3.MappingNode || depth > 8 {
		return nil, nil, 0
	}
	var merges []*yamlv3.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yamlv3.ScalarNode {
			continue
		}
		if k.Value == "<<" && k.Tag == "!!merge" {
			merges = append(merges, n.Content[i+1])
			continue
		}
		// ">=": with duplicate keys the last one wins, as in YAMLToJSON.
		if l := len(k.Value); l >= size && segmentMatches(path, k.Value) {
			key, value, size = k, n.Content[i+1], l
		} else if strings.IndexByte(k.Value, '_') >= 0 {
			if camel := jsonCamelCase(k.Value); len(camel) >= size && segmentMatches(path, camel) {
				key, value, size = k, n.Content[i+1], len(camel)
			}
		}
	}
	if key != nil {
		return key, value, size
	}
	for _, m := range merges {
		m = resolveAlias(m)
		targets := []*yamlv3.Node{m}
		if m.Kind == yamlv3.SequenceNode {
			targets = m.Content
		}
		for _, target := range targets {
			if key, value, size = findKey(target, path, depth+1); key != nil {
				return key, value, size
			}
		}
	}
	return nil, nil, 0
}

// segmentMatches reports whether path starts with the field or key name
// followed by the end of the path or a separator.
func segmentMatches(path, name string) bool {
	if name == "" || !strings.HasPrefix(path, name) {
		return false
	}
	return len(path) == len(name) || path[len(name)] == '.' || path[len(name)] == '['
}

func resolveAlias(n *yamlv3.Node) *yamlv3.Node {
	for i := 0; n != nil && n.Kind == yamlv3.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// jsonCamelCase converts a proto field name to its JSON name the way protoc
// does: an underscore is dropped and the next letter upper-cased.
func jsonCamelCase(s string) string {
	var b strings.Builder
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			upper = true
			continue
		}
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		upper = false
		b.WriteByte(c)
	}
	return b.String()
}
