// Package oracle holds a differential test that checks caddy-istio's Istio
// YAML decoder and validator against Istio's own CRD schema and validation
// code. It lives in its own Go module so that istio.io/istio never becomes a
// dependency of the plugin.
package oracle
