#!/usr/bin/env bash
# Runs the Istio bookinfo sample on caddy-istio, on this machine, with nothing but Go:
#
#   * builds Caddy with the caddy-istio modules and the bookinfo stand-in backends,
#   * starts one backend listener per service version (ports from the WorkloadEntries in mesh.yaml),
#   * starts `caddy run --adapter istio --config examples/bookinfo/mesh.yaml`,
#   * prints requests to try, and stops everything on Ctrl-C.
#
# The gateway listens on the sample's port 8080 and the mesh listener on 127.0.0.1:15001;
# both must be free. Caddy's admin endpoint is the default localhost:2019 unless CADDY_ADMIN is set.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { echo "run.sh: Go is required (https://go.dev/dl/)" >&2; exit 1; }

cache="$root/.cache/bookinfo"
bin="$root/.cache/bin"
mkdir -p "$cache" "$bin"
config="$here/mesh.yaml"

echo "building caddy and the bookinfo backends ..."
go build -o "$bin/caddy" ./xcaddy
go build -o "$bin/bookinfo-backend" ./examples/bookinfo/backend

if ! "$bin/caddy" list-modules 2>/dev/null | grep -qx 'caddy.adapters.istio'; then
	echo "run.sh: this caddy build has no 'istio' config adapter (caddy.adapters.istio);" >&2
	echo "        is the root package blank-imported by xcaddy/main.go?" >&2
	exit 1
fi

# One backend listener per WorkloadEntry of mesh.yaml: metadata.name is SERVICE-VERSION and
# spec.ports.http the local port, so mesh.yaml stays the only place that lists them.
mapfile -t listen_flags < <(awk '
	/^---/ { we = 0 }
	/^kind: WorkloadEntry/ { we = 1 }
	we && /^  name:/ { name = $2 }
	we && /^    http:/ { print "-listen=" name "=127.0.0.1:" $2 }
' "$config")
if [ "${#listen_flags[@]}" -eq 0 ]; then
	echo "run.sh: no WorkloadEntries found in $config" >&2
	exit 1
fi

pids=()
cleanup() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	echo "stopped."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin/bookinfo-backend" "${listen_flags[@]}" >"$cache/backend.log" 2>&1 &
pids+=("$!")

# Keep Caddy's data and config storage out of the user's home.
XDG_DATA_HOME="$cache/data" XDG_CONFIG_HOME="$cache/config" \
	"$bin/caddy" run --adapter istio --config "$config" >"$cache/caddy.log" 2>&1 &
caddy_pid=$!
pids+=("$caddy_pid")

echo "waiting for the gateway on :8080 ..."
deadline=$((SECONDS + 30))
until curl -s -o /dev/null --max-time 2 http://127.0.0.1:8080/productpage; do
	if ! kill -0 "$caddy_pid" 2>/dev/null; then
		echo "run.sh: caddy exited; its log ($cache/caddy.log):" >&2
		tail -n 30 "$cache/caddy.log" >&2
		exit 1
	fi
	if [ "$SECONDS" -ge "$deadline" ]; then
		echo "run.sh: the gateway did not answer within 30s; see $cache/caddy.log" >&2
		exit 1
	fi
	sleep 0.2
done

cat <<'EOF'

bookinfo is running. Every answer is JSON naming the service and version that served it
(also in the x-bookinfo-version response header).

Ingress gateway (bookinfo-gateway, port 8080, VirtualService "bookinfo"):
  curl -s localhost:8080/productpage                      # productpage v1
  curl -s localhost:8080/api/v1/products                  # productpage (prefix match)
  curl -s -o /dev/null -w '%{http_code}\n' localhost:8080/nope   # 404: no route

Mesh listener (127.0.0.1:15001; VirtualService "reviews": end-user jason -> v2, others -> v1):
  curl -s -x http://127.0.0.1:15001 http://reviews:9080/  # reviews v1
  curl -s -H 'Host: reviews:9080' 127.0.0.1:15001/ -H 'end-user: jason'   # reviews v2
  curl -s -x http://127.0.0.1:15001 http://details:9080/  # details (no VirtualService: the whole service)

Logs: .cache/bookinfo/caddy.log, .cache/bookinfo/backend.log
Press Ctrl-C to stop.
EOF

wait "$caddy_pid"
