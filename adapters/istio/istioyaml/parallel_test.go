package istioyaml

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestDecodeParallel checks that decoding the documents on several
// goroutines gives what decoding them one after the other gives: the same
// objects, warnings and errors, in the same order, with the same document
// numbers, over good, bad, empty and comment-only documents, Lists and
// kinds that are skipped.
func TestDecodeParallel(t *testing.T) {
	var files []string
	files = append(files, corpusFiles(t, corpusDir(t, "istio-samples"))...)
	files = append(files, corpusFiles(t, corpusDir(t, "istio-invalid"))...)
	matches, _ := filepath.Glob(filepath.Join("..", "testdata", "inputs", "*.yaml"))
	files = append(files, matches...)

	var all bytes.Buffer
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(data)
		switch i % 4 {
		case 0:
			all.WriteString("\n---\n---\n# only a comment\n---\n")
		case 1:
			all.WriteString("\n--- # a separator with a comment\n")
		case 2:
			all.WriteString("\n---\n[not, a, mapping]\n---\nkind: [bad\n---\n")
		default:
			all.WriteString("\n---\n")
		}
	}
	data := all.Bytes()
	chunks := splitDocuments(data)
	if len(chunks) < 2*parallelMinChunks {
		t.Fatalf("only %d documents; the parallel path needs %d", len(chunks), 2*parallelMinChunks)
	}

	wantObjs, wantWarnings, wantErrs := decodeSequential("all.yaml", "default", chunks)
	if len(wantObjs) == 0 || len(wantWarnings) == 0 || len(wantErrs) == 0 {
		t.Fatalf("want objects, warnings and errors; got %d, %d, %d", len(wantObjs), len(wantWarnings), len(wantErrs))
	}
	for _, workers := range []int{2, 3, 8} {
		objs, warnings, errs := decodeParallel("all.yaml", "default", splitDocuments(data), workers)
		if !reflect.DeepEqual(warnings, wantWarnings) {
			t.Errorf("%d workers: warnings differ:\n%v\nwant\n%v", workers, warnings, wantWarnings)
		}
		if !reflect.DeepEqual(errs, wantErrs) {
			t.Errorf("%d workers: errors differ:\n%v\nwant\n%v", workers, errs, wantErrs)
		}
		if len(objs) != len(wantObjs) {
			t.Fatalf("%d workers: %d objects, want %d", workers, len(objs), len(wantObjs))
		}
		for i, o := range objs {
			w := wantObjs[i]
			if o.File != w.File || o.Doc != w.Doc || o.Line != w.Line || o.APIVersion != w.APIVersion ||
				o.Kind != w.Kind || o.Name != w.Name || o.Namespace != w.Namespace ||
				!reflect.DeepEqual(o.Labels, w.Labels) || !reflect.DeepEqual(o.Annotations, w.Annotations) ||
				!reflect.DeepEqual(o.Service, w.Service) || !reflect.DeepEqual(o.fields, w.fields) ||
				o.srcFirstLine != w.srcFirstLine || o.srcPrefix != w.srcPrefix || !bytes.Equal(o.src, w.src) {
				t.Errorf("%d workers: object %d (%s %s/%s, document %d) differs from %s %s/%s, document %d",
					workers, i, o.Kind, o.Namespace, o.Name, o.Doc, w.Kind, w.Namespace, w.Name, w.Doc)
			}
			if (o.Spec == nil) != (w.Spec == nil) || (o.Spec != nil && !proto.Equal(o.Spec, w.Spec)) {
				t.Errorf("%d workers: object %d: spec differs", workers, i)
			}
		}
	}
}
