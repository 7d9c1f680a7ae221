// Package integration holds the end-to-end tests of caddy-istio: the real
// caddy binary (built from ./xcaddy) loads Istio YAML with
// `caddy run --adapter istio` and serves real HTTP clients in front of the
// bookinfo stand-in backends (examples/bookinfo/backend), all on 127.0.0.1.
//
// The package has only tests; run them with `go test ./integration/`.
// `go test -short` skips them.
package integration
