#!/usr/bin/env bash
# xcaddy smoke test: builds Caddy v2.11.9 with this repository as a plugin, exactly as a user
# would with xcaddy, and checks that every caddy-istio module is in the binary.
#
# Installs xcaddy v0.4.5 into .cache/bin if it is not there. Needs the Go module proxy.
set -euo pipefail

# The module IDs caddy-istio registers; add new modules here.
modules=(
	caddy.adapters.istio
	istio
	http.handlers.istio_route
	http.handlers.istio_fault
	http.handlers.istio_egress
	http.reverse_proxy.upstreams.istio
	http.reverse_proxy.selection_policies.least_request
	caddy.listeners.istio_mtls
	tls.client_auth.verifier.istio_san
	http.reverse_proxy.transport.istio
	admin.api.istio
	caddy.config_loaders.istio_kube
	# caddy-l4, blank-imported by imports.go: TLS passthrough and TCP servers.
	layer4
	layer4.handlers.proxy
	layer4.handlers.subroute
	layer4.matchers.tls
	layer4.proxy.selection_policies.weighted_round_robin
	tls.handshake_match.sni_regexp
)

caddy_version=v2.11.9
xcaddy_version=v0.4.5

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.cache/bin"
mkdir -p "$bin"
cd "$root"

xcaddy="$bin/xcaddy"
if [ ! -x "$xcaddy" ]; then
	echo "installing xcaddy $xcaddy_version into $bin"
	GOBIN="$bin" go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$xcaddy_version"
fi

output="$bin/caddy-xcaddy"
rm -f "$output"
# The zero pseudo-version plus "=./" makes xcaddy replace the module with this checkout.
"$xcaddy" build "$caddy_version" --output "$output" \
	--with "github.com/caddy-istio/caddy-istio@v0.0.0-00010101000000-000000000000=./"

listed="$("$output" list-modules)"
missing=0
for id in "${modules[@]}"; do
	if grep -qx -- "$id" <<<"$listed"; then
		echo "ok: $id"
	else
		echo "missing: $id" >&2
		missing=$((missing + 1))
	fi
done
if [ "$missing" -gt 0 ]; then
	echo "xcaddy smoke: $missing of ${#modules[@]} caddy-istio modules missing from $output" >&2
	exit 1
fi
echo "xcaddy smoke: all ${#modules[@]} caddy-istio modules present"
