#!/usr/bin/env python3
"""Package finalite.wasm as an OCI image in Istio's Wasm image layout, without Docker.

Writes an OCI image layout (https://github.com/opencontainers/image-spec, image-layout.md):

    OUT/oci-layout                 {"imageLayoutVersion": "1.0.0"}
    OUT/index.json                 one manifest, tagged TAG (org.opencontainers.image.ref.name)
    OUT/blobs/sha256/<digest>      the manifest, the config and the module, by SHA-256

The manifest is the "oci" variant of the Wasm image specification that Istio's agent reads
for a WasmPlugin `url: oci://...`: its config has the media type
application/vnd.module.wasm.config.v1+json, and its single layer, of media type
application/vnd.module.wasm.content.layer.v1+wasm, is the .wasm file itself, byte for byte.

With --tar, the same layout is also written as a tarball (deterministic: sorted entries,
no timestamps, root ownership). Push either to a registry with a tool that reads OCI
layouts, e.g.:

    oras cp --from-oci-layout target/oci/finalite:0.1.0 registry.example/finalite:0.1.0

Usage: python3 scripts/oci_image.py --wasm finalite.wasm --out DIR --tag 0.1.0 [--tar FILE]
Standard library only; the output depends only on the inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"


class Layout:
    def __init__(self, out: Path) -> None:
        self.out = out
        if out.exists():
            shutil.rmtree(out)
        (out / "blobs" / "sha256").mkdir(parents=True)

    def blob(self, data: bytes, media_type: str, **extra: object) -> dict[str, object]:
        """Stores `data` by digest and returns its OCI descriptor."""
        digest = hashlib.sha256(data).hexdigest()
        (self.out / "blobs" / "sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data),
                **extra}


def build(wasm: Path, out: Path, tag: str, name: str = "finalite") -> dict[str, object]:
    """Writes the layout; returns the index."""
    module = wasm.read_bytes()
    if module[:4] != b"\0asm":
        raise SystemExit(f"{wasm} is not a WebAssembly module")
    layout = Layout(out)
    config = layout.blob(_json({
        "type": "envoy_proxy",
        "abiVersions": ["proxy_abi_version_0_2_1"],
        "rootIds": [name],
    }), WASM_CONFIG)
    layer = layout.blob(module, WASM_LAYER,
                        annotations={"org.opencontainers.image.title": f"{name}.wasm"})
    manifest = layout.blob(_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config,
        "layers": [layer],
        "annotations": {
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": tag,
            "org.opencontainers.image.description":
                "finalite: purpose limitation and data minimisation for personal-data APIs "
                "(proxy-wasm filter)",
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
    }), MANIFEST, annotations={"org.opencontainers.image.ref.name": tag})
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [manifest]}
    (out / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(_json(index))
    return index


def write_tar(layout: Path, tar_path: Path) -> None:
    """The layout as a reproducible tarball (entries relative to the layout's root)."""
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in layout.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(layout).as_posix())
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wasm", required=True, type=Path, help="the module (finalite.wasm)")
    p.add_argument("--out", required=True, type=Path, help="the OCI layout directory to write")
    p.add_argument("--tag", required=True, help="the image's tag, e.g. 0.1.0")
    p.add_argument("--tar", type=Path, help="also write the layout as this tarball")
    args = p.parse_args(argv)
    index = build(args.wasm, args.out, args.tag)
    digest = index["manifests"][0]["digest"]  # type: ignore[index]
    print(f"{args.out}: OCI image layout, tag {args.tag}, manifest {digest}")
    if args.tar:
        write_tar(args.out, args.tar)
        print(f"{args.tar}: the same layout as a tarball")


if __name__ == "__main__":
    main()
