"""The demo as `make run` starts it: envoy/sample_api.py behind the shipped configuration, with
the shipped DEMO JWKS and tokens from envoy/demo/mint_token.py's command line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

import render
import sample_api as demo_api  # envoy/sample_api.py (the fixture below is its port)
from conftest import sample
from harness import ROOT, assert_problem, describe, free_port, pseudonym
from test_views import BILLING, research_views


@pytest.fixture(scope="module")
def sample_api():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "envoy" / "sample_api.py"), str(port),
                             "--host", "127.0.0.1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sample_api.py did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="module")
def demo_envoy(envoy_factory, shipped, sample_api, wasm):
    # As `make run` renders it: only addresses and the module path change.
    return envoy_factory(render.render(shipped, api=("127.0.0.1", sample_api), wasm=wasm),
                         "demo")


def mint(*args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "envoy" / "demo" / "mint_token.py"), *args],
                         check=True, capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def test_sample_api_serves_the_files(sample_api):
    import requests

    r = requests.get(f"http://127.0.0.1:{sample_api}/patients/2", timeout=10)
    assert r.status_code == 200
    assert r.content == sample("patients/2.json")
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-patient-count"] == "1"
    r = requests.get(f"http://127.0.0.1:{sample_api}/patients", timeout=10)
    assert r.content == sample("patients.json") and r.headers["x-patient-count"] == "3"
    assert requests.get(f"http://127.0.0.1:{sample_api}/patients/9", timeout=10).status_code \
        == 404
    assert requests.get(f"http://127.0.0.1:{sample_api}/patients/..%2f..%2fetc",
                        timeout=10).status_code == 404


def test_sample_api_generates_the_export(sample_api):
    import requests

    r = requests.get(f"http://127.0.0.1:{sample_api}/exports/patients?count=3", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.content == b"".join(json.dumps(demo_api.export_record(i)).encode() + b"\n"
                                 for i in (1, 2, 3))
    assert json.loads(r.content.split(b"\n")[0])["id"] == "x-0000001"
    for bad in ("-1", "x", str(demo_api.EXPORT_MAX_COUNT + 1)):
        r = requests.get(f"http://127.0.0.1:{sample_api}/exports/patients?count={bad}",
                         timeout=10)
        assert r.status_code == 400


def test_demo_billing_and_research(demo_envoy, pseudonym_key):
    billing = mint("--client-id", "billing-partner", "--scope", "patients:read",
                   "--purposes", "billing")
    research = mint("--client-id", "research-lab", "--scope", "patients:read purpose:research")
    r = demo_envoy.get("/patients/1", token=billing, purpose="billing")
    assert r.status_code == 200, describe(r)
    assert r.content == BILLING[1].encode()
    r = demo_envoy.get("/patients/1", token=research, purpose="research")
    assert r.status_code == 200, describe(r)
    assert r.content == research_views(pseudonym_key, "research-lab")[1].encode()
    assert "x-patient-count" not in r.headers


def test_demo_care_sees_everything(demo_envoy):
    care = mint("--client-id", "care-team", "--scope", "patients:read", "--purposes", "care")
    r = demo_envoy.get("/patients", token=care, purpose="care")
    assert r.status_code == 200, describe(r)
    assert r.content == sample("patients.json")


def test_demo_open_data_and_health(demo_envoy):
    r = demo_envoy.get("/open/admissions")
    assert r.status_code == 200, describe(r)
    assert all(set(row) == {"service", "year", "admissions", "averageStay"} for row in r.json())
    r = demo_envoy.get("/health")
    assert r.status_code == 200 and json.loads(r.content) == {"status": "ok"}


def test_demo_fhir_bundle_for_research_and_care(demo_envoy, pseudonym_key):
    """The demo's FHIR API (HL7's document Bundle) read by research, minimised per resource
    type, and by the care team, whole: the curl lines `make run` prints."""
    research = mint("--client-id", "research-lab", "--scope",
                    "fhir:read system/*.rs purpose:research")
    care = mint("--client-id", "care-team", "--scope", "fhir:read user/*.rs", "--purposes", "care")
    bundle = sample("fhir/Bundle-father.json")
    parsed = json.loads(bundle)
    resources = {e["resource"]["resourceType"]: e["resource"] for e in parsed["entry"]}
    r = demo_envoy.get("/fhir/Bundle/father", token=research, purpose="research")
    assert r.status_code == 200, describe(r)
    patient = resources["Patient"]
    assert r.content.decode() == (
        '{"resourceType":"Bundle","type":"document","entry":['
        '{"resource":{"resourceType":"Patient","id":"%s","gender":"%s","birthDate":"%s"}},'
        '{"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"IMP"}}},'
        '{"resource":{"resourceType":"Observation","code":{"coding":[{"code":"46241-6"}]},'
        '"subject":{"reference":"%s"}}}]}'
        % (pseudonym(pseudonym_key, patient["id"], "research-lab"), patient["gender"],
           patient["birthDate"][:4],
           pseudonym(pseudonym_key, resources["Observation"]["subject"]["reference"],
                     "research-lab")))
    # Whole: the same JSON, written compactly (under SMART scopes every object is opened).
    r = demo_envoy.get("/fhir/Bundle/father", token=care, purpose="care")
    assert r.status_code == 200, describe(r)
    assert r.content == json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()


def test_demo_smart_apps_read_the_same_search(demo_envoy):
    """The SMART lines `make run` prints: one Observation search, two apps, two views; and
    their refusals."""
    ward = mint("--client-id", "ward-dashboard", "--scope", "fhir:read user/Observation.rs",
                "--purposes", "care")
    patient_app = mint("--client-id", "patient-app", "--scope",
                       "fhir:read launch/patient patient/*.rs", "--purposes", "care",
                       "--claim", "patient=example")
    search = json.loads(sample("fhir/Bundle-observations.json"))

    def view(kept: set[str]) -> bytes:
        bundle = {k: v for k, v in search.items() if k != "total"}
        bundle["entry"] = [e for e in search["entry"]
                           if "{resourceType}/{id}".format(**e["resource"]) in kept]
        return json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode()

    r = demo_envoy.get("/fhir/Observation", token=ward, purpose="care")
    assert r.status_code == 200, describe(r)
    assert r.content == view({"Observation/example", "Observation/map-sitting",
                              "Observation/bloodgroup", "Observation/f001"})
    r = demo_envoy.get("/fhir/Observation", token=patient_app, purpose="care")
    assert r.status_code == 200, describe(r)
    assert r.content == view({"Observation/example", "Observation/map-sitting",
                              "Condition/example"})
    r = demo_envoy.get("/fhir/Patient/f001", token=patient_app, purpose="care")
    assert_problem(r, 403, "outside-patient-compartment", "Forbidden")
    r = demo_envoy.get("/fhir/Condition", token=ward, purpose="care")
    assert_problem(r, 403, "insufficient-scope", "Forbidden",
                   www_authenticate='Bearer error="insufficient_scope", scope="user/Condition.s"')


def test_demo_without_token(demo_envoy):
    r = demo_envoy.get("/patients/1", purpose="billing")
    assert_problem(r, 401, "invalid-token", "Unauthorized")


def test_demo_research_export_is_streamed(demo_envoy, pseudonym_key):
    """The shipped /exports/ route over the sample API's generated export: every record in
    the research view (pseudonymised for research-lab), nothing else."""
    research = mint("--client-id", "research-lab", "--scope", "exports:read purpose:research")
    count = 3000
    r = demo_envoy.get(f"/exports/patients?count={count}", token=research, purpose="research")
    assert r.status_code == 200, describe(r)
    assert "content-length" not in r.headers
    lines = r.content.split(b"\n")
    assert lines[-1] == b"" and len(lines) == count + 1
    for i, line in enumerate(lines[:-1], start=1):
        rec = demo_api.export_record(i)
        want = {
            "id": pseudonym(pseudonym_key, rec["id"], "research-lab"),
            "birthDate": rec["birthDate"][:4],
            "address": {"postalCode": rec["address"]["postalCode"][:2]},
            "conditions": [{"code": c["code"], "onset": c["onset"][:4]}
                           for c in rec["conditions"]],
        }
        assert line == json.dumps(want, separators=(",", ":")).encode(), (i, line)
