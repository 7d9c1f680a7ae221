package istio

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

var update = flag.Bool("update", false, "regenerate the golden files in testdata/golden")

// corpusDir is the shared Istio sample corpus, found relative to this
// package (the repository sits next to shared/).
func corpusDir(tb testing.TB, name string) string {
	tb.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "corpus", name)
	if _, err := os.Stat(dir); err != nil {
		tb.Skipf("corpus %s not found: %v", dir, err)
	}
	return dir
}

// corpusFiles lists the YAML files under dir, relative to it, in lexical
// order.
func corpusFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return files
}

// formatWarnings renders warnings one per line: file:line: field: message.
func formatWarnings(ws []caddyconfig.Warning) string {
	var b strings.Builder
	for _, w := range ws {
		if w.Directive == "" {
			fmt.Fprintf(&b, "%s:%d: %s\n", w.File, w.Line, w.Message)
			continue
		}
		fmt.Fprintf(&b, "%s:%d: %s: %s\n", w.File, w.Line, w.Directive, w.Message)
	}
	return b.String()
}

// goldenCase is one input of the golden tests and where its golden files
// are.
type goldenCase struct {
	name   string // file name given to the adapter; also the golden path
	input  []byte
	golden string // path of the golden files without extension
}

// goldenCases are every file of the sample corpus, every scenario of
// testdata/scenarios (corpus files adapted together, one listed per line)
// and every file of testdata/inputs.
func goldenCases(t *testing.T) []goldenCase {
	var cases []goldenCase
	dir := filepath.Join("..", "..", "..", "shared", "corpus", "istio-samples")
	if _, err := os.Stat(dir); err == nil {
		for _, rel := range corpusFiles(t, dir) {
			input, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, goldenCase{name: rel, input: input, golden: filepath.Join("testdata", "golden", filepath.FromSlash(rel))})
		}
		lists, _ := filepath.Glob(filepath.Join("testdata", "scenarios", "*.list"))
		for _, list := range lists {
			data, err := os.ReadFile(list)
			if err != nil {
				t.Fatal(err)
			}
			var docs [][]byte
			for _, line := range strings.Split(string(data), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				doc, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(line)))
				if err != nil {
					t.Fatal(err)
				}
				docs = append(docs, doc)
			}
			name := "scenarios/" + strings.TrimSuffix(filepath.Base(list), ".list") + ".yaml"
			cases = append(cases, goldenCase{name: name, input: bytes.Join(docs, []byte("\n---\n")), golden: filepath.Join("testdata", "golden", filepath.FromSlash(name))})
		}
	} else {
		t.Logf("corpus %s not found: only testdata/inputs is tested", dir)
	}
	inputs, _ := filepath.Glob(filepath.Join("testdata", "inputs", "*.yaml"))
	for _, in := range inputs {
		input, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		name := "inputs/" + filepath.Base(in)
		cases = append(cases, goldenCase{name: name, input: input, golden: filepath.Join("testdata", "golden", filepath.FromSlash(name))})
	}
	return cases
}

// TestGolden adapts every golden case and compares the result with
// testdata/golden/<name>.json (as JSON values) and <name>.warnings.txt.
// Run with -update to regenerate them, then review the diff: the golden
// files are the specification.
func TestGolden(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			out, warnings, err := Adapter{}.Adapt(c.input, map[string]any{"filename": c.name})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatalf("invalid JSON: %v", err)
			}
			pretty.WriteByte('\n')
			gotWarnings := formatWarnings(warnings)

			jsonFile, warnFile := c.golden+".json", c.golden+".warnings.txt"
			if *update {
				if err := os.MkdirAll(filepath.Dir(jsonFile), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(jsonFile, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(warnFile, []byte(gotWarnings), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}

			want, err := os.ReadFile(jsonFile)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			assertSameJSON(t, want, out)
			wantWarnings, err := os.ReadFile(warnFile)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if gotWarnings != string(wantWarnings) {
				t.Errorf("warnings differ\n--- want\n%s--- got\n%s", wantWarnings, gotWarnings)
			}
		})
	}
}

// assertSameJSON compares two JSON documents as values.
func assertSameJSON(t *testing.T, want, got []byte) {
	t.Helper()
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want: %v", err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got: %v", err)
	}
	if !reflect.DeepEqual(w, g) {
		var pw, pg bytes.Buffer
		_ = json.Indent(&pw, want, "", "  ")
		_ = json.Indent(&pg, got, "", "  ")
		t.Errorf("JSON differs\n--- want\n%s\n--- got\n%s", pw.String(), pg.String())
	}
}
