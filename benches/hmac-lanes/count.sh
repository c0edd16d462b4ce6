#!/usr/bin/env bash
# Instructions per value, counted by callgrind inside Node's V8 (TurboFan only, one thread,
# as benches/count.sh counts the engine): hmac + sha2 one value at a time, four values at a
# time in lanes, and keyed BLAKE3 one value at a time, on sets of values (the runner's
# numbering: 0 the engine benchmark's ids, 1 UUIDs, 2 and 3 FHIR ids of 10-64 bytes with and
# without a client). Counts move by a few percent in V8 and are not time, but unlike
# timings they do not move with the machine's load. About 5 minutes per set.
#
#   benches/hmac-lanes/count.sh HMAC_LANES_WASM [SET...]
set -euo pipefail

wasm=$1
shift
sets=("$@")
if [ ${#sets[@]} -eq 0 ]; then
  sets=(0 2)
fi
values=4096
here=$(cd "$(dirname "$0")" && pwd)

collected() {
  valgrind --tool=callgrind --smc-check=all --callgrind-out-file=/dev/null \
    node --no-liftoff --single-threaded --no-warnings "$here/run.mjs" "$wasm" \
    --values "$values" "$@" 2>&1 | sed -n 's/.*Collected : //p'
}

# (21 passes over the set) - (one pass), per value: start-up and the set's making cancel
# (twenty passes: with fewer, the start-up's own variation shows in the difference).
per_value() {
  local one many
  one=$(collected "$@" --passes 1)
  many=$(collected "$@" --passes 21)
  echo $(((many - one) / (20 * values)))
}

echo "| set | hmac + sha2, V8 instructions per value | 4 lanes | keyed BLAKE3 | lanes ÷ scalar | BLAKE3 ÷ scalar |"
echo "|---|---:|---:|---:|---:|---:|"
for set in "${sets[@]}"; do
  name=$(node --no-warnings "$here/run.mjs" "$wasm" --values 4 --only scalar --set "$set" \
    --passes 1 | sed 's/^scalar, //; s/: [0-9]* ns\/value$//')
  scalar=$(per_value --only scalar --set "$set")
  lanes=$(per_value --only lanes --set "$set")
  blake3=$(per_value --only blake3 --set "$set")
  awk -v n="$name" -v s="$scalar" -v l="$lanes" -v b="$blake3" \
    'BEGIN { printf "| %s | %d | %d | %d | %.3f | %.3f |\n", n, s, l, b, l / s, b / s }'
done
