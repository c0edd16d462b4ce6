"""The plugin configuration: validated at load (Envoy refuses a bad one), and its switches."""

from __future__ import annotations

import harness
import render
from harness import assert_problem, describe


def test_unknown_action_is_refused_naming_the_key(refused):
    def change(conf):
        conf["policies"]["patients"]["purposes"]["billing"]["fields"]["name"] = "yeer"

    refused(change, 'policies.patients.purposes.billing.fields."name": unknown action "yeer"')


def test_unknown_key_is_refused(refused):
    def change(conf):
        conf["purpose_headr"] = "x-purpose"

    refused(change, "purpose_headr")


def test_unknown_policy_key_is_refused(refused):
    def change(conf):
        conf["policies"]["appointments"]["scope"] = {"GET": ["appointments:read"]}

    refused(change, "policies.appointments")


def test_bad_json_is_refused(envoy_bin, workdir, test_config, wasm, envoy_env):
    cfg = test_config(wasm=wasm)
    render.wasm_config(cfg)["configuration"]["value"] = '{"policies": {'
    harness.assert_refused(envoy_bin, cfg, workdir, "refused-bad-json",
                           "configuration refused", env=envoy_env)


def test_shipped_configuration_loads(envoy):
    """The session Envoy runs the shipped configuration: it is ready and serving."""
    assert envoy.is_ready()
    assert envoy.admin("/ready").text.strip() == "LIVE"


def test_unmatched_allow_passes_untouched(plugin_variant, upstream, token):
    def change(conf):
        conf["unmatched"] = "allow"

    allow = plugin_variant("unmatched-allow", change)
    body = b'{ "any" : 1.0E+2, "ssn": "1840375999001" }'
    upstream.set("/other/thing", body, headers=[("x-patient-count", "1")])
    r = allow.get("/other/thing", headers={"accept-encoding": "identity"})
    assert r.status_code == 200, describe(r)
    assert r.content == body
    assert r.headers.get("x-patient-count") == "1"
    # Covered routes are still enforced.
    upstream.set("/patients/1", b"{}")
    r = allow.get("/patients/1", purpose="care")
    assert_problem(r, 401, "invalid-token", "Unauthorized")
