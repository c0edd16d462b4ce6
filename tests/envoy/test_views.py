"""What each purpose sees: filtered JSON, byte for byte, and filtered headers.

The contract for the bytes: kept scalar values and wholly kept subtrees are copied exactly as
the upstream wrote them (spacing, number spelling, escapes); a container the filter had to open
(because a rule reaches inside it) is written compactly; a container whose members are all
withheld and whose own default is drop is omitted; the root is always present.

The sample patients (envoy/sample-data) are pretty-printed with one-line sub-objects, so a kept
subtree such as `name` keeps its inner spaces while the opened root loses its indentation.

research sees transformed values (scenario 2): `id` pseudonymised per client (computed
here with the session's key, see harness.pseudonym), dates as years, the postcode truncated;
transformed values are JSON strings. test_transforms.py covers each action in detail.
"""

from __future__ import annotations

import http.client
import json

import pytest

from conftest import sample
from harness import assert_json_bytes, describe, media_type, pseudonym

# --- Expected views of the sample patients ------------------------------------------------

BILLING = {
    1: '{"id":"1","name":{"family": "Martin", "given": ["Claire", "L\\u00e9a"]},'
       '"insurance":{"provider": "Mutuelle Exemple", "number": "MX-0001"}}',
    2: '{"id":"2","name":{"family": "Dubois", "given": ["Hugo"]},'
       '"insurance":{"provider": "Caisse Fictive", "number": "CF-0002"}}',
    3: '{"id":"3","name":{"family": "Nguyen", "given": ["Anh", "Thi"]},'
       '"insurance":{"provider": "Mutuelle Exemple", "number": "MX-0003"}}',
}
# `{id}`: the patient's pseudonym for the calling client.
RESEARCH_TEMPLATES = {
    1: '{{"id":"{id}","birthDate":"1984","address":{{"postalCode":"69"}},'
       '"conditions":[{{"code":"E11","onset":"2015"}},{{"code":"I10","onset":"2019"}}]}}',
    2: '{{"id":"{id}","birthDate":"1991","address":{{"postalCode":"33"}},'
       '"conditions":[{{"code":"J45","onset":"2001"}}]}}',
    3: '{{"id":"{id}","birthDate":"1958","address":{{"postalCode":"59"}},'
       '"conditions":[{{"code":"M81","onset":"2012"}},{{"code":"H25","onset":"2021"}}]}}',
}
TEST_CLIENT = "test-client"  # the client_id of the session's tokens (conftest `token`)


def research_views(key: str, client: str = TEST_CLIENT) -> dict[int, str]:
    """The research view of each sample patient, as `client` sees it."""
    return {i: t.format(id=pseudonym(key, str(i), client))
            for i, t in RESEARCH_TEMPLATES.items()}


@pytest.fixture(scope="module")
def research_view(pseudonym_key) -> dict[int, str]:
    """research_views() for the session's key and tokens."""
    return research_views(pseudonym_key)


def array(views: dict[int, str]) -> str:
    return "[" + ",".join(views[i] for i in (1, 2, 3)) + "]"


def purposes_token(token, *purposes):
    return token("patients:read appointments:read", list(purposes))


# --- /patients/1 and /patients ------------------------------------------------------------


def test_billing_view_of_one_patient(envoy, sample_patients, token):
    r = envoy.get("/patients/1", token=purposes_token(token, "billing"), purpose="billing")
    assert_json_bytes(r, BILLING[1])


def test_research_view_of_one_patient(envoy, sample_patients, token, research_view):
    r = envoy.get("/patients/1", token=purposes_token(token, "research"), purpose="research")
    assert_json_bytes(r, research_view[1])


def test_care_view_of_one_patient_is_the_upstream_body(envoy, sample_patients, token):
    r = envoy.get("/patients/1", token=purposes_token(token, "care"), purpose="care")
    assert r.status_code == 200, describe(r)
    assert r.content == sample("patients/1.json")


def test_billing_view_of_all_patients(envoy, sample_patients, token):
    r = envoy.get("/patients", token=purposes_token(token, "billing"), purpose="billing")
    assert_json_bytes(r, array(BILLING))


def test_research_view_of_all_patients(envoy, sample_patients, token, research_view):
    r = envoy.get("/patients", token=purposes_token(token, "research"), purpose="research")
    assert_json_bytes(r, array(research_view))


def test_care_view_of_all_patients_is_the_upstream_body(envoy, sample_patients, token):
    r = envoy.get("/patients", token=purposes_token(token, "care"), purpose="care")
    assert r.status_code == 200, describe(r)
    assert r.content == sample("patients.json")


def test_billing_and_research_see_different_data(envoy, sample_patients, token):
    """Scenarios 1 and 2 (restricted sharing, research): one URL, one token, two purposes, two views."""
    t = purposes_token(token, "billing", "research")
    billing = envoy.get("/patients/1", token=t, purpose="billing").json()
    research = envoy.get("/patients/1", token=t, purpose="research").json()
    assert set(billing) == {"id", "name", "insurance"}
    assert set(research) == {"id", "birthDate", "address", "conditions"}
    for view in (billing, research):
        assert "ssn" not in json.dumps(view) and "phone" not in view
    assert "conditions" not in billing, "billing sees no diagnoses"
    assert "name" not in research, "research sees no names"


def test_sample_patients_on_chunk_boundaries(envoy, upstream, token, research_view):
    """The same views when the body arrives in small pieces (split inside keys, strings and
    `\\u00e9` escapes)."""
    for size in (1, 3, 64):
        upstream.set("/patients", sample("patients.json"), headers=[("x-patient-count", "3")],
                     chunk_size=size, delay=0.0005 if size > 1 else 0)
        t = purposes_token(token, "billing", "research", "care")
        assert_json_bytes(envoy.get("/patients", token=t, purpose="billing"), array(BILLING))
        assert_json_bytes(envoy.get("/patients", token=t, purpose="research"),
                          array(research_view))
        r = envoy.get("/patients", token=t, purpose="care")
        assert r.content == sample("patients.json"), f"chunk size {size}"


# --- The byte-level contract on hand-written bodies ---------------------------------------

ODD = b"""{
  "id" : "p-1" ,
  "n\\u0061me": {"family" : "Exemple",   "given": [ "\\u00e9mile", "A\\"B" ] },
  "score": 1.0E+2,
  "ratio": -0.000e-0,
  "big": 12345678901234567890123,
  "flags": [true, false, null],
  "empty": {},
  "nested": [ [ ], [ { } ] ],
  "slash": "a\\/b\\ud83d\\ude00"
}
"""


def test_care_passes_odd_json_byte_identical(envoy, upstream, token):
    """care has default keep and no rules: the upstream bytes go out untouched."""
    upstream.set("/patients/odd", ODD)
    r = envoy.get("/patients/odd", token=purposes_token(token, "care"), purpose="care")
    assert r.status_code == 200, describe(r)
    assert r.content == ODD


def test_kept_values_keep_their_spelling(envoy, upstream, token):
    """Opened objects are compact; kept scalars and kept subtrees are copied as written."""
    body = (b'{ "id" : 1.0E+2 , "name" : { "family" : "\\u00c9mile" ,\n "given" : [ ] } ,'
            b' "insurance": [ 1 , -0.5e3 ], "ssn": "X" }')
    upstream.set("/patients/spelling", body)
    r = envoy.get("/patients/spelling", token=purposes_token(token, "billing"),
                  purpose="billing")
    assert_json_bytes(r, b'{"id":1.0E+2,"name":{ "family" : "\\u00c9mile" ,\n "given" : [ ] },'
                         b'"insurance":[ 1 , -0.5e3 ]}')


def test_keys_are_matched_after_unescaping(envoy, upstream, token, pseudonym_key):
    body = (b'{"\\u0069d": "1", "birth\\u0044ate": "1984-03-12", "s\\u0073n": "CANARY-SSN",'
            b' "address": {"postalC\\u006fde": "69003", "line": "CANARY-LINE"}}')
    upstream.set("/patients/escaped", body)
    r = envoy.get("/patients/escaped", token=purposes_token(token, "research"),
                  purpose="research")
    assert r.status_code == 200, describe(r)
    assert b"CANARY" not in r.content
    # A kept key is written as the upstream spelled it (escapes and all).
    assert_json_bytes(r, '{"\\u0069d":"%s","birth\\u0044ate":"1984",'
                         '"address":{"postalC\\u006fde":"69"}}'
                      % pseudonym(pseudonym_key, "1", TEST_CLIENT))


def test_denylist_drops_escaped_and_duplicate_keys(envoy, upstream, token):
    """appointments/care keeps everything but `**.notes`, however the key is spelled."""
    body = (b'{"id": "a", "n\\u006ftes": "SECRET-1", "notes": "SECRET-2", "notes": "SECRET-3",'
            b' "followUp": {"\\u006eotes": "SECRET-4", "date": "2027-01-14"}}')
    upstream.set("/appointments", body)
    r = envoy.get("/appointments", token=purposes_token(token, "care"), purpose="care")
    assert r.status_code == 200, describe(r)
    assert b"SECRET" not in r.content
    assert_json_bytes(r, b'{"id":"a","followUp":{"date":"2027-01-14"}}')


def test_duplicate_keys_all_treated_alike(envoy, upstream, token, pseudonym_key):
    body = b'{"id": "1", "ssn": "CANARY-1", "id": "2", "ssn": "CANARY-2"}'
    upstream.set("/patients/dup", body)
    r = envoy.get("/patients/dup", token=purposes_token(token, "research"), purpose="research")
    p1, p2 = (pseudonym(pseudonym_key, v, TEST_CLIENT) for v in ("1", "2"))
    assert r.status_code == 200, describe(r)
    assert r.content == b'{"id":"%s","id":"%s"}' % (p1.encode(), p2.encode())


def test_containers_with_nothing_kept_are_omitted(envoy, upstream, token):
    """research opens `address` and `conditions` elements; when nothing in them survives they
    disappear rather than leaving {} behind."""
    body = (b'{"birthDate": null, "address": {"line": "x", "city": "Lyon"},'
            b' "conditions": [{"display": "y"}, {"code": "E11", "note": "z"}, {"note": "w"}]}')
    upstream.set("/patients/sparse", body)
    r = envoy.get("/patients/sparse", token=purposes_token(token, "research"),
                  purpose="research")
    assert_json_bytes(r, b'{"birthDate":null,"conditions":[{"code":"E11"}]}')


def test_root_is_always_present(envoy, upstream, token):
    t = purposes_token(token, "research")
    upstream.set("/patients/nothing", b'{"name": {"family": "x"}, "ssn": "CANARY"}')
    assert_json_bytes(envoy.get("/patients/nothing", token=t, purpose="research"), b"{}")
    upstream.set("/patients", b'[{"name": "x"}, {"phone": "y"}]')
    assert_json_bytes(envoy.get("/patients", token=t, purpose="research"), b"[]")


def test_denylist_keeps_emptied_objects(envoy, upstream, token):
    """A container whose own default is keep stays, even with all its members dropped."""
    upstream.set("/appointments", b'[{"id": "a", "followUp": {"notes": "SECRET"}}]')
    r = envoy.get("/appointments", token=purposes_token(token, "care"), purpose="care")
    assert_json_bytes(r, b'[{"id":"a","followUp":{}}]')


# --- Other routes: appointments, open data ------------------------------------------------


def test_appointments_care_drops_notes_everywhere(envoy, upstream, token):
    upstream.set("/appointments", sample("appointments.json"))
    r = envoy.get("/appointments", token=purposes_token(token, "care"), purpose="care")
    assert_json_bytes(
        r,
        '[{"id":"a-101","patientId":"1","date":"2026-12-03T09:30:00+01:00",'
        '"act":"CCAM:DEQP003","practitioner":"Dr Exemple","followUp":{"date":"2027-01-14"}},'
        '{"id":"a-102","patientId":"3","date":"2026-12-04T14:00:00+01:00",'
        '"act":"CCAM:BFGA004","practitioner":"Dr Fictif","followUp":null}]')


def test_appointments_billing(envoy, upstream, token):
    upstream.set("/appointments", sample("appointments.json"))
    r = envoy.get("/appointments", token=purposes_token(token, "billing"), purpose="billing")
    assert_json_bytes(
        r,
        '[{"id":"a-101","patientId":"1","date":"2026-12-03T09:30:00+01:00",'
        '"act":"CCAM:DEQP003"},'
        '{"id":"a-102","patientId":"3","date":"2026-12-04T14:00:00+01:00",'
        '"act":"CCAM:BFGA004"}]')


def test_open_data_default_purpose(envoy, upstream):
    """Scenario 3: no token, no declared purpose, only aggregate fields."""
    upstream.set("/open/admissions", sample("open-admissions.json"))
    r = envoy.get("/open/admissions")
    assert_json_bytes(
        r,
        '[{"service":"cardiology","year":2025,"admissions":1243,"averageStay":4.2},'
        '{"service":"endocrinology","year":2025,"admissions":512,"averageStay":2.8},'
        '{"service":"pulmonology","year":2025,"admissions":377,"averageStay":5.1}]')


# --- Media types --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    "application/json; charset=utf-8", "application/fhir+json", "Application/JSON"])
def test_json_media_types_are_filtered(envoy, upstream, token, content_type, research_view):
    upstream.set("/patients/1", sample("patients/1.json"), content_type=content_type)
    r = envoy.get("/patients/1", token=purposes_token(token, "research"), purpose="research")
    assert_json_bytes(r, research_view[1])


# --- Headers ------------------------------------------------------------------------------

PATIENT_HEADERS = [("x-patient-count", "1"), ("X-Patient-Flags", "vip"),
                   ("x-request-cost", "3")]


def test_research_removes_patient_headers(envoy, upstream, token):
    upstream.set("/patients/1", sample("patients/1.json"), headers=PATIENT_HEADERS)
    r = envoy.get("/patients/1", token=purposes_token(token, "research"), purpose="research")
    assert r.status_code == 200, describe(r)
    assert "x-patient-count" not in r.headers
    assert "x-patient-flags" not in r.headers
    assert r.headers.get("x-request-cost") == "3", "only x-patient-* is removed"


@pytest.mark.parametrize("purpose", ["billing", "care"])
def test_other_purposes_keep_patient_headers(envoy, upstream, token, purpose):
    upstream.set("/patients/1", sample("patients/1.json"), headers=PATIENT_HEADERS)
    r = envoy.get("/patients/1", token=purposes_token(token, purpose), purpose=purpose)
    assert r.status_code == 200, describe(r)
    assert r.headers.get("x-patient-count") == "1"
    assert r.headers.get("x-patient-flags") == "vip"


@pytest.mark.parametrize("purpose", ["billing", "research"])
def test_filtered_responses_have_no_content_length(envoy, sample_patients, token, purpose):
    r = envoy.get("/patients/1", token=purposes_token(token, purpose), purpose=purpose)
    assert r.status_code == 200, describe(r)
    assert "content-length" not in r.headers, describe(r)
    assert media_type(r) == "application/json"


@pytest.mark.parametrize("purpose", ["billing", "research", "care"])
def test_upstream_is_asked_for_an_uncompressed_body(envoy, sample_patients, token, purpose):
    r = envoy.get("/patients/1", token=purposes_token(token, purpose), purpose=purpose,
                  headers={"accept-encoding": "gzip, br, zstd"})
    assert r.status_code == 200, describe(r)
    [rec] = sample_patients.received("/patients/1")
    assert not rec.has_header("accept-encoding"), rec.headers


@pytest.mark.parametrize("purpose", ["billing", "research", "care"])
def test_upstream_is_not_asked_for_a_range(envoy, sample_patients, token, purpose):
    """Part of a body is not a JSON document the filter could read: `range` never reaches
    the upstream, whatever the purpose, and the client gets the whole view."""
    r = envoy.get("/patients/1", token=purposes_token(token, purpose), purpose=purpose,
                  headers={"range": "bytes=0-9"})
    assert r.status_code == 200, describe(r)
    [rec] = sample_patients.received("/patients/1")
    assert not rec.has_header("range"), rec.headers


def test_a_purpose_header_sent_twice_must_say_the_same(envoy, sample_patients, token):
    """Two purpose headers: the same value twice declares it; two different values are
    refused (400 purpose-ambiguous), whatever their order and although the token allows
    both (test_side_channels.py checks the record)."""
    def view(first: str, second: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
        try:
            conn.putrequest("GET", "/patients/1")
            conn.putheader("authorization",
                           f"Bearer {purposes_token(token, 'billing', 'research')}")
            conn.putheader("x-purpose", first)
            conn.putheader("x-purpose", second)
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    assert view("billing", "billing") == (200, BILLING[1].encode())
    for first, second in (("billing", "research"), ("research", "billing")):
        status, body = view(first, second)
        assert status == 400, body
        assert json.loads(body)["type"] == "urn:finalite:problem:purpose-ambiguous", body
