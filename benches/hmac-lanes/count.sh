#!/usr/bin/env bash
# Instructions per value, counted by callgrind inside Node's V8 (TurboFan only, one thread,
# as benches/count.sh counts the engine): hmac + sha2 one value at a time against four
# values at a time in lanes, on each set of values. Counts move by a few percent in V8 and
# are not time, but unlike timings they do not move with the machine's load.
#
#   benches/hmac-lanes/count.sh HMAC_LANES_WASM [VALUES]
set -euo pipefail

wasm=$1
values=${2:-4096}
here=$(cd "$(dirname "$0")" && pwd)

collected() {
  valgrind --tool=callgrind --smc-check=all --callgrind-out-file=/dev/null \
    node --no-liftoff --single-threaded --no-warnings "$here/run.mjs" "$wasm" \
    --values "$values" "$@" 2>&1 | sed -n 's/.*Collected : //p'
}

# (six passes over the set) - (one pass), per value: start-up and the set's making cancel.
per_value() {
  local one many
  one=$(collected "$@" --passes 1)
  many=$(collected "$@" --passes 6)
  echo $(((many - one) / (5 * values)))
}

echo "| set | hmac + sha2, V8 instructions per value | 4 lanes | lanes ÷ scalar |"
echo "|---|---:|---:|---:|"
for set in 0 1 2 3; do
  name=$(node --no-warnings "$here/run.mjs" "$wasm" --values 4 --only scalar --set $set --passes 1 \
    | sed 's/^scalar, //; s/: [0-9]* ns\/value$//')
  scalar=$(per_value --only scalar --set $set)
  lanes=$(per_value --only lanes --set $set)
  awk -v n="$name" -v s="$scalar" -v l="$lanes" \
    'BEGIN { printf "| %s | %d | %d | %.3f |\n", n, s, l, l / s }'
done
