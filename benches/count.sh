#!/usr/bin/env bash
# Instructions the engine executes per 1 MiB Bundle, natively and inside Node's V8, counted
# by callgrind: the way to judge an engine change on a shared, noisy machine, where timings
# move by tens of percent from one run to the next.
#
#   benches/count.sh NATIVE_RUNNER RUNNER_WASM [CASE...]     (make bench-count)
#
# Each figure is (run with 1+N documents) - (run with 1 document), divided by N (2 natively,
# 5 in V8, 20 in V8 for drop-most), so the
# program's start-up and the bundle's generation cancel out. Native counts are exact and
# repeatable. In V8 the module is compiled by TurboFan up front (--no-liftoff) and on one
# thread, so the count is that of optimised code; it still moves by a few percent between
# runs (JIT and garbage collection), so compare V8 counts differing by more than ~5% only.
# Counts are not time (no cache misses or mispredicted branches): confirm with `make bench`.
set -euo pipefail

native=$1
wasm=$2
shift 2
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
  cases=(lexer finalite/realistic finalite/denylist finalite/drop-most scanner/realistic)
fi
here=$(cd "$(dirname "$0")" && pwd)

collected() {
  valgrind --tool=callgrind --smc-check=all --callgrind-out-file=/dev/null "$@" 2>&1 \
    | sed -n 's/.*Collected : //p'
}

per_doc() {
  local n=$1
  shift
  local one many
  one=$(collected "$@" --iters 1)
  many=$(collected "$@" --iters $((n + 1)))
  echo $(((many - one) / n))
}

echo "| case (1 MiB) | native instructions | V8 instructions | V8 / native |"
echo "|---|---:|---:|---:|"
for case in "${cases[@]}"; do
  native_count=$(per_doc 2 "$native" --only "$case" 1MiB)
  # A cheap case's few million instructions per document carry V8's compilation and
  # collection noise unless it is spread over more documents.
  v8_docs=5
  [ "$case" = finalite/drop-most ] && v8_docs=20
  v8_count=$(per_doc $v8_docs node --no-liftoff --single-threaded --no-warnings \
    "$here/wasm-runner/run.mjs" "$wasm" --only "$case" 1MiB)
  awk -v c="$case" -v n="$native_count" -v v="$v8_count" \
    'BEGIN { printf "| %s | %.1fM | %.1fM | %.2f |\n", c, n / 1e6, v / 1e6, v / n }'
done
