package istio

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/adapters/istio/validation"
)

// TestValidateAllParallel checks that validating many objects on several
// goroutines gives each object's own results, in the objects' order.
func TestValidateAllParallel(t *testing.T) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "inputs", "*.yaml"))
	inputs = append(inputs, filepath.Join("..", "..", "..", "shared", "corpus", "istio-invalid", "validation-invalid.yaml"))
	var all bytes.Buffer
	for _, f := range inputs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		all.Write(data)
		all.WriteString("\n---\n")
	}
	var objs []*istioyaml.Object
	for len(objs) < 1000 {
		o, _, _ := istioyaml.Decode("all.yaml", all.Bytes(), istioyaml.Options{})
		if len(o) == 0 {
			t.Fatal("no objects decoded")
		}
		objs = append(objs, o...)
	}
	results := validateAll(objs)
	sawWarnings, sawErrors := false, false
	for i, obj := range objs {
		w, e := validation.Validate(obj)
		if !reflect.DeepEqual(results[i], validated{warnings: w, errs: e}) {
			t.Fatalf("object %d (%s %s/%s): %v, want warnings %v, errors %v", i, obj.Kind, obj.Namespace, obj.Name, results[i], w, e)
		}
		sawWarnings = sawWarnings || len(w) > 0
		sawErrors = sawErrors || len(e) > 0
	}
	if !sawWarnings || !sawErrors {
		t.Errorf("want objects with warnings and with errors: warnings %v, errors %v", sawWarnings, sawErrors)
	}
}
