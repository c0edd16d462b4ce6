"""Transforms on scalar values, through a real Envoy: pseudonymize, year, truncate, mask.

The shipped research purpose (scenario 2) is checked on the sample patients in
test_views.py; here each action and its edges, byte for byte, on the shipped configuration and
on a variant with a `transforms` purpose that uses every action. Pseudonyms are recomputed in
the test (harness.pseudonym) from the key the test gave Envoy's environment.
"""

from __future__ import annotations

import json

import pytest

import render
from conftest import KEY_ENV, sample
from harness import assert_json_bytes, assert_problem, describe, pseudonym

CANARY = b"CANARY-5e1d"


def research(envoy, token, path, client_id="test-client"):
    t = token("patients:read", ["research"], client_id=client_id)
    return envoy.get(path, token=t, purpose="research")


# --- The shipped research purpose ---------------------------------------------------------


def test_research_sees_pseudonym_year_and_truncated_postcode(envoy, sample_patients, token,
                                                             pseudonym_key):
    r = research(envoy, token, "/patients/2", client_id="lab-a")
    assert_json_bytes(
        r, '{"id":"%s","birthDate":"1991","address":{"postalCode":"33"},'
           '"conditions":[{"code":"J45","onset":"2001"}]}' % pseudonym(pseudonym_key, "2", "lab-a"))
    for secret in (b"Dubois", b"Hugo", b"1910733999002", b"Bordeaux", b"cours Exemple",
                   b"+33 6", b"Asthma", b"07-30", b"Caisse"):
        assert secret not in r.content, describe(r)


def test_pseudonym_is_the_hmac_of_the_value_keyed_by_the_environment(envoy, upstream, token,
                                                                      pseudonym_key):
    """HMAC-SHA-256(key from FINALITE_PSEUDONYM_KEY, u32 length of client_id, client_id,
    value), base64url without padding: 43 characters."""
    upstream.set("/patients/p", b'{"id": "patient-0042"}')
    r = research(envoy, token, "/patients/p", client_id="lab-a")
    expected = pseudonym(pseudonym_key, "patient-0042", "lab-a")
    assert len(expected) == 43
    assert_json_bytes(r, '{"id":"%s"}' % expected)


def test_pseudonyms_are_stable_for_one_client(envoy, sample_patients, token):
    first = research(envoy, token, "/patients", client_id="lab-a")
    again = research(envoy, token, "/patients", client_id="lab-a")
    one = research(envoy, token, "/patients/3", client_id="lab-a")
    assert first.status_code == again.status_code == one.status_code == 200
    assert first.content == again.content
    assert first.json()[2]["id"] == one.json()["id"], "the same patient, by any URL"
    ids = [p["id"] for p in first.json()]
    assert len(set(ids)) == 3, "distinct patients, distinct pseudonyms"


def test_pseudonyms_differ_between_clients(envoy, sample_patients, token, pseudonym_key):
    """per_client: two reusers cannot join their extracts on the pseudonyms."""
    a = research(envoy, token, "/patients", client_id="lab-a").json()
    b = research(envoy, token, "/patients", client_id="lab-b").json()
    assert [p["id"] for p in a] == [pseudonym(pseudonym_key, i, "lab-a") for i in "123"]
    assert [p["id"] for p in b] == [pseudonym(pseudonym_key, i, "lab-b") for i in "123"]
    assert not {p["id"] for p in a} & {p["id"] for p in b}
    # Everything else is the same.
    for pa, pb in zip(a, b):
        pa.pop("id"), pb.pop("id")
    assert a == b


def test_pseudonym_of_the_decoded_value(envoy, upstream, token, pseudonym_key):
    """Escapes are decoded before the MAC: "\\u0031" and "1" are the same patient."""
    upstream.set("/patients", b'[{"id": "\\u0031"}, {"id": "1"}, {"id": "p\\u00e9\\ud83d\\ude00"},'
                              b' {"id": 42}, {"id": -1.50e1}]')
    r = research(envoy, token, "/patients", client_id="lab-a")
    p = [pseudonym(pseudonym_key, v, "lab-a") for v in ("1", "1", "p\u00e9\U0001F600", "42",
                                                          "-1.50e1")]
    assert_json_bytes(r, "[" + ",".join('{"id":"%s"}' % x for x in p) + "]")


def test_year_of_dates_and_date_times(envoy, upstream, token):
    """The year as written: no time-zone conversion (the last one is 2020 in UTC)."""
    dates = ["1984-03-12", "1984", "1984-03", "1984-03-12T10:20", "1984-03-12T10:20:30Z",
             "1984-12-31T23:59:59.123+14:00", "1985-01-01T00:30:00-05:00",
             "2019-12-31T23:30:00-01:00"]
    body = json.dumps([{"birthDate": d} for d in dates]).encode()
    upstream.set("/patients", body)
    r = research(envoy, token, "/patients")
    years = ["1984"] * 6 + ["1985", "2019"]
    assert_json_bytes(r, "[" + ",".join('{"birthDate":"%s"}' % y for y in years) + "]")


def test_truncate_postcode(envoy, upstream, token):
    """Characters, not bytes; a number becomes a string; shorter values stay whole."""
    upstream.set("/patients", b'[{"address": {"postalCode": "69003"}},'
                              b' {"address": {"postalCode": 75011}},'
                              b' {"address": {"postalCode": "\\u00c9"}},'
                              b' {"address": {"postalCode": ""}}]')
    r = research(envoy, token, "/patients")
    assert_json_bytes(r, '[{"address":{"postalCode":"69"}},{"address":{"postalCode":"75"}},'
                         '{"address":{"postalCode":"\u00c9"}},{"address":{"postalCode":""}}]')


@pytest.mark.parametrize("value", [
    b'"12/03/1984"', b'"1984-13-01"', b'"1984-03-12T25:00"', b'"1984-03-12T10:20+0100"',
    b'"March 1984"', b'""', b"1984",
])
def test_year_on_a_malformed_date_fails_closed(envoy, upstream, token, value):
    body = (b'{"id": "1", "conditions": [{"code": "' + CANARY + b'"}], "birthDate": ' + value
            + b', "ssn": "1840375999001"}')
    upstream.set("/patients/1", body)
    r = research(envoy, token, "/patients/1")
    problem = assert_problem(r, 502, "response-not-filterable", "Bad Gateway",
                             absent=[CANARY, b"1840375999001"])
    assert "transformed" in problem["detail"], problem
    if value != b'""':
        assert value.strip(b'"') not in r.content, describe(r)


def test_year_failure_late_in_a_large_body_is_still_a_clean_502(envoy, upstream, token):
    """Buffered mode: the first 500 patients were filtered fine, yet nothing goes out."""
    good = b'{"id": "1", "conditions": [{"code": "' + CANARY + b'"}], "birthDate": "1984-03-12"}'
    body = b"[" + b", ".join([good] * 500) + b', {"birthDate": "yesterday"}]'
    upstream.set("/patients", body, chunk_size=4096, delay=0.001)
    r = research(envoy, token, "/patients")
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway", absent=[CANARY])


# --- Every action, on a variant with a `transforms` purpose -------------------------------

TRANSFORMS = {
    "id": "pseudonymize",
    "birthDate": "year",
    "visits": "year",
    "address.postalCode": {"truncate": 2},
    "nickname": {"truncate": 3},
    "phone": {"mask": {"keep_last": 4}},
    "insurance.number": {"mask": {"keep_last": 3}},
    "score": {"mask": {"keep_last": 2}},
    "name": {"mask": {"keep_last": 1}},
    "active": {"truncate": 1},
    "gender": "null",
}


@pytest.fixture(scope="module")
def transforms_envoy(plugin_variant):
    def change(conf):
        conf["policies"]["patients"]["purposes"]["transforms"] = {"fields": TRANSFORMS}

    return plugin_variant("transforms", change)


def transforms(envoy, token, path, client_id="test-client"):
    t = token("patients:read", ["transforms"], client_id=client_id)
    return envoy.get(path, token=t, purpose="transforms")


def test_every_action(transforms_envoy, upstream, token, pseudonym_key):
    body = (b'{"id": "p-1", "name": {"family": "CANARY-N"}, "birthDate": "1984-03-12",'
            b' "address": {"line": "CANARY-L", "postalCode": "69003"},'
            b' "nickname": "\\u00c9lo\\u00efse", "phone": "+33 6 12 34 56 78",'
            b' "insurance": {"provider": "CANARY-P", "number": "MX-0001"},'
            b' "score": 123456, "active": true, "gender": "CANARY-G", "ssn": "CANARY-S"}')
    upstream.set("/patients/1", body)
    r = transforms(transforms_envoy, token, "/patients/1", client_id="lab-a")
    expected = ('{"id":"%s","birthDate":"1984",'
                '"address":{"postalCode":"69"},"nickname":"\u00c9lo",'
                '"phone":"*************6 78","insurance":{"number":"****001"},'
                '"score":"****56","gender":null}' % pseudonym(pseudonym_key, "p-1", "lab-a"))
    assert_json_bytes(r, expected.encode())
    assert b"CANARY" not in r.content


def test_mask_counts_characters(transforms_envoy, upstream, token):
    upstream.set("/patients", '[{"phone": "\u00e9t\u00e9 \U0001F600\u00e9"}, {"phone": "12"},'
                              ' {"phone": ""}, {"phone": "\\ud83d\\ude00abcd"}]'.encode())
    r = transforms(transforms_envoy, token, "/patients")
    assert_json_bytes(r, '[{"phone":"**\u00e9 \U0001F600\u00e9"},{"phone":"12"},{"phone":""},'
                         '{"phone":"*abcd"}]'.encode())


def test_transformed_strings_are_valid_json(transforms_envoy, upstream, token):
    """Quotes, backslashes and control characters in a transformed value are re-escaped."""
    upstream.set("/patients/1",
                 b'{"nickname": "\\"\\\\\\n\\u0001xyz", "phone": "a\\"b\\tc\\u0000"}')
    r = transforms(transforms_envoy, token, "/patients/1")
    assert_json_bytes(r, b'{"nickname":"\\"\\\\\\n","phone":"**b\\tc\\u0000"}')
    assert r.json() == {"nickname": '"\\\n', "phone": "**b\tc\x00"}


def test_transform_meeting_an_object_or_boolean_withholds_it(transforms_envoy, upstream,
                                                              token):
    """null stays null; an object or a boolean cannot be disguised: withheld. An array is
    disguised scalar by scalar, at any nesting."""
    upstream.set("/patients/1", b'{"id": {"system": "CANARY-SYS", "value": "CANARY-V"},'
                                b' "phone": true,'
                                b' "nickname": false, "address": {"postalCode": {"x": 1}},'
                                b' "name": null, "score": [[1], {"CANARY-K": 2}]}')
    r = transforms(transforms_envoy, token, "/patients/1")
    assert_json_bytes(r, b'{"name":null,"score":[["1"]]}')


def test_transform_applies_to_each_scalar_of_an_array(transforms_envoy, upstream, token):
    """A transform that meets an array of scalars disguises each element."""
    upstream.set("/patients/1", b'{"visits": ["2019-01-02", "2021-06-30T08:00:00+02:00", null],'
                                b' "phone": ["+33 6 12 34 56 78"], "birthDate": "1984-03-12"}')
    r = transforms(transforms_envoy, token, "/patients/1")
    assert_json_bytes(r, b'{"visits":["2019","2021",null],"phone":["*************6 78"],'
                         b'"birthDate":"1984"}')


def test_transform_failing_on_an_array_element_fails_closed(transforms_envoy, upstream, token):
    upstream.set("/patients/1", b'{"visits": ["2019-01-02", "' + CANARY + b'"]}')
    assert_problem(transforms(transforms_envoy, token, "/patients/1"), 502,
                   "response-not-filterable", "Bad Gateway", absent=[CANARY, b"2019"])


def test_transform_failure_on_the_variant_fails_closed(transforms_envoy, upstream, token):
    upstream.set("/patients", b'[{"phone": "0612345678", "birthDate": "2019-01-02"},'
                              b' {"phone": "0699999999", "birthDate": "' + CANARY + b'"}]')
    assert_problem(transforms(transforms_envoy, token, "/patients"), 502,
                   "response-not-filterable", "Bad Gateway",
                   absent=[CANARY, b"2019", b"5678", b"9999"])


def test_pseudonyms_without_per_client(plugin_variant, upstream, token, pseudonym_key):
    """per_client false: one pseudonym per value for every reuser, HMAC(key, value)."""
    def change(conf):
        conf["pseudonymization"]["per_client"] = False

    shared = plugin_variant("pseudonyms-shared", change)
    upstream.set("/patients/1", sample("patients/1.json"))
    a = research(shared, token, "/patients/1", client_id="lab-a")
    b = research(shared, token, "/patients/1", client_id="lab-b")
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    assert a.json()["id"] == pseudonym(pseudonym_key, "1")


# --- The key: from the VM's environment, refused if missing or short ----------------------


def test_missing_key_is_refused(refused):
    refused(lambda conf: None,
            f"pseudonymization.key_env: the environment variable {KEY_ENV} is not set in the VM",
            env={KEY_ENV: None})


def test_short_key_is_refused(refused):
    refused(lambda conf: None,
            f"pseudonymization.key_env: the key in {KEY_ENV} is 31 bytes; at least 32 are "
            "required", env={KEY_ENV: "k" * 31})


def test_key_is_in_neither_the_configuration_nor_the_log(envoy, pseudonym_key):
    dump = envoy.admin("/config_dump")
    assert dump.status_code == 200
    assert "FINALITE_PSEUDONYM_KEY" in dump.text, "host_env_keys names the variable"
    assert pseudonym_key not in dump.text
    assert pseudonym_key not in envoy.log()


# --- The configuration as a google.protobuf.Struct ----------------------------------------


@pytest.fixture(scope="module")
def struct_envoy(envoy_factory, test_config, wasm):
    cfg = render.render(test_config(wasm=wasm), plugin_config_as="struct")
    assert render.wasm_config(cfg)["configuration"]["@type"] == (
        "type.googleapis.com/google.protobuf.Struct")
    return envoy_factory(cfg, "struct-config")


@pytest.mark.parametrize("purpose,path", [
    ("research", "/patients"), ("billing", "/patients/1"), ("care", "/patients"),
    ("marketing", "/patients/1"),
])
def test_struct_configuration_filters_identically(struct_envoy, envoy, sample_patients, token,
                                                  purpose, path):
    """The shipped policy written as a Struct (numbers become doubles, e.g. max_body_bytes)
    loads and gives the same bytes and headers as the StringValue JSON, refusals included."""
    t = token("patients:read", ["research", "billing", "care"], client_id="lab-s")
    a = envoy.get(path, token=t, purpose=purpose)
    b = struct_envoy.get(path, token=t, purpose=purpose)
    assert (a.status_code, a.content) == (b.status_code, b.content), describe(b)
    strip = {"date", "x-envoy-upstream-service-time"}
    assert ({k.lower(): v for k, v in a.headers.items() if k.lower() not in strip}
            == {k.lower(): v for k, v in b.headers.items() if k.lower() not in strip})


def test_struct_configuration_keeps_the_limits(struct_envoy, upstream, token):
    """max_body_bytes (1 MiB, a double in the Struct) still trips."""
    upstream.set("/patients", b"[" + b"1," * 600_000 + b"1]", chunk_size=65536)
    r = struct_envoy.get("/patients", token=token("patients:read", ["billing"]),
                         purpose="billing")
    problem = assert_problem(r, 502, "response-not-filterable", "Bad Gateway")
    assert "1048576" in problem["detail"]
