#!/usr/bin/env bash
# Legato side by side with any Tempo-compatible endpoint (`make bench-compare PEER=...`,
# issue 13): the same scenario against both, one table. The scenario is `make
# bench-realistic`'s: OpenTelemetry-demo-like data over OTLP/gRPC at the maximum rate from
# clients that back off on refusals, then trace-by-id lookups of a sample of acknowledged
# traces (4 clients, wrong = missing or incomplete) and the six typical TraceQL searches
# (crates/legato-bench/demo-queries.traceql). Legato runs here as a release single binary
# on local disk with the compactor on and blocks cut every MAX_BLOCK_DURATION.
#
#   PEER=http://tempo:3200        the peer's HTTP API (required)
#   PEER_OTLP=tempo:4317          the peer's OTLP/gRPC receiver (default: PEER's host, 4317)
#   PEER_PID=1234                 the peer's process id, when it runs on this machine: CPU and
#                                 peak RSS are then reported for it too
#   PEER_TENANT=...               X-Scope-OrgID for the peer (multi-tenant Tempo)
#   DURATION=30s CONNECTIONS=16 POOL=256 MAX_BLOCK_DURATION=5s SETTLE=25
#
# How to run it against a Grafana Tempo you start yourself: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
: "${PEER:?set PEER to the HTTP API of the peer, e.g. PEER=http://localhost:3200}"
PEER=${PEER%/}
host=${PEER#*://}; host=${host%%:*}; host=${host%%/*}
PEER_OTLP=${PEER_OTLP:-$host:4317}
DURATION=${DURATION:-30s}
CONNECTIONS=${CONNECTIONS:-16}
POOL=${POOL:-256}
MAX_BLOCK_DURATION=${MAX_BLOCK_DURATION:-5s}
SETTLE=${SETTLE:-25}
QUERIES=crates/legato-bench/demo-queries.traceql
cargo build --release -q -p legato -p legato-bench
BENCH=target/release/legato-bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# run NAME HTTP OTLP PID TENANT: ingest, settle, read back, search; prints one JSON line.
run() {
  local name=$1 http=$2 otlp=$3 pid=$4 tenant=$5 cpu0="" cpu1="" rss=""
  local tenant_arg=()
  [[ -n "$tenant" ]] && tenant_arg=(--tenant "$tenant")
  [[ -n "$pid" ]] && cpu0=$(cpu_seconds "$pid")
  local ingest
  ingest=$("$BENCH" ingest --otlp-grpc "$otlp" --duration "$DURATION" --connections "$CONNECTIONS" \
    --pool "$POOL" --data demo --trace-ids "$WORK/$name-ids.txt" "${tenant_arg[@]}" --json 2>/dev/null | tail -1)
  sleep "$SETTLE"
  if [[ -n "$pid" ]]; then cpu1=$(cpu_seconds "$pid"); rss=$(peak_rss_mib "$pid"); fi
  local query
  query=$("$BENCH" query --http "$http" --trace-ids "$WORK/$name-ids.txt" --duration 10s --concurrency 4 \
    --traceql "$QUERIES" --search-repeats 5 "${tenant_arg[@]}" --json | tail -1)
  python3 - "$name" "$ingest" "$query" "$cpu0" "$cpu1" "$rss" <<'PY'
import json, sys
name, ingest, query, cpu0, cpu1, rss = sys.argv[1:]
ingest, query = json.loads(ingest), json.loads(query)
searches = [s for s in query.get("searches", [])]
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * p))] if values else float("nan")
lat = [ms for s in searches for ms in s.get("latencies_ms", [])]
row = {
    "name": name,
    "spans_per_sec": ingest["spans_per_sec"],
    "refused": ingest.get("throttled", 0),
    "cpu_per_m": (float(cpu1) - float(cpu0)) / (ingest["spans"] / 1e6) if cpu0 and cpu1 else None,
    "rss_mib": int(rss) if rss else None,
    "tbi_p50": query["p50_ms"], "tbi_p99": query["p99_ms"],
    "search_p50": pct(lat, 0.5), "search_p99": pct(lat, 0.99),
    "wrong": query["wrong"] + query["errors"],
}
print(json.dumps(row))
PY
}

http=$(port); grpc=$(port); otlp=$(port); otlp_http=$(port)
realistic_config "$WORK" "$http" "$grpc" "$otlp" "$otlp_http" "$MAX_BLOCK_DURATION"
target/release/legato -config.file="$WORK/legato.yaml" > "$WORK/legato.log" 2>&1 &
legato_pid=$!
wait_ready "127.0.0.1:$http"
legato_row=$(run legato "http://127.0.0.1:$http" "127.0.0.1:$otlp" "$legato_pid" "")
kill -TERM "$legato_pid"; wait "$legato_pid" || true
peer_row=$(run peer "$PEER" "$PEER_OTLP" "${PEER_PID:-}" "${PEER_TENANT:-}")

python3 - "$legato_row" "$peer_row" <<'PY'
import json, sys
rows = [json.loads(r) for r in sys.argv[1:]]
def f(v, fmt):
    return "n/a" if v is None or v != v else format(v, fmt)
print(f"{'':<8} {'spans/s':>10} {'refused':>8} {'CPU-s/M':>8} {'RSS MiB':>8} {'tbi p50':>8} {'tbi p99':>8} {'search p50':>10} {'search p99':>10} {'wrong':>6}")
for r in rows:
    print(f"{r['name']:<8} {f(r['spans_per_sec'], ',.0f'):>10} {r['refused']:>8} {f(r['cpu_per_m'], '.1f'):>8} "
          f"{f(r['rss_mib'], 'd'):>8} {f(r['tbi_p50'], '.2f'):>8} {f(r['tbi_p99'], '.2f'):>8} "
          f"{f(r['search_p50'], '.2f'):>10} {f(r['search_p99'], '.2f'):>10} {r['wrong']:>6}")
PY
