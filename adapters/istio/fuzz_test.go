package istio

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzAdapt feeds arbitrary input to the adapter, seeded with the sample
// and invalid corpora and testdata/inputs: it must never panic, and what
// it returns without error must be JSON.
func FuzzAdapt(f *testing.F) {
	var seeds []string
	for _, name := range []string{"istio-samples", "istio-invalid"} {
		dir := filepath.Join("..", "..", "..", "shared", "corpus", name)
		if _, err := os.Stat(dir); err == nil {
			for _, rel := range corpusFiles(f, dir) {
				seeds = append(seeds, filepath.Join(dir, rel))
			}
		}
	}
	inputs, _ := filepath.Glob(filepath.Join("testdata", "inputs", "*.yaml"))
	seeds = append(seeds, inputs...)
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		out, _, err := Adapter{}.Adapt(input, nil)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON output: %s", out)
		}
	})
}
