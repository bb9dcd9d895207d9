#!/usr/bin/env bash
# Search and metrics at scale (`make bench-search`, issue 13): a release single binary on local
# disk with the compactor on is filled with OpenTelemetry-demo-like traces whose start times
# spread over the last hour (≥ 20 M spans by default), then, while a light live load keeps
# arriving, 4 concurrent clients run the six typical searches
# (crates/legato-bench/demo-queries.traceql), the legato-bench TraceQL set (queries.traceql)
# and TraceQL metrics over the last hour (METRICS, one query per line). Prints latency
# percentiles and scan rates; figures, not pass/fail.
#
#   DURATION=150s  CONNECTIONS=16  POOL=256  MAX_BLOCK_DURATION=30s  SETTLE=40
#   LIVE_RATE=20000   spans/s of live load during the queries (0 = none)
#   REPEATS=8         runs of each query, shared among the 4 clients (the legacy set has
#                     queries that scan everything: keep it small)
#   KEEP=dir          keep the data directory (and reuse it with REUSE=dir: no ingest)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
DURATION=${DURATION:-150s}
CONNECTIONS=${CONNECTIONS:-16}
POOL=${POOL:-256}
MAX_BLOCK_DURATION=${MAX_BLOCK_DURATION:-30s}
SETTLE=${SETTLE:-40}
LIVE_RATE=${LIVE_RATE:-20000}
REPEATS=${REPEATS:-8}
cargo build --release -q -p legato -p legato-bench
LEGATO=target/release/legato
BENCH=target/release/legato-bench
if [ -n "${REUSE:-}" ]; then WORK=$REUSE; else WORK=${KEEP:-$(mktemp -d)}; mkdir -p "$WORK"; fi
cleanup() { kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}${REUSE:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
METRICS_FILE="$WORK/metrics.traceql"
# The default as a variable: inside ${METRICS:-...} the first '}' of a query ended the default.
DEFAULT_METRICS='{ } | rate() by (resource.service.name)
{ status = error } | count_over_time() by (resource.service.name)
{ kind = server } | quantile_over_time(duration, .5, .99) by (resource.service.name)'
printf '%s\n' "${METRICS:-$DEFAULT_METRICS}" > "$METRICS_FILE"

http=$(port); grpc=$(port); otlp=$(port); otlp_http=$(port)
realistic_config "$WORK" "$http" "$grpc" "$otlp" "$otlp_http" "$MAX_BLOCK_DURATION"
"$LEGATO" -config.file="$WORK/legato.yaml" > "$WORK/legato.log" 2>&1 &
pid=$!
wait_ready "127.0.0.1:$http"
if [ -z "${REUSE:-}" ]; then
  echo "filling: $DURATION of demo traffic spread over the last hour" >&2
  "$BENCH" ingest --otlp-grpc "127.0.0.1:$otlp" --duration "$DURATION" --connections "$CONNECTIONS" \
    --pool "$POOL" --data demo --spread 1h --trace-ids "$WORK/ids.txt" | grep '^sent'
  sleep "$SETTLE"
fi
"$BENCH" blocks --path "$WORK/blocks" | tail -1
if [ "$LIVE_RATE" != 0 ]; then
  "$BENCH" ingest --otlp-grpc "127.0.0.1:$otlp" --duration 1h --rate "$LIVE_RATE" --connections 2 \
    --pool 64 --data demo --trace-ids "$WORK/live-ids.txt" > /dev/null 2>&1 &
  sleep 10
fi
cpu0=$(cpu_seconds "$pid")
"$BENCH" query --http "http://127.0.0.1:$http" --trace-ids "$WORK/ids.txt" --duration 10s --concurrency 4 \
  --traceql crates/legato-bench/demo-queries.traceql --search-repeats "$REPEATS" | grep -v '^trace ids'
"$BENCH" query --http "http://127.0.0.1:$http" --trace-ids "$WORK/ids.txt" --duration 1s --concurrency 4 \
  --traceql crates/legato-bench/queries.traceql --metrics "$METRICS_FILE" --metrics-range 1h \
  --search-repeats "$REPEATS" | grep -v '^trace-by-id'
echo "legato CPU during the queries: $(python3 -c "print(round($(cpu_seconds "$pid") - $cpu0, 1))") s; peak RSS $(peak_rss_mib "$pid") MiB"
