"""SMART App Launch scopes through a real Envoy, on HL7's FHIR R4 examples (tests/envoy/fhir).

The shipped configuration's `fhir` policy enforces SMART scopes (`"fhir": {"base": "/fhir",
"smart_scopes": true, "patient_claim": "patient"}`) behind Envoy's jwt_authn: the tokens are
RS256 JWTs the provider verifies, carrying `scope`, `purposes` and, for `patient/` scopes,
the launch patient in `patient`. Every app here reads for the `care` purpose (everything
kept), so what a client gets is exactly the server's body less what the scopes withhold.

The server's search results are Bundles put together from HL7's resources: Observations of
three patients (`example`: vital signs and a laboratory result; `infant`: a laboratory blood
group; `f001`: a glucose result without category) and a Condition of `example` that the
server includes. Expected bodies are exact bytes: under SMART scopes every object of the body
is opened (a resource may stand anywhere) and written compactly, so a kept resource is the
server's JSON without its insignificant whitespace.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

import pytest

from fhir_examples import example, resource
from harness import HTTP_TIMEOUT, assert_json_bytes, assert_problem, describe
from records import audit_of, check_record, tally
from test_streaming import read_until_broken, stream_reset_logged

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
CONTENT_TYPE = "application/fhir+json"


def rid(name: str) -> str:
    return f"smart-{name}-{secrets.token_hex(6)}"


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def as_sent(name: str) -> bytes:
    """HL7's file as finalite sends it when every resource in it is granted: compactly."""
    return compact(resource(name)).encode()


def key(r: dict[str, Any]) -> str:
    return f"{r['resourceType']}/{r['id']}"


def entry(r: dict[str, Any], mode: str = "match") -> dict[str, Any]:
    return {"fullUrl": f"https://ehr.example/fhir/{key(r)}", "resource": r,
            "search": {"mode": mode}}


def searchset(*entries: dict[str, Any]) -> dict[str, Any]:
    """A searchset as a server writes it, `total` counting the matches."""
    return {"resourceType": "Bundle", "id": "search-1", "type": "searchset",
            "total": sum(e["search"]["mode"] == "match" for e in entries),
            "entry": list(entries)}


def granted(bundle: dict[str, Any], kept: set[str]) -> str:
    """`bundle` as a client may see it: no `total`, and every entry whose resource is not in
    `kept` withheld whole (its `fullUrl` and `search` would tell of the resource)."""
    out = {k: v for k, v in bundle.items() if k != "total"}
    out["entry"] = [e for e in bundle["entry"] if key(e["resource"]) in kept]
    return compact(out)


def withheld(bundle: dict[str, Any], kept: set[str]) -> dict[str, Any]:
    """The audit record's `withheld_resources` for `granted(bundle, kept)`: by type."""
    counts: dict[str, int] = {}
    for e in bundle["entry"]:
        if key(e["resource"]) not in kept:
            t = e["resource"]["resourceType"]
            counts[t] = counts.get(t, 0) + 1
    return tally(counts)


# A searchset's `total`, withheld, in the record's field counts.
TOTAL = tally({"total": 1})


def allowed_record(envoy, request_id: str, sent: bytes, received: bytes, **expected) -> None:
    """The audit record of a request the scopes allowed, for the care purpose."""
    check_record(audit_of(envoy, request_id), request_id=request_id, route="fhir",
                 policy="fhir", client="smart-app", purpose="care", decision="allowed",
                 status=200, bytes_in=len(sent), bytes_out=len(received), **expected)


OBS_EXAMPLE = resource("Observation-example.json")  # Patient/example, vital-signs
OBS_LAB = resource("Observation-map-sitting.json")  # Patient/example, laboratory
OBS_INFANT = resource("Observation-bloodgroup.json")  # Patient/infant, laboratory
OBS_F001 = resource("Observation-f001.json")  # Patient/f001, no category
CONDITION = resource("Condition-example.json")  # Patient/example
OBSERVATIONS = searchset(entry(OBS_EXAMPLE), entry(OBS_LAB), entry(OBS_INFANT), entry(OBS_F001),
                         entry(CONDITION, "include"))


def app(token, scope: str, patient: str | None = None, client: str = "smart-app") -> str:
    """A SMART app's token: its SMART scopes, the policy's own `fhir:read`, the care purpose
    and, if given, the launch patient."""
    return token(f"fhir:read {scope}", ["care"], client_id=client,
                 extra={"patient": patient} if patient else None)


def get(envoy, path: str, token: str | None, request_id: str, **kw):
    return envoy.get(path, token=token, purpose="care", headers={"x-request-id": request_id},
                     **kw)


def serve_search(upstream, path: str = "/fhir/Observation",
                 bundle: dict[str, Any] = OBSERVATIONS) -> bytes:
    body = compact(bundle).encode()
    upstream.set(path, body, content_type=CONTENT_TYPE)
    return body


# --- Public endpoints -----------------------------------------------------------------------


def test_metadata_and_smart_configuration_need_no_token(envoy, upstream):
    capability = example("CapabilityStatement-phr.json")
    configuration = compact({
        "issuer": "https://idp.example",
        "authorization_endpoint": "https://idp.example/authorize",
        "token_endpoint": "https://idp.example/token",
        "capabilities": ["launch-standalone", "client-public", "context-standalone-patient",
                         "permission-v1", "permission-v2"],
        "scopes_supported": ["openid", "launch/patient", "patient/*.rs", "user/*.rs"],
    }).encode()
    upstream.set("/fhir/metadata", capability, content_type=CONTENT_TYPE)
    upstream.set("/fhir/.well-known/smart-configuration", configuration)
    for path, body in (("/fhir/metadata", capability),
                       ("/fhir/.well-known/smart-configuration", configuration)):
        request_id = rid("public")
        r = envoy.get(path, headers={"x-request-id": request_id})
        assert r.status_code == 200, describe(r)
        assert r.content == body
        check_record(audit_of(envoy, request_id), request_id=request_id, route="fhir",
                     policy="fhir", client=None, purpose=None, decision="passed_unfiltered",
                     status=200)
    # Public means only these two: the resources still need a token.
    r = envoy.get("/fhir/Observation")
    assert_problem(r, 401, "invalid-token", "Unauthorized",
                   www_authenticate='Bearer error="invalid_token"')


# --- Searches -------------------------------------------------------------------------------


def test_a_user_scope_search_withholds_the_types_not_granted(envoy, upstream, token):
    """user/Observation.rs (v2): every Observation, whoever its patient; the included
    Condition withheld; `total` withheld (it counted what the server matched, not what the
    client may see)."""
    sent = serve_search(upstream)
    request_id = rid("user-v2")
    r = get(envoy, "/fhir/Observation", app(token, "user/Observation.rs"), request_id)
    kept = {key(OBS_EXAMPLE), key(OBS_LAB), key(OBS_INFANT), key(OBS_F001)}
    assert_json_bytes(r, granted(OBSERVATIONS, kept))
    assert b"Condition" not in r.content
    assert r.headers["content-type"] == CONTENT_TYPE
    allowed_record(envoy, request_id, sent, r.content, withheld=TOTAL,
                   withheld_resources=tally({"Condition": 1}))


def test_a_count_only_search_tells_nothing(envoy, upstream, token):
    """`_summary=count`: the server answers with the number of matches alone, which is the
    `total` SMART scopes withhold (the matches may be other patients' or other categories')."""
    sent = b'{"resourceType":"Bundle","type":"searchset","total":12}'
    upstream.set("/fhir/Observation", sent, content_type=CONTENT_TYPE)
    request_id = rid("count")
    r = get(envoy, "/fhir/Observation?_summary=count",
            app(token, "patient/Observation.rs", "example"), request_id)
    assert_json_bytes(r, '{"resourceType":"Bundle","type":"searchset"}')
    allowed_record(envoy, request_id, sent, r.content, withheld=TOTAL,
                   withheld_resources=tally())


def test_a_body_that_is_not_a_resource_is_refused(envoy, upstream, token):
    upstream.set("/fhir/Observation", b"[" + as_sent("Observation-bloodgroup.json") + b"]")
    r = get(envoy, "/fhir/Observation", app(token, "user/Observation.rs"), rid("array"))
    problem = assert_problem(r, 403, "resource-not-granted", "Forbidden",
                             absent=[b"bloodgroup"])
    assert problem["detail"] == ("the response is not a FHIR resource, so the caller's SMART "
                                 "scopes grant none of it")


@pytest.mark.parametrize("scope", ["user/Observation.read", "user/Observation.*",
                                   "user/Observation.rs user/Condition.read"])
def test_v1_scopes_read_as_v2(envoy, upstream, token, scope):
    serve_search(upstream)
    r = get(envoy, "/fhir/Observation", app(token, scope), rid("user-v1"))
    kept = {key(OBS_EXAMPLE), key(OBS_LAB), key(OBS_INFANT), key(OBS_F001)}
    if "Condition" in scope:
        kept.add(key(CONDITION))
    assert_json_bytes(r, granted(OBSERVATIONS, kept))


def test_a_patient_scope_search_keeps_the_launch_patients_resources(envoy, upstream, token):
    """patient/Observation.rs with patient=example: the Observations of `infant` and `f001`
    are withheld, and the Condition (no grant on its type)."""
    sent = serve_search(upstream)
    request_id = rid("patient")
    r = get(envoy, "/fhir/Observation", app(token, "patient/Observation.rs", "example"),
            request_id)
    kept = {key(OBS_EXAMPLE), key(OBS_LAB)}
    assert_json_bytes(r, granted(OBSERVATIONS, kept))
    for other in (b"Patient/infant", b"Patient/f001", b"bloodgroup", b"P. van de Heuvel"):
        assert other not in r.content, (other, describe(r))
    allowed_record(envoy, request_id, sent, r.content, withheld=TOTAL,
                   withheld_resources=tally({"Observation": 2, "Condition": 1}))


def test_a_patient_scope_search_on_patients_keeps_only_the_launch_patient(envoy, upstream,
                                                                          token):
    patients = searchset(entry(resource("Patient-example.json")),
                         entry(resource("Patient-f001.json")))
    serve_search(upstream, "/fhir/Patient", patients)
    r = get(envoy, "/fhir/Patient", app(token, "patient/*.rs", "example"), rid("patients"))
    assert_json_bytes(r, granted(patients, {"Patient/example"}))
    # A user/ scope sees both.
    r = get(envoy, "/fhir/Patient", app(token, "user/Patient.rs"), rid("patients-user"))
    assert_json_bytes(r, granted(patients, {"Patient/example", "Patient/f001"}))


@pytest.mark.parametrize("scope", [f"user/Observation.rs?category={LAB}",
                                   "user/Observation.rs?category=laboratory"])
def test_a_granular_scope_keeps_the_category_it_names(envoy, upstream, token, scope):
    """A lab-only app: the laboratory Observations of every patient; the vital signs and the
    Observation without a category withheld."""
    sent = serve_search(upstream)
    request_id = rid("granular")
    r = get(envoy, "/fhir/Observation", app(token, scope), request_id)
    kept = {key(OBS_LAB), key(OBS_INFANT)}
    assert_json_bytes(r, granted(OBSERVATIONS, kept))
    allowed_record(envoy, request_id, sent, r.content, withheld=TOTAL,
                   withheld_resources=withheld(OBSERVATIONS, kept))
    assert withheld(OBSERVATIONS, kept) == tally({"Observation": 2, "Condition": 1})


def test_a_granular_scope_in_patient_context(envoy, upstream, token):
    serve_search(upstream)
    r = get(envoy, "/fhir/Observation",
            app(token, f"patient/Observation.rs?category={LAB}", "example"), rid("granular-pt"))
    assert_json_bytes(r, granted(OBSERVATIONS, {key(OBS_LAB)}))


@pytest.mark.parametrize("path", ["/fhir/Observation/_search", "/fhir/Observation/_history"])
def test_the_search_endpoint_and_type_history_need_s(envoy, upstream, token, path):
    serve_search(upstream, path)
    r = get(envoy, path, app(token, "patient/Observation.s", "example"), rid("search"))
    assert_json_bytes(r, granted(OBSERVATIONS, {key(OBS_EXAMPLE), key(OBS_LAB)}))
    r = get(envoy, path, app(token, "patient/Observation.r", "example"), rid("search-r"))
    assert_problem(r, 403, "insufficient-scope", "Forbidden",
                   www_authenticate='Bearer error="insufficient_scope", '
                                    'scope="patient/Observation.s"')


# --- Reads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scope,patient", [("patient/Observation.r", "example"),
                                           ("user/Observation.r", None),
                                           ("user/Observation.read?category=vital-signs", None)])
def test_read_and_vread_of_a_granted_resource_are_whole(envoy, upstream, token, scope, patient):
    body = example("Observation-example.json")
    for path in ("/fhir/Observation/example", "/fhir/Observation/example/_history/1"):
        upstream.set(path, body, content_type=CONTENT_TYPE)
        request_id = rid("read")
        r = get(envoy, path, app(token, scope, patient), request_id)
        assert_json_bytes(r, as_sent("Observation-example.json"))
        allowed_record(envoy, request_id, body, r.content, withheld_resources=tally())


def test_a_read_needs_r(envoy, upstream, token):
    upstream.set("/fhir/Observation/example", example("Observation-example.json"))
    request_id = rid("read-s")
    r = get(envoy, "/fhir/Observation/example", app(token, "user/Observation.s"), request_id)
    problem = assert_problem(r, 403, "insufficient-scope", "Forbidden",
                             www_authenticate='Bearer error="insufficient_scope", '
                                              'scope="user/Observation.r"')
    assert problem["detail"] == "the caller lacks the scope this request needs: user/Observation.r"
    assert upstream.received() == []
    check_record(audit_of(envoy, request_id), request_id=request_id, route="fhir",
                 policy="fhir", client="smart-app", purpose="care", decision="denied_scope",
                 status=403)


def test_contained_resources_not_granted_are_withheld(envoy, upstream, token):
    """HL7's Encounter `home` contains a Location: a token granting Encounter alone reads the
    Encounter without it."""
    upstream.set("/fhir/Encounter/home", example("Encounter-home.json"),
                 content_type=CONTENT_TYPE)
    encounter = resource("Encounter-home.json")
    request_id = rid("contained")
    r = get(envoy, "/fhir/Encounter/home", app(token, "user/Encounter.r"), request_id)
    assert_json_bytes(r, compact({**encounter, "contained": []}))
    assert b'"Location"' not in r.content
    allowed_record(envoy, request_id, example("Encounter-home.json"), r.content,
                   withheld_resources=tally({"Location": 1}))
    r = get(envoy, "/fhir/Encounter/home", app(token, "user/Encounter.r user/Location.r"),
            rid("contained-both"))
    assert_json_bytes(r, as_sent("Encounter-home.json"))


def test_bundles_inside_a_bundle_are_checked(envoy, upstream, token):
    """HL7's batch-response holds the Patient and three searchsets (one of four Conditions):
    a patient app granted Patient alone gets the Patient and empty searchsets, no total."""
    path = "/fhir/Patient/example/$everything"
    upstream.set(path, example("Bundle-bundle-response-simplesummary.json"),
                 content_type=CONTENT_TYPE)
    batch = resource("Bundle-bundle-response-simplesummary.json")
    for e in batch["entry"]:
        inner = e["resource"]
        if inner["resourceType"] == "Bundle":
            inner.pop("total")
            if "entry" in inner:
                inner["entry"] = []
    request_id = rid("nested")
    r = get(envoy, path, app(token, "patient/Patient.r", "example"), request_id)
    assert_json_bytes(r, compact(batch))
    allowed_record(envoy, request_id, example("Bundle-bundle-response-simplesummary.json"),
                   r.content, withheld=tally({"entry.resource.total": 3}),
                   withheld_resources=tally({"Condition": 4}))


# --- Patient context ------------------------------------------------------------------------


def test_another_patients_resource_read_by_a_patient_scope_is_refused(envoy, upstream, token):
    """The request names no patient (Observation/bloodgroup): the server answers with
    `infant`'s Observation, and the launch patient is `example`: refused, nothing sent."""
    upstream.set("/fhir/Observation/bloodgroup", example("Observation-bloodgroup.json"),
                 content_type=CONTENT_TYPE)
    request_id = rid("other-obs")
    r = get(envoy, "/fhir/Observation/bloodgroup",
            app(token, "patient/Observation.rs", "example"), request_id)
    problem = assert_problem(r, 403, "resource-not-granted", "Forbidden",
                             absent=[b"bloodgroup", b"infant", b"Laboratory"])
    assert problem["detail"] == ("the caller's SMART scopes do not grant the resource this "
                                 "response holds"), problem
    check_record(audit_of(envoy, request_id), request_id=request_id, route="fhir",
                 policy="fhir", client="smart-app", purpose="care", decision="denied_scope",
                 status=403, bytes_in=len(example("Observation-bloodgroup.json")),
                 withheld_resources=tally({"Observation": 1}))
    # The infant's own app reads it whole.
    r = get(envoy, "/fhir/Observation/bloodgroup", app(token, "patient/Observation.rs", "infant"),
            rid("own-obs"))
    assert_json_bytes(r, as_sent("Observation-bloodgroup.json"))


def test_an_error_body_is_a_resource_no_scope_grants(envoy, upstream, token):
    """A server's 404 with its OperationOutcome: the body is a resource like any other and no
    scope grants OperationOutcome, so the client gets the 403 refusal, nothing of the
    server's text (which may name what it looked for)."""
    outcome = compact({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-found",
         "diagnostics": "Observation/missing: no such resource"}]}).encode()
    upstream.set("/fhir/Observation/missing", outcome, status=404, content_type=CONTENT_TYPE)
    r = get(envoy, "/fhir/Observation/missing", app(token, "user/Observation.rs"),
            rid("outcome"))
    assert_problem(r, 403, "resource-not-granted", "Forbidden", absent=[b"missing"])


@pytest.mark.parametrize("path", ["/fhir/Patient/f001", "/fhir/Patient/f001/_history/1",
                                  "/fhir/Patient/f001/$everything"])
def test_another_patient_is_refused_before_the_server(envoy, upstream, token, path):
    upstream.set(path, example("Patient-f001.json"))
    request_id = rid("other-patient")
    r = get(envoy, path, app(token, "patient/*.rs", "example"), request_id)
    assert_problem(r, 403, "outside-patient-compartment", "Forbidden")
    assert upstream.received() == []
    check_record(audit_of(envoy, request_id), request_id=request_id, route="fhir",
                 policy="fhir", client="smart-app", purpose="care", decision="denied_scope",
                 status=403)


def everything() -> dict[str, Any]:
    """What a server's `Patient/example/$everything` might answer: the patient, her
    Observations and Condition, the Practitioner and Organization they cite (types outside
    the patient compartment), and an Observation of another patient it should not have."""
    return searchset(entry(resource("Patient-example.json")), entry(OBS_EXAMPLE),
                     entry(OBS_LAB), entry(CONDITION), entry(OBS_INFANT),
                     entry(resource("Practitioner-example.json"), "include"),
                     entry(resource("Organization-1.json"), "include"))


def test_everything_keeps_the_launch_patients_compartment(envoy, upstream, token):
    bundle = everything()
    sent = serve_search(upstream, "/fhir/Patient/example/$everything", bundle)
    request_id = rid("everything")
    r = get(envoy, "/fhir/Patient/example/$everything", app(token, "patient/*.rs", "example"),
            request_id)
    assert_json_bytes(r, granted(bundle, {"Patient/example", key(OBS_EXAMPLE), key(OBS_LAB),
                                          key(CONDITION), "Practitioner/example",
                                          "Organization/1"}))
    allowed_record(envoy, request_id, sent, r.content, withheld=TOTAL,
                   withheld_resources=tally({"Observation": 1}))
    # Fewer types granted: only those are kept.
    r = get(envoy, "/fhir/Patient/example/$everything",
            app(token, "patient/Patient.r patient/Observation.rs", "example"),
            rid("everything-some"))
    assert_json_bytes(r, granted(bundle, {"Patient/example", key(OBS_EXAMPLE), key(OBS_LAB)}))


# --- Refusals -------------------------------------------------------------------------------


def test_no_token_is_401(envoy, upstream):
    serve_search(upstream)
    r = envoy.get("/fhir/Observation", purpose="care")
    assert_problem(r, 401, "invalid-token", "Unauthorized",
                   www_authenticate='Bearer error="invalid_token"')
    assert upstream.received() == []


@pytest.mark.parametrize("scope,patient,needed", [
    ("user/Observation.rs", None, "user/Condition.s"),
    ("patient/Observation.rs", "example", "patient/Condition.s"),
    ("system/Observation.rs", None, "system/Condition.s"),
    # patient/ scopes grant nothing without a launch patient.
    ("patient/*.rs", None, "patient/Condition.s"),
    # Write scopes do not read.
    ("user/Condition.cud", None, "user/Condition.s"),
    # A parameter other than category: the scope grants nothing.
    ("user/Condition.rs?clinical-status=active", None, "user/Condition.s"),
])
def test_a_missing_scope_is_403_naming_it(envoy, upstream, token, scope, patient, needed):
    serve_search(upstream, "/fhir/Condition", searchset(entry(CONDITION)))
    r = get(envoy, "/fhir/Condition", app(token, scope, patient), rid("missing"))
    problem = assert_problem(r, 403, "insufficient-scope", "Forbidden",
                             www_authenticate='Bearer error="insufficient_scope", '
                                              f'scope="{needed}"')
    assert problem["detail"] == f"the caller lacks the scope this request needs: {needed}"
    assert upstream.received() == []


def test_the_policy_scopes_table_applies_as_well(envoy, upstream, token):
    serve_search(upstream)
    t = token("user/Observation.rs", ["care"], client_id="smart-app")
    r = get(envoy, "/fhir/Observation", t, rid("no-fhir-read"))
    assert_problem(r, 403, "insufficient-scope", "Forbidden",
                   www_authenticate='Bearer error="insufficient_scope", scope="fhir:read"')
    assert upstream.received() == []


@pytest.mark.parametrize("path", ["/fhir/Observation/$lastn", "/fhir/Patient/example/Observation",
                                  "/fhir/_history"])
def test_interactions_scopes_cannot_authorise_are_refused(envoy, upstream, token, path):
    r = get(envoy, path, app(token, "user/*.*"), rid("unsupported"))
    assert_problem(r, 403, "fhir-interaction-not-allowed", "Forbidden")
    assert upstream.received() == []


# --- Bulk data: NDJSON ----------------------------------------------------------------------


def streaming(conf: dict[str, Any]) -> None:
    conf["policies"]["fhir"]["streaming"] = True


def test_ndjson_lines_not_granted_are_dropped_while_streaming(plugin_variant, upstream, token):
    envoy = plugin_variant("smart-streaming", streaming)
    lines = [compact(r) for r in (OBS_EXAMPLE, OBS_INFANT, OBS_LAB, CONDITION, OBS_F001)]
    body = ("\n".join(lines) + "\n").encode()
    upstream.set("/fhir/Observation", body, content_type="application/fhir+ndjson",
                 chunk_size=700)
    request_id = rid("ndjson")
    r = get(envoy, "/fhir/Observation?_format=application/fhir+ndjson",
            app(token, "patient/Observation.rs", "example"), request_id)
    assert r.status_code == 200, describe(r)
    assert "content-length" not in r.headers, "streamed"
    assert r.content.decode() == compact(OBS_EXAMPLE) + "\n" + compact(OBS_LAB) + "\n"
    allowed_record(envoy, request_id, body, r.content,
                   withheld_resources=tally({"Observation": 2, "Condition": 1}))


def test_a_streamed_resource_not_granted_resets_the_stream(plugin_variant, upstream, token):
    """Streamed, the headers are gone before the resource is decided: another patient's
    Observation read by a patient app breaks the response off, nothing of it sent."""
    envoy = plugin_variant("smart-streaming", streaming)
    upstream.set("/fhir/Observation/bloodgroup", example("Observation-bloodgroup.json"),
                 content_type=CONTENT_TYPE, chunk_size=400)
    offset = envoy.log_size()
    request_id = rid("streamed-read")
    with get(envoy, "/fhir/Observation/bloodgroup",
             app(token, "patient/Observation.rs", "example"), request_id, stream=True) as r:
        assert r.status_code == 200, describe(r)
        received, broken = read_until_broken(r)
    assert broken, f"a clean end: {received!r}"
    assert received == b"", received
    assert stream_reset_logged(envoy, offset), envoy.log_since(offset)
    # Nothing went out, and the record says so (bytes_out 0).
    check_record(audit_of(envoy, request_id), request_id=request_id, route="fhir",
                 policy="fhir", client="smart-app", purpose="care", decision="denied_scope",
                 status=200, bytes_in=len(example("Observation-bloodgroup.json")),
                 withheld_resources=tally({"Observation": 1}))


def test_a_stream_broken_off_records_what_went_out(plugin_variant, upstream, token):
    """An export whose second chunk is not JSON: the granted line of the first went out, then
    the reset; the record counts just that line as sent."""
    envoy = plugin_variant("smart-streaming", streaming)
    first = (compact(OBS_EXAMPLE) + "\n" + compact(OBS_INFANT) + "\n").encode()
    client_saw_a_line = threading.Event()

    def stream():
        yield first
        client_saw_a_line.wait(HTTP_TIMEOUT)
        yield b'{"resourceType":"Observation","subject":{"reference":"Patient/example"},tru}\n'

    upstream.set("/fhir/Observation", content_type="application/fhir+ndjson", stream=stream)
    request_id = rid("broken-off")
    with get(envoy, "/fhir/Observation", app(token, "patient/Observation.rs", "example"),
             request_id, stream=True) as r:
        assert r.status_code == 200, describe(r)
        received, broken = read_until_broken(r, client_saw_a_line.set)
    assert broken, f"a clean end: {received!r}"
    sent = (compact(OBS_EXAMPLE) + "\n").encode()
    assert received == sent
    check_record(audit_of(envoy, request_id), request_id=request_id, route="fhir",
                 policy="fhir", client="smart-app", purpose="care", decision="failed_closed",
                 status=200, bytes_in=len(first) + 77, bytes_out=len(sent),
                 withheld_resources=tally({"Observation": 1}))
