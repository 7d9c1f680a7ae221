#!/usr/bin/env bash
# bench/scale.sh: how caddy-istio scales with the size of the mesh config.
#
#   bench/scale.sh                    # ~3 minutes
#   bench/scale.sh --counts 100,1000,10000,20000 --reps 5
#   bench/scale.sh --no-e2e           # adapt + in-process benchmarks only
#
# 1. adapt: bench/scale generates 100, 1,000 and 10,000 VirtualServices (each its own host with a
#    ServiceEntry, a header match and a 90/10 split over two shared services) and times
#    `caddy adapt --adapter istio` on each: wall time, CPU and max RSS of the child (rusage),
#    medians of --reps runs. Target: 10,000 in < 2 s.
# 2. route decision, in process: modules/istioroute's BenchmarkRoute (the decision alone, target
#    < 1 us and 0 allocs) and bench/scale's BenchmarkRouteHosts (ServeHTTP with 10, 1,000 and
#    10,000 virtual hosts, the middle host asked: not linear in hosts).
# 3. end to end (unless --no-e2e): `caddy run` on the 10- and the 10,000-host config, pinned as in
#    bench/run.sh (fortio + backend on CPU 0, caddy on CPU 1 with GOMAXPROCS=1), fortio at max rate
#    against the middle host (Host: h<n/2>.bench, x-bench: 1), --rounds interleaved rounds:
#    throughput, proxy CPU per request, RSS.
# Writes bench/results/scale-<stamp>.json and prints the tables. Ports 18080, 18090, 18200 and
# admin 12039 on 127.0.0.1 must be free. Never run by the test suite.
set -euo pipefail

COUNTS="${COUNTS:-100,1000,10000}"
REPS="${REPS:-3}"
ROUNDS="${ROUNDS:-3}"
MAX_DURATION="${MAX_DURATION:-8s}"
MAX_CONNS="${MAX_CONNS:-32}"
E2E="${E2E:-1}"
NO_BUILD="${NO_BUILD:-0}"
while [ $# -gt 0 ]; do
	case "$1" in
	--counts) COUNTS="$2"; shift 2 ;;
	--reps) REPS="$2"; shift 2 ;;
	--rounds) ROUNDS="$2"; shift 2 ;;
	--max) MAX_DURATION="$2"; shift 2 ;;
	--max-conns) MAX_CONNS="$2"; shift 2 ;;
	--no-e2e) E2E=0; shift ;;
	--no-build) NO_BUILD=1; shift ;;
	-h | --help) sed -n '2,21p' "$0"; exit 0 ;;
	*) echo "scale.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
bin="$root/.cache/bin"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
results="$here/results"
work="$results/scale-$stamp"
out_json="$results/scale-$stamp.json"
mkdir -p "$bin" "$work"
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

BACKEND_V1=127.0.0.1:18080
BACKEND_V2=127.0.0.1:18090
MESH_PORT=18200
ADMIN=127.0.0.1:12039

if [ "$NO_BUILD" != 1 ]; then
	log "building caddy, bench/scale, the backend and fortio v1.66.5 ..."
	go build -o "$bin/caddy" ./xcaddy
	go build -o "$bin/bench-backend" ./bench/backend
	if ! "$bin/fortio" version 2>/dev/null | grep -qx '1.66.5'; then
		GOBIN="$bin" go install fortio.org/fortio@v1.66.5
	fi
fi
go build -o "$bin/bench-scale" ./bench/scale

uptime_before="$(uptime)"
log "uptime before: $uptime_before"

# --- 1. adapt ----------------------------------------------------------------------------------
log "adapt: $COUNTS VirtualServices, $REPS runs each"
"$bin/bench-scale" adapt -caddy "$bin/caddy" -counts "$COUNTS" -reps "$REPS" -port "$MESH_PORT" \
	-backends "$BACKEND_V1,$BACKEND_V2" -json "$work/adapt.json" | tee "$work/adapt.md"

# --- 2. in process -----------------------------------------------------------------------------
log "in-process route benchmarks ..."
go test -run '^$' -bench '^BenchmarkRoute$' -benchmem -count 3 ./modules/istioroute | tee "$work/route-decision.txt"
go test -tags bench -run '^$' -bench RouteHosts -benchmem -count 3 ./bench/scale | tee "$work/route-hosts.txt"
# go test lines -> JSON: name (without -GOMAXPROCS), median ns/op, B/op, allocs/op
bench_json() {
	awk '/^Benchmark/ && /ns\/op/ {
		name=$1; sub(/-[0-9]+$/, "", name)
		for (i=2; i<=NF; i++) { if ($(i+1)=="ns/op") ns=$i; if ($(i+1)=="B/op") by=$i; if ($(i+1)=="allocs/op") al=$i }
		printf "{\"name\":\"%s\",\"ns_per_op\":%s,\"bytes_per_op\":%s,\"allocs_per_op\":%s}\n", name, ns, by, al
	}' "$1" | jq -sc 'group_by(.name) | map({name: .[0].name,
		ns_per_op: (map(.ns_per_op) | sort | .[length/2|floor]),
		bytes_per_op: (map(.bytes_per_op) | max), allocs_per_op: (map(.allocs_per_op) | max), n: length})'
}
bench_json "$work/route-decision.txt" >"$work/route-decision.json"
bench_json "$work/route-hosts.txt" >"$work/route-hosts.json"

# --- 3. end to end -----------------------------------------------------------------------------
: >"$work/e2e.jsonl"
layout="unpinned"
if [ "$E2E" = 1 ]; then
	LG=()
	PX=()
	if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ] && taskset -c 1 true 2>/dev/null; then
		LG=(taskset -c 0)
		PX=(taskset -c 1)
		layout="fortio + backend on CPU 0 (GOMAXPROCS=1), caddy on CPU 1 (GOMAXPROCS=1)"
	fi
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
	for addr in "$BACKEND_V1" "$BACKEND_V2" "127.0.0.1:$MESH_PORT" "$ADMIN"; do
		port_free "$addr" || { echo "scale.sh: $addr is in use" >&2; exit 1; }
	done
	"${LG[@]}" env GOMAXPROCS=1 "$bin/bench-backend" -addrs "$BACKEND_V1,$BACKEND_V2" -size 1024 >"$work/backend.log" 2>&1 &
	pids+=($!)
	TICK="$(getconf CLK_TCK)"
	proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12+$13}'; }
	wait_200() { # Host
		local deadline=$((SECONDS + 60))
		until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $1" -H 'x-bench: 1' "http://127.0.0.1:$MESH_PORT/")" = 200 ]; do
			[ $SECONDS -lt $deadline ] || return 1
			sleep 0.2
		done
	}
	hosts_list=(10 10000)
	for n in "${hosts_list[@]}"; do
		"$bin/bench-scale" gen -n "$n" -port "$MESH_PORT" -backends "$BACKEND_V1,$BACKEND_V2" -o "$work/e2e-$n.yaml"
	done
	for round in $(seq 1 "$ROUNDS"); do
		order=("${hosts_list[@]}")
		[ $((round % 2)) = 0 ] && order=("${hosts_list[1]}" "${hosts_list[0]}")
		for n in "${order[@]}"; do
			host="h$(printf '%05d' $((n / 2))).bench"
			t_start=$(date +%s%N)
			CADDY_ADMIN="$ADMIN" XDG_DATA_HOME="$work/xdg" XDG_CONFIG_HOME="$work/xdg" \
				"${PX[@]}" env GOMAXPROCS=1 "$bin/caddy" run --adapter istio --config "$work/e2e-$n.yaml" >>"$work/caddy-$n.log" 2>&1 &
			cpid=$!
			pids+=("$cpid")
			wait_200 "$host" || { echo "scale.sh: caddy with $n hosts did not answer; log:" >&2; tail -n 20 "$work/caddy-$n.log" >&2; exit 1; }
			startup_s=$(awk -v a="$t_start" -v b="$(date +%s%N)" 'BEGIN{print (b-a)/1e9}')
			"${LG[@]}" "$bin/fortio" load -quiet -qps 0 -c 16 -t 2s -H "Host: $host" -H 'x-bench: 1' "http://127.0.0.1:$MESH_PORT/" >/dev/null 2>&1
			p0=$(proc_ticks "$cpid"); t0=$(date +%s%N)
			"${LG[@]}" "$bin/fortio" load -quiet -qps 0 -c "$MAX_CONNS" -t "$MAX_DURATION" -p 50,99 -json "$work/e2e-$n-r$round.json" \
				-H "Host: $host" -H 'x-bench: 1' "http://127.0.0.1:$MESH_PORT/" >>"$work/fortio.log" 2>&1
			t1=$(date +%s%N); p1=$(proc_ticks "$cpid")
			rss=$(awk '/^VmRSS/{print $2/1024}' "/proc/$cpid/status")
			kill "$cpid" 2>/dev/null || true
			wait "$cpid" 2>/dev/null || true
			jq -c --argjson round "$round" --argjson hosts "$n" --arg host "$host" --argjson startup "$startup_s" --argjson rss "$rss" \
				--argjson cpu "$(awk -v t="$((p1 - p0))" -v hz="$TICK" 'BEGIN{print t/hz}')" \
				--argjson wall "$(awk -v n="$((t1 - t0))" 'BEGIN{print n/1e9}')" '
				{round: $round, hosts: $hosts, host: $host, rps: .ActualQPS, requests: .DurationHistogram.Count,
				 ok: (.RetCodes["200"] // 0), startup_s: $startup, rss_mb: $rss,
				 p50_ms: (.DurationHistogram.Percentiles[] | select(.Percentile == 50) | .Value * 1000),
				 p99_ms: (.DurationHistogram.Percentiles[] | select(.Percentile == 99) | .Value * 1000),
				 proxy_cores: ($cpu / $wall)}
				| .errors = (.requests - .ok) | .proxy_us_per_request = (.proxy_cores / .rps * 1e6)' \
				"$work/e2e-$n-r$round.json" | tee -a "$work/e2e.jsonl" |
				jq -r '"  \(.hosts) hosts, round \(.round): \(.rps|floor) rps, p99 \(.p99_ms*100|round/100) ms, proxy \(.proxy_us_per_request*10|round/10) us/request, start \(.startup_s*100|round/100) s, RSS \(.rss_mb|round) MB, errors \(.errors)"' >&2
			local_deadline=$((SECONDS + 10))
			until port_free "127.0.0.1:$MESH_PORT" && port_free "$ADMIN"; do
				[ $SECONDS -lt $local_deadline ] || { echo "scale.sh: ports still busy" >&2; exit 1; }
				sleep 0.1
			done
		done
	done
fi
uptime_after="$(uptime)"
log "uptime after: $uptime_after"

# --- summary -----------------------------------------------------------------------------------
jq -n \
	--arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	--arg cpu "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" --argjson nproc "$(nproc)" \
	--arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" --arg go "$(go env GOVERSION)" \
	--arg uptime_before "$uptime_before" --arg uptime_after "$uptime_after" --arg layout "$layout" \
	--slurpfile adapt "$work/adapt.json" --slurpfile decision "$work/route-decision.json" \
	--slurpfile hosts "$work/route-hosts.json" --slurpfile e2e_raw <(jq -s . "$work/e2e.jsonl") '
	def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	($adapt[0]) as $a | ($decision[0]) as $d | ($hosts[0]) as $h | ($e2e_raw[0]) as $e
	| ($e | group_by(.hosts) | map({hosts: .[0].hosts, n: length, rps: (map(.rps) | median),
		proxy_us_per_request: (map(.proxy_us_per_request) | median), p99_ms: (map(.p99_ms) | median),
		startup_s: (map(.startup_s) | median), rss_mb: (map(.rss_mb) | median), errors: (map(.errors) | add)})) as $em
	| def hb(n; kind): ([$h[] | select(.name == "BenchmarkRouteHosts/telemetry=false/hosts=\(n)/\(kind)")] | .[0]);
	{
		date: $date, commit: $commit, go: $go, layout: $layout,
		machine: {nproc: $nproc, cpu: $cpu, uptime_before: $uptime_before, uptime_after: $uptime_after},
		adapt: $a, route_decision: $d, route_hosts: $h, e2e: {medians: $em, runs: $e},
		targets: {
			adapt_10000_under_2s: ($a | map(select(.virtual_services == 10000)) | if length == 0 then null else .[0].wall_s < 2 end),
			decision_under_1us_no_alloc: ($d | all(.ns_per_op < 1000 and .allocs_per_op == 0)),
			lookup_not_linear: (if (hb(10; "middle") != null and hb(10000; "middle") != null) then (hb(10000; "middle").ns_per_op / hb(10; "middle").ns_per_op) < 3 else null end),
			lookup_ratio_10000_to_10: (if (hb(10; "middle") != null and hb(10000; "middle") != null) then hb(10000; "middle").ns_per_op / hb(10; "middle").ns_per_op else null end),
			# the whole request path (istio_egress + istio_route + proxy): CPU per request, 10,000 / 10 hosts
			e2e_cpu_ratio_10000_to_10: ([$em[] | select(.hosts == 10000)][0].proxy_us_per_request as $b
				| [$em[] | select(.hosts == 10)][0].proxy_us_per_request as $a
				| if $a == null or $b == null then null else $b / $a end)
		}
	}' >"$out_json"

jq -r '
	def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
	"caddy-istio scale bench, \(.date), commit \(.commit), \(.go), \(.machine.nproc) x \(.machine.cpu)",
	"uptime before: \(.machine.uptime_before | sub("^ +"; ""))",
	"uptime after:  \(.machine.uptime_after | sub("^ +"; ""))",
	"",
	"adapt (`caddy adapt --adapter istio`, medians):",
	"| VirtualServices | objects | input KiB | wall s | CPU s | max RSS MB | output KiB |",
	"|---|---|---|---|---|---|---|",
	(.adapt[] | "| \(.virtual_services) | \(.objects) | \(.input_kib | f(0)) | \(.wall_s | f(3)) | \(.cpu_s | f(3)) | \(.max_rss_mb | f(1)) | \(.output_kib | f(0)) |"),
	"",
	"route decision (modules/istioroute BenchmarkRoute, median of 3):",
	"| benchmark | ns/op | B/op | allocs/op |", "|---|---|---|---|",
	(.route_decision[] | "| \(.name | sub("^BenchmarkRoute/"; "")) | \(.ns_per_op) | \(.bytes_per_op) | \(.allocs_per_op) |"),
	"",
	"ServeHTTP with N virtual hosts (bench/scale BenchmarkRouteHosts, median of 3):",
	"| benchmark | ns/op | B/op | allocs/op |", "|---|---|---|---|",
	(.route_hosts[] | "| \(.name | sub("^BenchmarkRouteHosts/"; "")) | \(.ns_per_op) | \(.bytes_per_op) | \(.allocs_per_op) |"),
	"",
	(if (.e2e.medians | length) > 0 then
		"end to end (\(.layout); fortio max rate against the middle host, medians):",
		"| hosts configured | rps | proxy us/request | p99 ms | start s | RSS MB | errors | rounds |", "|---|---|---|---|---|---|---|---|",
		(.e2e.medians[] | "| \(.hosts) | \(.rps | f(0)) | \(.proxy_us_per_request | f(1)) | \(.p99_ms | f(2)) | \(.startup_s | f(2)) | \(.rss_mb | f(1)) | \(.errors) | \(.n) |"),
		""
	else empty end),
	"target: 10,000 VirtualServices adapt in < 2 s: \(if .targets.adapt_10000_under_2s == null then "not measured" elif .targets.adapt_10000_under_2s then "met" else "MISSED" end)",
	"target: route decision < 1 us, 0 allocs: \(if .targets.decision_under_1us_no_alloc then "met" else "MISSED" end)",
	"target: host lookup not linear (ServeHTTP 10,000 hosts / 10 hosts = \(.targets.lookup_ratio_10000_to_10 | f(2))): \(if .targets.lookup_not_linear then "met" else "MISSED" end)",
	(if .targets.e2e_cpu_ratio_10000_to_10 != null then "end to end: caddy CPU per request, 10,000 hosts / 10 hosts = \(.targets.e2e_cpu_ratio_10000_to_10 | f(2)) (want < 1.2): \(if .targets.e2e_cpu_ratio_10000_to_10 < 1.2 then "met" else "MISSED" end)" else empty end)
' "$out_json"
echo
echo "results: $out_json (raw output in $work/)"
