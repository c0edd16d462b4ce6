"""The README's docker-compose quick start, run: the shipped envoy/docker-compose.yml up, the
README's requests on 127.0.0.1:10000, their exact answers, and the audit line in
`docker-compose logs envoy`.

The tokens are minted as the README's `finalite token` lines mint them (the same claims,
signed with the demo key by envoy/demo/mint_token.py), and the research pseudonym is the one
the compose file's demo key gives.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

import yaml

import mint_token  # envoy/demo/mint_token.py
from conftest import COMPOSE_FILE, OVERRIDE, compose_command

BILLING_VIEW = (
    b'{"id":"1","name":{"family": "Martin", "given": ["Claire", "L\\u00e9a"]},'
    b'"insurance":{"provider": "Mutuelle Exemple", "number": "MX-0001"}}'
)
# HMAC-SHA-256 of "1" for the client research-lab under the compose file's demo key
# (DEMO-ONLY-public-pseudonym-key-0001), base64url.
RESEARCH_ID = "1lAlpm26MVhd3MQP6OqMIyw485doCncHdf2TkRj1N3E"
RESEARCH_VIEW = (
    b'{"id":"' + RESEARCH_ID.encode() + b'","birthDate":"1984","address":{"postalCode":"69"},'
    b'"conditions":[{"code":"E11","onset":"2015"},{"code":"I10","onset":"2019"}]}'
)
OPEN_ADMISSIONS = (
    b'[{"service":"cardiology","year":2025,"admissions":1243,"averageStay":4.2},'
    b'{"service":"endocrinology","year":2025,"admissions":512,"averageStay":2.8},'
    b'{"service":"pulmonology","year":2025,"admissions":377,"averageStay":5.1}]'
)
NO_TOKEN = (
    b'{"detail":"this route requires a valid bearer token","status":401,'
    b'"title":"Unauthorized","type":"urn:finalite:problem:invalid-token"}'
)


def billing_token() -> str:
    # finalite token --client billing-partner --scope "patients:read appointments:read"
    #   --purposes billing
    return mint_token.mint(client_id="billing-partner", scope="patients:read appointments:read",
                           purposes=["billing"], ttl=600)


def research_token() -> str:
    # finalite token --client research-lab --scope "patients:read exports:read purpose:research"
    return mint_token.mint(client_id="research-lab",
                           scope="patients:read exports:read purpose:research", ttl=600)


def test_the_override_changes_only_the_images():
    """tests/compose/images.yml on top of the shipped file resolves to the shipped file but
    for each service's `image:` (no engine needed: `docker-compose config`)."""
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "FINALITE_COMPOSE_API_IMAGE": "api:stand-in",
           "FINALITE_COMPOSE_ENVOY_IMAGE": "envoy:stand-in"}

    def config(*files):
        args = [a for f in files for a in ("--file", str(f))]
        out = subprocess.run([*compose_command(), *args, "config"], env=env, capture_output=True,
                             text=True, timeout=60, check=True)
        return yaml.safe_load(out.stdout)

    shipped, overridden = config(COMPOSE_FILE), config(COMPOSE_FILE, OVERRIDE)
    assert overridden["services"]["api"]["image"] == "api:stand-in"
    assert overridden["services"]["envoy"]["image"] == "envoy:stand-in"
    for name in ("api", "envoy"):
        assert shipped["services"][name].pop("image") != overridden["services"][name].pop("image")
        # Merging files keeps the mounts but not their order.
        for resolved in (shipped, overridden):
            resolved["services"][name]["volumes"].sort()
    assert overridden == shipped


def test_billing_sees_identity_and_insurance_as_written(stack):
    r = stack.get("/patients/1", token=billing_token(), purpose="billing")
    assert r.status_code == 200, r.text
    assert r.content == BILLING_VIEW


def test_research_sees_a_pseudonym_years_and_codes(stack):
    r = stack.get("/patients/1", token=research_token(), purpose="research")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    # The sample API sends x-patient-count; the research purpose removes x-patient-*.
    assert "x-patient-count" not in r.headers
    assert r.content == RESEARCH_VIEW


def test_open_data_without_a_token(stack):
    r = stack.get("/open/admissions")
    assert r.status_code == 200, r.text
    assert r.content == OPEN_ADMISSIONS


def test_no_token_is_401(stack):
    r = stack.get("/patients/1", purpose="billing")
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert r.content == NO_TOKEN


def test_the_audit_line_is_in_envoys_log(stack):
    def records():
        return [json.loads(line[line.index("{"):]) for line in stack.logs("envoy").splitlines()
                if '{"audit":"finalite"' in line]

    seen = {rec.get("request_id") for rec in records()}
    client_id = str(uuid.uuid4())
    r = stack.get("/patients/1", token=research_token(), purpose="research",
                  headers={"x-request-id": client_id})
    assert r.content == RESEARCH_VIEW
    deadline = time.monotonic() + 10  # Envoy writes the record once the response is done
    while True:
        mine = [rec for rec in records() if rec.get("request_id") not in seen]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == 1, f"{len(mine)} new audit records after one request"
    record = mine[0]
    # The shipped Envoy makes the request id its own: a client cannot choose what the
    # audit record calls its request.
    request_id = record["request_id"]
    assert request_id != client_id and re.fullmatch(r"[0-9a-f-]{36}", request_id), record
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record.pop("time")), record
    assert re.fullmatch(r"[0-9a-f]{12}", record.pop("policy_hash")), record
    assert record == {
        "audit": "finalite", "bytes_in": 506, "bytes_out": len(RESEARCH_VIEW),
        "client": "research-lab", "decision": "allowed", "dry_run": False,
        "policy": "patients", "purpose": "research", "request_id": request_id,
        "route": "patients", "status": 200,
        "transformed": {"count": 5, "more": 0, "paths": {
            "address.postalCode": 1, "birthDate": 1, "conditions.onset": 2, "id": 1}},
        # Keys no rule of the policy names are written `*`: a record holds no body key.
        "withheld": {"count": 11, "more": 0, "paths": {
            "*": 1, "address.*": 2, "conditions.*": 2, "insurance.*": 2, "name.*": 3,
            "ssn": 1}},
    }
