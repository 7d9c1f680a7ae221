#!/usr/bin/env bash
# Builds kube-apiserver v1.37.2 and etcd v3.7.3 from the Go module proxy into
# $KUBE_BIN (default: <repo>/.cache/kube/bin), once: a binary already there is kept.
# envtest finds them through KUBEBUILDER_ASSETS=$KUBE_BIN.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${KUBE_BIN:-$repo/.cache/kube/bin}"
mkdir -p "$bin"
if [[ ! -x "$bin/etcd" ]]; then
	(cd "$here/tools/etcd" && go build -trimpath -o "$bin/etcd.tmp" . && mv "$bin/etcd.tmp" "$bin/etcd")
fi
if [[ ! -x "$bin/kube-apiserver" ]]; then
	(cd "$here/tools/kube-apiserver" && go build -trimpath \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" \
		-o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver && mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver")
fi
echo "$bin"
