"""Rules by resource type, through a real Envoy, on HL7's FHIR R4 examples (tests/envoy/fhir).

A variant of the shipped configuration gives the `patients` and `exports` policies a
`type_key` ("resourceType") and their research purpose rules per FHIR type: a Patient is
pseudonymised with its birth year and gender, an Observation keeps its codes and value and
pseudonymises its subject, a Location keeps its name and city, an Organization is kept,
and a Practitioner (not listed) is withheld whole; `**.telecom` is dropped everywhere.
Expected outputs are exact (pseudonyms recomputed with the session key).
"""

from __future__ import annotations

import json

import pytest

from fhir_examples import example, resource
from harness import assert_json_bytes, assert_problem, describe, pseudonym

CLIENT = "fhir-lab"

RESEARCH = {
    "fields": {"**.telecom": "drop"},
    "types": {
        "Bundle": {"fields": {"type": "keep", "entry.resource": "keep",
                              "entry.search.mode": "keep"}},
        "Patient": {"fields": {"id": "pseudonymize", "birthDate": "year", "gender": "keep"}},
        "Location": {"fields": {"name": "keep", "address.city": "keep"}},
        "Organization": {"default": "keep"},
        "Observation": {"fields": {"code.coding.code": "keep", "valueQuantity": "keep",
                                   "subject.reference": "pseudonymize"}},
        "Encounter": {"fields": {"status": "keep", "class.code": "keep", "contained": "keep"}},
        "SearchParameter": {"fields": {"code": "keep", "type": "keep"}},
    },
}


def typed(conf: dict, lookahead: int | None = None) -> None:
    for name in ("patients", "exports"):
        policy = conf["policies"][name]
        policy["type_key"] = "resourceType"
        policy["purposes"]["research"] = {**RESEARCH,
                                          **{k: v for k, v in policy["purposes"]["research"].items()
                                             if k == "headers"}}
    if lookahead is not None:
        conf.setdefault("limits", {})["max_type_lookahead_bytes"] = lookahead


@pytest.fixture(scope="module")
def fhir_envoy(plugin_variant):
    return plugin_variant("fhir-typed", typed)


def research(envoy, token, path: str, **kw):
    return envoy.get(path, token=token("patients:read", ["research"], client_id=CLIENT),
                     purpose="research", **kw)


def searchset() -> bytes:
    """A searchset of a Patient and what it includes, from HL7's resources."""
    entries = []
    for name, mode in (("Patient-example.json", "match"), ("Observation-example.json", "include"),
                       ("Location-1.json", "include"), ("Organization-1.json", "include"),
                       ("Practitioner-example.json", "include")):
        r = resource(name)
        entries.append({"fullUrl": f"http://hl7.org/fhir/{r['resourceType']}/{r['id']}",
                        "resource": r, "search": {"mode": mode}})
    return json.dumps({"resourceType": "Bundle", "id": "searchset", "type": "searchset",
                       "total": 1, "entry": entries}).encode()


def patient_view(key: str, patient: dict) -> str:
    return ('{"resourceType":"Patient","id":"%s","gender":"%s","birthDate":"%s"}'
            % (pseudonym(key, patient["id"], CLIENT), patient["gender"], patient["birthDate"][:4]))


def test_a_mixed_searchset_is_minimised_per_type(fhir_envoy, upstream, token, pseudonym_key):
    upstream.set("/patients/fhir/searchset", searchset(), content_type="application/fhir+json")
    r = research(fhir_envoy, token, "/patients/fhir/searchset")
    organization = resource("Organization-1.json")
    assert_json_bytes(r, (
        '{"resourceType":"Bundle","type":"searchset","entry":['
        '{"resource":%s,"search":{"mode":"match"}},'
        '{"resource":{"resourceType":"Observation","code":{"coding":[{"code":"29463-7"},'
        '{"code":"3141-9"},{"code":"27113001"},{"code":"body-weight"}]},'
        '"subject":{"reference":"%s"},"valueQuantity":{"value":185,"unit":"lbs",'
        '"system":"http://unitsofmeasure.org","code":"[lb_av]"}},"search":{"mode":"include"}},'
        '{"resource":{"resourceType":"Location","name":"South Wing, second floor",'
        '"address":{"city":"Den Burg"}},"search":{"mode":"include"}},'
        '{"resource":{"resourceType":"Organization","id":"1","text":%s,"identifier":%s,'
        '"name":"Gastroenterology"},"search":{"mode":"include"}},'
        '{"search":{"mode":"include"}}]}'
    ) % (patient_view(pseudonym_key, resource("Patient-example.json")),
         pseudonym(pseudonym_key, "Patient/example", CLIENT),
         json.dumps(organization["text"], separators=(",", ":")),
         json.dumps(organization["identifier"], separators=(",", ":"))))
    # Where the patient lives, how to reach anyone, and the practitioner: not a trace.
    for secret in (b"Chalmers", b"PleasantVille", b"534 Erewhon", b"(03) 5555 6473",
                   b"Careful", b"Galapagosweg", b'"+1 555 234 3523"', b'"gastro@acme.org"'):
        assert secret not in r.content, (secret, describe(r))
    assert r.headers.get("content-type", "").startswith("application/fhir+json"), describe(r)


def test_a_document_bundle_keeps_only_the_listed_types(fhir_envoy, upstream, token,
                                                        pseudonym_key):
    document = example("Bundle-father.json")
    upstream.set("/patients/fhir/document", document)
    parsed = json.loads(document)
    patient = next(e["resource"] for e in parsed["entry"]
                   if e["resource"]["resourceType"] == "Patient")
    observation = next(e["resource"] for e in parsed["entry"]
                       if e["resource"]["resourceType"] == "Observation")
    r = research(fhir_envoy, token, "/patients/fhir/document")
    assert_json_bytes(r, (
        '{"resourceType":"Bundle","type":"document","entry":[{"resource":%s},'
        '{"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"IMP"}}},'
        '{"resource":{"resourceType":"Observation","code":{"coding":[{"code":"46241-6"}]},'
        '"subject":{"reference":"%s"}}}]}'
    ) % (patient_view(pseudonym_key, patient),
         pseudonym(pseudonym_key, observation["subject"]["reference"], CLIENT)))


def test_contained_resources_follow_their_own_type(fhir_envoy, upstream, token):
    upstream.set("/patients/fhir/encounter", example("Encounter-home.json"))
    r = research(fhir_envoy, token, "/patients/fhir/encounter")
    # The contained Location has neither name nor city: only its type member is sent.
    assert_json_bytes(r, '{"resourceType":"Encounter","contained":[{"resourceType":"Location"}],'
                         '"status":"finished","class":{"code":"HH"}}')
    assert b"Client's home" not in r.content


def test_bundles_inside_a_bundle_are_typed_innermost_first(fhir_envoy, upstream, token,
                                                            pseudonym_key):
    upstream.set("/patients/fhir/batch", example("Bundle-bundle-response-simplesummary.json"))
    r = research(fhir_envoy, token, "/patients/fhir/batch")
    match = '{"search":{"mode":"match"}}'
    assert_json_bytes(r, (
        '{"resourceType":"Bundle","type":"batch-response","entry":[{"resource":%s},'
        '{"resource":{"resourceType":"Bundle","type":"searchset","entry":[%s]}},'
        '{"resource":{"resourceType":"Bundle","type":"searchset"}},'
        '{"resource":{"resourceType":"Bundle","type":"searchset"}}]}'
    ) % (patient_view(pseudonym_key, resource("Patient-example.json")), ",".join([match] * 4)))


def test_the_type_member_may_come_last(fhir_envoy, upstream, token, pseudonym_key):
    patient = resource("Patient-example.json")
    last = {k: v for k, v in patient.items() if k != "resourceType"}
    last["resourceType"] = "Patient"
    upstream.set("/patients/fhir/last", json.dumps(last))
    r = research(fhir_envoy, token, "/patients/fhir/last")
    assert_json_bytes(r, '{"id":"%s","gender":"male","birthDate":"1974","resourceType":"Patient"}'
                      % pseudonym(pseudonym_key, "example", CLIENT))
    # As HL7 published it: the type member in the middle.
    upstream.set("/patients/fhir/parameter",
                 example("SearchParameter-patient-extensions-Patient-age.json"))
    r = research(fhir_envoy, token, "/patients/fhir/parameter")
    assert_json_bytes(r, '{"code":"age","resourceType":"SearchParameter","type":"number"}')


def test_bulk_export_ndjson_is_typed_line_by_line_while_streaming(fhir_envoy, upstream, token,
                                                                   pseudonym_key):
    names = ("Patient-example.json", "Observation-example.json", "Practitioner-example.json",
             "Location-1.json")
    lines = [json.dumps(resource(n)).encode() for n in names]
    upstream.set("/exports/fhir", b"\n".join(lines) + b"\n", content_type="application/fhir+ndjson",
                 chunk_size=700)
    t = token("exports:read", ["research"], client_id=CLIENT)
    r = fhir_envoy.get("/exports/fhir", token=t, purpose="research")
    assert r.status_code == 200, describe(r)
    assert "content-length" not in r.headers, "streamed"
    assert r.content.decode().split("\n") == [
        patient_view(pseudonym_key, resource("Patient-example.json")),
        '{"resourceType":"Observation","code":{"coding":[{"code":"29463-7"},{"code":"3141-9"},'
        '{"code":"27113001"},{"code":"body-weight"}]},"subject":{"reference":"%s"},'
        '"valueQuantity":{"value":185,"unit":"lbs","system":"http://unitsofmeasure.org",'
        '"code":"[lb_av]"}}' % pseudonym(pseudonym_key, "Patient/example", CLIENT),
        "null",
        '{"resourceType":"Location","name":"South Wing, second floor","address":{"city":"Den Burg"}}',
        "",
    ]


def test_an_object_past_the_lookahead_limit_fails_closed(plugin_variant, upstream, token):
    envoy = plugin_variant("fhir-typed-lookahead", lambda conf: typed(conf, lookahead=1024))
    patient = resource("Patient-example.json")
    last = {k: v for k, v in patient.items() if k != "resourceType"}
    last["resourceType"] = "Patient"
    body = json.dumps(last).encode()
    assert len(body) > 1024
    upstream.set("/patients/fhir/late", body)
    r = research(envoy, token, "/patients/fhir/late")
    problem = assert_problem(r, 502, "response-not-filterable", "Bad Gateway",
                             absent=[b"Chalmers", b"PleasantVille"])
    assert problem["detail"] == ("the upstream response could not be filtered: an object's type "
                                 "could not be read as the policy requires"), describe(r)
    # Every object the rules go into is held until its type is known, untyped ones to their
    # end: one whose objects all fit within the limit passes.
    upstream.set("/patients/fhir/early", example("Encounter-home.json"))
    r = research(envoy, token, "/patients/fhir/early")
    assert_json_bytes(r, '{"resourceType":"Encounter","contained":[{"resourceType":"Location"}],'
                         '"status":"finished","class":{"code":"HH"}}')
