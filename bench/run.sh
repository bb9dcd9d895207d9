#!/usr/bin/env bash
# The standard benchmark scenario (`make bench`): Legato single-binary on local disk, then on a
# real S3 server on loopback (s3s-fs, else moto). Prints one table. Figures, not pass/fail.
#
#   DURATION=60s   ingest time per run      BLOCK_BYTES=1MiB  head block size for the S3 run
#   RATE=max       spans/s for ingest       SEARCH_REPEATS=5
#   CONNECTIONS=16 concurrent exporters     POOL=256  pre-encoded requests per connection (0 = fresh)
#   RSS_RATE=28000 spans/s (~10 MB/s of OTLP) for the memory run
#   PARTS="local rss s3"  which runs to do
#   S3_SERVER=auto  bench/s3-server (s3s-fs with TCP_NODELAY, built into target/tools on first
#                   use), falling back to moto if it cannot be built; `moto` forces moto, `s3s`
#                   requires bench/s3-server
#   S3_DURATION=35s, S3_RATE=30000 (spans/s): ingest of the S3 run. Its ingester cuts the head
#                   every 250 ms (flush_check_period) once it holds BLOCK_BYTES, so the bucket
#                   gets ~4 blocks/s (~7,500 spans each, about one row group): 130+ blocks
#   S3_QUERY=20s    measured trace-by-id phase
#   S3_WARMUP=10s   trace-by-id warm-up pass before it (fills the bloom and footer caches)
#   GENERATOR=off   `on`: the metrics generator's span-metrics and service-graphs processors run
#                   for the tenant (no remote write), to measure what they cost ingest
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
DURATION=${DURATION:-60s}
S3_DURATION=${S3_DURATION:-35s}
S3_RATE=${S3_RATE:-30000}
S3_WARMUP=${S3_WARMUP:-10s}
S3_QUERY=${S3_QUERY:-20s}
S3_SERVER=${S3_SERVER:-auto}
RATE=${RATE:-max}
BLOCK_BYTES=${BLOCK_BYTES:-1MiB}
SEARCH_REPEATS=${SEARCH_REPEATS:-5}
CONNECTIONS=${CONNECTIONS:-16}
POOL=${POOL:-256}
RSS_RATE=${RSS_RATE:-28000}
PARTS=${PARTS:-local rss s3}
GENERATOR=${GENERATOR:-off}
PROCESSORS=""
[[ "$GENERATOR" == on ]] && PROCESSORS=", metrics_generator: {processors: [span-metrics, service-graphs]}"
part() { [[ " $PARTS " == *" $1 "* ]]; }
cargo build --release -q -p legato -p legato-bench
LEGATO=${LEGATO:-target/release/legato}  # LEGATO=path compares another build
BENCH=target/release/legato-bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT


# start_legato NAME STORAGE_YAML BLOCK_BYTES [INGESTER_YAML] -> sets PID HTTP OTLP
start_legato() {
  local name=$1 storage=$2 block_bytes=$3 ingester=${4:-}
  HTTP=$(port); local grpc; grpc=$(port); OTLP=$(port); local otlp_http; otlp_http=$(port)
  mkdir -p "$WORK/$name"
  cat > "$WORK/$name/legato.yaml" <<YAML
server: {http_listen_address: 127.0.0.1, http_listen_port: $HTTP, grpc_listen_address: 127.0.0.1, grpc_listen_port: $grpc, log_level: warn}
distributor: {receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$OTLP"}, http: {endpoint: "127.0.0.1:$otlp_http"}}}}}
ingester: {max_block_bytes: $block_bytes$ingester}
storage:
  trace:
    wal: {path: $WORK/$name/wal}
$storage
overrides: {defaults: {ingestion: {rate_limit_bytes: 0}$PROCESSORS}}
# The compactor is held off: these figures are the write and read paths; the S3 run needs its
# 100+ small blocks to stay uncompacted.
compactor: {compaction: {compaction_cycle: 24h}}
YAML
  "$LEGATO" -config.file="$WORK/$name/legato.yaml" > "$WORK/$name/legato.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$HTTP/ready" > /dev/null && return; sleep 0.1; done
  echo "legato did not start"; cat "$WORK/$name/legato.log"; exit 1
}


# --- local disk -------------------------------------------------------------------------
if part local; then
start_legato local "    backend: local
    local: {path: $WORK/local/blocks}" 100MiB
cpu0=$(cpu_seconds "$PID")
ingest=$("$BENCH" ingest --otlp-grpc "127.0.0.1:$OTLP" --duration "$DURATION" --rate "$RATE" --connections "$CONNECTIONS" --pool "$POOL" --trace-ids "$WORK/ids.txt" --json 2>/dev/null)
spans=$(echo "$ingest" | json_field '["spans"]')
sps=$(echo "$ingest" | json_field '["spans_per_sec"]')
errors=$(echo "$ingest" | json_field '["errors"]')
throttled=$(echo "$ingest" | json_field '["throttled"]')
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
cpu_per_m=$(python3 -c "print(round(($cpu1 - $cpu0) / ($spans / 1e6), 1))")
fi

# --- memory at a steady ~10 MB/s ---------------------------------------------------------
if part rss; then
start_legato rss "    backend: local
    local: {path: $WORK/rss/blocks}" 100MiB
rss_ingest=$("$BENCH" ingest --otlp-grpc "127.0.0.1:$OTLP" --duration 30s --rate "$RSS_RATE" --connections 4 --trace-ids "$WORK/ids-rss.txt" --json 2>/dev/null)
rss_mbps=$(echo "$rss_ingest" | json_field '["bytes_per_sec"]')
rss_steady=$(peak_rss_mib "$PID")
kill -TERM "$PID"; wait "$PID" || true
fi

# --- S3 on loopback, small blocks so the bucket holds 100+ ------------------------------
# bench/s3-server: s3s-fs (a Rust S3 server over a directory, from crates.io) with TCP_NODELAY.
# It takes uploads far faster than moto, which made only ~30 blocks in a run, and unlike
# s3s-fs's own binary it does not stall ~44 ms per ranged GET on Nagle + delayed ACK. A
# benchmark tool only: CI and the tests use moto.
S3SRV=target/tools/bin/bench-s3-server
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
# Signed requests (bench-s3-server checks signatures; moto ignores them). Query parameters
# must be given sorted: curl signs them as written.
s3curl() { curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user x:x -H "x-amz-content-sha256: $EMPTY_SHA" "$@"; }
start_s3() {
  S3PORT=$(port)
  if [ "$S3_SERVER" != moto ] && [ ! -x "$S3SRV" ]; then
    echo "bench: building bench/s3-server into target/tools (S3 server for the S3 run)" >&2
    cargo install -q --locked --path bench/s3-server --root target/tools --target-dir target/tools/build >&2 \
      || echo "bench: could not build bench/s3-server; the S3 run uses moto" >&2
  fi
  if [ "$S3_SERVER" != moto ] && [ -x "$S3SRV" ]; then
    S3_NAME=s3s-fs
    mkdir -p "$WORK/s3s"
    "$S3SRV" --host 127.0.0.1 --port "$S3PORT" --access-key x --secret-key x "$WORK/s3s" > "$WORK/s3.log" 2>&1 &
  elif [ "$S3_SERVER" != s3s ]; then
    S3_NAME=moto
    moto_server -H 127.0.0.1 -p "$S3PORT" > "$WORK/s3.log" 2>&1 &
  else
    echo "S3_SERVER=s3s but $S3SRV could not be built"; exit 1
  fi
  S3PID=$!
  for _ in $(seq 100); do s3curl -X PUT "127.0.0.1:$S3PORT/bench" > /dev/null && return; sleep 0.2; done
  echo "$S3_NAME did not start"; cat "$WORK/s3.log"; exit 1
}
# Complete blocks in the bucket: block directories of the tenant (one listing page).
count_s3_blocks() {
  s3curl "127.0.0.1:$S3PORT/bench?delimiter=%2F&list-type=2&max-keys=1000&prefix=single-tenant%2F" \
    | python3 -c 'import sys,re; x=sys.stdin.read(); n=len(re.findall("<CommonPrefixes>", x)); print(f"{n}+" if "<IsTruncated>true" in x else n)'
}
scrape() { curl -sf "127.0.0.1:$HTTP/metrics" > "$1"; }
if part s3; then
start_s3
S3_STORAGE="    backend: s3
    s3: {bucket: bench, endpoint: 127.0.0.1:$S3PORT, region: us-east-1, access_key: x, secret_key: x, insecure: true, forcepathstyle: true}"
start_legato s3 "$S3_STORAGE" "$BLOCK_BYTES" ", flush_check_period: 250ms, trace_idle_period: 1s"
s3_ingest=$("$BENCH" ingest --otlp-grpc "127.0.0.1:$OTLP" --duration "$S3_DURATION" --rate "$S3_RATE" --connections 4 --pool "$POOL" \
  --trace-ids "$WORK/ids-s3.txt" --json 2>/dev/null)
s3_spans=$(echo "$s3_ingest" | json_field '["spans"]')
curl -sf -X POST "127.0.0.1:$HTTP/flush" > /dev/null
s3_blocks=$(count_s3_blocks)
s3_stored=""
if [ "$S3_NAME" = s3s-fs ]; then # objects are plain files: sizes straight from the meta.json files
  s3_stored=$("$BENCH" blocks --path "$WORK/s3s/bench" --json | tail -1 | python3 -c 'import json,sys
d = json.load(sys.stdin); per_span, per_trace = d["bytes_per_span"], d["bloom_bytes"] / max(d["traces"], 1)
print(f", {per_span:.1f} B/span stored, bloom {per_trace:.2f} B/trace")')
fi
# Every trace is in the bucket now and none in the ingester, so lookups read S3 only. (Not
# restarted: the compactor's first cycle, at start-up, would merge the small blocks.)
"$BENCH" query --http "http://127.0.0.1:$HTTP" --trace-ids "$WORK/ids-s3.txt" --duration "$S3_WARMUP" --concurrency 4 --json > /dev/null
scrape "$WORK/s3-before.prom"
s3_cpu0=$(cpu_seconds "$PID")
s3=$("$BENCH" query --http "http://127.0.0.1:$HTTP" --trace-ids "$WORK/ids-s3.txt" --duration "$S3_QUERY" --concurrency 4 --json)
s3_cpu1=$(cpu_seconds "$PID")
scrape "$WORK/s3-after.prom"
s3_p50=$(echo "$s3" | json_field '["p50_ms"]'); s3_p99=$(echo "$s3" | json_field '["p99_ms"]'); s3_wrong=$(echo "$s3" | json_field '["wrong"]')
# Object-store requests of the measured phase, per lookup and per candidate block (a block
# whose bloom filter may hold the trace).
s3_requests=$(python3 - "$WORK/s3-before.prom" "$WORK/s3-after.prom" "$(python3 -c "print($s3_cpu1 - $s3_cpu0)")" <<'PY'
import re, sys
def read(path):
    out = {}
    for line in open(path):
        m = re.match(r'(legato_\w+?)(?:\{(.*)\})? ([0-9.eE+-]+)$', line.strip())
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
d = lambda name, labels="": b.get((name, labels), 0.0) - a.get((name, labels), 0.0)
lookups = d("legato_querier_trace_lookup_seconds_count")
candidates = d("legato_storage_candidate_blocks_total")
ops = {k[1].split('"')[1]: d(*k) for k in b if k[0] == "legato_storage_object_store_requests_total"}
total = sum(ops.values())
by_op = ", ".join(f"{op} {n:.0f}" for op, n in sorted(ops.items()) if n)
cpu_ms = float(sys.argv[3]) * 1000 / max(lookups, 1)
print(f"{total / max(lookups, 1):.2f} per lookup, {total / max(candidates, 1):.2f} per candidate block "
      f"({candidates / max(lookups, 1):.2f} candidate blocks per lookup; {lookups:.0f} lookups: {by_op or 'none'}); "
      f"Legato CPU {cpu_ms:.1f} ms per lookup")
PY
)
kill -TERM "$PID"; wait "$PID" || true
kill "$S3PID"; wait "$S3PID" 2>/dev/null || true
fi

printf '\n%-52s %s\n' "figure" "value"
if part local; then
  printf '%-52s %s\n' "ingest, OTLP/gRPC, WAL fsync on (spans/s)" "$(printf '%.0f' "$sps") ($errors errors, $throttled throttled retries)"
  printf '%-52s %s\n' "CPU seconds per million spans (ingest + flush)" "$cpu_per_m"
  printf '%-52s %s\n' "peak RSS at max rate (MiB)" "$rss"
fi
if part rss; then
  printf '%-52s %s\n' "peak RSS at $(printf '%.1f' "$(python3 -c "print($rss_mbps/1e6)")") MB/s (MiB)" "$rss_steady"
fi
if part local; then
  printf '%-52s %s\n' "stored bytes per span" "$(printf '%.1f' "$bps")"
  printf '%-52s %s\n' "trace-by-id, local disk: p50 / p99 (ms), wrong" "$(printf '%.1f / %.1f' "$local_p50" "$local_p99"), $local_wrong"
fi
if part s3; then
  printf '%-52s %s\n' "trace-by-id, S3 ($S3_NAME, $s3_blocks blocks): p50 / p99 (ms), wrong" "$(printf '%.1f / %.1f' "$s3_p50" "$s3_p99"), $s3_wrong"
  printf '%-52s %s\n' "  object-store requests (warm caches)" "$s3_requests"
  printf '%-52s %s\n' "  S3 run" "$s3_spans spans in $S3_DURATION, max_block_bytes $BLOCK_BYTES$s3_stored"
fi
if part local; then
  printf '\nsearches over %s stored spans (local disk):\n' "$spans"
  cat "$WORK/searches.txt"
fi
