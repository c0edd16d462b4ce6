#!/usr/bin/env bash
# The local demo, started by `make run` (which builds the module and the venv first):
# the sample personal-data API and Envoy with finalite, both on 127.0.0.1, until Ctrl-C.
#
# Envoy runs envoy/envoy.yaml as shipped, rendered by envoy/render.py with local addresses and
# the freshly built module (written to .run/envoy.yaml). Tokens are DEMO tokens signed with
# envoy/demo's public demo key.
#
# Environment (all set by the Makefile): PYTHON, ENVOY, WASM, PORT, ADMIN_PORT, API_PORT.
# FINALITE_PSEUDONYM_KEY: the key of the "pseudonymize" action, which Envoy passes to the VM
# (vm_config.environment_variables.host_env_keys). Unset, a DEMO key is used (below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
ENVOY="${ENVOY:-$ROOT/.venv/bin/envoy}"
WASM="${WASM:-$ROOT/target/wasm32-wasip1/release/finalite.wasm}"
PORT="${PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
API_PORT="${API_PORT:-8080}"
RUN="$ROOT/.run"

[[ -f "$WASM" ]] || { echo "run-demo: $WASM is missing (make build)" >&2; exit 1; }
mkdir -p "$RUN"

# DEMO ONLY: a published, well-known pseudonymisation key, so that the demo's research view
# works out of the box. Anyone who knows it can recompute the pseudonyms (HMAC of a patient id
# and client id): in production, give Envoy a secret random key of at least 32 bytes
# (e.g. `openssl rand -base64 48`) from your secret store, never this one.
if [[ -z "${FINALITE_PSEUDONYM_KEY:-}" ]]; then
  export FINALITE_PSEUDONYM_KEY="DEMO-ONLY-finalite-pseudonym-key-not-secret-never-in-production"
  echo "run-demo: FINALITE_PSEUDONYM_KEY is not set: using the DEMO-ONLY key (not secret)" >&2
fi

"$PYTHON" envoy/render.py -o "$RUN/envoy.yaml" --api "127.0.0.1:$API_PORT" --wasm "$WASM" \
  --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN_PORT"

mint() { "$PYTHON" envoy/demo/mint_token.py --ttl 86400 "$@"; }
CARE=$(mint --client-id care-team --scope "patients:read appointments:read" --purposes care)
BILLING=$(mint --client-id billing-partner --scope "patients:read appointments:read" \
  --purposes billing)
RESEARCH=$(mint --client-id research-lab --scope "patients:read exports:read purpose:research")
OTHER_LAB=$(mint --client-id other-lab --scope "patients:read purpose:research")
FHIR_RESEARCH=$(mint --client-id research-lab --scope "fhir:read system/*.rs purpose:research")
FHIR_CARE=$(mint --client-id care-team --scope "fhir:read user/*.rs" --purposes care)
# Two SMART apps: a ward dashboard reading every patient's Observations, and a patient's app
# launched for patient `example`, reading everything of hers.
WARD_APP=$(mint --client-id ward-dashboard --scope "fhir:read user/Observation.rs" \
  --purposes care)
PATIENT_APP=$(mint --client-id patient-app --scope "fhir:read launch/patient patient/*.rs" \
  --purposes care --claim patient=example)

URL="http://127.0.0.1:$PORT"
cat <<EOF

finalite demo: one URL, three purposes, three views (DEMO tokens, valid 24 h).

# Billing partner: identity and insurance, no diagnoses
curl -s $URL/patients/1 -H 'x-purpose: billing' -H 'authorization: Bearer $BILLING'

# Research lab: a pseudonym for the id, birth year, postcode cut to 2 characters, diagnosis
# codes and onset years; no name, no street, no x-patient-* headers
curl -si $URL/patients/1 -H 'x-purpose: research' -H 'authorization: Bearer $RESEARCH'

# Another lab gets other pseudonyms for the same patients (per-client keys): no join
curl -s $URL/patients/1 -H 'x-purpose: research' -H 'authorization: Bearer $OTHER_LAB'

# Bulk export (NDJSON, 100 000 fictional patients), filtered and streamed as it arrives
curl -s '$URL/exports/patients?count=100000' -H 'x-purpose: research' \
  -H 'authorization: Bearer $RESEARCH' | head -3

# Care team: everything, byte for byte as the API wrote it
curl -s $URL/patients -H 'x-purpose: care' -H 'authorization: Bearer $CARE'

# A FHIR document Bundle (HL7's R4 example), rules by resource type: research sees the
# Patient pseudonymised with birth year and gender, the Encounter's status and class, the
# Observation's codes; the Composition, Practitioner and medications are withheld whole
curl -s $URL/fhir/Bundle/father -H 'x-purpose: research' -H 'authorization: Bearer $FHIR_RESEARCH'
# ... and the care team reads the same Bundle whole (compacted: the same JSON)
curl -s $URL/fhir/Bundle/father -H 'x-purpose: care' -H 'authorization: Bearer $FHIR_CARE'

# SMART scopes: one Observation search (HL7's examples: 3 patients, and a Condition the
# server includes), two apps. The ward dashboard (user/Observation.rs) sees every
# Observation, not the Condition; the patient app (patient/*.rs, patient=example) sees only
# patient example's Observations and Condition. Neither sees the server's total.
curl -s $URL/fhir/Observation -H 'x-purpose: care' -H 'authorization: Bearer $WARD_APP'
curl -s $URL/fhir/Observation -H 'x-purpose: care' -H 'authorization: Bearer $PATIENT_APP'
# ... the patient app asking for another patient (403 outside-patient-compartment), the ward
# dashboard asking for Conditions (403 insufficient-scope: user/Condition.s)
curl -si $URL/fhir/Patient/f001 -H 'x-purpose: care' -H 'authorization: Bearer $PATIENT_APP'
curl -si $URL/fhir/Condition -H 'x-purpose: care' -H 'authorization: Bearer $WARD_APP'

# Appointments for care: clinical notes withheld everywhere
curl -s $URL/appointments -H 'x-purpose: care' -H 'authorization: Bearer $CARE'

# Open data: no token, aggregate fields only
curl -s $URL/open/admissions

# Refusals: no token (401), a purpose the token does not carry (403)
curl -si $URL/patients/1 -H 'x-purpose: billing'
curl -si $URL/patients/1 -H 'x-purpose: research' -H 'authorization: Bearer $BILLING'

Mint other tokens: $PYTHON envoy/demo/mint_token.py --help
Envoy admin: http://127.0.0.1:$ADMIN_PORT (stats: /stats?filter=wasm)
Ctrl-C stops both.

EOF

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PYTHON" envoy/sample_api.py "$API_PORT" --host 127.0.0.1 &
pids+=($!)
# Warnings only, plus finalite's own log lines and the access log (stdout, JSON lines).
"$ENVOY" -c "$RUN/envoy.yaml" --concurrency 1 --disable-hot-restart \
  --log-level warn --component-log-level wasm:info &
pids+=($!)

for _ in $(seq 100); do
  if curl -fs "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1; then
    echo "run-demo: Envoy ready on $URL" >&2
    break
  fi
  sleep 0.1
done

# Stop as soon as either process exits (a port in use, a bad configuration...).
set +e
wait -n "${pids[@]}"
status=$?
echo "run-demo: a process exited (status $status); stopping" >&2
exit "$status"
