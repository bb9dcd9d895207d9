#!/usr/bin/env bash
# Fills fuzz/corpus/<target> with the seed inputs of one fuzz target (copied over, never moved):
# the committed seeds under fuzz/seeds/<target>, the TraceQL conformance corpus (one file per
# query) and the legato-storage fixture block. Usage: fuzz/seed.sh <target>
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
target="$1"
out="$here/corpus/$target"
mkdir -p "$out"
if [ -d "$here/seeds/$target" ]; then
  find "$here/seeds/$target" -type f ! -name '*.py' -exec cp {} "$out/" \;
fi
case "$target" in
  traceql_parse)
    for kind in accepted rejected; do
      n=0
      grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$root/crates/legato-traceql/tests/corpus/$kind.txt" |
        while IFS= read -r query; do
          n=$((n + 1))
          printf '%s' "$query" > "$out/$kind-$n"
        done
    done
    ;;
  block_reader)
    block="$root/crates/legato-storage/tests/fixtures/legato-v1/single-tenant/4f1c8a52-6d3e-4b7a-9c0f-2e8d5a1b3c7e"
    cp "$block/data.parquet" "$out/fixture-data.parquet"
    { printf 'BLOOM'; cat "$block/bloom"; } > "$out/fixture-bloom"
    ;;
esac
echo "$target: $(find "$out" -type f | wc -l) inputs in $out"
