#!/usr/bin/env bash
# `make deploy-check`: validates docker-compose.yml, its configs in deploy/ and the Helm chart
# in helm/legato against the Compose spec, Helm's engine, the Kubernetes schemas and the real
# `legato` binary (-config.verify). What it checks is listed in deploy/check.py.
# Needs the Python packages ci/setup.sh installs and a built debug binary (make build).
set -euo pipefail
cd "$(dirname "$0")/.."

legato=${LEGATO_BIN:-target/debug/legato}
if [ ! -x "$legato" ]; then
  cargo build -p legato --bin legato
fi
if ! python3 -c 'import helm_python, kubernetes_validate, check_jsonschema, yaml' 2>/dev/null; then
  echo "deploy/check.sh: missing Python packages; run 'make setup' (ci/setup.sh)" >&2
  exit 1
fi
exec python3 deploy/check.py --legato "$legato" "$@"
