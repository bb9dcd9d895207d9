# Helpers shared by the benchmark scripts (sourced, not run).
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# json_field '["key"]' reads a field of the JSON object on the last line of stdin.
json_field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d$1)"; }
cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# wait_ready HOST:PORT: until Legato answers /ready (10 s at most).
wait_ready() { for _ in $(seq 100); do curl -sf "$1/ready" > /dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
# realistic_config DIR HTTP GRPC OTLP OTLP_HTTP BLOCK_DURATION [", more: ingester, keys: ..."]:
# writes DIR/legato.yaml, the single binary as users run it (local disk under DIR, WAL fsync on,
# compactor every 10 s, blocks cut after BLOCK_DURATION, no ingestion rate limit).
realistic_config() {
  cat > "$1/legato.yaml" <<YAML
server: {http_listen_address: 127.0.0.1, http_listen_port: $2, grpc_listen_address: 127.0.0.1, grpc_listen_port: $3, log_level: warn}
distributor: {receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:$4"}, http: {endpoint: "127.0.0.1:$5"}}}}}
ingester: {max_block_duration: $6, trace_idle_period: 5s${7:-}}
storage:
  trace:
    wal: {path: $1/wal}
    backend: local
    local: {path: $1/blocks}
overrides: {defaults: {ingestion: {rate_limit_bytes: 0}}}
compactor: {compaction: {compaction_cycle: 10s}}
YAML
}
