package istio

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// invalidDocument is one document of the invalid corpus.
type invalidDocument struct {
	caseName string // from the "# case:" comment
	kind     string
	name     string
	body     []byte
}

// splitInvalidCorpus splits a corpus file on "---" lines.
func splitInvalidCorpus(data []byte) []invalidDocument {
	var docs []invalidDocument
	var cur bytes.Buffer
	flush := func() {
		body := append([]byte(nil), cur.Bytes()...)
		cur.Reset()
		if len(bytes.TrimSpace(body)) == 0 {
			return
		}
		d := invalidDocument{body: body}
		if m := regexp.MustCompile(`(?m)^# case: (\S+)`).FindSubmatch(body); m != nil {
			d.caseName = string(m[1])
		}
		if m := regexp.MustCompile(`(?m)^kind: (\S+)`).FindSubmatch(body); m != nil {
			d.kind = string(m[1])
		}
		if m := regexp.MustCompile(`(?m)^metadata: \{name: ([^,}]+)`).FindSubmatch(body); m != nil {
			d.name = strings.TrimSpace(string(m[1]))
		}
		docs = append(docs, d)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "---") && strings.TrimSpace(line[3:]) == "" {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

// TestInvalidCorpus adapts every document of the invalid corpus alone:
// Adapt must fail, and every line of the error must name the file, the
// document, the resource (kind namespace/name) and a field path.
func TestInvalidCorpus(t *testing.T) {
	dir := corpusDir(t, "istio-invalid")
	expected := make(map[string][]string)
	if data, err := os.ReadFile(filepath.Join(dir, "expected-errors.jsonl")); err == nil {
		for _, line := range bytes.Split(data, []byte("\n")) {
			var e struct {
				Case   string   `json:"case"`
				Errors []string `json:"errors"`
			}
			if json.Unmarshal(line, &e) == nil && e.Case != "" {
				expected[e.Case] = e.Errors
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		t.Skip("no invalid corpus files")
	}
	for _, file := range files {
		base := filepath.Base(file)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitInvalidCorpus(data) {
			name := doc.caseName
			if name == "" {
				name = base + "#" + string(rune('0'+i))
			}
			t.Run(name, func(t *testing.T) {
				out, _, err := Adapter{}.Adapt(doc.body, map[string]any{"filename": base})
				if err == nil {
					t.Fatalf("adapt succeeded, want an error; output: %.300s", out)
				}
				for _, line := range strings.Split(err.Error(), "\n") {
					if !strings.HasPrefix(line, base+": document 1 (") {
						t.Errorf("error line does not name file and document: %q", line)
					}
					if doc.kind != "" && doc.name != "" && (!strings.Contains(line, "("+doc.kind+" ") || !strings.Contains(line, "/"+doc.name+")")) {
						t.Errorf("error line does not name %s %s: %q", doc.kind, doc.name, line)
					}
					if !regexp.MustCompile(`\): (spec|metadata|apiVersion|kind)[^:]*: `).MatchString(line) {
						t.Errorf("error line has no field path: %q", line)
					}
				}
				if want := expected[doc.caseName]; len(want) > 0 {
					t.Logf("istio says: %s\nwe say: %s", strings.Join(want, "; "), err)
				}
			})
		}
	}
}
