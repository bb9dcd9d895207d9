#!/usr/bin/env bash
# What sampling saves (`make bench-sampling`): the same OpenTelemetry-demo-like traffic
# (legato-bench ingest: ~2% error traces, ~1% slow ones) sent to Legato single-binary three
# times, always-on, probabilistic 10%, and a tail policy keeping errors and slow traces; prints
# the stored bytes per *ingested* span and the share of spans stored. Figures, not pass/fail.
#
#   DURATION=20s   ingest time per run     RATE=20000  spans/s
#   DECISION_WAIT=5s  tail policy's decision_wait; SLOW_MS=150  its latency threshold
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
source bench/common.sh
DURATION=${DURATION:-20s}
RATE=${RATE:-20000}
DECISION_WAIT=${DECISION_WAIT:-5s}
SLOW_MS=${SLOW_MS:-150}
cargo build --release -q -p legato -p legato-bench
LEGATO=${LEGATO:-target/release/legato}
BENCH=target/release/legato-bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT


# run LABEL SAMPLING_YAML: ingest, let decisions and flushes happen, measure the blocks.
RUN=0
run() {
  local label=$1 sampling=$2
  RUN=$((RUN + 1))
  local name="run$RUN"
  local http grpc otlp otlp_http
  http=$(port); grpc=$(port); otlp=$(port); otlp_http=$(port)
  mkdir -p "$WORK/$name"
  cat > "$WORK/$name/legato.yaml" <<YAML
server: {http_listen_address: 127.0.0.1, http_listen_port: $http, grpc_listen_address: 127.0.0.1, grpc_listen_port: $grpc, log_level: warn}
distributor: {receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$otlp"}, http: {endpoint: "127.0.0.1:$otlp_http"}}}}}
storage:
  trace:
    wal: {path: $WORK/$name/wal}
    backend: local
    local: {path: $WORK/$name/blocks}
overrides:
  defaults:
    ingestion: {rate_limit_bytes: 0}
$sampling
YAML
  "$LEGATO" -config.file="$WORK/$name/legato.yaml" > "$WORK/$name/legato.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$http/ready" > /dev/null && break; sleep 0.1; done
  local ingest spans
  ingest=$("$BENCH" ingest --otlp-grpc "127.0.0.1:$otlp" --duration "$DURATION" --rate "$RATE" --connections 4 \
    --pool 256 --trace-ids "$WORK/$name/ids.txt" --json 2>/dev/null)
  spans=$(echo "$ingest" | json_field '["spans"]')
  # Tail decisions come decision_wait after a trace's first span; then everything is flushed.
  sleep "$(python3 -c "import re; print(int(re.match(r'(\d+)', '$DECISION_WAIT').group(1)) + 2)")"
  curl -sf -X POST "127.0.0.1:$http/flush" > /dev/null
  kill -TERM "$pid"; wait "$pid" || true
  local blocks
  blocks=$("$BENCH" blocks --path "$WORK/$name/blocks" --json | tail -1)
  python3 - "$label" "$spans" "$blocks" <<'PY'
import json, sys
name, sent, blocks = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
stored = blocks["data_bytes"] + blocks["bloom_bytes"]
print(f"{name:<34} {sent:>10,} {blocks['spans']:>10,} {100 * blocks['spans'] / sent:>7.2f}% "
      f"{stored / sent:>9.2f} {blocks['bytes_per_span']:>9.2f}")
PY
}

printf '%-34s %10s %10s %8s %9s %9s\n' "strategy" "ingested" "stored" "kept" "B/ingest" "B/stored"
run "always-on" ""
run "probabilistic 10%" "    sampling: {probabilistic: {sampling_percentage: 10}}"
run "tail: errors + slow (>${SLOW_MS}ms)" "    sampling:
      tail_sampling:
        decision_wait: $DECISION_WAIT
        policies:
          - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
          - {name: slow, type: latency, latency: {threshold_ms: $SLOW_MS}}"
