package caddyfile_test

import (
	"path/filepath"
	"strings"
	"testing"

	// The istio_egress directive.
	_ "github.com/caddy-istio/caddy-istio/modules/istioegress"
)

// TestIstioEgressAdapt runs the golden tests of the istio_egress directive;
// checkAdapt is in istioroute_test.go.
func TestIstioEgressAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/istio_egress*.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/istio_egress*.caddyfiletest files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			checkAdapt(t, file)
		})
	}
}
