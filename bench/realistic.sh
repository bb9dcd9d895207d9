#!/usr/bin/env bash
# The benchmark as users run Legato (`make bench-realistic`, issue 13): single binary on local
# disk, WAL fsync on, the compactor running (10 s cycle), blocks cut every MAX_BLOCK_DURATION
# (5 s and 30 s variants), OpenTelemetry-demo-like data (`legato-bench ingest --data demo`:
# 14 resource attributes, ~570 bytes of OTLP per span, 4-18 spans per trace), clients that
# back off on refusals, and a sample of acknowledged traces read back. Prints one row per
# variant. Figures, not pass/fail.
#
#   DURATION=30s  CONNECTIONS=16  POOL=256  DATA=demo (or legacy)  VARIANTS="5s 30s"
#   SETTLE=25s    wait after ingest for flushes and compaction before measuring blocks
#   INGESTER="max_buffered_bytes: 256MiB"  extra ingester keys (flow style)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
DURATION=${DURATION:-30s}
CONNECTIONS=${CONNECTIONS:-16}
POOL=${POOL:-256}
DATA=${DATA:-demo}
VARIANTS=${VARIANTS:-5s 30s}
SETTLE=${SETTLE:-25}
INGESTER=${INGESTER:+, $INGESTER}
cargo build --release -q -p legato -p legato-bench
LEGATO=${LEGATO:-target/release/legato}
BENCH=target/release/legato-bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT


printf '%-10s %-6s %10s %9s %8s %9s %9s %9s %9s %7s\n' data blocks "spans/s" "MB/s" "CPU-s/M" "RSS MiB" "B/span" "p50 ms" "p99 ms" wrong
for variant in $VARIANTS; do
  dir="$WORK/$variant"
  mkdir -p "$dir"
  http=$(port); grpc=$(port); otlp=$(port); otlp_http=$(port)
  realistic_config "$dir" "$http" "$grpc" "$otlp" "$otlp_http" "$variant" "$INGESTER"
  "$LEGATO" -config.file="$dir/legato.yaml" > "$dir/legato.log" 2>&1 &
  pid=$!
  wait_ready "127.0.0.1:$http"
  cpu0=$(cpu_seconds "$pid")
  ingest=$("$BENCH" ingest --otlp-grpc "127.0.0.1:$otlp" --duration "$DURATION" --connections "$CONNECTIONS" \
    --pool "$POOL" --data "$DATA" --trace-ids "$dir/ids.txt" --json 2>/dev/null)
  spans=$(echo "$ingest" | json_field '["spans"]')
  sps=$(echo "$ingest" | json_field '["spans_per_sec"]')
  mbps=$(echo "$ingest" | json_field '["bytes_per_sec"]')
  # Let idle traces be cut, blocks flushed and compacted, as they would be after the load.
  sleep "$SETTLE"
  cpu1=$(cpu_seconds "$pid")
  rss=$(peak_rss_mib "$pid")
  query=$("$BENCH" query --http "http://127.0.0.1:$http" --trace-ids "$dir/ids.txt" --duration 10s --concurrency 4 --json)
  p50=$(echo "$query" | json_field '["p50_ms"]'); p99=$(echo "$query" | json_field '["p99_ms"]')
  wrong=$(python3 -c "print($(echo "$query" | json_field '["wrong"]') + $(echo "$query" | json_field '["errors"]'))")
  kill -TERM "$pid"; wait "$pid" || true
  blocks=$("$BENCH" blocks --path "$dir/blocks" --json | tail -1)
  bps=$(echo "$blocks" | json_field '["bytes_per_span"]')
  python3 - "$DATA" "$variant" "$sps" "$mbps" "$cpu0" "$cpu1" "$spans" "$rss" "$bps" "$p50" "$p99" "$wrong" <<'PY'
import sys
data, variant, sps, mbps, cpu0, cpu1, spans, rss, bps, p50, p99, wrong = sys.argv[1:]
cpu_m = (float(cpu1) - float(cpu0)) / (int(spans) / 1e6)
print(f"{data:<10} {variant:<6} {float(sps):>10,.0f} {float(mbps)/1e6:>9.1f} {cpu_m:>8.1f} {rss:>9} "
      f"{float(bps):>9.1f} {float(p50):>9.2f} {float(p99):>9.2f} {wrong:>7}")
PY
done
