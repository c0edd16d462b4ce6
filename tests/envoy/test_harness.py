"""The harness and the shipped files themselves, without finalite's module.

These run even before the wasm module exists: the shipped envoy.yaml has the shape operators
rely on, the demo key matches the JWKS, the sample data is consistent, and a real Envoy (with
the wasm filter removed) proxies to the test upstream and verifies the session's tokens.
"""

from __future__ import annotations

import copy
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import mint_token
import render
from conftest import SAMPLE_DATA, sample
from harness import ROOT, describe

# --- The shipped envoy.yaml ---------------------------------------------------------------


def test_shipped_filter_chain(shipped):
    names = [f["name"] for f in render.hcm(shipped)["http_filters"]]
    assert names == ["envoy.filters.http.jwt_authn", "envoy.filters.http.wasm",
                     "envoy.filters.http.router"]
    assert render.hcm(shipped)["generate_request_id"] is True


def test_shipped_wasm_settings(shipped):
    conf = render.wasm_config(shipped)
    # Never fail open: a trapped VM must not let later responses through unfiltered.
    assert conf["failure_policy"] == "FAIL_RELOAD"
    assert conf["allow_on_headers_stop_iteration"] is True
    assert conf["root_id"] == "finalite"
    assert conf["vm_config"]["vm_id"] == "finalite"
    assert conf["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert conf["vm_config"]["code"]["local"]["filename"] == "/etc/finalite/finalite.wasm"


def test_shipped_pseudonymization_key_comes_from_the_environment(shipped,
                                                                  shipped_plugin_config):
    """The key is named, never written: Envoy hands the VM its own FINALITE_PSEUDONYM_KEY."""
    assert shipped_plugin_config["pseudonymization"] == {
        "key_env": "FINALITE_PSEUDONYM_KEY", "per_client": True}
    vm = render.wasm_config(shipped)["vm_config"]
    assert vm["environment_variables"] == {"host_env_keys": ["FINALITE_PSEUDONYM_KEY"]}
    assert "key_values" not in vm["environment_variables"]


def test_shipped_exports_stream(shipped, shipped_plugin_config):
    exports = shipped_plugin_config["policies"]["exports"]
    assert exports["streaming"] is True
    assert exports["purposes"]["research"]["fields"] == (
        shipped_plugin_config["policies"]["patients"]["purposes"]["research"]["fields"])
    route = {r["name"]: r for r in render.routes(shipped)}["exports"]
    assert route["route"]["timeout"] == "0s", "a long export must not hit the route timeout"


def test_shipped_buffer_limit_above_filter_limit(shipped, shipped_plugin_config):
    # A body over Envoy's per-connection buffer limit is reset after the headers went out:
    # Envoy's limit must not trip before finalite's.
    limit = render.listener(shipped)["per_connection_buffer_limit_bytes"]
    assert limit > shipped_plugin_config["limits"]["max_body_bytes"]


def test_shipped_routes_name_defined_policies(shipped, shipped_plugin_config):
    routes = render.routes(shipped)
    assert all(r.get("name") for r in routes), "every route has a name"
    by_name = {r["name"]: r for r in routes}
    expected = {"patients": "/patients", "appointments": "/appointments",
                "exports": "/exports/", "open-data": "/open/"}
    for policy, prefix in expected.items():
        route = by_name[policy]
        assert route["match"] == {"prefix": prefix}
        assert route["metadata"]["filter_metadata"]["finalite"]["policy"] == policy
        assert policy in shipped_plugin_config["policies"]
        assert route["route"]["cluster"] == "api"
    health = by_name["health"]
    assert health["typed_per_filter_config"]["envoy.filters.http.wasm"] == {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}


def test_shipped_jwt_provider(shipped):
    jwt = render.http_filter(shipped, "envoy.filters.http.jwt_authn")
    idp = jwt["providers"]["idp"]
    assert idp["issuer"] == mint_token.ISSUER
    assert idp["audiences"] == [mint_token.AUDIENCE]
    assert idp["payload_in_metadata"] == "idp"
    assert idp["forward"] is True
    prefixes = [rule["match"]["prefix"] for rule in jwt["rules"]]
    assert prefixes == ["/patients", "/appointments", "/exports/", "/fhir/"]
    for rule in jwt["rules"]:
        assert rule["requires"] == {"requires_any": {"requirements": [
            {"provider_name": "idp"}, {"allow_missing_or_failed": {}}]}}


def test_shipped_jwks_is_the_demo_public_key(shipped):
    demo = mint_token.jwks(mint_token.load_private_key())
    assert render.jwks(shipped) == demo
    assert json.loads((ROOT / "envoy" / "demo" / "jwks.json").read_text()) == demo


def test_shipped_api_cluster(shipped):
    cluster = render.cluster(shipped)
    assert cluster["type"] in ("STRICT_DNS", "LOGICAL_DNS")
    socket = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"]["socket_address"]
    assert socket == {"address": "api", "port_value": 8080}


def test_render_changes_only_what_it_is_asked(shipped, tmp_path):
    jwks = {"keys": []}
    plugin = {"policies": {}}
    out = render.render(shipped, api=("127.0.0.1", 1234), wasm=tmp_path / "f.wasm",
                        listen=("127.0.0.1", 2345), admin=(None, 3456), jwks=jwks,
                        plugin_config=plugin)
    assert render.cluster(out)["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
        "endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 1234}
    assert render.listener(out)["address"]["socket_address"] == {
        "address": "127.0.0.1", "port_value": 2345}
    assert out["admin"]["address"]["socket_address"] == {"address": "127.0.0.1",
                                                         "port_value": 3456}
    assert render.jwks(out) == jwks
    assert render.plugin_config(out) == plugin
    # Put the shipped values back: nothing else may differ.
    back = render.render(out, api=("api", 8080), listen=("0.0.0.0", 10000), admin=(None, 9901),
                         jwks=render.jwks(shipped),
                         plugin_config=render.plugin_config(shipped))
    render.wasm_config(back)["vm_config"]["code"] = render.wasm_config(shipped)["vm_config"][
        "code"]
    original = copy.deepcopy(shipped)
    for cfg in (back, original):  # JSON strings: compare them parsed (done above)
        render.wasm_config(cfg)["configuration"]["value"] = "-"
        render.http_filter(cfg, "envoy.filters.http.jwt_authn")["providers"]["idp"][
            "local_jwks"] = "-"
    assert back == original
    assert shipped == render.load(), "render() must not modify its input"


def test_render_round_trips_through_yaml(shipped, tmp_path):
    path = render.write(render.render(shipped, api=("127.0.0.1", 1)), tmp_path / "e.yaml")
    again = render.load(path)
    assert render.plugin_config(again) == render.plugin_config(shipped)


def test_render_writes_the_plugin_configuration_as_a_struct(shipped, tmp_path):
    out = render.render(shipped, plugin_config_as="struct")
    conf = render.wasm_config(out)["configuration"]
    assert conf["@type"] == "type.googleapis.com/google.protobuf.Struct"
    assert conf["value"] == render.plugin_config(shipped)
    again = render.load(render.write(out, tmp_path / "s.yaml"))
    assert render.plugin_config(again) == render.plugin_config(shipped)
    back = render.render(out, plugin_config_as="string")
    assert render.wasm_config(back)["configuration"]["@type"] == (
        "type.googleapis.com/google.protobuf.StringValue")
    assert render.plugin_config(back) == render.plugin_config(shipped)


# --- Sample data --------------------------------------------------------------------------


def test_sample_data_is_consistent():
    patients = json.loads(sample("patients.json"))
    assert patients == [json.loads(sample(f"patients/{i}.json")) for i in (1, 2, 3)]
    for path in SAMPLE_DATA.rglob("*.json"):
        json.loads(path.read_bytes())  # every file is valid JSON
    keys = {"id", "name", "birthDate", "ssn", "address", "phone", "insurance", "conditions"}
    for p in patients:
        assert set(p) == keys
        assert set(p["name"]) == {"family", "given"}
        assert set(p["address"]) == {"line", "city", "postalCode"}
        assert set(p["insurance"]) == {"provider", "number"}
        assert all(set(c) == {"code", "display", "onset"} for c in p["conditions"])


# --- A real Envoy without the wasm filter ---------------------------------------------------


@pytest.fixture(scope="module")
def plain_envoy(envoy_factory, test_config):
    """The shipped configuration minus finalite, with jwt_authn copying a verified token's
    client_id to a request header the upstream records."""
    cfg = render.without_filter(test_config())
    idp = render.http_filter(cfg, "envoy.filters.http.jwt_authn")["providers"]["idp"]
    idp["claim_to_headers"] = [{"header_name": "x-verified-client", "claim_name": "client_id"}]
    return envoy_factory(cfg, "plain")


def test_plain_envoy_proxies_to_test_upstream(plain_envoy, upstream):
    upstream.set("/patients/1", b'{"id": "1"}', headers=[("x-patient-count", "1")])
    r = plain_envoy.get("/patients/1")
    assert r.status_code == 200, describe(r)
    assert r.content == b'{"id": "1"}'
    assert r.headers["x-patient-count"] == "1"
    [rec] = upstream.received("/patients/1")
    assert rec.method == "GET"
    assert rec.header("x-request-id"), "generate_request_id"


def test_plain_envoy_verifies_session_tokens(plain_envoy, upstream, token):
    upstream.set("/patients/1", b"{}")
    assert plain_envoy.get("/patients/1", token=token(client_id="alice")).status_code == 200
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = token(client_id="mallory", key=other_key)
    # allow_missing_or_failed: a bad token passes jwt_authn, without verified claims.
    assert plain_envoy.get("/patients/1", token=forged).status_code == 200
    good, bad = upstream.received("/patients/1")
    assert good.header("x-verified-client") == "alice"
    assert bad.header("x-verified-client") is None


def test_plain_envoy_passes_chunked_bodies(plain_envoy, upstream):
    body = sample("patients.json")
    upstream.set("/patients", body, chunk_size=97, delay=0.002)
    r = plain_envoy.get("/patients")
    assert r.status_code == 200 and r.content == body, describe(r)


def test_plain_envoy_normalises_paths(plain_envoy, upstream):
    """`/open/../patients/1` reaches the upstream (and the patients route) as /patients/1."""
    import http.client

    upstream.set("/patients/1", b"{}")
    conn = http.client.HTTPConnection("127.0.0.1", plain_envoy.port, timeout=10)
    conn.request("GET", "/open/../patients/1")
    assert conn.getresponse().status == 200
    conn.close()
    [rec] = upstream.received("/patients/1")
    assert rec.path == "/patients/1"
