package istioyaml

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// yamlTestDocuments are the documents of every YAML file of the corpus and
// of the adapter's test inputs.
func yamlTestDocuments(t testing.TB) [][]byte {
	var files []string
	for _, sub := range []string{"istio-samples", "istio-invalid"} {
		files = append(files, corpusFiles(t, corpusDir(t, sub))...)
	}
	filepath.WalkDir(filepath.Join("..", "testdata"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	var docs [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range splitDocuments(data) {
			docs = append(docs, c.data)
		}
	}
	return docs
}

// checkFastYAML checks that when fastYAMLTree reads doc, yaml/v2 reads it
// without error to the same tree.
func checkFastYAML(t *testing.T, doc []byte) (fast bool) {
	t.Helper()
	got, ok := fastYAMLTree(doc)
	if !ok {
		return false
	}
	want, err := yamlV2Tree(doc)
	if err != nil {
		t.Errorf("fastYAMLTree reads a document yaml/v2 rejects (%v):\n%s", err, doc)
		return true
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fastYAMLTree gives %#v\nyaml/v2 gives %#v\nfor:\n%s", got, want, doc)
	}
	return true
}

func TestFastYAMLTree(t *testing.T) {
	docs := yamlTestDocuments(t)
	fast := 0
	for _, doc := range docs {
		if checkFastYAML(t, doc) {
			fast++
		}
	}
	t.Logf("%d of %d documents read by the fast path", fast, len(docs))
	if fast < 100 {
		// most of the test inputs are written in flow style, on purpose
		t.Errorf("only %d of %d documents read by the fast path", fast, len(docs))
	}

	cases := []struct {
		doc  string
		fast bool
	}{
		{"a: 1\nb: yes\nc: 'it''s'\nd: \"x # y\" # z\ne: 0755\nf: 1.5\ng: ~\nh:\ni: -1\nk: 12345678901234567890\nl: {}\nm: [] # c\n", true},
		{"a: .inf\n", false},
		{"a: {} x\n", false},
		{"on: 1\n7: x\nFalse: y\nkey with spaces: v a l\nurl: http://x:80/#a\n", true},
		{"- a\n- - b\n", false},
		{"a:\n- b: 1\n  c:\n  - 2\n  -\n  - d: [x]\n", false},
		{"a:\n- b: 1\n  c:\n  - 2\n  -\n  - d: x\ne: 2001-12-14\n", true},
		{"a:\n  b: 1\n c: 2\n", false},
		{"a: b\n  c\n", false},
		{"a: b: c\n", false},
		{"a: &x 1\nb: *x\n", false},
		{"<<: {a: 1}\n", false},
		{"a: |\n  x\n", false},
		{"a: 1\na: 2\n", false},
		{"\"a\":1\n", false},
		{"a  : 1\n", false},
		{"a:\tb\n", false},
		{"a: caf\u00e9\n", false},
		{"a: \"x\\ty\"\n", false},
		{"a: 'x\n  y'\n", false},
		{"# only\n  # comments\n", true},
		{"", true},
		{"- x\n-\n- y: 1\n  z:\n    - 1\n", true},
		{"a:\n  - 1\n  - 2\nb: 3\n", true},
		{"a:\n-   b: 1\n    c: 2\n- d\n", true},
		{"a:\n- b: 1\n   c: 2\n", false},
		{"scalar\n", false},
		{"a: x #c\nb: y#c\nc: '#'\n", true},
		{"a: 'x'#c\n", false},
		{"a: +1\nb: -0x1F\nc: 1_000\nd: 0b101\ne: .5\nf: -.5\ng: 1e3\nh: 0o17\n", true},
		{"null: 1\n", false},
		{"a: 127.0.0.1\nb: 1.2.3e4\nc: ...\nd: -1.5.\ne: 1.5\n", true},
		{"on: 1\nTrue: 2\n", false},
		{"1.5: a\n", false},
	}
	for _, c := range cases {
		if got := checkFastYAML(t, []byte(c.doc)); got != c.fast {
			t.Errorf("fast path %v, want %v, for:\n%s", got, c.fast, c.doc)
		}
	}
}

// FuzzFastYAMLTree compares fastYAMLTree with yaml/v2 on arbitrary text.
func FuzzFastYAMLTree(f *testing.F) {
	for _, doc := range yamlTestDocuments(f) {
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkFastYAML(t, doc)
	})
}

// TestAppendTreeJSON checks appendTreeJSON against json.Marshal.
func TestAppendTreeJSON(t *testing.T) {
	trees := []any{
		map[string]any{"b": []any{json.Number("1"), json.Number("-0.5e+10"), "<&>", "caf\u00e9", "\x01\"\\", nil, true, false},
			"a": map[string]any{}, "": []any{}, "\u2028": "x"},
		json.Number("1e"), json.Number(""), json.Number("01"), json.Number("1.5E-3"), "\xff",
	}
	for _, doc := range yamlTestDocuments(t) {
		if tree, err := yamlToTree(doc); err == nil {
			trees = append(trees, tree)
		}
	}
	for _, tree := range trees {
		want, wantErr := json.Marshal(tree)
		got, err := appendTreeJSON(nil, tree)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Errorf("%#v: got %s (%v), want %s (%v)", tree, got, err, want, wantErr)
		}
	}
}
