package caddyfile_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestIstioLBAdapt runs the golden tests of the istiolb selection policies
// (lb_policy in reverse_proxy); checkAdapt is in istioroute_test.go.
func TestIstioLBAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/lb_*.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/lb_*.caddyfiletest files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			checkAdapt(t, file)
		})
	}
}
