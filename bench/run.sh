#!/usr/bin/env bash
# bench/run.sh: the istio_route handler against plain Caddy reverse_proxy and against the
# backend directly, measured in one run.
#
#   bench/run.sh                      # ~5 minutes: 3 interleaved rounds, 8 s max-rate + 15 s fixed-load phases
#   bench/run.sh --rounds 5 --max 20s --fixed 60s     # longer, steadier figures
#   bench/run.sh --profile            # also take CPU/alloc profiles of both proxies at max rate
#   bench/run.sh --suite pools        # DestinationRule pools: LEAST_REQUEST and ring hash against
#                                     # plain Caddy round_robin over the same two backends
#   bench/run.sh --suite mesh         # route's configs plus ISTIO_MUTUAL between two Caddy processes
#                                     # and the mesh listener as HTTP proxy (absolute-form requests)
#
# Every option also has an environment variable (SUITE, ROUNDS, MAX_DURATION, FIXED_DURATION, QPS, CONNS,
# MAX_CONNS, NOISE_MAX, IDLE_MAX, IDLE_WAIT, PROFILE, NO_BUILD); see usage() below.
#
# What it does (protocol of /work/shared/reference/performance-anchors.md, section 4):
#   * builds .cache/bin/caddy (go build ./xcaddy), .cache/bin/bench-backend (bench/backend) and
#     installs fortio v1.66.5 into .cache/bin (newer fortio pulls a module the proxy refuses);
#   * starts the backend on 127.0.0.1:18080 and :18090 (1 KiB body, keep-alive);
#   * for each round (config order rotated each round) and each config
#       direct  the backend itself (127.0.0.1:18080),
#       plain   stock Caddy JSON: reverse_proxy to 127.0.0.1:18080,
#       istio   `caddy run --adapter istio`: Service + 2 WorkloadEntries + DestinationRule (subsets
#               v1 = :18080, v2 = :18090, default LEAST_REQUEST) + VirtualService (header
#               x-bench: "1" -> v1 90 / v2 10) + Sidecar egress listener 127.0.0.1:18100,
#     it starts the proxy, warms it up, runs fortio at max rate (-qps 0, MAX_CONNS connections) and at
#     a fixed load (QPS over CONNS connections) for p50/p90/p99, and records CPU use;
#   * every config gets the same request: Host: bench, x-bench: 1;
#   * layout (if taskset works and nproc >= 2): fortio + backend on CPU 0, proxy on CPU 1 with
#     GOMAXPROCS=1;
#   * a phase whose unattributed CPU (box busy time minus proxy, backend and fortio) exceeds
#     NOISE_MAX cores is marked noisy; medians use the clean phases when a config has >= 2 of them;
#   * checks the istio config: no non-2xx, v2 share of the matched route 10 % +- 1 pp, requests
#     without the header (second route) all on v1;
#   * prints medians and ratios (to plain and to direct) and writes bench/results/<timestamp>.json.
# The pools suite (--suite pools) runs instead: direct; plain_rr (stock reverse_proxy, round_robin over
# both backends); pool_lr and pool_ring (the pool alone: stock reverse_proxy whose upstreams are the
# istio app's registry endpoints, `dynamic istio`, with our least_request or ring_hash on x-user);
# istio_lr (the whole Istio path: a Service over both workloads, Istio's default LEAST_REQUEST, no
# VirtualService, egress and route handlers, telemetry, default retries); istio_ring (the same with a
# DestinationRule consistentHash on the x-user header, ring hash); targets: each pool >= 0.95x plain_rr
# throughput (the istio_* ratios are printed for the whole path).
# The mesh suite (--suite mesh) runs direct, plain and istio as the route suite, and
#   istio_mtls  the istio config, but the workloads v1 and v2 are the two ISTIO_MUTUAL Gateway servers
#               (127.0.0.1:18110, :18120) of a second `caddy run --adapter istio` process, the
#               "server sidecar", whose VirtualService (bound to that Gateway, matched on the port)
#               sends them on to the backend's :18080 and :18090; the DestinationRule of bench sets
#               tls.mode ISTIO_MUTUAL. Both processes use the same XDG_DATA_HOME, so the same mesh CA.
#               The server sidecar runs on CPU 1 with the client proxy (GOMAXPROCS=1 each); CPU and
#               RSS figures are the sum of both processes;
#   egress      the istio config's mesh listener used as the client's HTTP proxy: fortio -stdclient
#               with HTTP_PROXY=http://127.0.0.1:18100 asks for http://bench:18100/ in absolute form
#               (istio_egress hands registry hosts to istio_route). fortio's fast client cannot use a
#               proxy, so this config's client is Go's net/http client: compare its proxy vCPU, not
#               its throughput;
#   direct_tls  Go's client (fortio -stdclient -k) straight to the backend's TLS listener (:18443);
#   connect     the same client with HTTPS_PROXY=http://127.0.0.1:18100: each connection is a CONNECT
#               tunnel through the istio config's mesh listener (istio_egress, to a ServiceEntry
#               backend-tls.bench whose endpoint is the TLS listener), kept alive, TLS end to end;
#               compare it with direct_tls. Bulk tunnel throughput is bench/egress.sh's.
# Targets (issue 7): istio >= 0.95x plain throughput and <= 0.3 ms added p99 at fixed load (route and
# mesh suites); proxy vCPU per 1000 rps at fixed load < 0.15 for istio, and for istio_mtls per sidecar
# (each of the two processes, each doing the whole path: route, pool, ISTIO_MUTUAL, metrics), which is
# the unit of the 0.20 vCPU Istio publishes for its Envoy sidecar; the sum of both is printed beside it.
# Exit status: 0 when every request succeeded and the split was right; 1 otherwise. Targets are
# printed, not gated: the machine is shared, so the figures are indicative.
#
# Needs: go, curl, jq; taskset (util-linux) for pinning. Ports 18080, 18090, 18100 and the admin
# port 12019 must be free. Never run by the test suite.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/run.sh [options]
  --suite S         route (istio_route vs reverse_proxy), pools (LB pools) or mesh (route + ISTIO_MUTUAL
                    between two processes + egress proxy)  (SUITE, default route)
  --rounds N        interleaved rounds                     (ROUNDS, default 3)
  --max DUR         max-rate phase duration, fortio -t     (MAX_DURATION, default 8s)
  --fixed DUR       fixed-load phase duration              (FIXED_DURATION, default 15s)
  --qps N           fixed load, requests per second        (QPS, default 2000)
  --conns N         connections at fixed load              (CONNS, default 16)
  --max-conns N     connections at max rate                (MAX_CONNS, default 32)
  --noise-max C     noisy-phase threshold, cores           (NOISE_MAX, default 0.15)
  --idle-max F      wait before a config until the box is below F busy (0..1)  (IDLE_MAX, default 0.30)
  --idle-wait S     ... for at most S seconds              (IDLE_WAIT, default 20)
  --profile         after the rounds, CPU + alloc profiles of plain and istio at max rate (PROFILE=1)
  --no-build        use the binaries already in .cache/bin  (NO_BUILD=1)
EOF
}

SUITE="${SUITE:-route}"
ROUNDS="${ROUNDS:-3}"
MAX_DURATION="${MAX_DURATION:-8s}"
FIXED_DURATION="${FIXED_DURATION:-15s}"
QPS="${QPS:-2000}"
CONNS="${CONNS:-16}"
MAX_CONNS="${MAX_CONNS:-32}"
NOISE_MAX="${NOISE_MAX:-0.15}"
IDLE_MAX="${IDLE_MAX:-0.30}"
IDLE_WAIT="${IDLE_WAIT:-20}"
PROFILE="${PROFILE:-0}"
NO_BUILD="${NO_BUILD:-0}"
while [ $# -gt 0 ]; do
	case "$1" in
	--suite) SUITE="$2"; shift 2 ;;
	--rounds) ROUNDS="$2"; shift 2 ;;
	--max) MAX_DURATION="$2"; shift 2 ;;
	--fixed) FIXED_DURATION="$2"; shift 2 ;;
	--qps) QPS="$2"; shift 2 ;;
	--conns) CONNS="$2"; shift 2 ;;
	--max-conns) MAX_CONNS="$2"; shift 2 ;;
	--noise-max) NOISE_MAX="$2"; shift 2 ;;
	--idle-max) IDLE_MAX="$2"; shift 2 ;;
	--idle-wait) IDLE_WAIT="$2"; shift 2 ;;
	--profile) PROFILE=1; shift ;;
	--no-build) NO_BUILD=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
for tool in go curl jq; do
	command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: $tool is required" >&2; exit 1; }
done

bin="$root/.cache/bin"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
results="$here/results"
work="$results/$stamp"
mkdir -p "$bin" "$work"
out_json="$results/$stamp.json"

BACKEND_V1=127.0.0.1:18080
BACKEND_V2=127.0.0.1:18090
# mesh suite: the backend over TLS, the far end of the CONNECT tunnels
BACKEND_TLS=127.0.0.1:18443
PROXY=127.0.0.1:18100
ADMIN=127.0.0.1:12019
# mesh suite: the server sidecar's two ISTIO_MUTUAL Gateway servers, its own mesh listener and admin
SERVER_V1=127.0.0.1:18110
SERVER_V2=127.0.0.1:18120
SERVER_MESH=127.0.0.1:18130
ADMIN2=127.0.0.1:12020
# the request's headers and how the p99 target compares (the issue says "<= 0.3 ms")
P99_OP="<="
# [config, max proxy vCPU per 1000 rps at fixed load]
VCPU_TARGETS='[]'
# The same request for every config: the Host the VirtualService answers and its matching header
# (and, for the pools, the consistent-hash key).
case "$SUITE" in
route)
	CONFIGS=(direct plain istio)
	REQ_HEADERS=(-H "Host: bench" -H "x-bench: 1")
	# ratios printed, as "a/b", and the targets: [a, b, min throughput ratio, max added p99 ms]
	RATIOS='[["plain","direct"],["istio","direct"],["istio","plain"]]'
	TARGETS='[["istio","plain",0.95,0.3]]'
	P99_OP="<="
	VCPU_TARGETS='[["istio",0.15]]'
	;;
pools)
	CONFIGS=(direct plain_rr pool_lr pool_ring istio_lr istio_ring)
	REQ_HEADERS=(-H "Host: bench" -H "x-user: alice")
	RATIOS='[["plain_rr","direct"],["pool_lr","plain_rr"],["pool_ring","plain_rr"],["istio_lr","plain_rr"],["istio_ring","plain_rr"]]'
	TARGETS='[["pool_lr","plain_rr",0.95,null],["pool_ring","plain_rr",0.95,null]]'
	;;
mesh)
	CONFIGS=(direct plain istio istio_mtls egress direct_tls connect)
	REQ_HEADERS=(-H "Host: bench" -H "x-bench: 1")
	RATIOS='[["plain","direct"],["istio","direct"],["istio","plain"],["istio_mtls","direct"],["istio_mtls","plain"],["istio_mtls","istio"],["egress","istio"],["connect","direct_tls"]]'
	TARGETS='[["istio","plain",0.95,0.3]]'
	P99_OP="<="
	VCPU_TARGETS='[["istio",0.15],["istio_mtls",0.15]]'
	;;
*) echo "run.sh: unknown suite $SUITE (route, pools or mesh)" >&2; exit 2 ;;
esac

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- build -------------------------------------------------------------------------------------
if [ "$NO_BUILD" != 1 ]; then
	log "building caddy, the backend and fortio v1.66.5 ..."
	go build -o "$bin/caddy" ./xcaddy
	go build -o "$bin/bench-backend" ./bench/backend
	if ! "$bin/fortio" version 2>/dev/null | grep -qx '1.66.5'; then
		GOBIN="$bin" go install fortio.org/fortio@v1.66.5
	fi
fi
for b in caddy bench-backend fortio; do
	[ -x "$bin/$b" ] || { echo "run.sh: $bin/$b missing (run without --no-build)" >&2; exit 1; }
done

# --- layout ------------------------------------------------------------------------------------
LG=()
PX=()
PROXY_ENV=()
layout="unpinned (taskset unavailable or fewer than 2 CPUs)"
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] && taskset -c 1 true 2>/dev/null; then
	LG=(taskset -c 0)
	PX=(taskset -c 1)
	PROXY_ENV=(GOMAXPROCS=1)
	layout="fortio + backend on CPU 0 (GOMAXPROCS=1), proxy on CPU 1 (GOMAXPROCS=1)"
	if [ "$SUITE" = mesh ]; then
		layout="$layout; istio_mtls: server sidecar on CPU 1 too (GOMAXPROCS=1)"
	fi
fi

# --- configs -----------------------------------------------------------------------------------
cat >"$work/plain.json" <<EOF
{
  "admin": {"listen": "$ADMIN"},
  "apps": {"http": {"servers": {"bench": {
    "listen": ["$PROXY"],
    "automatic_https": {"disable": true},
    "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "$BACKEND_V1"}]}]}]
  }}}}
}
EOF

cat >"$work/istio.yaml" <<EOF
# One service, two workloads (v1, v2) on the backend's two ports; the VirtualService sends the
# requests carrying x-bench: 1 90/10 to v1/v2, everything else to v1. No loadBalancer in the
# DestinationRule: Istio's default, LEAST_REQUEST.
apiVersion: v1
kind: Service
metadata:
  name: bench
spec:
  ports:
  - port: ${PROXY##*:}
    name: http
  selector:
    app: bench
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: bench-v1
spec:
  address: ${BACKEND_V1%:*}
  labels:
    app: bench
    version: v1
  ports:
    http: ${BACKEND_V1##*:}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: bench-v2
spec:
  address: ${BACKEND_V2%:*}
  labels:
    app: bench
    version: v2
  ports:
    http: ${BACKEND_V2##*:}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: bench
spec:
  host: bench
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bench
spec:
  hosts:
  - bench
  http:
  - match:
    - headers:
        x-bench:
          exact: "1"
    route:
    - destination:
        host: bench
        subset: v1
      weight: 90
    - destination:
        host: bench
        subset: v2
      weight: 10
  - route:
    - destination:
        host: bench
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - port:
      number: ${PROXY##*:}
      protocol: HTTP
      name: http
    bind: ${PROXY%:*}
    hosts:
    - "./*"
EOF

# The mesh suite's connect: the istio config plus a ServiceEntry for the TLS backend, so the mesh
# listener's istio_egress tunnels CONNECT backend-tls.bench:PORT to its endpoint (a loopback address,
# which the egress proxy refuses unless a ServiceEntry names it).
{
	cat "$work/istio.yaml"
	cat <<EOF
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: backend-tls
spec:
  hosts:
  - backend-tls.bench
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - number: ${BACKEND_TLS##*:}
    name: tls
    protocol: TLS
  endpoints:
  - address: ${BACKEND_TLS%:*}
EOF
} >"$work/connect.yaml"

# The pools alone: the istio app's registry (the bench service over both backends) as the
# upstreams of a stock reverse_proxy with our selection policies.
pool_json() { # selection policy JSON
	cat <<EOF
{
  "admin": {"listen": "$ADMIN"},
  "apps": {
    "istio": {"services": [{"hostname": "bench", "resolution": "STATIC",
      "ports": [{"number": ${PROXY##*:}, "name": "http", "protocol": "HTTP"}],
      "endpoints": [{"address": "${BACKEND_V1%:*}", "ports": {"http": ${BACKEND_V1##*:}}},
                    {"address": "${BACKEND_V2%:*}", "ports": {"http": ${BACKEND_V2##*:}}}]}]},
    "http": {"servers": {"bench": {
      "listen": ["$PROXY"],
      "automatic_https": {"disable": true},
      "routes": [{"handle": [{"handler": "reverse_proxy",
        "dynamic_upstreams": {"source": "istio", "service": "bench", "port": ${PROXY##*:}},
        "load_balancing": {"selection_policy": $1}}]}]
    }}}
  }
}
EOF
}
pool_json '{"policy": "least_request"}' >"$work/pool_lr.json"
pool_json '{"policy": "ring_hash", "header": "x-user"}' >"$work/pool_ring.json"

cat >"$work/plain_rr.json" <<EOF
{
  "admin": {"listen": "$ADMIN"},
  "apps": {"http": {"servers": {"bench": {
    "listen": ["$PROXY"],
    "automatic_https": {"disable": true},
    "routes": [{"handle": [{"handler": "reverse_proxy",
      "upstreams": [{"dial": "$BACKEND_V1"}, {"dial": "$BACKEND_V2"}],
      "load_balancing": {"selection_policy": {"policy": "round_robin"}}}]}]
  }}}}
}
EOF

# The pools: the Service, its two workloads and the Sidecar of istio.yaml, no VirtualService (the
# default route over the whole service), and for istio_ring a DestinationRule hashing on x-user.
pool_yaml() {
	awk 'BEGIN{RS="---\n"; ORS="---\n"} /kind: (Service|WorkloadEntry|Sidecar)\n/' "$work/istio.yaml"
}
pool_yaml >"$work/istio_lr.yaml"
{
	pool_yaml
	cat <<EOF
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: bench
spec:
  host: bench
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
EOF
} >"$work/istio_ring.yaml"

# The mesh suite's istio_mtls: the istio config whose workloads are the server sidecar's Gateway
# servers, reached with ISTIO_MUTUAL (the identity both sides use is the default service account's,
# spiffe://cluster.local/ns/default/sa/default).
sed -e "s/^    http: ${BACKEND_V1##*:}\$/    http: ${SERVER_V1##*:}/" \
	-e "s/^    http: ${BACKEND_V2##*:}\$/    http: ${SERVER_V2##*:}/" \
	-e 's/^  host: bench$/  host: bench\n  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL/' \
	"$work/istio.yaml" >"$work/istio_mtls.yaml"
# The server sidecar: one ISTIO_MUTUAL Gateway server per workload, and a VirtualService bound to
# the Gateway that sends each server's requests to its backend port (MESH_EXTERNAL services: plain
# HTTP to the backend, as the sidecar's hop to its own application). Its mesh listener is moved out
# of the way.
cat >"$work/istio_mtls_server.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bench-server
spec:
  servers:
  - bind: ${SERVER_V1%:*}
    port:
      number: ${SERVER_V1##*:}
      name: https-v1
      protocol: HTTPS
    hosts:
    - "*"
    tls:
      mode: ISTIO_MUTUAL
  - bind: ${SERVER_V2%:*}
    port:
      number: ${SERVER_V2##*:}
      name: https-v2
      protocol: HTTPS
    hosts:
    - "*"
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: backend-v1
spec:
  hosts:
  - backend-v1.bench
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - number: 80
    name: http
    protocol: HTTP
  endpoints:
  - address: ${BACKEND_V1%:*}
    ports:
      http: ${BACKEND_V1##*:}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: backend-v2
spec:
  hosts:
  - backend-v2.bench
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - number: 80
    name: http
    protocol: HTTP
  endpoints:
  - address: ${BACKEND_V2%:*}
    ports:
      http: ${BACKEND_V2##*:}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bench-server
spec:
  hosts:
  - "*"
  gateways:
  - bench-server
  http:
  - match:
    - port: ${SERVER_V1##*:}
    route:
    - destination:
        host: backend-v1.bench
  - match:
    - port: ${SERVER_V2##*:}
    route:
    - destination:
        host: backend-v2.bench
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - port:
      number: ${SERVER_MESH##*:}
      protocol: HTTP
      name: http
    bind: ${SERVER_MESH%:*}
    hosts:
    - "./*"
EOF

# --- process handling --------------------------------------------------------------------------
pids=()
cleanup() {
	trap - INT TERM EXIT
	local pid
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
	local keep=() pid
	for pid in "${pids[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
	pids=("${keep[@]}")
}

port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
busy_check=("$BACKEND_V1" "$BACKEND_V2" "$PROXY" "$ADMIN")
[ "$SUITE" != mesh ] || busy_check+=("$SERVER_V1" "$SERVER_V2" "$SERVER_MESH" "$ADMIN2")
for addr in "${busy_check[@]}"; do
	port_free "$addr" || { echo "run.sh: $addr is in use" >&2; exit 1; }
done

# --- CPU accounting ----------------------------------------------------------------------------
TICK="$(getconf CLK_TCK)"
box_busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
proc_ticks() { # utime+stime of a PID, 0 when it is not running
	if [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ]; then
		sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12+$13}'
	else
		echo 0
	fi
}
children_seconds() { # VAR: user+sys of the shell's reaped children (fortio runs in the foreground)
	# `times` in the shell itself: in a $(...) subshell it would report the subshell's children.
	times >"$work/times"
	printf -v "$1" '%s' "$(tail -n 1 "$work/times" | awk '{s=0; for(i=1;i<=2;i++){split($i,a,"m"); sub("s","",a[2]); s+=a[1]*60+a[2]} print s}')"
}
now_ns() { date +%s%N; }
box_busy_fraction() { # busy share of all CPUs over one second
	local b0 b1 t0 t1
	b0=$(box_busy_ticks); t0=$(now_ns); sleep 1; b1=$(box_busy_ticks); t1=$(now_ns)
	awk -v b="$((b1 - b0))" -v hz="$TICK" -v ns="$((t1 - t0))" -v n="$(nproc)" 'BEGIN{printf "%.3f", (b/hz)/(ns/1e9)/n}'
}
wait_for_idle() {
	local start=$SECONDS busy
	busy=$(box_busy_fraction)
	while awk -v b="$busy" -v m="$IDLE_MAX" 'BEGIN{exit !(b > m)}'; do
		if [ $((SECONDS - start)) -ge "$IDLE_WAIT" ]; then
			log "  box still ${busy} busy after ${IDLE_WAIT}s; measuring anyway"
			return
		fi
		sleep 2
		busy=$(box_busy_fraction)
	done
	[ $((SECONDS - start)) -le 1 ] || log "  waited $((SECONDS - start))s for the box to quiet down (${busy} busy)"
}

# --- backend -----------------------------------------------------------------------------------
"${LG[@]}" env GOMAXPROCS=1 "$bin/bench-backend" -addrs "$BACKEND_V1,$BACKEND_V2" -tls-addr "$BACKEND_TLS" -size 1024 >"$work/backend.log" 2>&1 &
backend_pid=$!
pids+=("$backend_pid")
wait_http() { # URL [curl args]: wait up to 20 s for a 200
	local url="$1" deadline=$((SECONDS + 20))
	shift
	until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url")" = 200 ]; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}
wait_http "http://$BACKEND_V1/" || { echo "run.sh: backend did not start" >&2; cat "$work/backend.log" >&2; exit 1; }
counts() { curl -s "http://$BACKEND_V1/__count" | jq -c --arg a "$BACKEND_V1" --arg b "$BACKEND_V2" '[.[$a], .[$b]]'; }

# --- one config --------------------------------------------------------------------------------
proxy_pid=""
server_pid="" # the mesh suite's server sidecar (istio_mtls)
start_proxy() { # config
	local cfg="$1"
	proxy_pid=""
	server_pid=""
	case "$cfg" in
	direct | direct_tls) return 0 ;;
	plain)
		XDG_DATA_HOME="$work/xdg" XDG_CONFIG_HOME="$work/xdg" \
			"${PX[@]}" env "${PROXY_ENV[@]}" "$bin/caddy" run --config "$work/plain.json" >>"$work/caddy-plain.log" 2>&1 &
		;;
	plain_rr | pool_lr | pool_ring)
		XDG_DATA_HOME="$work/xdg" XDG_CONFIG_HOME="$work/xdg" \
			"${PX[@]}" env "${PROXY_ENV[@]}" "$bin/caddy" run --config "$work/$cfg.json" >>"$work/caddy-$cfg.log" 2>&1 &
		;;
	istio | istio_lr | istio_ring | egress | connect)
		local file="$cfg"
		[ "$cfg" != egress ] || file=istio
		CADDY_ADMIN="$ADMIN" XDG_DATA_HOME="$work/xdg" XDG_CONFIG_HOME="$work/xdg" \
			"${PX[@]}" env "${PROXY_ENV[@]}" "$bin/caddy" run --adapter istio --config "$work/$file.yaml" >>"$work/caddy-$cfg.log" 2>&1 &
		;;
	istio_mtls)
		# the server sidecar first; both share the mesh CA in $work/xdg
		CADDY_ADMIN="$ADMIN2" XDG_DATA_HOME="$work/xdg" XDG_CONFIG_HOME="$work/xdg" \
			"${PX[@]}" env "${PROXY_ENV[@]}" "$bin/caddy" run --adapter istio --config "$work/istio_mtls_server.yaml" >>"$work/caddy-istio_mtls_server.log" 2>&1 &
		server_pid=$!
		pids+=("$server_pid")
		local deadline=$((SECONDS + 20))
		while port_free "$SERVER_V1" || port_free "$SERVER_V2"; do
			if [ $SECONDS -ge $deadline ] || ! kill -0 "$server_pid" 2>/dev/null; then
				echo "run.sh: the server sidecar did not listen on $SERVER_V1 and $SERVER_V2; log:" >&2
				tail -n 20 "$work/caddy-istio_mtls_server.log" >&2
				exit 1
			fi
			sleep 0.1
		done
		CADDY_ADMIN="$ADMIN" XDG_DATA_HOME="$work/xdg" XDG_CONFIG_HOME="$work/xdg" \
			"${PX[@]}" env "${PROXY_ENV[@]}" "$bin/caddy" run --adapter istio --config "$work/istio_mtls.yaml" >>"$work/caddy-$cfg.log" 2>&1 &
		;;
	esac
	proxy_pid=$!
	pids+=("$proxy_pid")
	client_for "$cfg"
	if ! wait_http "$(url_for "$cfg")" "${CURL_ARGS[@]}" "${REQ_HEADERS[@]}"; then
		echo "run.sh: $cfg proxy did not answer 200; log:" >&2
		tail -n 20 "$work/caddy-$cfg.log" >&2
		exit 1
	fi
}
stop_proxy() {
	[ -n "$proxy_pid" ] || return 0
	local pid
	for pid in "$proxy_pid" $server_pid; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		forget_pid "$pid"
	done
	proxy_pid=""
	server_pid=""
	local deadline=$((SECONDS + 10))
	until port_free "$PROXY" && port_free "$ADMIN" && { [ "$SUITE" != mesh ] || { port_free "$SERVER_V1" && port_free "$SERVER_V2" && port_free "$ADMIN2"; }; }; do
		[ $SECONDS -lt $deadline ] || { echo "run.sh: proxy ports still busy" >&2; exit 1; }
		sleep 0.1
	done
}
url_for() {
	case "$1" in
	direct) echo "http://$BACKEND_V1/" ;;
	# absolute form through the mesh listener, to the registry host bench on the listener's port
	egress) echo "http://bench:${PROXY##*:}/" ;;
	direct_tls) echo "https://$BACKEND_TLS/" ;;
	# through the mesh listener's CONNECT tunnel, TLS end to end with the backend
	connect) echo "https://backend-tls.bench:${BACKEND_TLS##*:}/" ;;
	*) echo "http://$PROXY/" ;;
	esac
}
# client_for CONFIG: how the client reaches the config: CLIENT_ENV + CLIENT_ARGS for fortio,
# CURL_ARGS for curl. egress: Go's net/http client (fortio -stdclient) with HTTP_PROXY, since
# fortio's fast client cannot use a proxy.
client_for() {
	CLIENT_ENV=()
	CLIENT_ARGS=()
	CURL_ARGS=()
	if [ "$1" = egress ]; then
		CLIENT_ENV=(HTTP_PROXY="http://$PROXY" NO_PROXY= no_proxy=)
		# -resolve: fortio looks the URL's host up itself; bench is not in DNS
		CLIENT_ARGS=(-stdclient -resolve "${PROXY%:*}")
		CURL_ARGS=(-x "http://$PROXY")
	fi
	case "$1" in
	direct_tls)
		# Go's client (as connect), TLS to the backend's self-signed certificate
		CLIENT_ARGS=(-stdclient -k)
		CURL_ARGS=(-k)
		;;
	connect)
		# Go's client with HTTPS_PROXY: one CONNECT tunnel per connection, kept alive
		CLIENT_ENV=(HTTPS_PROXY="http://$PROXY" NO_PROXY= no_proxy=)
		CLIENT_ARGS=(-stdclient -k -resolve "${PROXY%:*}")
		CURL_ARGS=(-k -x "http://$PROXY")
		;;
	esac
}
# the proxies' CPU ticks: the proxy and, for istio_mtls, the server sidecar
proxies_ticks() { echo $(($(proc_ticks "$proxy_pid") + $(proc_ticks "$server_pid"))); }

# run_phase ROUND CONFIG PHASE FORTIO-ARGS...: one fortio run plus its CPU accounting -> raw.jsonl
run_phase() {
	local round="$1" cfg="$2" phase="$3"
	shift 3
	local json="$work/$cfg-r$round-$phase.json"
	local b0 b1 p0 p1 q0 q1 k0 k1 f0 f1 t0 t1 c0 c1
	c0=$(counts)
	client_for "$cfg"
	b0=$(box_busy_ticks); p0=$(proxies_ticks); q0=$(proc_ticks "$proxy_pid"); k0=$(proc_ticks "$backend_pid"); children_seconds f0; t0=$(now_ns)
	"${LG[@]}" env "${CLIENT_ENV[@]}" "$bin/fortio" load "${CLIENT_ARGS[@]}" -quiet -p 50,90,99,99.9 -json "$json" "${REQ_HEADERS[@]}" "$@" "$(url_for "$cfg")" >>"$work/fortio.log" 2>&1
	t1=$(now_ns); children_seconds f1; k1=$(proc_ticks "$backend_pid"); q1=$(proc_ticks "$proxy_pid"); p1=$(proxies_ticks); b1=$(box_busy_ticks)
	c1=$(counts)
	jq -c --argjson round "$round" --arg config "$cfg" --arg phase "$phase" \
		--argjson wall "$(awk -v n="$((t1 - t0))" 'BEGIN{print n/1e9}')" \
		--argjson box "$(awk -v t="$((b1 - b0))" -v hz="$TICK" 'BEGIN{print t/hz}')" \
		--argjson proxy "$(awk -v t="$((p1 - p0))" -v hz="$TICK" 'BEGIN{print t/hz}')" \
		--argjson client_proxy "$(awk -v t="$((q1 - q0))" -v hz="$TICK" 'BEGIN{print t/hz}')" \
		--argjson sidecars "$(if [ -n "$server_pid" ]; then echo 2; else echo 1; fi)" \
		--argjson backend "$(awk -v t="$((k1 - k0))" -v hz="$TICK" 'BEGIN{print t/hz}')" \
		--argjson fortio "$(awk -v a="$f0" -v b="$f1" 'BEGIN{print b-a}')" \
		--argjson c0 "$c0" --argjson c1 "$c1" --argjson noise_max "$NOISE_MAX" '
		def pct(p): (.DurationHistogram.Percentiles[] | select(.Percentile == p) | .Value * 1000);
		{
			round: $round, config: $config, phase: $phase,
			rps: .ActualQPS,
			requests: .DurationHistogram.Count,
			ok: (.RetCodes["200"] // 0),
			p50_ms: pct(50), p90_ms: pct(90), p99_ms: pct(99), p999_ms: pct(99.9),
			wall_s: $wall,
			proxy_cores: ($proxy / $wall),
			unattributed_cores: (($box - $proxy - $backend - $fortio) / $wall),
			v1: ($c1[0] - $c0[0]), v2: ($c1[1] - $c0[1])
		}
		| .errors = (.requests - .ok)
		| .proxy_vcpu_per_1000_rps = (if .rps > 0 then .proxy_cores / .rps * 1000 else null end)
		# istio_mtls: each sidecar on its own (the client proxy, the server sidecar)
		| if $sidecars == 2 and .rps > 0 then
			.sidecar_vcpu_per_1000_rps = {client: ($client_proxy / $wall / .rps * 1000),
				server: (($proxy - $client_proxy) / $wall / .rps * 1000)}
		  else . end
		| .noisy = (.unattributed_cores > $noise_max)
		' "$json" | tee -a "$work/raw.jsonl" | jq -r '"  \(.config) \(.phase): \(.rps|floor) rps, p50 \(.p50_ms*100|round/100) ms, p99 \(.p99_ms*100|round/100) ms, errors \(.errors), proxy \(.proxy_cores*100|round/100) cores, unattributed \(.unattributed_cores*100|round/100) cores\(if .noisy then " (noisy)" else "" end)"' >&2
}

uptime_before="$(uptime)"
log "uptime before: $uptime_before"
log "layout: $layout"
log "rounds $ROUNDS; max rate ${MAX_DURATION} at ${MAX_CONNS} connections; fixed ${QPS} qps for ${FIXED_DURATION} at ${CONNS} connections"
: >"$work/raw.jsonl"
: >"$work/checks.jsonl"

for round in $(seq 1 "$ROUNDS"); do
	order=()
	for i in "${!CONFIGS[@]}"; do order+=("${CONFIGS[$(((i + round - 1) % ${#CONFIGS[@]}))]}"); done
	log "round $round/$ROUNDS: ${order[*]}"
	for cfg in "${order[@]}"; do
		wait_for_idle
		start_proxy "$cfg"
		client_for "$cfg"
		"${LG[@]}" env "${CLIENT_ENV[@]}" "$bin/fortio" load "${CLIENT_ARGS[@]}" -quiet -qps 0 -c "$CONNS" -t 2s "${REQ_HEADERS[@]}" "$(url_for "$cfg")" >/dev/null 2>&1
		run_phase "$round" "$cfg" max -qps 0 -c "$MAX_CONNS" -t "$MAX_DURATION"
		run_phase "$round" "$cfg" fixed -qps "$QPS" -c "$CONNS" -t "$FIXED_DURATION"
		if [ "$cfg" = istio ] || [ "$cfg" = istio_mtls ]; then
			# The second route: no x-bench header, all to v1.
			c0=$(counts)
			"${LG[@]}" "$bin/fortio" load -quiet -qps 0 -c 4 -n 2000 -H "Host: bench" -json "$work/$cfg-r$round-nomatch.json" "http://$PROXY/" >/dev/null 2>&1
			c1=$(counts)
			jq -c --argjson round "$round" --arg config "$cfg" --argjson c0 "$c0" --argjson c1 "$c1" \
				'{round: $round, config: $config, check: "no header -> v1", requests: .DurationHistogram.Count, ok: (.RetCodes["200"] // 0), v1: ($c1[0]-$c0[0]), v2: ($c1[1]-$c0[1])}' \
				"$work/$cfg-r$round-nomatch.json" >>"$work/checks.jsonl"
		fi
		if [ -n "$proxy_pid" ]; then
			# RSS of the proxies (for istio_mtls, both processes)
			jq -nc --argjson round "$round" --arg config "$cfg" \
				--argjson rss "$(for pid in "$proxy_pid" $server_pid; do cat "/proc/$pid/status"; done | awk '/^VmRSS/{s+=$2} END{print s/1024}')" \
				--argjson hwm "$(for pid in "$proxy_pid" $server_pid; do cat "/proc/$pid/status"; done | awk '/^VmHWM/{s+=$2} END{print s/1024}')" \
				'{round: $round, config: $config, phase: "memory", rss_mb: $rss, hwm_mb: $hwm}' >>"$work/raw.jsonl"
		fi
		stop_proxy
	done
done

# --- optional profiles -------------------------------------------------------------------------
# CPU profile of the middle 10 s of a 14 s max-rate run, and the process's allocations since start
# (start-up is a negligible share), divided by the requests fortio made: per-request cost.
profiles=()
: >"$work/profiles.jsonl"
if [ "$PROFILE" = 1 ]; then
	for cfg in "${CONFIGS[@]:1}"; do
		log "profiling $cfg at max rate (10 s) ..."
		start_proxy "$cfg"
		client_for "$cfg"
		"${LG[@]}" env "${CLIENT_ENV[@]}" "$bin/fortio" load "${CLIENT_ARGS[@]}" -quiet -qps 0 -c "$MAX_CONNS" -t 14s -json "$work/$cfg-profile-load.json" \
			"${REQ_HEADERS[@]}" "$(url_for "$cfg")" >/dev/null 2>&1 &
		load_pid=$!
		pids+=("$load_pid")
		sleep 2
		p0=$(proxies_ticks)
		if [ -n "$server_pid" ]; then
			# the server sidecar's profile over the same 10 s
			curl -s -o "$results/$stamp-${cfg}_server.cpu.pprof" "http://$ADMIN2/debug/pprof/profile?seconds=10" &
			server_prof_pid=$!
		fi
		curl -s -o "$results/$stamp-$cfg.cpu.pprof" "http://$ADMIN/debug/pprof/profile?seconds=10"
		p1=$(proxies_ticks)
		if [ -n "$server_pid" ]; then
			wait "$server_prof_pid" || true
			go tool pprof -top -nodecount=40 "$bin/caddy" "$results/$stamp-${cfg}_server.cpu.pprof" >"$results/$stamp-${cfg}_server.cpu.top.txt" 2>/dev/null || true
			profiles+=("$results/$stamp-${cfg}_server.cpu.pprof")
		fi
		wait "$load_pid" || true
		forget_pid "$load_pid"
		curl -s -o "$results/$stamp-$cfg.allocs.pprof" "http://$ADMIN/debug/pprof/allocs"
		stop_proxy
		pp() { go tool pprof "$@" "$bin/caddy" 2>/dev/null; }
		pp -top -nodecount=40 "$results/$stamp-$cfg.cpu.pprof" >"$results/$stamp-$cfg.cpu.top.txt" || true
		pp -top -cum -nodecount=80 "$results/$stamp-$cfg.cpu.pprof" >"$results/$stamp-$cfg.cpu.cum.txt" || true
		pp -top -nodecount=40 -sample_index=alloc_space "$results/$stamp-$cfg.allocs.pprof" >"$results/$stamp-$cfg.allocs.top.txt" || true
		alloc_bytes=$(pp -top -nodecount=1 -sample_index=alloc_space -unit=B "$results/$stamp-$cfg.allocs.pprof" | sed -n 's/.* of \([0-9.]*\)B total.*/\1/p')
		alloc_objects=$(pp -top -nodecount=1 -sample_index=alloc_objects "$results/$stamp-$cfg.allocs.pprof" | sed -n 's/.* of \([0-9.]*\) total.*/\1/p')
		jq -c --arg config "$cfg" --argjson bytes "${alloc_bytes:-null}" --argjson objects "${alloc_objects:-null}" \
			--argjson cpu_s "$(awk -v t="$((p1 - p0))" -v hz="$TICK" 'BEGIN{print t/hz}')" '
			{config: $config, rps: .ActualQPS, requests: .DurationHistogram.Count}
			| .proxy_cpu_us_per_request = ($cpu_s / (.rps * 10) * 1e6)
			| .alloc_bytes_per_request = (if $bytes == null then null else $bytes / .requests end)
			| .allocs_per_request = (if $objects == null then null else $objects / .requests end)
			' "$work/$cfg-profile-load.json" >>"$work/profiles.jsonl"
		profiles+=("$results/$stamp-$cfg.cpu.pprof" "$results/$stamp-$cfg.allocs.pprof")
	done
fi

uptime_after="$(uptime)"
log "uptime after: $uptime_after"

# --- summary -----------------------------------------------------------------------------------
jq -s \
	--arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	--arg cpu "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" \
	--argjson nproc "$(nproc)" \
	--arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	--arg go "$(go env GOVERSION)" \
	--arg layout "$layout" \
	--arg uptime_before "$uptime_before" --arg uptime_after "$uptime_after" \
	--argjson rounds "$ROUNDS" --arg max_duration "$MAX_DURATION" --arg fixed_duration "$FIXED_DURATION" \
	--argjson qps "$QPS" --argjson conns "$CONNS" --argjson max_conns "$MAX_CONNS" --argjson noise_max "$NOISE_MAX" \
	--arg suite "$SUITE" --argjson cfgs "$(printf '%s\n' "${CONFIGS[@]}" | jq -R . | jq -sc .)" \
	--argjson ratio_pairs "$RATIOS" --argjson target_list "$TARGETS" --arg p99_op "$P99_OP" --argjson vcpu_list "$VCPU_TARGETS" \
	--slurpfile checks "$work/checks.jsonl" --slurpfile per_request "$work/profiles.jsonl" \
	--argjson profiles "$(printf '%s\n' "${profiles[@]}" | jq -R . | jq -sc 'map(select(. != ""))')" '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	def pick(cfg; ph): map(select(.config == cfg and .phase == ph));
	# clean phases when at least 2 are clean, else all of them (flagged)
	def usable: (map(select(.noisy | not))) as $c | if ($c | length) >= 2 then {runs: $c, all_clean_or_enough: true} else {runs: ., all_clean_or_enough: false} end;
	. as $raw
	| (reduce $cfgs[] as $cfg ({};
		($raw | pick($cfg; "max") | usable) as $m
		| ($raw | pick($cfg; "fixed") | usable) as $f
		| .[$cfg] = {
			max: {n: ($m.runs | length), noisy_fallback: ($m.all_clean_or_enough | not),
				rps: ($m.runs | map(.rps) | median),
				proxy_cores: ($m.runs | map(.proxy_cores) | median),
				rps_per_proxy_core: ($m.runs | map(select(.proxy_cores > 0) | .rps / .proxy_cores) | median)},
			fixed: ({n: ($f.runs | length), noisy_fallback: ($f.all_clean_or_enough | not),
				rps: ($f.runs | map(.rps) | median),
				p50_ms: ($f.runs | map(.p50_ms) | median), p90_ms: ($f.runs | map(.p90_ms) | median),
				p99_ms: ($f.runs | map(.p99_ms) | median), p999_ms: ($f.runs | map(.p999_ms) | median),
				proxy_vcpu_per_1000_rps: ($f.runs | map(.proxy_vcpu_per_1000_rps) | if .[0] == null then null else median end)}
				+ (if $f.runs[0].sidecar_vcpu_per_1000_rps then {sidecar_vcpu_per_1000_rps: {
					client: ($f.runs | map(.sidecar_vcpu_per_1000_rps.client) | median),
					server: ($f.runs | map(.sidecar_vcpu_per_1000_rps.server) | median)}} else {} end)),
			rss_mb: ($raw | pick($cfg; "memory") | map(.rss_mb) | median),
			errors: ($raw | map(select(.config == $cfg and .phase != "memory") | .errors) | add)
		})) as $med
	| def ratio(a; b): {
			throughput: ($med[a].max.rps / $med[b].max.rps),
			per_proxy_core: (if $med[a].max.rps_per_proxy_core != null and $med[b].max.rps_per_proxy_core != null
				then $med[a].max.rps_per_proxy_core / $med[b].max.rps_per_proxy_core else null end),
			added_p50_ms: ($med[a].fixed.p50_ms - $med[b].fixed.p50_ms),
			added_p90_ms: ($med[a].fixed.p90_ms - $med[b].fixed.p90_ms),
			added_p99_ms: ($med[a].fixed.p99_ms - $med[b].fixed.p99_ms)
		};
	($raw | map(select(.config == "istio" and .phase != "memory")) | {v1: (map(.v1) | add), v2: (map(.v2) | add)}) as $split
	| def share(cfg): ($raw | map(select(.config == cfg and .phase != "memory")) | {v1: (map(.v1) | add), v2: (map(.v2) | add)}
		| .v2_share = (if .v1 + .v2 > 0 then .v2 / (.v1 + .v2) else null end));
	{
		date: $date,
		machine: {nproc: $nproc, cpu: $cpu, uptime_before: $uptime_before, uptime_after: $uptime_after},
		commit: $commit, go: $go, fortio: "1.66.5", layout: $layout,
		suite: $suite,
		settings: {rounds: $rounds, max_duration: $max_duration, max_conns: $max_conns,
			fixed_qps: $qps, fixed_duration: $fixed_duration, fixed_conns: $conns, noise_max_cores: $noise_max},
		medians: $med,
		ratios: (reduce $ratio_pairs[] as $p ({}; .["\($p[0])/\($p[1])"] = ratio($p[0]; $p[1]))),
		targets: [$target_list[] as $t | ratio($t[0]; $t[1]) as $r
			| {name: "\($t[0])/\($t[1])",
				throughput: {want: ">= \($t[2])", got: $r.throughput, met: ($r.throughput >= $t[2])}}
			+ (if $t[3] == null then {} else {added_p99_ms: {want: "\($p99_op) \($t[3])", got: $r.added_p99_ms,
				met: (if $p99_op == "<=" then $r.added_p99_ms <= $t[3] else $r.added_p99_ms < $t[3] end)}} end)],
		vcpu_targets: [$vcpu_list[] as $t
			| if $med[$t[0]].fixed.sidecar_vcpu_per_1000_rps then
				# two sidecars: the target holds for each; the sum is printed beside it
				($med[$t[0]].fixed.sidecar_vcpu_per_1000_rps | [.client, .server] | max) as $got
				| {config: $t[0], per: "sidecar", proxy_vcpu_per_1000_rps: {want: "< \($t[1])", got: $got,
					met: ($got < $t[1])}, sidecars: $med[$t[0]].fixed.sidecar_vcpu_per_1000_rps,
					both_sidecars: $med[$t[0]].fixed.proxy_vcpu_per_1000_rps}
			  else $med[$t[0]].fixed.proxy_vcpu_per_1000_rps as $got
				| {config: $t[0], per: "proxy", proxy_vcpu_per_1000_rps: {want: "< \($t[1])", got: $got, met: ($got != null and $got < $t[1])}} end],
		checks: ({errors: ($raw | map(select(.phase != "memory") | .errors) | add)}
			+ if $suite == "route" or $suite == "mesh" then {
				split: ($split + {v2_share: ($split.v2 / ($split.v1 + $split.v2)), ok: (($split.v2 / ($split.v1 + $split.v2) - 0.1) | fabs <= 0.01)}),
				no_header_route: ($checks | {requests: (map(.requests) | add), ok: (map(.ok) | add), v2: (map(.v2) | add)}
					| .pass = (.v2 == 0 and .ok == .requests))
			} + (if $suite == "mesh" then {
				# the same 90/10 split through the server sidecar, and through the mesh listener as a proxy
				mesh_splits: ({istio_mtls: share("istio_mtls"), egress: share("egress")}
					| .ok = ([.istio_mtls.v2_share, .egress.v2_share] | all(. != null and ((. - 0.1) | fabs) <= 0.01)))
			} else {} end) else {
				# round robin and least request over two equal backends: about half each;
				# the ring hash with one key: all on one backend.
				spread: ({plain_rr: share("plain_rr"), pool_lr: share("pool_lr"), pool_ring: share("pool_ring"),
						istio_lr: share("istio_lr"), istio_ring: share("istio_ring")}
					| .ok = ((((.plain_rr.v2_share - 0.5) | fabs) <= 0.02)
						and (((.pool_lr.v2_share - 0.5) | fabs) <= 0.1) and (((.istio_lr.v2_share - 0.5) | fabs) <= 0.1)
						and (.pool_ring.v2_share == 0 or .pool_ring.v2_share == 1)
						and (.istio_ring.v2_share == 0 or .istio_ring.v2_share == 1)))
			} end),
		profiles: {files: $profiles, per_request: $per_request},
		runs: $raw
	}' "$work/raw.jsonl" >"$out_json"

# --- table -------------------------------------------------------------------------------------
jq -r '
	def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
	def s(n): if . == null then "-" elif . >= 0 then "+" + (f(n)) else f(n) end;
	"caddy-istio bench, \(.date), commit \(.commit), \(.machine.nproc) x \(.machine.cpu)",
	"layout: \(.layout)",
	"max rate: fortio -qps 0 -c \(.settings.max_conns) -t \(.settings.max_duration); fixed: -qps \(.settings.fixed_qps) -c \(.settings.fixed_conns) -t \(.settings.fixed_duration); medians of \(.settings.rounds) interleaved rounds",
	"uptime before: \(.machine.uptime_before | sub("^ +"; ""))",
	"uptime after:  \(.machine.uptime_after | sub("^ +"; ""))",
	"",
	"| config | max rps (n) | max rps per proxy core | fixed p50 ms | p90 ms | p99 ms | p99.9 ms | (n) | proxy vCPU/1k rps | RSS MB | errors |",
	"|---|---|---|---|---|---|---|---|---|---|---|",
	(.medians | to_entries[] | "| \(.key) | \(.value.max.rps | f(0)) (\(.value.max.n)\(if .value.max.noisy_fallback then ", noisy" else "" end)) | \(.value.max.rps_per_proxy_core | f(0)) | \(.value.fixed.p50_ms | f(3)) | \(.value.fixed.p90_ms | f(3)) | \(.value.fixed.p99_ms | f(3)) | \(.value.fixed.p999_ms | f(3)) | (\(.value.fixed.n)\(if .value.fixed.noisy_fallback then ", noisy" else "" end)) | \(.value.fixed.proxy_vcpu_per_1000_rps | f(3)) | \(.value.rss_mb | f(1)) | \(.value.errors) |"),
	"",
	"| ratio | throughput | per proxy core | added p50 ms | added p90 ms | added p99 ms |",
	"|---|---|---|---|---|---|",
	(.ratios | to_entries[] | "| \(.key) | \(.value.throughput | f(3)) | \(.value.per_proxy_core | f(3)) | \(.value.added_p50_ms | s(3)) | \(.value.added_p90_ms | s(3)) | \(.value.added_p99_ms | s(3)) |"),
	"",
	(.targets[] | "target \(.name): throughput \(.throughput.got | f(3)) (want \(.throughput.want)): \(if .throughput.met then "met" else "MISSED" end)\(if .added_p99_ms then "; added p99 \(.added_p99_ms.got | s(3)) ms (want \(.added_p99_ms.want)): \(if .added_p99_ms.met then "met" else "MISSED" end)" else "" end)"),
	(.vcpu_targets[] | "target \(.config): \(.per) vCPU per 1000 rps at fixed load \(.proxy_vcpu_per_1000_rps.got | f(3)) (want \(.proxy_vcpu_per_1000_rps.want)): \(if .proxy_vcpu_per_1000_rps.met then "met" else "MISSED" end)\(if .per == "sidecar" then " (client sidecar \(.sidecars.client | f(3)), server sidecar \(.sidecars.server | f(3)); both together \(.both_sidecars | f(3)))" else "" end)"),
	(.profiles.per_request[] | "profile \(.config): \(.rps | f(0)) rps, proxy CPU \(.proxy_cpu_us_per_request | f(1)) us/request, \(.alloc_bytes_per_request | f(0)) B and \(.allocs_per_request | f(1)) allocations/request"),
	if .suite == "pools" then "checks: errors \(.checks.errors); v2 share plain_rr \(.checks.spread.plain_rr.v2_share | f(3)), pool_lr \(.checks.spread.pool_lr.v2_share | f(3)), pool_ring \(.checks.spread.pool_ring.v2_share | f(3)), istio_lr \(.checks.spread.istio_lr.v2_share | f(3)), istio_ring \(.checks.spread.istio_ring.v2_share | f(3)): \(if .checks.spread.ok then "ok" else "WRONG" end)" else
	"checks: errors \(.checks.errors); split v2 share \(.checks.split.v2_share * 1000 | round / 10)% of \(.checks.split.v1 + .checks.split.v2) (want 10 +- 1): \(if .checks.split.ok then "ok" else "WRONG" end); no-header route v2 hits \(.checks.no_header_route.v2): \(if .checks.no_header_route.pass then "ok" else "WRONG" end)\(if .checks.mesh_splits then "; v2 share istio_mtls \(.checks.mesh_splits.istio_mtls.v2_share | f(3)), egress \(.checks.mesh_splits.egress.v2_share | f(3)): \(if .checks.mesh_splits.ok then "ok" else "WRONG" end)" else "" end)" end
' "$out_json"
echo
echo "results: $out_json (raw fortio output in $work/)"
if [ "${#profiles[@]}" -gt 0 ]; then
	echo "profiles: ${profiles[*]} (top lists in $results/$stamp-*.top.txt)"
fi

jq -e 'if .suite == "pools" then .checks.errors == 0 and .checks.spread.ok
	else .checks.errors == 0 and .checks.split.ok and .checks.no_header_route.pass and (if .checks.mesh_splits then .checks.mesh_splits.ok else true end) end' "$out_json" >/dev/null
