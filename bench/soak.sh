#!/usr/bin/env bash
# Soak under faults (`make soak`): Legato single binary (release build) with its WAL on a
# small tmpfs, steady OTLP load from clients that back off on refusals (legato-bench ingest),
# the compactor running; meanwhile the WAL disk is filled and freed again every FILL_EVERY
# (ENOSPC mid-write), and Legato is killed with SIGKILL and restarted every KILL_EVERY. At
# the end every acknowledged trace is read back and must return all its spans. Prints
# figures; exits non-zero if an acknowledged span is missing.
#
#   SOAK_DURATION=10m  load time      RATE=5000 spans/s     WAL_DISK=64m  tmpfs size
#   FILL_EVERY=20s     fill/free cycle (the disk stays full for a third of it)
#   KILL_EVERY=45s     kill -9 + restart cycle
# Needs root (mount -t tmpfs); without it the disk-full faults are skipped, the kills stay.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
SOAK_DURATION=${SOAK_DURATION:-10m}
RATE=${RATE:-5000}
WAL_DISK=${WAL_DISK:-64m}
FILL_EVERY=${FILL_EVERY:-20}
KILL_EVERY=${KILL_EVERY:-45}
# Extra ingester keys (flow style), e.g. INGESTER="max_resident_bytes: 2MiB" to soak the
# spill files (they live on the WAL disk, so they meet its disk-full too).
INGESTER=${INGESTER:+, $INGESTER}
cargo build --release -q -p legato -p legato-bench
LEGATO=${LEGATO:-target/release/legato}
BENCH=target/release/legato-bench
WORK=$(mktemp -d)
WAL=$WORK/wal
mkdir -p "$WAL"
MOUNTED=no
if mount -t tmpfs -o size="$WAL_DISK" tmpfs "$WAL" 2>/dev/null; then MOUNTED=yes; fi
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  [[ -n "${PID:-}" ]] && kill -9 "$PID" 2>/dev/null || true
  sleep 0.5
  [[ $MOUNTED == yes ]] && umount "$WAL" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

HTTP=$(port); GRPC=$(port); OTLP=$(port); OTLP_HTTP=$(port)
cat > "$WORK/legato.yaml" <<YAML
server: {http_listen_address: 127.0.0.1, http_listen_port: $HTTP, grpc_listen_address: 127.0.0.1, grpc_listen_port: $GRPC, log_level: info}
distributor: {receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$OTLP"}, http: {endpoint: "127.0.0.1:$OTLP_HTTP"}}}}}
ingester: {trace_idle_period: 2s, max_block_duration: 10s, max_block_bytes: 8MiB, flush_check_period: 500ms$INGESTER}
storage:
  trace:
    wal: {path: $WAL}
    backend: local
    local: {path: $WORK/blocks}
overrides: {defaults: {ingestion: {rate_limit_bytes: 0}}}
compactor: {compaction: {compaction_cycle: 5s, compaction_window: 1m}}
YAML
start() {
  "$LEGATO" -config.file="$WORK/legato.yaml" >> "$WORK/legato.log" 2>&1 &
  PID=$!
  for _ in $(seq 300); do curl -sf "127.0.0.1:$HTTP/ready" > /dev/null && return; sleep 0.1; done
  echo "legato did not become ready"; tail -20 "$WORK/legato.log"; exit 1
}
start
"$BENCH" ingest --otlp-grpc "127.0.0.1:$OTLP" --duration "$SOAK_DURATION" --rate "$RATE" --connections 4 \
  --trace-ids "$WORK/ids.txt" --json > "$WORK/ingest.out" 2>&1 &
LOAD=$!

fills=0; kills=0; t=0
while kill -0 "$LOAD" 2>/dev/null; do
  sleep 1; t=$((t + 1))
  if [[ $MOUNTED == yes ]] && (( t % FILL_EVERY == 0 )); then
    # Fill the WAL disk, keep it full for a third of the cycle, free it.
    dd if=/dev/zero of="$WAL/filler" bs=1M count=100000 2>/dev/null || true
    fills=$((fills + 1))
    ( sleep $((FILL_EVERY / 3)); rm -f "$WAL/filler" ) &
  fi
  if (( t % KILL_EVERY == 0 )); then
    kill -9 "$PID"; wait "$PID" 2>/dev/null || true
    kills=$((kills + 1))
    rm -f "$WAL/filler"
    start
  fi
done
rm -f "$WAL/filler"
ingest=$(cat "$WORK/ingest.out")
spans=$(echo "$ingest" | json_field '["spans"]')
throttled=$(echo "$ingest" | json_field '["throttled"]')
errors=$(echo "$ingest" | json_field '["errors"]')
traces=$(wc -l < "$WORK/ids.txt")
# Read back every acknowledged trace once.
check=$("$BENCH" query --http "http://127.0.0.1:$HTTP" --trace-ids "$WORK/ids.txt" --all --concurrency 4 --json)
wrong=$(echo "$check" | json_field '["wrong"]')
missing=$(echo "$check" | json_field '["errors"]')
looked=$(echo "$check" | json_field '["lookups"]')
metrics=$(curl -s "127.0.0.1:$HTTP/metrics")
wal_errors=$(echo "$metrics" | awk '/^legato_ingester_wal_errors_total/ {s += $2} END {print s + 0}')
spilled=$(echo "$metrics" | awk '/^legato_ingester_spilled_bytes_total/ {s += $2} END {printf "%.0f", s / 1048576}')
spill_errors=$(echo "$metrics" | awk '/^legato_ingester_spill_failures_total/ {s += $2} END {print s + 0}')
echo "soak: $SOAK_DURATION at $RATE spans/s, WAL on tmpfs: $MOUNTED ($WAL_DISK)"
echo "  disk filled $fills times, kill -9 + restart $kills times"
echo "  acknowledged: $spans spans in $traces traces; refused and retried: $throttled; errors: $errors"
echo "  WAL write/fsync errors since the last restart: $wal_errors"
echo "  spilled since the last restart: $spilled MiB, $spill_errors spill failures"
echo "  read back: $looked traces whole, $wrong with missing or extra spans, $missing not found"
[[ "$wrong" == 0 && "$missing" == 0 ]]
