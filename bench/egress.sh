#!/usr/bin/env bash
# bench/egress.sh: throughput of an HTTP/1.1 CONNECT tunnel through the istio_egress handler
# against a direct TCP connection to the same server (caddy-istio issue 5: the tunnel within 0.9x
# of direct for a 100 MB transfer).
#
#   bench/egress.sh                       # ~1 minute: 5 interleaved rounds of 100 MB up and down
#   bench/egress.sh --rounds 9 --size 1GB # longer, steadier
#   bench/egress.sh --no-build            # use .cache/bin/caddy and .cache/bin/bench-egress as they are
#   bench/egress.sh --baseline /tmp/old/caddy   # also an older caddy build, interleaved (path "baseline")
#
# Every option also has an environment variable (ROUNDS, SIZE, MODES, NO_BUILD, BASELINE, NO_PIN); see
# usage().
#
# What it does:
#   * builds .cache/bin/caddy (go build ./xcaddy) and .cache/bin/bench-egress (bench/egress);
#   * starts `bench-egress serve` on 127.0.0.1:18310 (sinks an upload, sources a download);
#   * starts caddy on 127.0.0.1:18300 with one route, the istio_egress handler allowing
#     127.0.0.1:18310 (the private address check would refuse loopback otherwise), logging at
#     DEBUG so the log shows whether each direction spliced;
#   * layout (if taskset works and nproc >= 2): server + client on CPU 0, caddy on CPU 1 with
#     GOMAXPROCS=1, as bench/run.sh (--no-pin: no taskset, caddy with the default GOMAXPROCS);
#   * with --baseline BIN, a second caddy (BIN, same config) on 127.0.0.1:18301 (admin 12030), also
#     on CPU 1: the "baseline" path, e.g. a build of an older commit, measured in the same rounds;
#   * after one 10 MB warm-up per path, runs ROUNDS interleaved rounds; each round moves SIZE bytes
#     per mode (up: client to server, down: server to client) directly and through the tunnel
#     (and the baseline), the order of the paths rotating each round; it records the client's MB/s
#     (10^6 B/s, from the first byte sent to the last byte or the server's count) and the proxy's
#     CPU time (/proc/<pid>/task/*/schedstat) for each transfer;
#   * also measures, in the same rounds and on the same CPU as caddy, two reference TCP relays that
#     do nothing but relay (no HTTP, no policy, no logging): "forward", `bench-egress forward`, Go's
#     io.Copy both ways (splice(2), as the tunnel), on 127.0.0.1:18320; and "haproxy", HAProxy in
#     `mode tcp` with `option splice-auto` and one thread, on 127.0.0.1:18321, when `haproxy` is
#     installed (HAPROXY=/path/to/haproxy, or HAPROXY=none to skip). They show what any relay
#     reaches on this machine, so the tunnel's distance from direct can be split into the cost of
#     relaying at all and the cost of caddy;
#   * prints the medians, the ratio tunnel/direct per mode, the tunnel against the references, the
#     proxies' CPU seconds per GB moved, the load average before and after, and writes
#     bench/results/egress-<stamp>.json.
# The target (ratio >= 0.9) is printed, not gated: the machine is shared, so figures are
# indicative. Exit status 0 when every transfer completed.
#
# Needs: go, jq; taskset (util-linux) for pinning; haproxy optional. Ports 18300, 18310, 18320,
# 12029 (admin) and with haproxy 18321, and with --baseline 18301 and 12030, on
# 127.0.0.1 must be free. Never run by the test suite.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/egress.sh [options]
  --rounds N    interleaved rounds                       (ROUNDS, default 5)
  --size S      bytes per transfer: N, NkB, NMB, NGB     (SIZE, default 100MB)
  --modes M     space-separated: up, down                (MODES, default "up down")
  --no-build    use the binaries already in .cache/bin   (NO_BUILD=1)
  --baseline B  also measure the caddy binary B as path "baseline" (BASELINE)
  --no-pin      no taskset, default GOMAXPROCS            (NO_PIN=1)
EOF
}

ROUNDS="${ROUNDS:-5}"
SIZE="${SIZE:-100MB}"
MODES="${MODES:-up down}"
NO_BUILD="${NO_BUILD:-0}"
BASELINE="${BASELINE:-}"
HAPROXY="${HAPROXY:-$(command -v haproxy || true)}"
[ "$HAPROXY" != none ] || HAPROXY=""
NO_PIN="${NO_PIN:-0}"
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS="$2"; shift 2 ;;
	--size) SIZE="$2"; shift 2 ;;
	--modes) MODES="$2"; shift 2 ;;
	--no-build) NO_BUILD=1; shift ;;
	--baseline) BASELINE="$2"; shift 2 ;;
	--no-pin) NO_PIN=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "egress.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
[ "$ROUNDS" -ge 1 ] 2>/dev/null || { echo "egress.sh: --rounds must be >= 1" >&2; exit 2; }
for tool in go jq; do
	command -v "$tool" >/dev/null 2>&1 || { echo "egress.sh: $tool is required" >&2; exit 1; }
done

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
bin="$root/.cache/bin"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
results="$here/results"
work="$results/egress-$stamp"
mkdir -p "$bin" "$work"
out_json="$results/egress-$stamp.json"

PROXY=127.0.0.1:18300
SERVER=127.0.0.1:18310
ADMIN=127.0.0.1:12029
BASELINE_PROXY=127.0.0.1:18301
BASELINE_ADMIN=127.0.0.1:12030
FORWARD=127.0.0.1:18320
HAPROXY_LISTEN=127.0.0.1:18321

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- build -------------------------------------------------------------------------------------
if [ "$NO_BUILD" != 1 ]; then
	log "building caddy and bench-egress ..."
	go build -o "$bin/caddy" ./xcaddy
	go build -o "$bin/bench-egress" ./bench/egress
fi
for b in caddy bench-egress; do
	[ -x "$bin/$b" ] || { echo "egress.sh: $bin/$b missing (run without --no-build)" >&2; exit 1; }
done
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "egress.sh: baseline $BASELINE is not executable" >&2; exit 1; }

# --- layout ------------------------------------------------------------------------------------
LG=()
PX=()
PROXY_ENV=()
layout="unpinned (taskset unavailable or fewer than 2 CPUs)"
if [ "$NO_PIN" = 1 ]; then
	layout="unpinned (--no-pin), default GOMAXPROCS"
elif command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] && taskset -c 1 true 2>/dev/null; then
	LG=(taskset -c 0)
	PX=(taskset -c 1)
	PROXY_ENV=(GOMAXPROCS=1)
	layout="server + client on CPU 0, caddy on CPU 1 (GOMAXPROCS=1)"
fi

# --- processes ---------------------------------------------------------------------------------
pids=()
cleanup() {
	trap - INT TERM EXIT
	local pid
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
wait_port() {
	local deadline=$((SECONDS + 20))
	until ! port_free "$1"; do
		[ $SECONDS -lt $deadline ] || { echo "egress.sh: nothing listens on $1 (see $work)" >&2; exit 1; }
		sleep 0.1
	done
}
paths=(direct tunnel forward)
addrs=("$PROXY" "$SERVER" "$ADMIN" "$FORWARD")
[ -z "$BASELINE" ] || { paths+=(baseline); addrs+=("$BASELINE_PROXY" "$BASELINE_ADMIN"); }
[ -z "$HAPROXY" ] || { paths+=(haproxy); addrs+=("$HAPROXY_LISTEN"); }
for addr in "${addrs[@]}"; do
	port_free "$addr" || { echo "egress.sh: $addr is in use" >&2; exit 1; }
done

caddy_config() { # name listen admin
	cat >"$work/$1.json" <<EOF
{
  "admin": {"listen": "$3"},
  "logging": {"logs": {"default": {"level": "DEBUG",
    "writer": {"output": "file", "filename": "$work/$1.log"}}}},
  "apps": {"http": {"servers": {"egress": {
    "listen": ["$2"],
    "automatic_https": {"disable": true},
    "routes": [{"handle": [{"handler": "istio_egress", "allow": ["$SERVER"]}]}]
  }}}}
}
EOF
}

"${LG[@]}" "$bin/bench-egress" serve -listen "$SERVER" 2>"$work/server.log" &
pids+=($!)
caddy_config caddy "$PROXY" "$ADMIN"
env "${PROXY_ENV[@]}" "${PX[@]}" "$bin/caddy" run --config "$work/caddy.json" >"$work/caddy.out" 2>&1 &
caddy_pid=$!
pids+=("$caddy_pid")
baseline_pid=""
if [ -n "$BASELINE" ]; then
	caddy_config baseline "$BASELINE_PROXY" "$BASELINE_ADMIN"
	env "${PROXY_ENV[@]}" "${PX[@]}" "$BASELINE" run --config "$work/baseline.json" >"$work/baseline.out" 2>&1 &
	baseline_pid=$!
	pids+=("$baseline_pid")
	wait_port "$BASELINE_PROXY"
fi
env "${PROXY_ENV[@]}" "${PX[@]}" "$bin/bench-egress" forward -listen "$FORWARD" -to "$SERVER" 2>"$work/forward.log" &
forward_pid=$!
pids+=("$forward_pid")
haproxy_pid=""
if [ -n "$HAPROXY" ]; then
	cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 2m
  timeout server 2m
listen relay
  bind $HAPROXY_LISTEN
  option splice-auto
  server s $SERVER
EOF
	"${PX[@]}" "$HAPROXY" -db -f "$work/haproxy.cfg" >"$work/haproxy.out" 2>&1 &
	haproxy_pid=$!
	pids+=("$haproxy_pid")
	wait_port "$HAPROXY_LISTEN"
fi
wait_port "$SERVER"
wait_port "$PROXY"
wait_port "$FORWARD"

# a proxy's CPU time so far, in ns: the sum over its threads of /proc/<pid>/task/*/schedstat
# (finer than the 10 ms ticks of /proc/<pid>/stat); 0 for the direct path
proxy_cpu_ns() {
	if [ -n "$1" ]; then awk '{s += $1} END {printf "%.0f\n", s}' /proc/"$1"/task/*/schedstat; else echo 0; fi
}

transfer() { # mode path size -> one JSON line, with the proxy's CPU seconds
	local mode="$1" path="$2" size="$3" before after out pid=""
	local args=(-mode "$mode" -size "$size" -target "$SERVER")
	case "$path" in
	tunnel) args+=(-proxy "$PROXY"); pid="$caddy_pid" ;;
	baseline) args+=(-proxy "$BASELINE_PROXY"); pid="$baseline_pid" ;;
	forward) args=(-mode "$mode" -size "$size" -target "$FORWARD"); pid="$forward_pid" ;;
	haproxy) args=(-mode "$mode" -size "$size" -target "$HAPROXY_LISTEN"); pid="$haproxy_pid" ;;
	esac
	before="$(proxy_cpu_ns "$pid")"
	out="$("${LG[@]}" "$bin/bench-egress" client "${args[@]}")"
	after="$(proxy_cpu_ns "$pid")"
	jq -c --argjson ns "$((after - before))" \
		--arg load "$(cut -d' ' -f1 /proc/loadavg)" \
		--arg path "$path" '. + {path: $path, proxy_cpu_s: ($ns / 1e9), loadavg1: ($load | tonumber)}' <<<"$out"
}

uptime_before="$(uptime)"
log "$layout; $uptime_before"
log "warm-up: 10MB per path"
for mode in $MODES; do
	for path in "${paths[@]}"; do transfer "$mode" "$path" 10MB >/dev/null; done
done

raw="$work/raw.jsonl"
: >"$raw"
for round in $(seq 1 "$ROUNDS"); do
	# rotate the order of the paths each round
	shift_by=$(((round - 1) % ${#paths[@]}))
	order=("${paths[@]:shift_by}" "${paths[@]:0:shift_by}")
	for mode in $MODES; do
		for path in "${order[@]}"; do
			line="$(transfer "$mode" "$path" "$SIZE" | jq -c --argjson round "$round" '. + {round: $round}')"
			echo "$line" >>"$raw"
			log "round $round $mode $path: $(jq -r '"\(.mb_per_s | floor) MB/s, proxy CPU \(.proxy_cpu_s * 1000 | round) ms, load \(.loadavg1)"' <<<"$line")"
		done
	done
done
uptime_after="$(uptime)"

splice_lines="$(grep -c '"splice_up":true,"splice_down":true' "$work/caddy.log" || true)"
tunnel_lines="$(grep -c '"msg":"tunnel copy"' "$work/caddy.log" || true)"

cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
jq -s \
	--arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg commit "$commit" --arg layout "$layout" \
	--arg cpu "$cpu" --argjson nproc "$(nproc)" --arg go "$(go env GOVERSION)" \
	--arg ub "$uptime_before" --arg ua "$uptime_after" \
	--argjson rounds "$ROUNDS" --arg size "$SIZE" --arg modes "$MODES" --arg baseline "$BASELINE" \
	--arg haproxy "$HAPROXY" --arg haproxy_version "$([ -z "$HAPROXY" ] || "$HAPROXY" -v | head -1)" \
	--argjson spliced "${splice_lines:-0}" --argjson tunnels "${tunnel_lines:-0}" '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
		else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	. as $raw
	| ($modes | split(" ") | map(select(. != ""))) as $ms
	| {
		date: $date, commit: $commit, go: $go,
		settings: {rounds: $rounds, size: $size, modes: $ms, layout: $layout, baseline: $baseline,
			haproxy: $haproxy, haproxy_version: $haproxy_version},
		machine: {nproc: $nproc, cpu: $cpu, uptime_before: $ub, uptime_after: $ua},
		tunnels_spliced_both_ways: $spliced, tunnels_logged: $tunnels,
		medians: [ $ms[] as $m | {
			mode: $m,
			direct_mb_per_s: ([$raw[] | select(.mode == $m and .path == "direct") | .mb_per_s] | median),
			tunnel_mb_per_s: ([$raw[] | select(.mode == $m and .path == "tunnel") | .mb_per_s] | median),
			tunnel_proxy_cpu_s_per_gb: ([$raw[] | select(.mode == $m and .path == "tunnel")
				| .proxy_cpu_s / (.bytes / 1e9)] | median),
			baseline_mb_per_s: ([$raw[] | select(.mode == $m and .path == "baseline") | .mb_per_s] | median),
			baseline_proxy_cpu_s_per_gb: ([$raw[] | select(.mode == $m and .path == "baseline")
				| .proxy_cpu_s / (.bytes / 1e9)] | median)
		} + ([ "forward", "haproxy" ] | map(. as $p | {
			("\($p)_mb_per_s"): ([$raw[] | select(.mode == $m and .path == $p) | .mb_per_s] | median),
			("\($p)_proxy_cpu_s_per_gb"): ([$raw[] | select(.mode == $m and .path == $p)
				| .proxy_cpu_s / (.bytes / 1e9)] | median)
		}) | add)
		| . + {ratio: (.tunnel_mb_per_s / .direct_mb_per_s),
			forward_ratio: (.forward_mb_per_s / .direct_mb_per_s),
			tunnel_vs_forward: (.tunnel_mb_per_s / .forward_mb_per_s)}
		| if .haproxy_mb_per_s then . + {haproxy_ratio: (.haproxy_mb_per_s / .direct_mb_per_s),
			tunnel_vs_haproxy: (.tunnel_mb_per_s / .haproxy_mb_per_s)} else . end
		| if .baseline_mb_per_s then . + {baseline_ratio: (.baseline_mb_per_s / .direct_mb_per_s)} else . end ],
		target: {ratio_min: 0.9},
		raw: $raw
	}' "$raw" >"$out_json"

jq -r '
	"caddy-istio egress bench, \(.date), commit \(.commit), \(.go), \(.machine.nproc) x \(.machine.cpu)",
	"layout: \(.settings.layout); \(.settings.rounds) interleaved rounds of \(.settings.size) per mode and path",
	"uptime before: \(.machine.uptime_before | sub("^ +"; ""))",
	"uptime after:  \(.machine.uptime_after | sub("^ +"; ""))",
	"tunnels spliced both ways (caddy debug log): \(.tunnels_spliced_both_ways) of \(.tunnels_logged)",
	"",
	"mode  direct MB/s  tunnel MB/s  tunnel/direct  caddy CPU s/GB  target",
	(.medians[] | "\(.mode)\t\(.direct_mb_per_s | floor)\t\t\(.tunnel_mb_per_s | floor)\t\(.ratio * 1000 | round / 1000)\t\t\(.tunnel_proxy_cpu_s_per_gb * 1000 | round / 1000)\t\t>= 0.9: \(if .ratio >= 0.9 then "met" else "NOT met" end)"),
	"",
	"reference relays on the same CPU as caddy (no HTTP, no policy): what relaying at all costs here",
	"mode  relay    MB/s  relay/direct  tunnel/relay  relay CPU s/GB",
	(.medians[] | "\(.mode)\tforward\t\(.forward_mb_per_s | floor)\t\(.forward_ratio * 1000 | round / 1000)\t\t\(.tunnel_vs_forward * 1000 | round / 1000)\t\t\(.forward_proxy_cpu_s_per_gb * 1000 | round / 1000)"),
	(if .settings.haproxy != "" then
		(.medians[] | "\(.mode)\thaproxy\t\(.haproxy_mb_per_s | floor)\t\(.haproxy_ratio * 1000 | round / 1000)\t\t\(.tunnel_vs_haproxy * 1000 | round / 1000)\t\t\(.haproxy_proxy_cpu_s_per_gb * 1000 | round / 1000)"),
		"haproxy: \(.settings.haproxy_version) (mode tcp, option splice-auto, nbthread 1)"
	else "haproxy: not installed (the haproxy path skipped)" end),
	(if .settings.baseline != "" then
		"baseline \(.settings.baseline):",
		(.medians[] | "\(.mode)\t\t\t\(.baseline_mb_per_s | floor)\t\(.baseline_ratio * 1000 | round / 1000)\t\t\(.baseline_proxy_cpu_s_per_gb * 1000 | round / 1000)")
	else empty end),
	"",
	"medians of \(.settings.rounds) rounds; results: '"$out_json"'"
' "$out_json"
