package caddyfile_test

import (
	"path/filepath"
	"strings"
	"testing"

	// http.reverse_proxy.transport.istio.
	_ "github.com/caddy-istio/caddy-istio/modules/istiomesh"
)

// TestIstioTransportAdapt runs the golden tests of `transport istio` in
// reverse_proxy; checkAdapt is in istioroute_test.go.
func TestIstioTransportAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/transport_istio_*.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/transport_istio_*.caddyfiletest files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			checkAdapt(t, file)
		})
	}
}
