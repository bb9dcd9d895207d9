#!/usr/bin/env bash
# The standard benchmark scenario (`make bench`): Legato single-binary on local disk, then on a
# real S3 server (moto) on loopback. Prints one table. Figures, not pass/fail.
#
#   DURATION=60s   ingest time per run      BLOCK_BYTES=1MiB  head block size for the S3 run
#   RATE=max       spans/s for ingest       SEARCH_REPEATS=5
#   CONNECTIONS=16 concurrent exporters     POOL=256  pre-encoded requests per connection (0 = fresh)
#   RSS_RATE=28000 spans/s (~10 MB/s of OTLP) for the memory run
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-60s}
S3_DURATION=${S3_DURATION:-30s}
RATE=${RATE:-max}
BLOCK_BYTES=${BLOCK_BYTES:-1MiB}
SEARCH_REPEATS=${SEARCH_REPEATS:-5}
CONNECTIONS=${CONNECTIONS:-16}
POOL=${POOL:-256}
RSS_RATE=${RSS_RATE:-28000}
cargo build --release -q -p legato -p legato-bench
LEGATO=target/release/legato
BENCH=target/release/legato-bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_legato NAME STORAGE_YAML BLOCK_BYTES -> sets PID HTTP OTLP
start_legato() {
  local name=$1 storage=$2 block_bytes=$3
  HTTP=$(port); local grpc; grpc=$(port); OTLP=$(port); local otlp_http; otlp_http=$(port)
  mkdir -p "$WORK/$name"
  cat > "$WORK/$name/legato.yaml" <<YAML
server: {http_listen_address: 127.0.0.1, http_listen_port: $HTTP, grpc_listen_address: 127.0.0.1, grpc_listen_port: $grpc, log_level: warn}
distributor: {receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$OTLP"}, http: {endpoint: "127.0.0.1:$otlp_http"}}}}}
ingester: {max_block_bytes: $block_bytes}
storage:
  trace:
    wal: {path: $WORK/$name/wal}
$storage
overrides: {defaults: {ingestion: {rate_limit_bytes: 0}}}
# The compactor is held off: these figures are the write and read paths; the S3 run needs its
# 100+ small blocks to stay uncompacted.
compactor: {compaction: {compaction_cycle: 24h}}
YAML
  "$LEGATO" -config.file="$WORK/$name/legato.yaml" > "$WORK/$name/legato.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$HTTP/ready" > /dev/null && return; sleep 0.1; done
  echo "legato did not start"; cat "$WORK/$name/legato.log"; exit 1
}

cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
json_field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d$1)"; }

# --- local disk -------------------------------------------------------------------------
start_legato local "    backend: local
    local: {path: $WORK/local/blocks}" 100MiB
cpu0=$(cpu_seconds "$PID")
ingest=$("$BENCH" ingest --otlp-grpc "127.0.0.1:$OTLP" --duration "$DURATION" --rate "$RATE" --connections "$CONNECTIONS" --pool "$POOL" --trace-ids "$WORK/ids.txt" --json 2>/dev/null)
spans=$(echo "$ingest" | json_field '["spans"]')
sps=$(echo "$ingest" | json_field '["spans_per_sec"]')
errors=$(echo "$ingest" | json_field '["errors"]')
curl -sf -X POST "127.0.0.1:$HTTP/flush" > /dev/null
cpu1=$(cpu_seconds "$PID")
rss=$(peak_rss_mib "$PID")
blocks=$("$BENCH" blocks --path "$WORK/local/blocks" --json | tail -1)
bps=$(echo "$blocks" | json_field '["bytes_per_span"]')
query=$("$BENCH" query --http "http://127.0.0.1:$HTTP" --trace-ids "$WORK/ids.txt" --duration 10s --concurrency 4 \
  --traceql crates/legato-bench/queries.traceql --search-repeats "$SEARCH_REPEATS" --json)
echo "$query" | grep '^search' > "$WORK/searches.txt" || true
local_p50=$(echo "$query" | json_field '["p50_ms"]'); local_p99=$(echo "$query" | json_field '["p99_ms"]')
local_wrong=$(echo "$query" | json_field '["wrong"]')
kill -TERM "$PID"; wait "$PID" || true

# --- memory at a steady ~10 MB/s ---------------------------------------------------------
start_legato rss "    backend: local
    local: {path: $WORK/rss/blocks}" 100MiB
rss_ingest=$("$BENCH" ingest --otlp-grpc "127.0.0.1:$OTLP" --duration 30s --rate "$RSS_RATE" --connections 4 --trace-ids "$WORK/ids-rss.txt" --json 2>/dev/null)
rss_mbps=$(echo "$rss_ingest" | json_field '["bytes_per_sec"]')
rss_steady=$(peak_rss_mib "$PID")
kill -TERM "$PID"; wait "$PID" || true

# --- S3 (moto_server on loopback), small blocks so the bucket holds many ----------------
S3PORT=$(port)
moto_server -H 127.0.0.1 -p "$S3PORT" > "$WORK/moto.log" 2>&1 &
for _ in $(seq 100); do curl -sf -X PUT "127.0.0.1:$S3PORT/bench" > /dev/null && break; sleep 0.2; done
start_legato s3 "    backend: s3
    s3: {bucket: bench, endpoint: 127.0.0.1:$S3PORT, region: us-east-1, access_key: x, secret_key: x, insecure: true, forcepathstyle: true}" "$BLOCK_BYTES"
"$BENCH" ingest --otlp-grpc "127.0.0.1:$OTLP" --duration "$S3_DURATION" --rate "$RATE" --connections 4 --trace-ids "$WORK/ids-s3.txt" --json > /dev/null 2>&1
curl -sf -X POST "127.0.0.1:$HTTP/flush" > /dev/null
s3_blocks=$(curl -s "127.0.0.1:$S3PORT/bench?list-type=2&max-keys=100000" | grep -o 'meta.json' | wc -l)
s3=$("$BENCH" query --http "http://127.0.0.1:$HTTP" --trace-ids "$WORK/ids-s3.txt" --duration 10s --concurrency 4 --json)
s3_p50=$(echo "$s3" | json_field '["p50_ms"]'); s3_p99=$(echo "$s3" | json_field '["p99_ms"]'); s3_wrong=$(echo "$s3" | json_field '["wrong"]')
kill -TERM "$PID"; wait "$PID" || true

cpu_per_m=$(python3 -c "print(round(($cpu1 - $cpu0) / ($spans / 1e6), 1))")
printf '\n%-52s %s\n' "figure" "value"
printf '%-52s %s\n' "ingest, OTLP/gRPC, WAL fsync on (spans/s)" "$(printf '%.0f' "$sps") ($errors errors)"
printf '%-52s %s\n' "CPU seconds per million spans (ingest + flush)" "$cpu_per_m"
printf '%-52s %s\n' "peak RSS at max rate (MiB)" "$rss"
printf '%-52s %s\n' "peak RSS at $(printf '%.1f' "$(python3 -c "print($rss_mbps/1e6)")") MB/s (MiB)" "$rss_steady"
printf '%-52s %s\n' "stored bytes per span" "$(printf '%.1f' "$bps")"
printf '%-52s %s\n' "trace-by-id, local disk: p50 / p99 (ms), wrong" "$(printf '%.1f / %.1f' "$local_p50" "$local_p99"), $local_wrong"
printf '%-52s %s\n' "trace-by-id, S3 ($s3_blocks blocks): p50 / p99 (ms), wrong" "$(printf '%.1f / %.1f' "$s3_p50" "$s3_p99"), $s3_wrong"
printf '\nsearches over %s stored spans (local disk):\n' "$spans"
cat "$WORK/searches.txt"
