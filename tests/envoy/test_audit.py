"""Traceability: the audit record of every request, and the access-log line, through Envoy.

One audit record per request that reaches finalite, read back from Envoy's log and compared
field by field. The upstream bodies are made of canaries (every string value is unique to this
session), and the requests carry canary headers and tokens: none of them may appear in an
audit record, nor anywhere in Envoy's log.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

import records
from harness import assert_problem, describe
from records import (access_log_of, audit_lines, audit_of, audit_records, audit_where,
                     check_record, tally)

C = secrets.token_hex(5)  # in every canary of this module


def rid(name: str) -> str:
    """A fresh x-request-id (never containing a canary)."""
    return f"audit-{name}-{secrets.token_hex(6)}"


def patient(n: int, conditions: int) -> dict[str, Any]:
    """A patient whose every string is a canary (dates are real dates, for `year`)."""
    return {
        "id": f"id{n}-{C}",
        "name": {"family": f"family{n}-{C}", "given": [f"given{n}-{C}"]},
        "birthDate": f"19{30 + n}-07-1{n}",
        "ssn": f"ssn{n}-{C}",
        "address": {"line": f"line{n}-{C}", "city": f"city{n}-{C}",
                    "postalCode": f"PC{n}-{C}"},
        "phone": f"phone{n}-{C}",
        "insurance": {"provider": f"provider{n}-{C}", "number": f"number{n}-{C}"},
        "conditions": [{"code": f"code{n}{k}-{C}", "display": f"display{n}{k}-{C}",
                        "onset": f"19{60 + n}-0{k + 1}-2{k}"} for k in range(conditions)],
    }


PATIENT = json.dumps(patient(1, 2)).encode()
PATIENTS = json.dumps([patient(1, 2), patient(2, 1)]).encode()


def strings(value: Any) -> list[str]:
    """Every string value of a JSON document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


BODY_VALUES = strings(json.loads(PATIENTS))
HEADER_CANARIES = {"x-canary": f"header-{C}", "cookie": f"session=cookie-{C}",
                   "user-agent": f"agent-{C}"}


def canary_headers(request_id: str, **more: str) -> dict[str, str]:
    return {"x-request-id": request_id, **HEADER_CANARIES, **more}


def assert_nowhere(envoy, *secret: str) -> None:
    """None of `secret` is in any audit line, nor anywhere in Envoy's log."""
    log = envoy.log()
    for s in secret:
        assert s, "empty canary"
        for line in audit_lines(envoy):
            assert s not in line, f"{s!r} in an audit record:\n{line}"
        assert s not in log, f"{s!r} in Envoy's log {envoy.log_path}"


def assert_no_canary(envoy) -> None:
    """No body value, no canary header value, nothing of this module's canaries at all."""
    assert_nowhere(envoy, C, *BODY_VALUES, *HEADER_CANARIES.values())


# --- Allowed ------------------------------------------------------------------------------


def test_allowed_billing(envoy, upstream, token):
    upstream.set("/patients/1", PATIENT, headers=[("x-patient-note", f"resp-header-{C}")])
    t = token("patients:read", ["billing"], client_id="partner-billing")
    request_id = rid("billing")
    r = envoy.get("/patients/1", token=t, purpose="billing", headers=canary_headers(request_id))
    assert r.status_code == 200, describe(r)
    assert json.loads(r.content) == {
        "id": f"id1-{C}", "name": {"family": f"family1-{C}", "given": [f"given1-{C}"]},
        "insurance": {"provider": f"provider1-{C}", "number": f"number1-{C}"}}

    record = audit_of(envoy, request_id)
    check_record(record, request_id=request_id, route="patients", policy="patients",
                 client="partner-billing", purpose="billing", decision="allowed",
                 status=200,
                 # `phone` is named by no rule of the policy: a key could be data.
                 withheld=tally({"address": 1, "birthDate": 1, "conditions": 1, "*": 1,
                                 "ssn": 1}),
                 bytes_in=len(PATIENT), bytes_out=len(r.content))
    assert_no_canary(envoy)
    assert_nowhere(envoy, t, t.split(".")[2], f"resp-header-{C}")


def test_allowed_research_counts_paths_over_an_array(envoy, upstream, token):
    """Paths in policy syntax (arrays are transparent), each counted once per occurrence.
    (research has a `**.ssn` rule, so the filter looks inside every object, and counts the
    members it withholds there: `name.*`, not `name` as billing does; a key no rule of the
    policy names, such as `family`, is written `*`, since a key can be data.)"""
    upstream.set("/patients", PATIENTS, headers=[("x-patient-count", f"count-{C}")])
    t = token("patients:read", ["research"], client_id="lab-1")
    request_id = rid("research")
    r = envoy.get("/patients", token=t, purpose="research", headers=canary_headers(request_id))
    assert r.status_code == 200, describe(r)
    assert "x-patient-count" not in r.headers
    got = json.loads(r.content)
    assert [p["birthDate"] for p in got] == ["1931", "1932"]
    assert [p["address"] for p in got] == [{"postalCode": "PC"}, {"postalCode": "PC"}]

    check_record(audit_of(envoy, request_id), request_id=request_id, route="patients",
                 policy="patients", client="lab-1", purpose="research", decision="allowed",
                 status=200,
                 withheld=tally({"name.*": 4, "ssn": 2, "address.*": 4, "*": 2,
                                 "insurance.*": 4, "conditions.*": 3}),
                 transformed=tally({"id": 2, "birthDate": 2, "address.postalCode": 2,
                                    "conditions.onset": 3}),
                 bytes_in=len(PATIENTS), bytes_out=len(r.content))
    assert_no_canary(envoy)
    # The pseudonyms of the ids are body values too.
    assert_nowhere(envoy, f"count-{C}", *(p["id"] for p in got), t)


def test_the_policy_hash_names_the_policy_version(envoy, upstream, token):
    """The same policy gives the same hash on every request; another policy another hash."""
    upstream.set("/patients/1", PATIENT)
    upstream.set("/appointments", b"[]")
    ids = [rid("hash-p1"), rid("hash-p2"), rid("hash-a")]
    envoy.get("/patients/1", token=token("patients:read", ["billing"]), purpose="billing",
              headers={"x-request-id": ids[0]})
    envoy.get("/patients/1", headers={"x-request-id": ids[1]})
    envoy.get("/appointments", purpose="care", headers={"x-request-id": ids[2]},
              token=token("appointments:read", ["care"]))
    p1, p2, a = (audit_of(envoy, i) for i in ids)
    assert (p1["policy"], p2["policy"], a["policy"]) == ("patients", "patients", "appointments")
    assert p1["policy_hash"] == p2["policy_hash"] != a["policy_hash"]


# --- Refused ------------------------------------------------------------------------------


def test_no_token(envoy, upstream):
    upstream.set("/patients/1", PATIENT)
    request_id = rid("401")
    r = envoy.get("/patients/1", purpose="billing", headers=canary_headers(request_id))
    assert_problem(r, 401, "invalid-token", "Unauthorized")
    check_record(audit_of(envoy, request_id), request_id=request_id, route="patients",
                 policy="patients", client=None, purpose="billing", decision="denied_token",
                 status=401)
    assert_no_canary(envoy)


def test_bad_token_never_logged(envoy, upstream, token):
    """A token that does not verify (here a valid one with a canary claim, signed by another
    key) is neither in the record nor in the log."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    t = token("patients:read", ["billing"], key=other, client_id=f"forged-{C}")
    request_id = rid("401-bad")
    r = envoy.get("/patients/1", token=t, purpose="billing", headers=canary_headers(request_id))
    assert_problem(r, 401, "invalid-token", "Unauthorized")
    check_record(audit_of(envoy, request_id), request_id=request_id, route="patients",
                 policy="patients", client=None, purpose="billing", decision="denied_token",
                 status=401)
    assert_nowhere(envoy, t, t.split(".")[1], t.split(".")[2], f"forged-{C}")
    garbage = f"garbage-token-{C}"
    request_id = rid("401-garbage")
    r = envoy.get("/patients/1", token=garbage, purpose="billing",
                  headers={"x-request-id": request_id})
    assert r.status_code == 401, describe(r)
    assert audit_of(envoy, request_id)["decision"] == "denied_token"
    assert_nowhere(envoy, garbage)


def test_missing_scope(envoy, upstream, token):
    upstream.set("/patients/1", PATIENT)
    t = token("appointments:read", ["billing"], client_id="partner-billing")
    request_id = rid("403-scope")
    r = envoy.get("/patients/1", token=t, purpose="billing", headers=canary_headers(request_id))
    assert_problem(r, 403, "insufficient-scope", "Forbidden")
    check_record(audit_of(envoy, request_id), request_id=request_id, route="patients",
                 policy="patients", client="partner-billing", purpose="billing",
                 decision="denied_scope", status=403)
    assert_nowhere(envoy, t)
    assert_no_canary(envoy)


@pytest.mark.parametrize("granted", [False, True])
def test_undefined_purpose_is_not_recorded(envoy, upstream, token, granted):
    """A purpose name the policy does not define is client input: the record's purpose is
    null, and the raw value is nowhere in Envoy's log (nor in the access log), whether the
    token grants it (not accepted on this route) or not (not authorised)."""
    upstream.set("/patients/1", PATIENT)
    raw = f"marketing-{granted}-{C}"
    t = token("patients:read", ["billing", raw] if granted else ["billing"],
              client_id="partner-billing")
    request_id = rid("403-purpose")
    r = envoy.get("/patients/1", token=t, purpose=raw, headers=canary_headers(request_id))
    slug = "purpose-not-accepted" if granted else "purpose-not-authorised"
    assert_problem(r, 403, slug, "Forbidden")
    check_record(audit_of(envoy, request_id), request_id=request_id, route="patients",
                 policy="patients", client="partner-billing", purpose=None,
                 decision="denied_purpose", status=403)
    line = access_log_of(envoy, request_id)
    assert (line["purpose"], line["decision"]) == (None, "denied_purpose")
    assert_nowhere(envoy, raw)
    assert_no_canary(envoy)


def test_unauthorised_purpose_is_recorded(envoy, upstream, token):
    """A defined purpose the token does not grant: refused, and named in the record."""
    upstream.set("/patients/1", PATIENT)
    t = token("patients:read", ["billing"], client_id="partner-billing")
    request_id = rid("403-unauthorised")
    r = envoy.get("/patients/1", token=t, purpose="research", headers={"x-request-id": request_id})
    assert_problem(r, 403, "purpose-not-authorised", "Forbidden")
    check_record(audit_of(envoy, request_id), request_id=request_id, route="patients",
                 policy="patients", client="partner-billing", purpose="research",
                 decision="denied_purpose", status=403)


def test_no_policy(envoy, upstream, token):
    upstream.set("/elsewhere", PATIENT)
    request_id = rid("403-route")
    r = envoy.get("/elsewhere", token=token("patients:read", ["billing"]), purpose="billing",
                  headers=canary_headers(request_id))
    assert_problem(r, 403, "no-policy", "Forbidden")
    check_record(audit_of(envoy, request_id), request_id=request_id, route="unlisted",
                 policy=None, client=None, purpose=None, decision="denied_route", status=403)
    assert upstream.received("/elsewhere") == []
    assert_no_canary(envoy)


# --- Failed closed ------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["media-type", "malformed"])
def test_failed_closed(envoy, upstream, token, case):
    """Nothing of the body goes out (bytes_out 0, no counts); bytes_in says what came in: none
    for a media type refused at the headers, the whole body for one that is not JSON."""
    if case == "media-type":
        body, bytes_in = PATIENT, 0
        upstream.set("/patients/1", body, content_type="text/html")
    else:
        body = PATIENT[:-40] + b"}}"
        bytes_in = len(body)
        upstream.set("/patients/1", body, content_type="application/json")
    t = token("patients:read", ["billing"], client_id="partner-billing")
    request_id = rid(f"502-{case}")
    r = envoy.get("/patients/1", token=t, purpose="billing", headers=canary_headers(request_id))
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway")
    record = audit_of(envoy, request_id)
    check_record(record, request_id=request_id, route="patients", policy="patients",
                 client="partner-billing", purpose="billing", decision="failed_closed",
                 status=502, bytes_in=bytes_in)
    line = access_log_of(envoy, request_id)
    assert (line["decision"], line["status"]) == ("failed_closed", 502)
    assert_no_canary(envoy)


# --- No policy, let through ----------------------------------------------------------------


@pytest.fixture(scope="module")
def unmatched_allow(plugin_variant):
    return plugin_variant("unmatched-allow", records.unmatched_allow)


def test_passed_unfiltered(unmatched_allow, upstream):
    upstream.set("/elsewhere", PATIENT)
    request_id = rid("passed")
    r = unmatched_allow.get("/elsewhere", purpose="billing", headers=canary_headers(request_id))
    assert r.status_code == 200, describe(r)
    assert r.content == PATIENT
    check_record(audit_of(unmatched_allow, request_id), request_id=request_id,
                 route="unlisted", policy=None, client=None, purpose=None,
                 decision="passed_unfiltered", status=200)
    line = access_log_of(unmatched_allow, request_id)
    assert (line["decision"], line["policy"], line["withheld"]) == ("passed_unfiltered", None,
                                                                     None)
    assert_no_canary(unmatched_allow)


# --- What the record copies ----------------------------------------------------------------


R = secrets.token_hex(5)  # in the request ids below (which the access log does print)


@pytest.mark.parametrize("request_id", [f'x"}}, "decision": "allowed-{R}', f"a b-{R}",
                                        "x" * 129, f"id/{R}"])
def test_a_request_id_that_is_not_one_is_not_copied(envoy, upstream, token, request_id):
    """Only an id made of [A-Za-z0-9._:-], at most 128 long, is copied: the header is client
    input."""
    upstream.set("/patients/1", PATIENT)
    client = f"client-{secrets.token_hex(6)}"
    r = envoy.get("/patients/1", token=token("patients:read", ["billing"], client_id=client),
                  purpose="billing", headers={"x-request-id": request_id})
    assert r.status_code == 200, describe(r)
    record = audit_where(envoy, "client", client)
    assert record["request_id"] is None
    assert record["decision"] == "allowed"
    for line in audit_lines(envoy):
        assert R not in line and "x" * 129 not in line, line


def test_generated_request_id(envoy, upstream, token):
    """Without x-request-id, Envoy generates one (generate_request_id) and the record has it."""
    upstream.set("/patients/1", PATIENT)
    client = f"client-{secrets.token_hex(6)}"
    r = envoy.get("/patients/1", token=token("patients:read", ["billing"], client_id=client),
                  purpose="billing")
    assert r.status_code == 200, describe(r)
    record = audit_where(envoy, "client", client)
    assert len(record["request_id"]) == 36 and record["request_id"].count("-") == 4, record


def test_a_disabled_route_has_no_record(envoy, upstream):
    """/health disables the filter per route: no record, and nothing of finalite in the
    access-log line."""
    upstream.set("/health", b'{"status": "ok"}')
    request_id = rid("health")
    r = envoy.get("/health", headers={"x-request-id": request_id})
    assert r.status_code == 200, describe(r)
    line = access_log_of(envoy, request_id)
    assert {k: line[k] for k in ("policy", "purpose", "client", "decision", "withheld")} == \
        dict.fromkeys(("policy", "purpose", "client", "decision", "withheld"))
    assert [r for r in audit_records(envoy) if r["request_id"] == request_id] == []


# --- The access-log line ---------------------------------------------------------------------


def test_access_log_carries_the_filter_state(envoy, upstream, token):
    """The shipped access-log format prints finalite's filter state
    (%FILTER_STATE(wasm.finalite_<name>:PLAIN)%) next to Envoy's own fields."""
    upstream.set("/patients", PATIENTS)
    t = token("patients:read", ["research"], client_id="lab-2")
    request_id = rid("access-log")
    r = envoy.get("/patients", token=t, purpose="research", headers=canary_headers(request_id))
    assert r.status_code == 200, describe(r)
    line = access_log_of(envoy, request_id)
    finalite = {k: line[k] for k in ("route", "policy", "purpose", "client", "decision",
                                      "withheld", "transformed", "dry_run", "status")}
    assert finalite == {"route": "patients", "policy": "patients", "purpose": "research",
                        "client": "lab-2", "decision": "allowed", "withheld": "19",
                        "transformed": "9", "dry_run": None, "status": 200}
    assert (line["method"], line["path"]) == ("GET", "/patients")

    # A refusal: the facts known at the request, no counts.
    request_id = rid("access-log-401")
    r = envoy.get("/patients", purpose="research", headers={"x-request-id": request_id})
    assert r.status_code == 401, describe(r)
    line = access_log_of(envoy, request_id)
    finalite = {k: line[k] for k in ("policy", "purpose", "client", "decision", "withheld",
                                      "transformed", "status")}
    assert finalite == {"policy": "patients", "purpose": "research", "client": None,
                        "decision": "denied_token", "withheld": None, "transformed": None,
                        "status": 401}
    assert_no_canary(envoy)


def test_one_record_per_request(envoy, upstream, token):
    """Ten requests on one connection: ten records, one each."""
    import requests

    upstream.set("/patients/1", PATIENT)
    t = token("patients:read", ["billing"])
    ids = [rid(f"many-{i}") for i in range(10)]
    with requests.Session() as s:
        for i in ids:
            r = s.get(envoy.url("/patients/1"), headers={"authorization": f"Bearer {t}",
                                                           "x-purpose": "billing",
                                                           "x-request-id": i}, timeout=10)
            assert r.status_code == 200, describe(r)
    for i in ids:
        audit_of(envoy, i, settle=0)
    time.sleep(0.3)
    records = [r for r in audit_records(envoy) if r["request_id"] in ids]
    assert sorted(r["request_id"] for r in records) == sorted(ids)
