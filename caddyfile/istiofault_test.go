// Package caddyfile_test holds golden tests of the caddy-istio Caddyfile
// directives: each testdata/*.caddyfiletest file is a Caddyfile, a line
// "----------", then either the JSON that `caddy adapt` must produce
// (compared as decoded JSON) or, when it does not start with '{', a
// substring of the adapt error.
package caddyfile_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	_ "github.com/caddy-istio/caddy-istio/modules/istiofault"
)

func TestIstioFaultAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/istio_fault*.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/istio_fault*.caddyfiletest files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			input, expected := readAdaptCase(t, file)
			adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": file})
			if !strings.HasPrefix(expected, "{") {
				if err == nil {
					t.Fatalf("adapt succeeded with %s, want an error containing %q", adapted, expected)
				}
				if !strings.Contains(err.Error(), expected) {
					t.Fatalf("adapt error = %q, want it to contain %q", err, expected)
				}
				return
			}
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var got, want any
			if err := json.Unmarshal(adapted, &got); err != nil {
				t.Fatalf("adapted JSON: %v", err)
			}
			if err := json.Unmarshal([]byte(expected), &want); err != nil {
				t.Fatalf("expected JSON in %s: %v", file, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("adapted:\n%s\nwant:\n%s", adapted, expected)
			}
		})
	}
}

// readAdaptCase splits a .caddyfiletest file at its "----------" line.
// update rewrites the expected JSON of the golden files that differ.
var update = flag.Bool("update", false, "rewrite the expected JSON of golden files that differ")

// writeAdaptCase rewrites file with input and the adapted JSON, indented
// as the golden files are.
func writeAdaptCase(t *testing.T, file, input string, adapted []byte) {
	t.Helper()
	var indented bytes.Buffer
	if err := json.Indent(&indented, adapted, "", "\t"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(input+"\n----------\n"+indented.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readAdaptCase(t *testing.T, file string) (input, expected string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	input, expected, ok := strings.Cut(string(data), "\n----------\n")
	if !ok {
		t.Fatalf("%s has no ---------- separator line", file)
	}
	return input, strings.TrimSpace(expected)
}
