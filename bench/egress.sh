#!/usr/bin/env bash
# bench/egress.sh: throughput of an HTTP/1.1 CONNECT tunnel through the istio_egress handler
# against a direct TCP connection to the same server (caddy-istio issue 5: the tunnel within 0.9x
# of direct for a 100 MB transfer).
#
#   bench/egress.sh                       # ~1 minute: 5 interleaved rounds of 100 MB up and down
#   bench/egress.sh --rounds 9 --size 1GB # longer, steadier
#   bench/egress.sh --no-build            # use .cache/bin/caddy and .cache/bin/bench-egress as they are
#
# Every option also has an environment variable (ROUNDS, SIZE, MODES, NO_BUILD); see usage() below.
#
# What it does:
#   * builds .cache/bin/caddy (go build ./xcaddy) and .cache/bin/bench-egress (bench/egress);
#   * starts `bench-egress serve` on 127.0.0.1:18310 (sinks an upload, sources a download);
#   * starts caddy on 127.0.0.1:18300 with one route, the istio_egress handler allowing
#     127.0.0.1:18310 (the private address check would refuse loopback otherwise), logging at
#     DEBUG so the log shows whether each direction spliced;
#   * layout (if taskset works and nproc >= 2): server + client on CPU 0, caddy on CPU 1 with
#     GOMAXPROCS=1, as bench/run.sh;
#   * after one 10 MB warm-up per path, runs ROUNDS interleaved rounds; each round moves SIZE bytes
#     per mode (up: client to server, down: server to client) directly and through the tunnel,
#     the order of the two paths alternating each round; it records the client's MB/s (10^6 B/s,
#     from the first byte sent to the last byte or the server's count) and caddy's CPU time
#     (/proc/<pid>/stat) for each tunnel transfer;
#   * prints the medians, the ratio tunnel/direct per mode, caddy's CPU seconds per GB tunnelled,
#     the load average before and after, and writes bench/results/egress-<stamp>.json.
# The target (ratio >= 0.9) is printed, not gated: the machine is shared, so figures are
# indicative. Exit status 0 when every transfer completed.
#
# Needs: go, jq; taskset (util-linux) for pinning. Ports 18300, 18310 and 12029 (admin) on
# 127.0.0.1 must be free. Never run by the test suite.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/egress.sh [options]
  --rounds N    interleaved rounds                       (ROUNDS, default 5)
  --size S      bytes per transfer: N, NkB, NMB, NGB     (SIZE, default 100MB)
  --modes M     space-separated: up, down                (MODES, default "up down")
  --no-build    use the binaries already in .cache/bin   (NO_BUILD=1)
EOF
}

ROUNDS="${ROUNDS:-5}"
SIZE="${SIZE:-100MB}"
MODES="${MODES:-up down}"
NO_BUILD="${NO_BUILD:-0}"
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS="$2"; shift 2 ;;
	--size) SIZE="$2"; shift 2 ;;
	--modes) MODES="$2"; shift 2 ;;
	--no-build) NO_BUILD=1; shift ;;
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

# --- layout ------------------------------------------------------------------------------------
LG=()
PX=()
layout="unpinned (taskset unavailable or fewer than 2 CPUs)"
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] && taskset -c 1 true 2>/dev/null; then
	LG=(taskset -c 0)
	PX=(taskset -c 1)
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
for addr in "$PROXY" "$SERVER" "$ADMIN"; do
	port_free "$addr" || { echo "egress.sh: $addr is in use" >&2; exit 1; }
done

cat >"$work/caddy.json" <<EOF
{
  "admin": {"listen": "$ADMIN"},
  "logging": {"logs": {"default": {"level": "DEBUG",
    "writer": {"output": "file", "filename": "$work/caddy.log"}}}},
  "apps": {"http": {"servers": {"egress": {
    "listen": ["$PROXY"],
    "automatic_https": {"disable": true},
    "routes": [{"handle": [{"handler": "istio_egress", "allow": ["$SERVER"]}]}]
  }}}}
}
EOF

"${LG[@]}" "$bin/bench-egress" serve -listen "$SERVER" 2>"$work/server.log" &
pids+=($!)
GOMAXPROCS=1 "${PX[@]}" "$bin/caddy" run --config "$work/caddy.json" >"$work/caddy.out" 2>&1 &
caddy_pid=$!
pids+=("$caddy_pid")
wait_port "$SERVER"
wait_port "$PROXY"

clk_tck="$(getconf CLK_TCK)"
# caddy's user + system CPU time so far, in clock ticks
proxy_ticks() { awk '{print $14 + $15}' "/proc/$caddy_pid/stat"; }

transfer() { # mode path size -> one JSON line, with the tunnel's proxy CPU seconds
	local mode="$1" path="$2" size="$3" before after out
	local args=(-mode "$mode" -size "$size" -target "$SERVER")
	[ "$path" = tunnel ] && args+=(-proxy "$PROXY")
	before="$(proxy_ticks)"
	out="$("${LG[@]}" "$bin/bench-egress" client "${args[@]}")"
	after="$(proxy_ticks)"
	jq -c --argjson ticks "$((after - before))" --argjson hz "$clk_tck" \
		--arg load "$(cut -d' ' -f1 /proc/loadavg)" \
		'. + {proxy_cpu_s: ($ticks / $hz), loadavg1: ($load | tonumber)}' <<<"$out"
}

uptime_before="$(uptime)"
log "$layout; $uptime_before"
log "warm-up: 10MB per path"
for mode in $MODES; do
	transfer "$mode" direct 10MB >/dev/null
	transfer "$mode" tunnel 10MB >/dev/null
done

raw="$work/raw.jsonl"
: >"$raw"
for round in $(seq 1 "$ROUNDS"); do
	paths=(direct tunnel)
	[ $((round % 2)) -eq 0 ] && paths=(tunnel direct)
	for mode in $MODES; do
		for path in "${paths[@]}"; do
			line="$(transfer "$mode" "$path" "$SIZE" | jq -c --argjson round "$round" '. + {round: $round}')"
			echo "$line" >>"$raw"
			log "round $round $mode $path: $(jq -r '"\(.mb_per_s | floor) MB/s, proxy CPU \(.proxy_cpu_s) s, load \(.loadavg1)"' <<<"$line")"
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
	--argjson rounds "$ROUNDS" --arg size "$SIZE" --arg modes "$MODES" \
	--argjson spliced "${splice_lines:-0}" --argjson tunnels "${tunnel_lines:-0}" '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
		else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	. as $raw
	| ($modes | split(" ") | map(select(. != ""))) as $ms
	| {
		date: $date, commit: $commit, go: $go,
		settings: {rounds: $rounds, size: $size, modes: $ms, layout: $layout},
		machine: {nproc: $nproc, cpu: $cpu, uptime_before: $ub, uptime_after: $ua},
		tunnels_spliced_both_ways: $spliced, tunnels_logged: $tunnels,
		medians: [ $ms[] as $m | {
			mode: $m,
			direct_mb_per_s: ([$raw[] | select(.mode == $m and .path == "direct") | .mb_per_s] | median),
			tunnel_mb_per_s: ([$raw[] | select(.mode == $m and .path == "tunnel") | .mb_per_s] | median),
			tunnel_proxy_cpu_s_per_gb: ([$raw[] | select(.mode == $m and .path == "tunnel")
				| .proxy_cpu_s / (.bytes / 1e9)] | median)
		} | . + {ratio: (.tunnel_mb_per_s / .direct_mb_per_s)} ],
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
	"mode   direct MB/s   tunnel MB/s   tunnel/direct   caddy CPU s per GB tunnelled   target",
	(.medians[] | "\(.mode)\t\(.direct_mb_per_s | floor)\t\t\(.tunnel_mb_per_s | floor)\t\t\(.ratio * 1000 | round / 1000)\t\t\(.tunnel_proxy_cpu_s_per_gb * 1000 | round / 1000)\t\t\t\t>= 0.9: \(if .ratio >= 0.9 then "met" else "NOT met" end)"),
	"",
	"medians of \(.settings.rounds) rounds; results: '"$out_json"'"
' "$out_json"
