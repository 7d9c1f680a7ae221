#!/usr/bin/env bash
# bench/tail.sh: where does the istio_route p99 tail at fixed load come from?
# Runs only fixed-load phases (QPS over CONNS connections, same request and pinning as run.sh) for
# variants that each change one thing, in interleaved rounds, with GODEBUG=gctrace=1 on the proxy.
#
#   bench/tail.sh                          # 3 rounds x 6 variants x 10 s
#   ROUNDS=4 FIXED=15s VARIANTS="plain istio" bench/tail.sh
#   PRE_MAX=8s bench/tail.sh               # a max-rate phase first, as in run.sh
#   PROXY_GOGC=400 bench/tail.sh           # the proxy's GOGC (default 100)
#   BIN=/some/dir bench/tail.sh            # caddy, bench-backend, fortio from BIN (default .cache/bin)
#
# Variants:
#   plain          reverse_proxy to :18080 (run.sh's plain)
#   plain2         reverse_proxy to :18080 and :18090, Caddy's default random policy
#   istio          run.sh's istio config (90/10 split, LEAST_REQUEST, Istio's default retry policy)
#   istio-noretry  istio with retries: {attempts: 0} on both routes
#   istio-single   istio with the header route sent to v1 only (no split, one subset)
#   istio-rr       istio with DestinationRule loadBalancer ROUND_ROBIN
# Per phase it records the proxy's, the backend's and the whole box's CPU use, the hypervisor's steal
# time, and cpu1_other_cores: CPU 1 busy time not spent in the proxy (other work on the proxy's core).
# Prints one line per phase and writes bench/results/tail-<stamp>.jsonl. Not run by the test suite.
set -euo pipefail
ROUNDS="${ROUNDS:-3}"
FIXED="${FIXED:-10s}"
QPS="${QPS:-2000}"
CONNS="${CONNS:-16}"
VARIANTS="${VARIANTS:-plain plain2 istio istio-noretry istio-single istio-rr}"
PROXY_GOGC="${PROXY_GOGC:-100}" # the proxy's GOGC
PRE_MAX="${PRE_MAX:-}" # e.g. 8s: a max-rate phase (-qps 0 -c 32) before the fixed phase, as run.sh does
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
BIN="${BIN:-$root/.cache/bin}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="$here/results/tail-$stamp"
out="$here/results/tail-$stamp.jsonl"
mkdir -p "$work"
: >"$out"
V1=127.0.0.1:18080 V2=127.0.0.1:18090 PROXY=127.0.0.1:18100 ADMIN=127.0.0.1:12019
HDR=(-H "Host: bench" -H "x-bench: 1")
TICK="$(getconf CLK_TCK)"

plain_json() { # upstream dials...
	local ups="" d
	for d in "$@"; do ups="$ups${ups:+,}{\"dial\":\"$d\"}"; done
	printf '{"admin":{"listen":"%s"},"apps":{"http":{"servers":{"bench":{"listen":["%s"],"automatic_https":{"disable":true},"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[%s]}]}]}}}}}\n' "$ADMIN" "$PROXY" "$ups"
}
istio_yaml() { # lb retries(default|none) split(yes|no)
	local lb="$1" retries="$2" split="$3" r=""
	[ "$retries" = none ] && r=$'    retries:\n      attempts: 0\n'
	cat <<EOF
apiVersion: v1
kind: Service
metadata: {name: bench}
spec:
  ports: [{port: 18100, name: http}]
  selector: {app: bench}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: bench-v1}
spec: {address: 127.0.0.1, labels: {app: bench, version: v1}, ports: {http: 18080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: bench-v2}
spec: {address: 127.0.0.1, labels: {app: bench, version: v2}, ports: {http: 18090}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bench}
spec:
  host: bench
$( [ -n "$lb" ] && printf '  trafficPolicy:\n    loadBalancer:\n      simple: %s\n' "$lb" )
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench}
spec:
  hosts: [bench]
  http:
  - match:
    - headers: {x-bench: {exact: "1"}}
${r}    route:
    - destination: {host: bench, subset: v1}
$( [ "$split" = yes ] && printf '      weight: 90\n    - destination: {host: bench, subset: v2}\n      weight: 10\n' )
  - route:
    - destination: {host: bench, subset: v1}
${r}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress:
  - port: {number: 18100, protocol: HTTP, name: http}
    bind: 127.0.0.1
    hosts: ["./*"]
EOF
}
plain_json "$V1" >"$work/plain.json"
plain_json "$V1" "$V2" >"$work/plain2.json"
istio_yaml "" default yes >"$work/istio.yaml"
istio_yaml "" none yes >"$work/istio-noretry.yaml"
istio_yaml "" default no >"$work/istio-single.yaml"
istio_yaml ROUND_ROBIN default yes >"$work/istio-rr.yaml"

pids=()
cleanup() { local p; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for a in $V1 $V2 $PROXY $ADMIN; do port_free "$a" || { echo "tail.sh: $a in use" >&2; exit 1; }; done
wait_http() { local d=$((SECONDS + 20)); until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${HDR[@]}" "$1")" = 200 ]; do [ $SECONDS -lt $d ] || return 1; sleep 0.2; done; }
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12+$13}'; }
box() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
cpu1() { awk '/^cpu1 /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; } # the proxy's CPU
steal() { awk '/^cpu /{print $9; exit}' /proc/stat; }

taskset -c 0 env GOMAXPROCS=1 "$BIN/bench-backend" -addrs "$V1,$V2" -size 1024 >"$work/backend.log" 2>&1 &
backend_pid=$!
pids+=($backend_pid)
wait_http "http://$V1/" || { echo "tail.sh: backend did not start" >&2; exit 1; }
echo "uptime before: $(uptime)" | tee "$work/uptime"
read -r -a vs <<<"$VARIANTS"
for round in $(seq 1 "$ROUNDS"); do
	n=${#vs[@]}
	for i in $(seq 0 $((n - 1))); do
		v=${vs[$(((i + round - 1) % n))]}
		log="$work/$v-r$round.log"
		case $v in
		plain*) cmd=(run --config "$work/$v.json") ;;
		*) cmd=(run --adapter istio --config "$work/$v.yaml") ;;
		esac
		CADDY_ADMIN="$ADMIN" XDG_DATA_HOME="$work/xdg" XDG_CONFIG_HOME="$work/xdg" \
			taskset -c 1 env GOMAXPROCS=1 GOGC="$PROXY_GOGC" GODEBUG=gctrace=1 "$BIN/caddy" "${cmd[@]}" >"$log" 2>&1 &
		pp=$!
		pids+=("$pp")
		wait_http "http://$PROXY/" || { echo "tail.sh: $v did not start" >&2; tail "$log" >&2; exit 1; }
		taskset -c 0 "$BIN/fortio" load -quiet -qps 0 -c "$CONNS" -t 2s "${HDR[@]}" "http://$PROXY/" >/dev/null 2>&1
		[ -z "$PRE_MAX" ] || taskset -c 0 "$BIN/fortio" load -quiet -qps 0 -c 32 -t "$PRE_MAX" "${HDR[@]}" "http://$PROXY/" >/dev/null 2>&1
		gc0=$(grep -c '^gc ' "$log" || true); p0=$(ticks "$pp"); b0=$(box); c0=$(cpu1); s0=$(steal); k0=$(ticks "$backend_pid"); t0=$(date +%s%N)
		taskset -c 0 "$BIN/fortio" load -quiet -p 50,90,99,99.9 -qps "$QPS" -c "$CONNS" -t "$FIXED" -json "$work/$v-r$round.json" "${HDR[@]}" "http://$PROXY/" >/dev/null 2>&1
		t1=$(date +%s%N); b1=$(box); c1=$(cpu1); s1=$(steal); k1=$(ticks "$backend_pid"); p1=$(ticks "$pp")
		# gctrace: "gc N @t s P%: STW1+conc+STW2 ms clock, ..." -> GCs in the phase, their longest STW
		# and the total time in concurrent mark.
		gcstat=$(awk -v from="$gc0" '/^gc /{n++; if (n<=from) next; split($5,c,"+"); s=c[1]+0; if (c[3]+0>s) s=c[3]+0; if (s>m) m=s; k++; mk+=c[2]} END{printf "%d %.3f %.1f", k, m, mk}' "$log")
		read -r gcs stw mark <<<"$gcstat"
		kill "$pp"; wait "$pp" 2>/dev/null || true
		pids=("${pids[@]/$pp}")
		until port_free "$PROXY" && port_free "$ADMIN"; do sleep 0.1; done
		jq -c --argjson round "$round" --arg v "$v" --arg gogc "$PROXY_GOGC" --arg pre "$PRE_MAX" --argjson gcs "$gcs" --argjson stw "$stw" --argjson mark "$mark" \
			--argjson proxy "$(awk -v t=$((p1 - p0)) -v hz="$TICK" -v ns=$((t1 - t0)) 'BEGIN{print t/hz/(ns/1e9)}')" \
			--argjson cpu1 "$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v ns=$((t1 - t0)) 'BEGIN{print t/hz/(ns/1e9)}')" \
			--argjson steal "$(awk -v t=$((s1 - s0)) -v hz="$TICK" -v ns=$((t1 - t0)) 'BEGIN{print t/hz/(ns/1e9)}')" \
			--argjson backend "$(awk -v t=$((k1 - k0)) -v hz="$TICK" -v ns=$((t1 - t0)) 'BEGIN{print t/hz/(ns/1e9)}')" \
			--argjson box "$(awk -v t=$((b1 - b0)) -v hz="$TICK" -v ns=$((t1 - t0)) 'BEGIN{print t/hz/(ns/1e9)}')" '
			def pct(p): (.DurationHistogram.Percentiles[] | select(.Percentile == p) | .Value * 1000 * 1000 | round / 1000);
			{round: $round, variant: $v, gogc: $gogc, pre_max: $pre, rps: (.ActualQPS|floor), errors: (.DurationHistogram.Count - (.RetCodes["200"] // 0)),
			 p50: pct(50), p90: pct(90), p99: pct(99), p999: pct(99.9), max: (.DurationHistogram.Max*1e6|round/1000),
			 gcs: $gcs, max_stw_ms: $stw, mark_ms: $mark, proxy_cores: ($proxy*1000|round/1000), box_cores: ($box*1000|round/1000),
			 backend_cores: ($backend*1000|round/1000), steal_cores: ($steal*1000|round/1000),
			 cpu1_other_cores: (($cpu1 - $proxy)*1000|round/1000)}' \
			"$work/$v-r$round.json" | tee -a "$out"
	done
done
echo "uptime after: $(uptime)" | tee -a "$work/uptime"
