#!/usr/bin/env bash
# Starts Legato in microservices mode on this machine: an S3 server (moto_server), 1
# distributor, 3 ingesters (replication factor 3), 2 queriers, 1 query frontend, 1
# compactor and 1 metrics generator, each its own process with its own config, gossiping on loopback.
#   deploy/demo-cluster.sh up     start (builds the binary if needed), print the endpoints
#   deploy/demo-cluster.sh down   stop everything and delete the demo's data
#   deploy/demo-cluster.sh status show which processes run
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${LEGATO_DEMO_DIR:-$PWD/.demo-cluster}
BIN=${LEGATO_BIN:-$PWD/target/release/legato}
S3_PORT=${LEGATO_DEMO_S3_PORT:-9900}
BASE=${LEGATO_DEMO_BASE_PORT:-13200}   # node i: HTTP BASE+i, gRPC BASE+100+i, gossip BASE+200+i

nodes=(distributor:distributor ingester-0:ingester ingester-1:ingester ingester-2:ingester
       querier-0:querier querier-1:querier query-frontend:query-frontend compactor:compactor
       metrics-generator:metrics-generator)

config() { # name target index
  local name=$1 target=$2 i=$3
  cat <<YAML
target: $target
server:
  http_listen_address: 127.0.0.1
  http_listen_port: $((BASE + i))
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: $((BASE + 100 + i))
distributor:
  receivers:
    otlp:
      protocols:
        grpc:
          endpoint: 127.0.0.1:4317
        http:
          endpoint: 127.0.0.1:4318
memberlist:
  node_name: $name
  bind_addr: [127.0.0.1]
  bind_port: $((BASE + 200 + i))
  join_members: ["127.0.0.1:$((BASE + 201))"]
ingester:
  trace_idle_period: 5s
  max_block_duration: 1m
storage:
  trace:
    blocklist_poll: 10s
    wal:
      path: $DEMO/$name/wal
    backend: s3
    s3:
      bucket: traces
      endpoint: 127.0.0.1:$S3_PORT
      region: us-east-1
      access_key: demo
      secret_key: demo
      insecure: true
      forcepathstyle: true
compactor:
  compaction:
    compaction_cycle: 30s
    compaction_window: 5m
YAML
}

wait_http() { # url what
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
    sleep 0.2
  done
  echo "demo-cluster: $2 did not become ready; see $DEMO/*.log" >&2
  return 1
}

up() {
  command -v moto_server >/dev/null || { echo "demo-cluster: moto_server missing; run make setup" >&2; exit 1; }
  [ -x "$BIN" ] || cargo build --release -p legato --bin legato
  mkdir -p "$DEMO"
  moto_server -H 127.0.0.1 -p "$S3_PORT" >"$DEMO/s3.log" 2>&1 &
  echo $! >"$DEMO/s3.pid"
  for _ in $(seq 1 100); do curl -s -X PUT "http://127.0.0.1:$S3_PORT/traces" >/dev/null && break; sleep 0.2; done
  local i=0
  for entry in "${nodes[@]}"; do
    local name=${entry%%:*} target=${entry##*:}
    mkdir -p "$DEMO/$name"
    config "$name" "$target" "$i" >"$DEMO/$name/legato.yaml"
    "$BIN" -config.file="$DEMO/$name/legato.yaml" >"$DEMO/$name.log" 2>&1 &
    echo $! >"$DEMO/$name.pid"
    wait_http "http://127.0.0.1:$((BASE + i))/ready" "$name"
    i=$((i + 1))
  done
  local fe=$((BASE + 6))
  cat <<TXT
Legato demo cluster is up (data and logs in $DEMO).
  OTLP (distributor):   grpc 127.0.0.1:4317   http http://127.0.0.1:4318/v1/traces
  Query API (frontend): http://127.0.0.1:$fe   (Grafana Tempo data source URL; gRPC streaming 127.0.0.1:$((BASE + 106)))
  Ring:                 http://127.0.0.1:$fe/ring
  S3 (moto):            http://127.0.0.1:$S3_PORT/traces
Try:  cargo run --release -p legato-bench -- ingest --otlp-grpc 127.0.0.1:4317 --duration 10s --rate 2000 --trace-ids /tmp/ids.txt
      curl -s "http://127.0.0.1:$fe/api/search?q=%7B%7D&limit=5"
Stop: make demo-cluster-down
TXT
}

down() {
  for f in "$DEMO"/*.pid; do
    [ -e "$f" ] || continue
    kill -TERM "$(cat "$f")" 2>/dev/null || true
  done
  sleep 1
  for f in "$DEMO"/*.pid; do
    [ -e "$f" ] || continue
    kill -KILL "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$DEMO"
  echo "demo-cluster: stopped"
}

status() {
  for f in "$DEMO"/*.pid; do
    [ -e "$f" ] || { echo "demo-cluster: not running"; return; }
    local name; name=$(basename "$f" .pid)
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$name: running"; else echo "$name: stopped"; fi
  done
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
