package istioyaml

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// extraFuzzSeeds are inputs other test files add to FuzzDecode's corpus.
var extraFuzzSeeds []string

// FuzzDecode checks that Decode never panics (a recovered panic shows as an
// "internal error" problem), that every problem is located, and that the
// message Decode builds is the one strict jsonpb gives, that documents
// read as with sigs.k8s.io/yaml.YAMLToJSON, and that List items are cut out
// right.
//
//	go test ./adapters/istio/istioyaml -run '^$' -fuzz FuzzDecode -fuzztime 30s
func FuzzDecode(f *testing.F) {
	for _, sub := range []string{"istio-samples", "istio-invalid"} {
		for _, path := range corpusFiles(f, corpusDir(f, sub)) {
			data, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, seed := range append(extraFuzzSeeds,
		"",
		"---\n---\n",
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n",
		"apiVersion: v1\nkind: List\nitems:\n  # c\n  - a: |\n      - x\n    b: \"q\n      - y\"\n  - ~\nmetadata: {}\n",
		"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {http: [{match: [{uri: {exact: /a, prefix: /b}}]}]}\n",
		"a: &x [*x]\n",
		"--- {a: 1}\n",
	) {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range splitDocuments(data) {
			if err := checkTreeAgainstYAMLToJSON(c.data); err != nil {
				t.Fatalf("document at line %d: %v", c.firstLine, err)
			}
			if err := checkListCut(c); err != nil {
				t.Fatalf("List document at line %d: %v", c.firstLine, err)
			}
		}
		objs, warnings, errs := Decode(filepath.Join("fuzz", "in.yaml"), data, Options{})
		for _, p := range append(warnings, errs...) {
			if strings.HasPrefix(p.Message, "internal error") {
				t.Fatalf("recovered panic: %s", p.Error())
			}
			if p.Doc < 1 || p.Line < 1 {
				t.Fatalf("unlocated problem: %+v", p)
			}
		}
		for _, p := range errs {
			if p.Field == "spec" && !strings.HasPrefix(p.Message, "must be ") {
				t.Fatalf("the message builder rejected what the schema walk accepted: %s", p.Error())
			}
		}
		for _, o := range objs {
			if (o.Spec == nil) == (o.Service == nil) || o.Name == "" {
				t.Fatalf("bad object %+v", o)
			}
			if err := checkAgainstJSONPB(o); err != nil {
				t.Fatalf("%s: %v", o.Ref(), err)
			}
			if line := o.LineOf("spec.http[0].route[0].weight"); line < 1 {
				t.Fatalf("LineOf = %d", line)
			}
		}
	})
}
