#!/usr/bin/env python3
"""`make bench-ab OLD=path/to/old/finalite.wasm`: two builds of finalite side by side.

`make bench` runs each filter once per round and this machine's spread between runs (10-30%)
hides a change of a few per cent. Here one Envoy (one worker) hosts both modules on
listeners of their own, `finalite` (the realistic allowlist) and `finalite-untouched` (a
purpose that keeps everything: the request and header work only), plus the headers-only
filter for scale; wrk drives each listener in turn for BENCH_SECONDS, BENCH_ROUNDS times, so
both builds see the same machine at nearly the same moment. It prints Envoy's CPU per
request (median and every round) and the new build's ratio to the old one, the median of
per-round paired ratios. Nothing is written to benches/RESULTS.md. Envoy runs at
BENCH_ENVOY_LOG_LEVEL (info by default, as in `make bench`: both builds' audit records are
written).

Environment (set by the Makefile): ENVOY, FINALITE_WASM (the new build), OLD_WASM,
HEADERS_ONLY_WASM, RUNNER (writes the bodies), AB_SIZE (1KiB, 64KiB or 1MiB).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import bench


def listeners_for(tag: str, module: Path, headers_only: Path, admin: int,
                  upstream: int) -> tuple[list[dict], list[tuple[str, int]]]:
    """finalite and finalite-untouched on `module`, named with `tag` (their own VM ids)."""
    ports = {"finalite": bench.free_port(), "finalite-untouched": bench.free_port()}
    modules = {"finalite": module, "headers-only": headers_only}
    config = bench.bootstrap(ports, admin, upstream, modules)
    listeners = config["static_resources"]["listeners"]
    for listener in listeners:
        listener["name"] += f"-{tag}"
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        manager["stat_prefix"] += f"_{tag}"
        wasm = manager["http_filters"][0]["typed_config"]["config"]
        wasm["name"] += f"_{tag}"
        wasm["vm_config"]["vm_id"] += f"_{tag}"
    return listeners, [(f"{name}-{tag}", port) for name, port in ports.items()]


def main() -> None:
    envoy = bench.env_path("ENVOY")
    new, old = bench.env_path("FINALITE_WASM"), bench.env_path("OLD_WASM")
    headers_only, runner = bench.env_path("HEADERS_ONLY_WASM"), bench.env_path("RUNNER")
    size = os.environ.get("AB_SIZE", "1KiB")
    if size not in bench.SIZES:
        raise SystemExit(f"ab.py: AB_SIZE must be one of {bench.SIZES}, not {size!r}")

    bench.fresh_run_dir(runner)
    upstream, admin = bench.free_port(), bench.free_port()
    old_listeners, old_ports = listeners_for("old", old, headers_only, admin, upstream)
    new_listeners, new_ports = listeners_for("new", new, headers_only, admin, upstream)
    scale_port = bench.free_port()
    config = bench.bootstrap({"headers-only": scale_port}, admin, upstream,
                             {"finalite": new, "headers-only": headers_only})
    config["static_resources"]["listeners"] += old_listeners + new_listeners
    # Interleaved: old and new of one kind run one after the other.
    names = [("headers-only", scale_port)] + [p for pair in zip(old_ports, new_ports) for p in pair]

    nginx, proxy = bench.start_servers(envoy, config, upstream)
    cpu: dict[str, list[float]] = {}
    path = f"/bundle-{size}.json"
    try:
        bench.wait_http(upstream, path)
        bench.wait_http(admin, "/ready")
        for name, port in names:
            status, body = bench.get(port, path)
            if status != 200:
                raise SystemExit(f"ab.py: {name} answered {status}: {body[:300]!r}")
        for round_ in range(bench.ROUNDS):
            for name, port in names:
                r = bench.wrk(port, path, proxy.pid)
                cpu.setdefault(name, []).append(r["cpu_us"])
                print(f"round {round_ + 1}/{bench.ROUNDS} {size} {name:<24} "
                      f"{r['rps']:8.0f} req/s {r['cpu_us']:8.1f} µs CPU/req", flush=True)
    finally:
        bench.stop(proxy, nginx)

    print(f"\nEnvoy CPU per request at {size}, medians of {bench.ROUNDS} interleaved rounds:")
    median = {name: statistics.median(values) for name, values in cpu.items()}
    for name, values in cpu.items():
        rounds = ", ".join(f"{v:.1f}" for v in sorted(values))
        print(f"  {name:<24} {median[name]:9.1f} µs   [{rounds}]")
    # Paired by round: each round's new over the same round's old, so that the machine's
    # drift between rounds cancels; the median of those and their range, never a ratio of
    # the two medians.
    for kind in ("finalite", "finalite-untouched"):
        ratios = sorted(n / o for n, o in zip(cpu[f"{kind}-new"], cpu[f"{kind}-old"]))
        spread = ", ".join(f"{r:.3f}" for r in ratios)
        print(f"  {kind}: new / old = {statistics.median(ratios):.3f} "
              f"(median of {len(ratios)} paired rounds: {spread})")


if __name__ == "__main__":
    main()
