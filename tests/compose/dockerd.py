"""A Docker engine for the compose test: the one already reachable, or one of our own.

Our own `dockerd` keeps everything under one directory (its data root, exec root, socket, pid
file and log), so it neither touches nor depends on a system Docker, and its images survive
from one run to the next (the stand-in images are cached there). It is stopped by its pid when
the test ends, however it ends (the caller's `finally`, or `atexit` after a signal).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

START_TIMEOUT = 60  # seconds for a fresh dockerd (and its containerd) to answer
STOP_TIMEOUT = 30


class DockerError(RuntimeError):
    """Docker cannot be made to work here; the message says what to look at."""


def answers(env: dict[str, str]) -> str | None:
    """The server version when a Docker engine answers with this environment, else None."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        out = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"], env=env,
                             capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


class Engine:
    """Where the docker CLI and docker-compose find their engine (`env`), and whether it is
    ours to stop."""

    def __init__(self, env: dict[str, str], version: str, pid: int | None, log: Path | None):
        self.env = env
        self.version = version
        self.pid = pid
        self.log = log

    def describe(self) -> str:
        owner = f"our dockerd, pid {self.pid}, log {self.log}" if self.pid else "already running"
        return f"Docker {self.version} ({owner}) at {self.env.get('DOCKER_HOST', 'the default socket')}"

    def log_tail(self, lines: int = 40) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stops our dockerd (never one we found running); idempotent."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        # Reap it if it is our child; a zombie would otherwise look alive.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_or_reuse(state_dir: Path) -> Engine:
    """An engine that answers: DOCKER_HOST's or the system socket's if one does, else our own
    dockerd with its state in `state_dir` (a short path: it holds unix sockets)."""
    env = dict(os.environ)
    version = answers(env)
    if version:
        return Engine(env, version, None, None)
    dockerd = shutil.which("dockerd")
    if dockerd is None or shutil.which("docker") is None:
        raise DockerError("dockerd or docker is missing: `make compose-test` installs Debian's "
                          "docker.io")
    state_dir.mkdir(parents=True, exist_ok=True)
    socket = state_dir / "docker.sock"
    pidfile = state_dir / "dockerd.pid"
    log = state_dir / "dockerd.log"
    env["DOCKER_HOST"] = f"unix://{socket}"
    env.pop("DOCKER_CONTEXT", None)
    stale = read_pid(pidfile)
    if stale is not None and alive(stale) and command_name(stale) == "dockerd":
        # A daemon of ours that an interrupted run left behind: stop it, start afresh.
        Engine(env, "?", stale, log).stop()
    pidfile.unlink(missing_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            # No default bridge (docker0): compose puts its services on a network of its own,
            # which `down` removes, so the daemon leaves no interface behind.
            [dockerd, "--data-root", str(state_dir / "data"), "--exec-root",
             str(state_dir / "exec"), "--host", env["DOCKER_HOST"], "--pidfile", str(pidfile),
             "--bridge", "none"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    engine = Engine(env, "?", proc.pid, log)
    atexit.register(engine.stop)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            engine.pid = None
            raise DockerError(f"dockerd exited with {proc.returncode}; its log ({log}):\n"
                              + engine.log_tail())
        version = answers(env)
        if version:
            engine.version = version
            return engine
        time.sleep(0.5)
    engine.stop()
    raise DockerError(f"dockerd did not answer within {START_TIMEOUT} s; its log ({log}):\n"
                      + engine.log_tail())


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
