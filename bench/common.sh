# Helpers shared by the benchmark scripts (sourced, not run).
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# json_field '["key"]' reads a field of the JSON object on the last line of stdin.
json_field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d$1)"; }
cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# wait_ready HOST:PORT: until Legato answers /ready (10 s at most).
wait_ready() { for _ in $(seq 100); do curl -sf "$1/ready" > /dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
