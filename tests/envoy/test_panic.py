"""A panic inside the VM fails closed, and the shipped configuration keeps it that way.

The trigger is test-only: the cargo feature `test-panic` compiles, in src/proxy/http.rs, a
panic in `on_http_response_body` for a request carrying `x-finalite-test-panic: 1`. The
release module never has it (checked below). The `panic_wasm` fixture builds the second
module once per session, into its own target directory, with the command

    cargo build --target wasm32-wasip1 --release --features test-panic \\
        --target-dir target/test-panic

(cargo does nothing when it is up to date; CARGO names another cargo). Set
FINALITE_TEST_PANIC_WASM to use a module built elsewhere instead.

What Envoy 1.40 does with `failure_policy: FAIL_RELOAD` (as shipped), measured here: the
request that panicked gets `503` with an empty body; until the VM is reloaded, after Envoy's
reload backoff (1 s by default: `vm_reload_backoff` counts the requests refused meanwhile),
every request gets the same empty `503`; then the reloaded VM filters normally again
(`vm_reload_success`). Nothing of an upstream body reaches a client at any point.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

import render
from harness import HTTP_TIMEOUT, ROOT, describe

TRIGGER = {"x-finalite-test-panic": "1"}
CANARY = "CANARY-P-ssn"
NAME = "CANARY-P-name"
BODY = json.dumps({"id": "P1", "name": {"family": NAME}, "ssn": CANARY,
                   "insurance": {"provider": "Mutuelle Exemple"}}).encode()
BILLING_VIEW = (b'{"id":"P1","name":{"family": "' + NAME.encode() +
                b'"},"insurance":{"provider": "Mutuelle Exemple"}}')
RECOVERY_SECONDS = 15  # Envoy's default reload backoff is 1 s; generous on a busy machine
SAFE_POLICIES = {"FAIL_RELOAD", "FAIL_CLOSED"}


# --- The test-only module -----------------------------------------------------------------


@pytest.fixture(scope="session")
def panic_wasm() -> Path:
    if os.environ.get("FINALITE_TEST_PANIC_WASM"):
        path = Path(os.environ["FINALITE_TEST_PANIC_WASM"])
    else:
        target_dir = ROOT / "target" / "test-panic"
        cmd = [os.environ.get("CARGO", "cargo"), "build", "--target", "wasm32-wasip1",
               "--release", "--features", "test-panic", "--target-dir", str(target_dir)]
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{run.stderr[-4000:]}", pytrace=False)
        path = target_dir / "wasm32-wasip1" / "release" / "finalite.wasm"
    if not path.is_file():
        pytest.fail(f"{path} is missing", pytrace=False)
    return path


@pytest.fixture(scope="module")
def panic_envoy(envoy_factory, test_config, panic_wasm):
    """The shipped configuration (FAIL_RELOAD), running the test-panic module."""
    cfg = test_config(wasm=panic_wasm)
    assert render.wasm_config(cfg)["failure_policy"] == "FAIL_RELOAD"
    return envoy_factory(cfg, "test-panic")


@pytest.fixture(scope="module")
def tok(token):
    return token("patients:read exports:read", ["billing", "research", "care"])


def reload_stats(envoy) -> dict[str, int]:
    text = envoy.admin("/stats?filter=^wasm\\.finalite\\.vm_reload").text
    return {k.split(".")[-1]: int(v) for k, _, v in
            (line.partition(": ") for line in text.splitlines()) if v}


def wait_until_filtered(envoy, tok) -> tuple[float, int]:
    """Polls a normal billing request until it is filtered again; every answer meanwhile
    must be the trapped VM's empty 503. Returns (seconds, 503s seen)."""
    start = time.monotonic()
    refused = 0
    while True:
        r = envoy.get("/patients/1", token=tok, purpose="billing")
        if r.status_code == 200:
            assert r.content == BILLING_VIEW, describe(r)
            return time.monotonic() - start, refused
        assert r.status_code == 503 and r.content == b"", describe(r)
        refused += 1
        assert time.monotonic() - start < RECOVERY_SECONDS, (
            f"the VM did not come back within {RECOVERY_SECONDS}s ({refused} 503s)")
        time.sleep(0.05)


def test_panic_fails_closed_then_the_vm_reloads(panic_envoy, upstream, tok):
    upstream.set("/patients/1", BODY)
    upstream.set("/patients", b"[" + BODY + b"]")
    r = panic_envoy.get("/patients/1", token=tok, purpose="billing")
    assert r.status_code == 200 and r.content == BILLING_VIEW, describe(r)
    log_at = panic_envoy.log_size()
    before = reload_stats(panic_envoy)
    for cycle in range(3):
        r = panic_envoy.get("/patients/1", token=tok, purpose="billing", headers=TRIGGER)
        assert r.status_code == 503, describe(r)
        assert r.content == b"", describe(r)
        seconds, refused = wait_until_filtered(panic_envoy, tok)
        print(f"panic {cycle + 1}: filtering again after {seconds:.2f}s ({refused} requests "
              "refused with 503 meanwhile)")
        # And the reloaded VM filters every purpose and shape as before.
        r = panic_envoy.get("/patients", token=tok, purpose="billing")
        assert r.status_code == 200 and r.content == b"[" + BILLING_VIEW + b"]", describe(r)
        r = panic_envoy.get("/patients/1", token=tok, purpose="research")
        assert r.status_code == 200 and CANARY.encode() not in r.content, describe(r)
        assert NAME.encode() not in r.content, describe(r)
    after = reload_stats(panic_envoy)
    assert after["vm_reload_success"] - before["vm_reload_success"] == 3, (before, after)
    log = panic_envoy.log_since(log_at, max_lines=100000)
    # The trigger fired (not some other failure): the SDK's panic hook logged it.
    assert log.count("x-finalite-test-panic: panicking in on_http_response_body") == 3, log


@pytest.mark.parametrize("purpose, path, pause", [
    ("care", "/patients/1", 0.0),
    ("research", "/exports/patients", 0.0),
    ("research", "/exports/patients", 0.3),
])
def test_panic_in_other_paths_fails_closed(panic_envoy, upstream, tok, purpose, path, pause):
    """care: no body rules; the streamed export: the headers are not held. `pause`: the
    upstream waits that long between its headers and its body, so that the headers have
    reached the client when the VM traps."""
    if path == "/patients/1":
        body, media = BODY, "application/json"
    else:
        body, media = (BODY + b"\n") * 200, "application/x-ndjson"

    def stream():
        time.sleep(pause)
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]

    upstream.set("/patients/1", BODY)  # for wait_until_filtered
    upstream.set(path, content_type=media, stream=stream)
    got = b""
    try:
        r = requests.get(panic_envoy.url(path), timeout=HTTP_TIMEOUT, stream=True,
                         headers={"authorization": f"Bearer {tok}", "x-purpose": purpose,
                                  **TRIGGER})
        for piece in r.iter_content(chunk_size=None):
            got += piece
    except requests.exceptions.RequestException as e:
        outcome = f"{type(e).__name__} after {len(got)} bytes"
    else:
        outcome = f"{r.status_code} with {len(got)} bytes"
        assert r.status_code >= 500, describe(r)
    print(f"panic for {purpose} on {path} (pause {pause}s): the client saw {outcome}")
    assert CANARY.encode() not in got and NAME.encode() not in got, got[:2000]
    wait_until_filtered(panic_envoy, tok)


# --- The trigger exists only in the test build --------------------------------------------


def test_release_module_has_no_trigger(wasm, panic_wasm):
    marker = b"x-finalite-test-panic"
    assert marker in panic_wasm.read_bytes(), "the check below would prove nothing"
    assert marker not in wasm.read_bytes(), f"{wasm} contains the test-only panic trigger"


# --- Never FAIL_OPEN ----------------------------------------------------------------------


def walk(node: Any, where: str = ""):
    """(path, key, value) of every mapping entry in a parsed YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield where, k, v
            yield from walk(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}[{i}]")


def wasm_plugin_configs(cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every proxy-wasm PluginConfig (a mapping with a vm_config) in an Envoy config."""
    return [(f"{where}.{k}", v) for where, k, v in walk(cfg)
            if isinstance(v, dict) and "vm_config" in v]


def test_shipped_envoy_yaml_fails_reload_never_open():
    cfg = render.load()
    plugins = wasm_plugin_configs(cfg)
    assert plugins, "no wasm plugin in envoy/envoy.yaml"
    for where, plugin in plugins:
        assert plugin.get("failure_policy") == "FAIL_RELOAD", (where, plugin.get("failure_policy"))
        assert plugin.get("fail_open") in (None, False), (where, "fail_open")


def shipped_yaml_files() -> list[Path]:
    """The project's YAML files: tracked or new, not ignored (git), else those of envoy/."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                              "--", "*.yaml", "*.yml"], cwd=ROOT, capture_output=True,
                             text=True, check=True, timeout=30).stdout
        files = [ROOT / line for line in out.splitlines() if line]
    except (OSError, subprocess.SubprocessError):
        files = [p for p in (ROOT / "envoy").rglob("*") if p.suffix in (".yaml", ".yml")]
    return sorted(p for p in files if p.is_file())


def test_no_shipped_host_config_fails_open():
    """Every YAML file the project ships (Envoy, Istio, docker-compose...) that sets a wasm
    failure policy sets a closed one; none sets Envoy's deprecated fail_open."""
    files = shipped_yaml_files()
    checked = 0
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            for where, key, value in walk(doc):
                name = f"{path.relative_to(ROOT)}:{where}.{key}"
                if key == "failure_policy":
                    assert value in SAFE_POLICIES, f"{name}: {value}"
                    checked += 1
                elif key == "failStrategy":  # Istio WasmPlugin
                    assert value == "FAIL_CLOSE", f"{name}: {value}"
                    checked += 1
                elif key == "fail_open":
                    assert value is not True, f"{name}: fail_open: true"
    assert checked >= 1


def test_tests_run_the_shipped_failure_policy(test_config, wasm):
    """The Envoys of these tests are rendered from envoy/envoy.yaml without touching it."""
    for where, plugin in wasm_plugin_configs(test_config(wasm=wasm)):
        assert plugin["failure_policy"] == "FAIL_RELOAD", where
