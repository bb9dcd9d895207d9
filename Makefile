# Legato: common tasks. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: run build test ci setup lint fmt check-fmt clippy nextest lezer deploy-check release bench bench-realistic bench-compare bench-search bench-sampling soak clean-data demo-cluster demo-cluster-down fuzz-blocks fuzz

## Start Legato single-binary on local disk (./data), Tempo's ports.
run:
	$(CARGO) run --release -p legato --bin legato

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release -p legato --bin legato

setup:
	bash ci/setup.sh

check-fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: check-fmt clippy

## The whole suite: formatting, lints, unit tests and end-to-end tests (real binary, real S3
## server). The end-to-end tests run the debug `legato` binary, so it is built first.
nextest: build
	$(CARGO) nextest run --workspace --no-fail-fast

## Every accepted query of the TraceQL conformance corpus must also parse with Grafana's
## editor grammar (@grafana/lezer-traceql), so the editor and the backend agree.
lezer:
	node integration-tests/traceql/check.mjs

## docker-compose.yml, deploy/ and the Helm chart: Compose spec schema, helm lint and template
## (Helm's engine), Kubernetes schemas, and every rendered Legato config through the real
## binary's -config.verify (see deploy/check.py).
deploy-check: build
	bash deploy/check.sh

## Not incremental: a clean run gains nothing from incremental caches, which take gigabytes of
## disk (CI once ran out of space). Set CARGO_INCREMENTAL=1 to keep them.
test: export CARGO_INCREMENTAL ?= 0
test: setup lint lezer deploy-check nextest

ci: test

## The standard benchmark scenario (local disk, then S3 on loopback); prints one table.
bench: setup
	bash bench/run.sh

## The benchmark as users run Legato: demo-like data, compactor on, 5 s and 30 s blocks.
bench-realistic: setup
	bash bench/realistic.sh

## The same scenario against Legato and a Tempo-compatible PEER (PEER=http://host:3200); one table.
bench-compare: setup
	bash bench/compare.sh

## Search and TraceQL metrics over >= 20M spans spread over an hour, 4 clients, live load.
bench-search: setup
	bash bench/search-scale.sh

## Soak under faults: WAL disk filled and freed, kill -9 + restart, every acknowledged trace read back.
soak: setup
	bash bench/soak.sh

## What sampling saves: stored bytes per ingested span, always-on / 10% / tail errors+slow.
bench-sampling: setup
	bash bench/sampling.sh

## Microservices mode on this machine: S3 server, distributor, 3 ingesters, 2 queriers,
## query frontend, compactor; prints the endpoints.
demo-cluster: setup
	bash deploy/demo-cluster.sh up

demo-cluster-down:
	bash deploy/demo-cluster.sh down

## Reads many damaged copies of a block (bit flips, truncation, garbage): errors, never a panic.
fuzz-blocks:
	LEGATO_FUZZ_CASES=$${CASES:-20000} $(CARGO) nextest run -p legato-querier -E 'test(mutated)' --no-capture

## cargo-fuzz targets (fuzz/, a workspace of its own; docs/fuzzing.md): otlp_wire, otlp_json,
## traceql_parse, block_reader. `make fuzz TARGET=otlp_wire SECS=1800`; TARGET=all (the default)
## runs each in turn. Stable Rust: no sanitizer (-s none). An input that takes 60 s is a
## finding too. Not part of `make test`.
FUZZ_TARGETS := otlp_wire otlp_json traceql_parse block_reader
TARGET ?= all
SECS ?= 1800
FUZZ_TARGET_DIR ?= fuzz/target
fuzz:
	@command -v cargo-fuzz >/dev/null || nice -n 19 $(CARGO) install cargo-fuzz
	@for t in $(if $(filter all,$(TARGET)),$(FUZZ_TARGETS),$(TARGET)); do \
		bash fuzz/seed.sh $$t || exit 1; \
		dict=; [ -f fuzz/dicts/$$t.dict ] && dict=-dict=fuzz/dicts/$$t.dict; \
		nice -n 19 $(CARGO) fuzz run -s none --target-dir $(FUZZ_TARGET_DIR) $$t fuzz/corpus/$$t -- \
			-max_total_time=$(SECS) -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 $$dict || exit 1; \
	done

fmt:
	$(CARGO) fmt --all

clean-data:
	rm -rf ./data
