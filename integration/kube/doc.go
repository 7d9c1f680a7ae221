// Package kube tests the istio_kube config loader against a real
// kube-apiserver and etcd (built from the Go module proxy by
// build-binaries.sh) with two Caddy processes following it. It is a module
// of its own so that nothing of Kubernetes' server side enters the plugin's
// go.mod.
package kube
