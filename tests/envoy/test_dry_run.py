"""Dry run (`"mode": "dry_run"` on a policy): nothing is refused or withheld, but the audit
record, the access log and the metrics say what enforcement would have done.

A second Envoy runs the shipped configuration with the `patients` policy in dry run; its other
policies still enforce.
"""

from __future__ import annotations

import json
import secrets

import pytest

from harness import assert_problem, describe
from records import (access_log_of, audit_lines, audit_of, check_record, patients_dry_run,
                     tally)

C = secrets.token_hex(5)
PATIENT = json.dumps({
    "id": f"id-{C}", "name": {"family": f"family-{C}"}, "birthDate": "1929-05-17",
    "ssn": f"ssn-{C}", "address": {"city": f"city-{C}", "postalCode": f"PC-{C}"},
    "conditions": [{"code": f"code-{C}", "onset": "1975-03-04", "display": f"display-{C}"}],
}).encode()
HEADERS = [("x-patient-note", f"note-{C}")]


def rid(name: str) -> str:
    return f"dry-{name}-{secrets.token_hex(6)}"


@pytest.fixture(scope="module")
def dry(plugin_variant):
    return plugin_variant("dry-run", patients_dry_run)


def assert_untouched(r, upstream_body=PATIENT):
    """The upstream's response, byte for byte, headers included."""
    assert r.status_code == 200, describe(r)
    assert r.content == upstream_body, describe(r)
    assert r.headers.get("x-patient-note") == f"note-{C}", describe(r)


def assert_nothing_of_c_in_records(envoy):
    for line in audit_lines(envoy):
        assert C not in line, line


def test_a_purpose_it_would_refuse_passes(dry, upstream, token):
    upstream.set("/patients/1", PATIENT, headers=HEADERS)
    request_id = rid("purpose")
    t = token("patients:read", ["billing"], client_id="partner-billing")
    r = dry.get("/patients/1", token=t, purpose="research", headers={"x-request-id": request_id})
    assert_untouched(r)
    assert len(upstream.received("/patients/1")) == 1
    check_record(audit_of(dry, request_id), request_id=request_id, route="patients",
                 policy="patients", client="partner-billing", purpose="research",
                 decision="denied_purpose", dry_run=True, status=200)
    line = access_log_of(dry, request_id)
    assert (line["decision"], line["dry_run"], line["status"]) == ("denied_purpose", "true", 200)
    assert_nothing_of_c_in_records(dry)


def test_an_undefined_purpose_passes_and_is_not_logged(dry, upstream, token):
    upstream.set("/patients/1", PATIENT, headers=HEADERS)
    raw = f"marketing-{C}"
    request_id = rid("undefined")
    t = token("patients:read", [raw], client_id="partner-billing")
    r = dry.get("/patients/1", token=t, purpose=raw, headers={"x-request-id": request_id})
    assert_untouched(r)
    check_record(audit_of(dry, request_id), request_id=request_id, route="patients",
                 policy="patients", client="partner-billing", purpose=None,
                 decision="denied_purpose", dry_run=True, status=200)
    assert raw not in dry.log(), f"the raw purpose {raw!r} is in {dry.log_path}"


def test_no_token_passes(dry, upstream):
    upstream.set("/patients/1", PATIENT, headers=HEADERS)
    request_id = rid("401")
    r = dry.get("/patients/1", purpose="billing", headers={"x-request-id": request_id})
    assert_untouched(r)
    check_record(audit_of(dry, request_id), request_id=request_id, route="patients",
                 policy="patients", client=None, purpose="billing", decision="denied_token",
                 dry_run=True, status=200)


def test_allowed_gets_the_unfiltered_body_and_the_record_says_what_would_go(
        dry, upstream, token):
    upstream.set("/patients/1", PATIENT, headers=HEADERS)
    request_id = rid("billing")
    t = token("patients:read", ["billing"], client_id="partner-billing")
    r = dry.get("/patients/1", token=t, purpose="billing", headers={"x-request-id": request_id})
    assert_untouched(r)
    check_record(audit_of(dry, request_id), request_id=request_id, route="patients",
                 policy="patients", client="partner-billing", purpose="billing",
                 decision="allowed", dry_run=True, status=200,
                 withheld=tally({"address": 1, "birthDate": 1, "conditions": 1, "ssn": 1}),
                 bytes_in=len(PATIENT), bytes_out=len(PATIENT))
    line = access_log_of(dry, request_id)
    assert {k: line[k] for k in ("decision", "dry_run", "withheld", "transformed")} == \
        {"decision": "allowed", "dry_run": "true", "withheld": "4", "transformed": "0"}
    assert_nothing_of_c_in_records(dry)


def test_research_lists_what_would_be_transformed(dry, upstream, token):
    upstream.set("/patients/1", PATIENT, headers=HEADERS)
    request_id = rid("research")
    t = token("patients:read", ["research"], client_id="lab-1")
    r = dry.get("/patients/1", token=t, purpose="research", headers={"x-request-id": request_id})
    assert_untouched(r)
    check_record(audit_of(dry, request_id), request_id=request_id, route="patients",
                 policy="patients", client="lab-1", purpose="research",
                 decision="allowed", dry_run=True, status=200,
                 withheld=tally({"name.*": 1, "ssn": 1, "address.*": 1,
                                 "conditions.*": 1}),
                 transformed=tally({"id": 1, "birthDate": 1, "address.postalCode": 1,
                                    "conditions.onset": 1}),
                 bytes_in=len(PATIENT), bytes_out=len(PATIENT))
    assert_nothing_of_c_in_records(dry)


def test_a_body_it_would_fail_closed_on_passes(dry, upstream, token):
    body = b"<html>" + C.encode() + b"</html>"
    upstream.set("/patients/1", body, content_type="text/html", headers=HEADERS)
    request_id = rid("502")
    t = token("patients:read", ["billing"], client_id="partner-billing")
    r = dry.get("/patients/1", token=t, purpose="billing", headers={"x-request-id": request_id})
    assert_untouched(r, body)
    check_record(audit_of(dry, request_id), request_id=request_id, route="patients",
                 policy="patients", client="partner-billing", purpose="billing",
                 decision="failed_closed", dry_run=True, status=200)


def test_the_dry_run_policy_has_its_own_hash(dry, envoy, upstream, token):
    """The record tells an enforced policy from the same policy in dry run."""
    upstream.set("/patients/1", PATIENT)
    ids = rid("hash-dry"), rid("hash-enforced")
    dry.get("/patients/1", headers={"x-request-id": ids[0]})
    envoy.get("/patients/1", headers={"x-request-id": ids[1]})
    dry_record, enforced = audit_of(dry, ids[0]), audit_of(envoy, ids[1])
    assert dry_record["dry_run"] and not enforced["dry_run"]
    assert dry_record["policy_hash"] != enforced["policy_hash"]


def test_other_policies_still_enforce(dry, upstream):
    upstream.set("/appointments", b"[]")
    request_id = rid("appointments")
    r = dry.get("/appointments", purpose="care", headers={"x-request-id": request_id})
    assert_problem(r, 401, "invalid-token", "Unauthorized")
    assert upstream.received("/appointments") == []
    check_record(audit_of(dry, request_id), request_id=request_id, route="appointments",
                 policy="appointments", client=None, purpose="care", decision="denied_token",
                 status=401)
