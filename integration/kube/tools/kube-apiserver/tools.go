//go:build tools

// Package tools pins k8s.io/kubernetes so that `go build k8s.io/kubernetes/cmd/kube-apiserver`
// builds the real API server; the replace block in go.mod maps the staging modules
// (./staging/src/k8s.io/* inside k8s.io/kubernetes) to their published v0.37.2 releases.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
