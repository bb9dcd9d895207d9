#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: a real S3-compatible server
# (moto_server from PyPI moto[server]) and cargo-nextest. Idempotent.
set -euo pipefail

if ! command -v moto_server >/dev/null 2>&1; then
  echo "ci/setup.sh: installing moto[server] (S3-compatible server for tests)"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
fi
if ! command -v moto_server >/dev/null 2>&1; then
  # pip may install scripts into a user or pyenv bin directory not yet on PATH.
  bin_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  echo "ci/setup.sh: moto_server is in $bin_dir; add it to PATH" >&2
  exit 1
fi
# Grafana's TraceQL grammar, to check the conformance corpus against the editor's parser.
if [ ! -d integration-tests/traceql/node_modules/@grafana/lezer-traceql ]; then
  echo "ci/setup.sh: installing @grafana/lezer-traceql (npm ci)"
  npm ci --prefix integration-tests/traceql --no-audit --no-fund --loglevel=error
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "ci/setup.sh: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
