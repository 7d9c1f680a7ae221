package istioyaml

import (
	"strconv"
	"strings"
	"testing"
)

// treeHas is Object.Has on the decoded tree, as it was before the object
// kept its JSON: the reference for the JSON reader.
func treeHas(fields map[string]any, field string) bool {
	var n any = fields
	for path := field; path != ""; {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			list, ok := n.([]any)
			if end < 0 || !ok {
				return false
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil || i < 0 || i >= len(list) {
				return false
			}
			n, path = list[i], path[end+1:]
		default:
			m, ok := n.(map[string]any)
			if !ok {
				return false
			}
			var size int
			n, size = nil, 0
			if end := strings.IndexAny(path, ".["); end > 0 {
				if v, ok := m[path[:end]]; ok {
					n, size = v, end
				}
			} else if v, ok := m[path]; ok {
				n, size = v, len(path)
				path = path[size:]
				continue
			}
			for k, v := range m {
				name := k
				if strings.IndexByte(k, '_') >= 0 {
					name = jsonCamelCase(k)
				}
				if len(name) > size && segmentMatches(path, name) {
					n, size = v, len(name)
				}
			}
			if size == 0 {
				return false
			}
			path = path[size:]
		}
	}
	return n != nil
}

// treePaths lists the paths of every value of a tree, and some that are
// not there.
func treePaths(prefix string, v any, out []string) []string {
	out = append(out, prefix)
	switch x := v.(type) {
	case map[string]any:
		sep := "."
		if prefix == "" {
			sep = ""
		}
		out = append(out, prefix+sep+"missing", prefix+"[0]")
		for k, elem := range x {
			out = treePaths(prefix+sep+k, elem, out)
			if camel := jsonCamelCase(k); camel != k {
				out = append(out, prefix+sep+camel)
			}
		}
	case []any:
		out = append(out, prefix+"["+strconv.Itoa(len(x))+"]", prefix+"[-1]", prefix+"[x]", prefix+".a", prefix+"[0")
		for i, elem := range x {
			out = treePaths(prefix+"["+strconv.Itoa(i)+"]", elem, out)
		}
	default:
		out = append(out, prefix+".a", prefix+"[0]")
	}
	return out
}

// TestHasJSON checks Has on the object's JSON against Has on its decoded
// tree, for every path of every decoded test document and some that are
// not there.
func TestHasJSON(t *testing.T) {
	docs := yamlTestDocuments(t)
	docs = append(docs, []byte("kind: VirtualService\nspec:\n  a_b: 1\n  x.y:\n    z: null\n  \"q\\\"\": [1, null, {k: ~}]\n  e: {}\n"))
	checked := 0
	for _, doc := range docs {
		tree, err := yamlToTree(doc)
		top, ok := tree.(map[string]any)
		if err != nil || !ok {
			continue
		}
		enc, err := appendTreeJSON(nil, top)
		if err != nil {
			t.Fatal(err)
		}
		obj := &Object{fields: enc}
		for _, path := range treePaths("", top, nil) {
			if got, want := obj.Has(path), treeHas(top, path); got != want {
				t.Errorf("Has(%q) = %v, want %v, in %s", path, got, want, enc)
			}
			checked++
		}
	}
	if checked < 1000 {
		t.Errorf("only %d paths checked", checked)
	}
	var none Object
	for _, path := range []string{"", "spec", "[0]", "."} {
		if got, want := none.Has(path), treeHas(nil, path); got != want {
			t.Errorf("Object{}.Has(%q) = %v, want %v", path, got, want)
		}
	}
	// specJSON finds the spec, or null
	for in, want := range map[string]string{`{"kind":"X","spec":{"a":[1]}}`: `{"a":[1]}`, `{"kind":"X"}`: `null`, `{"spec\\u0041":1,"spec":"s"}`: `"s"`} {
		if got := string(specJSON([]byte(in))); got != want {
			t.Errorf("specJSON(%s) = %s, want %s", in, got, want)
		}
	}
}
