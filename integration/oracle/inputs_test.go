package oracle

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// corpusDir is the shared corpus, relative to this package.
const corpusDir = "../../../shared/corpus"

// input is one document put to both judges.
type input struct {
	group string // "corpus", "invalid" or "mutations"
	name  string // file:doc, invalid case name, or mutation description
	doc   []byte // one YAML (or JSON) document holding one object
	// wantAccepted is the expected verdict of both judges for the fixed
	// inputs; nil for mutations, where only agreement counts.
	wantAccepted *bool
}

// corpusDocument is one Istio object of the sample corpus, in JSON form.
type corpusDocument struct {
	name string // file:doc
	kind string
	yaml []byte // the document as written
	json []byte
}

// splitDocuments splits a multi-document YAML stream the way kubectl does:
// a line starting with "---" followed only by whitespace ends a document.
// Documents holding nothing but comments and blank lines are dropped.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
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

func hasContent(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

// docKind returns the kind of a YAML document ("" if it has none).
func docKind(doc []byte) string {
	var head struct {
		Kind string `json:"kind"`
	}
	_ = yaml.Unmarshal(doc, &head)
	return head.Kind
}

// loadCorpus reads every Istio networking object of the sample corpus,
// sorted by file name so that the mutation seed gives the same variants on
// every machine.
func loadCorpus() ([]corpusDocument, error) {
	root := filepath.Join(corpusDir, "istio-samples")
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []corpusDocument
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(root, file)
		for i, doc := range splitDocuments(data) {
			kind := docKind(doc)
			if _, ok := istioKinds[kind]; !ok {
				continue
			}
			j, err := yaml.YAMLToJSON(doc)
			if err != nil {
				return nil, err
			}
			out = append(out, corpusDocument{name: rel + "#" + strconv.Itoa(i+1), kind: kind, yaml: doc, json: j})
		}
	}
	return out, nil
}

// loadInvalid reads the negative cases; each document starts with a
// "# case: <name>" comment.
func loadInvalid() ([]input, error) {
	var out []input
	for _, name := range []string{"validation-invalid.yaml", "decode-invalid.yaml"} {
		data, err := os.ReadFile(filepath.Join(corpusDir, "istio-invalid", name))
		if err != nil {
			return nil, err
		}
		for i, doc := range splitDocuments(data) {
			caseName := name + "#" + strconv.Itoa(i+1)
			for _, line := range strings.Split(string(doc), "\n") {
				if c, ok := strings.CutPrefix(line, "# case:"); ok {
					caseName = strings.TrimSpace(c)
					break
				}
			}
			rejected := false
			out = append(out, input{group: "invalid", name: caseName, doc: doc, wantAccepted: &rejected})
		}
	}
	return out, nil
}

// loadBases returns the documents mutations start from: the corpus objects
// and the seeds, in a fixed order.
func loadBases(corpus []corpusDocument) ([]*baseDoc, error) {
	var bases []*baseDoc
	add := func(name, kind string, j []byte) error {
		tree, err := parseJSON(j)
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		m, ok := tree.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", name)
		}
		bases = append(bases, &baseDoc{name: name, kind: kind, tree: m})
		return nil
	}
	for _, d := range corpus {
		if err := add(d.name, d.kind, d.json); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(seedDocuments))
	for n := range seedDocuments {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		doc := []byte(seedDocuments[n])
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", n, err)
		}
		if err := add(n, docKind(doc), j); err != nil {
			return nil, err
		}
	}
	return bases, nil
}
