"""Who may call what: tokens, scopes, purposes, policies (the request path).

Every refusal is finalite's problem+json response, and the upstream never sees the request.
"""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from harness import assert_problem, describe

INVALID_TOKEN = 'Bearer error="invalid_token"'


def assert_not_forwarded(upstream, path):
    assert upstream.received(path) == [], f"the upstream received a refused request for {path}"


# --- 401: no verified token ---------------------------------------------------------------


def test_no_token_is_401(envoy, sample_patients):
    r = envoy.get("/patients/1", purpose="billing")
    assert_problem(r, 401, "invalid-token", "Unauthorized", www_authenticate=INVALID_TOKEN)
    assert_not_forwarded(sample_patients, "/patients/1")


def _other_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


BAD_TOKENS = {
    "expired": dict(ttl=-120),
    "wrong-signature": dict(key="other"),
    "wrong-audience": dict(audience="another-api"),
    "wrong-issuer": dict(issuer="https://evil.example"),
    "not-yet-valid": dict(extra={"nbf": int(time.time()) + 3600}),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_token_is_401(envoy, sample_patients, token, case):
    kw = dict(BAD_TOKENS[case])
    if kw.get("key") == "other":
        kw["key"] = _other_key()
    t = token("patients:read", ["billing"], **kw)
    r = envoy.get("/patients/1", token=t, purpose="billing")
    assert_problem(r, 401, "invalid-token", "Unauthorized", www_authenticate=INVALID_TOKEN)
    assert_not_forwarded(sample_patients, "/patients/1")


def test_garbage_token_is_401(envoy, sample_patients):
    r = envoy.get("/patients/1", token="not.a.jwt", purpose="billing")
    assert_problem(r, 401, "invalid-token", "Unauthorized", www_authenticate=INVALID_TOKEN)
    assert_not_forwarded(sample_patients, "/patients/1")


def test_no_token_on_appointments_is_401(envoy, upstream):
    upstream.set("/appointments", b"[]")
    r = envoy.get("/appointments", purpose="care")
    assert_problem(r, 401, "invalid-token", "Unauthorized", www_authenticate=INVALID_TOKEN)
    assert_not_forwarded(upstream, "/appointments")


# --- 403: scopes --------------------------------------------------------------------------


def test_missing_scope_is_403(envoy, sample_patients, token):
    t = token("appointments:read", ["billing"])
    r = envoy.get("/patients/1", token=t, purpose="billing")
    assert_problem(r, 403, "insufficient-scope", "Forbidden",
                   www_authenticate='Bearer error="insufficient_scope", scope="patients:read"')
    assert_not_forwarded(sample_patients, "/patients/1")


def test_no_scope_at_all_is_403(envoy, sample_patients, token):
    r = envoy.get("/patients/1", token=token(None, ["billing"]), purpose="billing")
    assert_problem(r, 403, "insufficient-scope", "Forbidden",
                   www_authenticate='Bearer error="insufficient_scope", scope="patients:read"')


def test_write_needs_write_scope(envoy, sample_patients, token):
    """The patients policy asks `patients:write` for any method but GET."""
    t = token("patients:read", ["care"])
    r = envoy.get("/patients/1", token=t, purpose="care", method="POST", data=b"{}")
    assert_problem(r, 403, "insufficient-scope", "Forbidden",
                   www_authenticate='Bearer error="insufficient_scope", scope="patients:write"')
    assert_not_forwarded(sample_patients, "/patients/1")


def test_scope_checked_before_purpose(envoy, sample_patients, token):
    r = envoy.get("/patients/1", token=token("appointments:read", ["billing"]))
    assert_problem(r, 403, "insufficient-scope", "Forbidden")


def test_scopes_from_scp_array(envoy, sample_patients, token):
    """Scopes are read from `scope` (space-separated) or `scp` (array)."""
    t = token(None, ["billing"], extra={"scp": ["patients:read"]})
    r = envoy.get("/patients/1", token=t, purpose="billing")
    assert r.status_code == 200, describe(r)


# --- 403: purposes ------------------------------------------------------------------------


def test_undeclared_purpose_is_403(envoy, sample_patients, token):
    r = envoy.get("/patients/1", token=token("patients:read", ["billing"]))
    assert_problem(r, 403, "purpose-undeclared", "Forbidden")
    assert_not_forwarded(sample_patients, "/patients/1")


def test_unauthorised_purpose_is_403(envoy, sample_patients, token):
    r = envoy.get("/patients/1", token=token("patients:read", ["billing"]), purpose="research")
    assert_problem(r, 403, "purpose-not-authorised", "Forbidden")
    assert_not_forwarded(sample_patients, "/patients/1")


def test_token_without_purposes_authorises_none(envoy, sample_patients, token):
    r = envoy.get("/patients/1", token=token("patients:read", None), purpose="care")
    assert_problem(r, 403, "purpose-not-authorised", "Forbidden")


def test_purpose_not_accepted_by_route_is_403(envoy, sample_patients, token):
    """Authorised by the token, but the patients policy defines no `marketing` purpose."""
    t = token("patients:read", ["billing", "marketing"])
    r = envoy.get("/patients/1", token=t, purpose="marketing")
    assert_problem(r, 403, "purpose-not-accepted", "Forbidden")
    assert_not_forwarded(sample_patients, "/patients/1")


def test_purpose_from_purpose_scope(envoy, sample_patients, token):
    """A `purpose:NAME` scope authorises NAME like the purposes claim does."""
    t = token("patients:read purpose:research", None)
    r = envoy.get("/patients/1", token=t, purpose="research")
    assert r.status_code == 200, describe(r)


def test_purposes_claim_as_space_separated_string(envoy, sample_patients, token):
    t = token("patients:read", "billing research")
    assert envoy.get("/patients/1", token=t, purpose="research").status_code == 200


def test_purpose_on_open_data_not_defined_is_403(envoy, upstream):
    upstream.set("/open/admissions", b"[]")
    r = envoy.get("/open/admissions", purpose="research")
    assert_problem(r, 403, "purpose-not-accepted", "Forbidden")
    assert_not_forwarded(upstream, "/open/admissions")


# --- Policies -----------------------------------------------------------------------------


def test_path_without_policy_is_403(envoy, upstream, token):
    upstream.set("/admin/export", b'{"everything": true}')
    for t in (None, token("patients:read", ["care"])):
        r = envoy.get("/admin/export", token=t, purpose="care")
        assert_problem(r, 403, "no-policy", "Forbidden", absent=[b"everything"])
    assert_not_forwarded(upstream, "/admin/export")


def test_dot_segments_do_not_escape_a_policy(envoy, sample_patients):
    """/open/../patients/1 is normalised by Envoy and needs a token like /patients/1."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    conn.request("GET", "/open/../patients/1", headers={"x-purpose": "open-data"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 401, body
    assert json.loads(body)["type"] == "urn:finalite:problem:invalid-token"
    assert_not_forwarded(sample_patients, "/patients/1")


def test_health_passes_without_token(envoy, upstream):
    upstream.set("/health", b'{"status": "ok"}', headers=[("x-patient-count", "0")])
    r = envoy.get("/health")
    assert r.status_code == 200, describe(r)
    assert r.content == b'{"status": "ok"}'
    assert len(upstream.received("/health")) == 1


def test_open_data_needs_no_token(envoy, upstream):
    upstream.set("/open/admissions", b'[{"service": "x", "year": 2025}]')
    r = envoy.get("/open/admissions")
    assert r.status_code == 200, describe(r)
