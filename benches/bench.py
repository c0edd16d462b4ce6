#!/usr/bin/env python3
"""`make bench`: the engine inside V8, then Envoy with and without filters, under wrk.

Run by the Makefile after it has built everything; it writes benches/RESULTS.md.

Every ratio is taken within this one run, round by round: in each round, finalite's
figure over the baseline's figure of the same round (both measured within seconds of each
other), and the report gives the median of those paired ratios and their spread; never a
ratio of two medians or of absolute times from different moments.

1. Engine in wasm: the wasm-runner (benches/wasm-runner) natively, inside Node's V8 and
   inside Wasmtime (WASMTIME_RUNNER, tests/wasmtime-host); MB/s per case, the ratios to
   native, and each case's throughput over serde_json's validation of the same body, paired
   by round (the runner times the cases of a body in interleaved rounds). The bodies: the
   synthetic Bundle at 1 KiB, 64 KiB and 1 MiB, and HL7's R4 examples as a pretty-printed
   searchset (test-support/bench-common/src/fhir.rs) at 64 KiB and 1 MiB, filtered by the
   realistic policy and by a typed research purpose (`type_key: resourceType`).
   criterion (`cargo bench --bench engine`, run by the Makefile before this script) gives
   medians of each case measured apart: no pairing is possible there, so the native targets
   use the runner's paired figure, criterion's ratio of medians quoted beside it.
2. Envoy (one worker, V8) in front of nginx serving those bodies, one listener per filter:
   passthrough (no wasm), headers-only wasm, the contract (the host calls finalite makes per
   request and nothing else), validate-and-pass (serde_json validates the buffered body,
   written back unchanged), the naive serde wasm filter, the byte scanner wasm filter (the
   same rules, nothing validated), finalite (release module, the realistic allowlist); on
   HL7's examples also finalite with the typed research purpose. wrk drives each listener
   in turn, round-robin, for BENCH_SECONDS with 2 connections and 1 thread, BENCH_ROUNDS
   times; Envoy's CPU per request comes from /proc/<pid>/stat (utime + stime) over each run.
   Medians of the rounds, and paired ratios. At 1 KiB, two more finalite listeners split its
   cost: the same filter with a purpose that keeps everything (the request and header work
   only: the body is never read) and one that keeps a single field (the body buffered and
   read, almost nothing written). At 1 MiB, finalite with `entry.resource.id` kept instead
   of pseudonymised gives what the pseudonyms cost.
   With BENCH_PIN=1, Envoy runs on one CPU and nginx and wrk on the others (taskset -c), so
   that neither the load generator nor the upstream preempts Envoy's worker. Off by default:
   on two cores it did not measurably narrow the spread between runs, and it makes wrk and
   nginx, sharing one CPU, the limit of the cheap listeners' req/s (CPU per request stays
   valid either way).
   Envoy runs at `--log-level info` (Envoy's default, BENCH_ENVOY_LOG_LEVEL to change it),
   its log written to .run/bench/envoy.log: finalite writes each request's audit record to
   that log, so the figures include what a production Envoy pays for it (at `warning` the
   module still formats the line and Envoy drops it; the difference is in HISTORY.md).
3. Memory: Envoy's RSS after rounds of 16 concurrent 8 MiB responses through finalite,
   buffered and streaming.
4. The targets of the performance work against this run's figures, as a table written into
   RESULTS.md and, between its markers, into README.md's "Where it stands" (when RESULTS is
   not redirected), so that the README quotes the run it comes from.

Everything listens on 127.0.0.1 only, and every run is bounded in time.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run" / "bench"
WWW = RUN / "www"

SECONDS = int(os.environ.get("BENCH_SECONDS", "6"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MEMORY_ROUNDS = int(os.environ.get("BENCH_MEMORY_ROUNDS", "4"))
SIZES = ["1KiB", "64KiB", "1MiB"]
FHIR_SIZES = ["fhir-64KiB", "fhir-1MiB"]
BODIES = SIZES + FHIR_SIZES
SCENARIOS = ["passthrough", "headers-only", "validate-and-pass", "naive-serde", "scanner",
             "finalite"]
# Measured at 1 KiB only: the contract baseline, and where finalite's cost per request goes.
DECOMPOSITION = ["contract", "finalite-untouched", "finalite-one-field"]
DECOMPOSED_SIZE = "1KiB"
# Measured at 1 MiB only: what the pseudonyms cost.
ID_KEPT_SIZE = "1MiB"
# On HL7's examples: the baselines that matter for the targets, and both policies.
FHIR_SCENARIOS = ["passthrough", "validate-and-pass", "naive-serde", "finalite",
                  "finalite-typed"]
KEY = "bench-key-0123456789abcdefghijkl"  # 32 bytes, as test-support/src/bench.rs

# The realistic allowlist of test-support/src/bench.rs (Policy::Realistic).
FIELDS = {
    "resourceType": "keep",
    "type": "keep",
    "total": "keep",
    "entry.resource.resourceType": "keep",
    "entry.resource.id": "pseudonymize",
    "entry.resource.meta.lastUpdated": "keep",
    "entry.resource.gender": "keep",
    "entry.resource.birthDate": "keep",
    "entry.resource.address.city": "keep",
    "entry.resource.address.country": "keep",
    "entry.resource.condition.code": "keep",
    "entry.search.mode": "keep",
}
# The same with the ids kept (Policy::RealisticIdKept).
FIELDS_ID_KEPT = dict(FIELDS, **{"entry.resource.id": "keep"})
# The typed research purpose of HL7's examples (bench-common's FHIR_TYPED), read from the
# runner (`wasm-runner --typed-purpose`) by main(): one definition for the engine and Envoy.
TYPED_PURPOSE: dict | None = None


def wasmtime_version() -> str:
    """The wasmtime crate the test host locks (tests/wasmtime-host/Cargo.lock)."""
    lock = (ROOT / "tests" / "wasmtime-host" / "Cargo.lock").read_text()
    match = re.search(r'^name = "wasmtime"\nversion = "([^"]+)"', lock, re.M)
    return match.group(1) if match else "?"


def env_path(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"bench.py: {name} is not set (run `make bench`)")
    return Path(value)


def pin_cpus() -> tuple[str, str] | None:
    """Envoy's CPU and the CPUs of nginx and wrk, as `taskset -c` lists; None: not pinned.

    BENCH_PIN=1 pins (and fails when it cannot); unset, empty or 0, nothing is pinned.
    """
    setting = os.environ.get("BENCH_PIN", "")
    if setting not in ("", "0", "1"):
        sys.exit(f"bench.py: BENCH_PIN={setting!r}: 1 (pin) or 0 (do not, the default)")
    if setting != "1":
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None or len(cpus) < 2:
        sys.exit("bench.py: BENCH_PIN=1 needs taskset on the PATH and at least 2 CPUs")
    # Envoy alone on the last CPU it may use; nginx and wrk share the others.
    return str(cpus[-1]), ",".join(str(cpu) for cpu in cpus[:-1])


PIN = pin_cpus()
# The audit record is a line of Envoy's log at info: writing it is part of a request's cost.
LOG_LEVEL = os.environ.get("BENCH_ENVOY_LOG_LEVEL", "") or "info"
# Envoy's --log-level values, from the most verbose: the first three write the audit record.
ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "critical", "off")
if LOG_LEVEL not in ENVOY_LOG_LEVELS:
    sys.exit(f"bench.py: BENCH_ENVOY_LOG_LEVEL={LOG_LEVEL!r}: one of {', '.join(ENVOY_LOG_LEVELS)}")
AUDIT_WRITTEN = LOG_LEVEL in ENVOY_LOG_LEVELS[:3]


def pinned(role: str, cmd: list[str]) -> list[str]:
    """cmd under `taskset -c` on the CPUs of its role ("envoy" or "load"), when pinning.

    taskset execs the command: the pid Popen returns is the command's own.
    """
    if PIN is None:
        return cmd
    return ["taskset", "-c", PIN[0] if role == "envoy" else PIN[1]] + cmd


def pinning() -> str:
    """How the Envoy runs were pinned, for the report."""
    if PIN is None:
        return "none (BENCH_PIN=1 pins): Envoy, nginx and wrk ran wherever the scheduler put them"
    return (f"Envoy (all its threads) on CPU {PIN[0]}, nginx and wrk on CPU {PIN[1]} "
            f"(`taskset -c`, BENCH_PIN), so that neither the load generator nor the upstream "
            f"preempts Envoy's worker; the engine benchmarks and the memory rounds' clients "
            f"(this script) are not pinned")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def machine() -> dict[str, str]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "nproc": str(os.cpu_count()),
        "load": Path("/proc/loadavg").read_text().split()[0],
    }


# --- 1. The engine inside V8 ----------------------------------------------------------------


# A runner's figures: (case, body) → (median MB/s, MB/s of each round).
Figures = dict[tuple[str, str], tuple[float, list[float]]]


def paired(a: list[float], b: list[float]) -> list[float]:
    """a[r] / b[r] for each round r measured by both."""
    return [x / y for x, y in zip(a, b) if y > 0]


def spread(ratios: list[float]) -> str:
    """'median (min-max, n paired)' of paired ratios."""
    if not ratios:
        return ""
    return (f"{median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}, "
            f"{len(ratios)} rounds)")


def engine_in_wasm(runner: Path, runner_wasm: Path, wasmtime: Path | None) -> tuple[str, dict]:
    def parse(out: str) -> Figures:
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return {(r["case"], r["size"]): (r["mbps"], r["rounds"]) for r in rows}

    print("engine: native runner ...", flush=True)
    native = parse(run([str(runner)]))
    print("engine: the same runner as wasm inside Node's V8 ...", flush=True)
    v8 = parse(
        run(["node", "--no-warnings", str(ROOT / "benches/wasm-runner/run.mjs"), str(runner_wasm)])
    )
    wt: Figures = {}
    if wasmtime is not None:
        print("engine: the same runner as wasm inside Wasmtime ...", flush=True)
        wt = parse(run([str(wasmtime), str(runner_wasm)]))
    md = [
        "| body | case | native MB/s | V8 (Node) MB/s | Wasmtime MB/s | V8 / native | "
        "Wasmtime / native | V8: × slower than memcpy | ÷ validate, native | ÷ validate, V8 "
        "| ÷ validate, Wasmtime |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def over_validate(figures: Figures, case: str, size: str) -> str:
        """The case's throughput over validation's, paired by round: median (spread)."""
        if case == "validate" or (case, size) not in figures or ("validate", size) not in figures:
            return ""
        return spread(paired(figures[(case, size)][1], figures[("validate", size)][1]))

    for size in BODIES:
        memcpy = v8.get(("memcpy", size))
        for case in ["memcpy", "validate", "finalite/denylist", "finalite/realistic",
                     "finalite/realistic-id-kept", "finalite/drop-most", "finalite/fhir-typed",
                     "naive/realistic", "scanner/realistic"]:
            n, w = native.get((case, size)), v8.get((case, size))
            if n is None or w is None:
                continue
            t = wt.get((case, size))
            slower = f"{memcpy[0] / w[0]:.0f}×" if memcpy else ""
            md.append(
                f"| {size} | {case} | {n[0]:.0f} | {w[0]:.0f} | "
                f"{'' if t is None else f'{t[0]:.0f}'} | {w[0] / n[0]:.2f} | "
                f"{'' if t is None else f'{t[0] / n[0]:.2f}'} | {slower} | "
                f"{over_validate(native, case, size)} | {over_validate(v8, case, size)} | "
                f"{over_validate(wt, case, size)} |"
            )
    return "\n".join(md), {"native": native, "v8": v8, "wasmtime": wt}


def criterion_median_ns(size: str, case: str) -> float | None:
    """criterion's median time per iteration of one engine case (benches/engine.rs)."""
    path = ROOT / "target" / "criterion" / f"engine_{size}" / case / "new" / "estimates.json"
    try:
        return json.loads(path.read_text())["median"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None


# --- 2. Envoy ------------------------------------------------------------------------------


def wasm_filter(name: str, path: Path, configuration: dict | None = None, env_keys=()) -> dict:
    vm = {"vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(path)}}}
    if env_keys:
        vm["environment_variables"] = {"host_env_keys": list(env_keys)}
    config = {
        "name": name,
        "vm_config": vm,
        "failure_policy": "FAIL_RELOAD",
        "allow_on_headers_stop_iteration": True,
    }
    if configuration is not None:
        config["root_id"] = "finalite"
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(configuration),
        }
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }


def finalite_config(streaming: bool, fields: dict | None = None,
                    default: str | None = None, typed: dict | None = None) -> dict:
    purpose: dict = typed if typed is not None else {"fields": FIELDS if fields is None else fields}
    if default is not None:
        purpose["default"] = default
    policy_type = {"type_key": "resourceType"} if typed is not None else {}
    return {
        "purpose_header": "x-purpose",
        "limits": {"max_body_bytes": 16 << 20, "max_depth": 64},
        "pseudonymization": {"key_env": "FINALITE_PSEUDONYM_KEY", "per_client": False},
        "policies": {
            "bundle": {
                "match": [{"prefix": "/"}],
                "auth": "none",
                "default_purpose": "research",
                "streaming": streaming,
                **policy_type,
                "purposes": {"research": purpose},
            }
        },
    }


def bootstrap(ports: dict[str, int], admin: int, upstream: int, wasm: dict[str, Path]) -> dict:
    """Envoy's configuration: a listener per entry of `ports`; `wasm` needs only the modules
    those listeners use."""
    filters = {
        "passthrough": lambda: None,
        "headers-only": lambda: wasm_filter("headers_only", wasm["headers-only"]),
        "naive-serde": lambda: wasm_filter("naive_serde", wasm["naive-serde"]),
        "scanner": lambda: wasm_filter("scanner", wasm["scanner"]),
        "validate-and-pass": lambda: wasm_filter("validate_and_pass", wasm["validate-and-pass"]),
        "contract": lambda: wasm_filter("contract", wasm["contract"]),
        "finalite": lambda: wasm_filter("finalite", wasm["finalite"], finalite_config(False),
                                        ["FINALITE_PSEUDONYM_KEY"]),
        "finalite-streaming": lambda: wasm_filter("finalite_streaming", wasm["finalite"],
                                                  finalite_config(True),
                                                  ["FINALITE_PSEUDONYM_KEY"]),
        "finalite-untouched": lambda: wasm_filter("finalite_untouched", wasm["finalite"],
                                                  finalite_config(False, {}, "keep"),
                                                  ["FINALITE_PSEUDONYM_KEY"]),
        "finalite-one-field": lambda: wasm_filter("finalite_one_field", wasm["finalite"],
                                                  finalite_config(False, {"resourceType": "keep"}),
                                                  ["FINALITE_PSEUDONYM_KEY"]),
        "finalite-id-kept": lambda: wasm_filter("finalite_id_kept", wasm["finalite"],
                                                finalite_config(False, FIELDS_ID_KEPT),
                                                ["FINALITE_PSEUDONYM_KEY"]),
        "finalite-typed": lambda: wasm_filter("finalite_typed", wasm["finalite"],
                                              finalite_config(False, typed=TYPED_PURPOSE),
                                              ["FINALITE_PSEUDONYM_KEY"]),
    }
    limit = 32 << 20  # 16 concurrent 8 MiB bodies are buffered whole
    listeners = []
    for name, port in ports.items():
        http_filter = filters[name]()
        http_filters = [http_filter] if http_filter else []
        http_filters.append({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        })
        listeners.append({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "per_connection_buffer_limit_bytes": limit,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name.replace("-", "_"),
                    "codec_type": "AUTO",
                    "route_config": {"virtual_hosts": [{
                        "name": "all", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "nginx"}}],
                    }]},
                    "http_filters": http_filters,
                },
            }]}],
        })
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": listeners,
            "clusters": [{
                "name": "nginx",
                "type": "STATIC",
                "connect_timeout": "1s",
                "per_connection_buffer_limit_bytes": limit,
                "load_assignment": {"cluster_name": "nginx", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}},
                }]}]},
            }],
        },
    }


def nginx_conf(port: int) -> str:
    return f"""
user root;
worker_processes 1;
daemon off;
pid {RUN}/nginx.pid;
error_log {RUN}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  types {{ application/json json; }}
  default_type application/json;
  client_body_temp_path {RUN}/nginx-tmp;
  proxy_temp_path {RUN}/nginx-tmp;
  fastcgi_temp_path {RUN}/nginx-tmp;
  uwsgi_temp_path {RUN}/nginx-tmp;
  scgi_temp_path {RUN}/nginx-tmp;
  server {{ listen 127.0.0.1:{port}; root {WWW}; }}
}}
"""


def wait_http(port: int, path: str, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench.py: nothing ready on 127.0.0.1:{port}{path}")


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"x-purpose": "research"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (all CPUs, /proc/stat), in seconds."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (nginx: master and worker)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return total


class OtherLoad:
    """How busy the machine was with anything but this benchmark (Envoy, nginx, wrk and this
    script) while the Envoy runs lasted: what the load average cannot tell, since the
    benchmark itself keeps it near 1."""

    def __init__(self, envoy: int, nginx: int) -> None:
        self.envoy, self.nginx = envoy, nginx
        self.start = self.sample()

    def sample(self) -> tuple[float, ...]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once waited for
        ours = (cpu_seconds(self.envoy) + tree_cpu_seconds(self.nginx) + own.ru_utime
                + own.ru_stime + children.ru_utime + children.ru_stime)
        return time.monotonic(), busy_seconds(), ours

    def share(self) -> float:
        """Other processes' CPU time over the machine's (all CPUs) since the start."""
        wall0, busy0, ours0 = self.start
        wall1, busy1, ours1 = self.sample()
        other = (busy1 - busy0) - (ours1 - ours0)
        return max(other, 0.0) / ((wall1 - wall0) * (os.cpu_count() or 1))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wrk(port: int, path: str, pid: int) -> dict:
    before = cpu_seconds(pid)
    # One thread: pinned, wrk has one CPU, shared with nginx, and more threads would only
    # take turns on it. Two connections (one thread drives both through epoll) give Envoy's
    # single worker the next request while the other response is on its way back.
    out = run(pinned("load", [
        "wrk", "-t1", "-c2", f"-d{SECONDS}s", "--timeout", "10s",
        "-H", "x-purpose: research", f"http://127.0.0.1:{port}{path}",
    ]), timeout=SECONDS + 60)
    cpu = cpu_seconds(pid) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise SystemExit(f"bench.py: wrk on :{port}{path} saw failures:\n{out}")
    return {"rps": rps, "requests": requests, "cpu_us": cpu / max(requests, 1) * 1e6}


def fresh_run_dir(runner: Path) -> None:
    """An empty run directory with the bodies nginx serves (written by the runner)."""
    shutil.rmtree(RUN, ignore_errors=True)
    (RUN / "nginx-tmp").mkdir(parents=True)
    run([str(runner), "--write", str(WWW)])


def start_servers(envoy: Path, config: dict, upstream: int) -> tuple[subprocess.Popen, ...]:
    """nginx on `upstream` and Envoy (one worker) with `config`, pinned when BENCH_PIN=1."""
    (RUN / "nginx.conf").write_text(nginx_conf(upstream))
    (RUN / "envoy.json").write_text(json.dumps(config, indent=1))
    nginx = subprocess.Popen(
        pinned("load", ["nginx", "-p", str(RUN), "-c", str(RUN / "nginx.conf")]),
        stdout=subprocess.DEVNULL, stderr=open(RUN / "nginx.out", "w"))
    env = dict(os.environ, FINALITE_PSEUDONYM_KEY=KEY)
    proxy = subprocess.Popen(
        pinned("envoy", [str(envoy), "-c", str(RUN / "envoy.json"), "--concurrency", "1",
                         "--log-level", LOG_LEVEL, "--use-dynamic-base-id"]),
        stdout=subprocess.DEVNULL, stderr=open(RUN / "envoy.log", "w"), env=env)
    return nginx, proxy


def body_path(body: str) -> str:
    """The path nginx serves a body at: /bundle-1KiB.json, /fhir-1MiB.json."""
    return f"/{body}.json" if body.startswith("fhir-") else f"/bundle-{body}.json"


def envoy_bench(envoy: Path, wasm: dict[str, Path], runner: Path) -> tuple[str, str, dict]:
    fresh_run_dir(runner)
    upstream, admin = free_port(), free_port()
    names = list(dict.fromkeys(
        [name for body in BODIES for name in scenarios(body)] + ["finalite-streaming"]))
    ports = {name: free_port() for name in names}
    nginx, proxy = start_servers(envoy, bootstrap(ports, admin, upstream, wasm), upstream)
    try:
        wait_http(upstream, "/bundle-1KiB.json")
        wait_http(admin, "/ready")
        # Each listener answers 200 with JSON on each body it is measured on.
        for body in BODIES:
            for name in scenarios(body):
                status, out = get(ports[name], body_path(body))
                if status != 200:
                    raise SystemExit(f"bench.py: {name} answered {status}: {out[:300]!r}")
                json.loads(out)
            print(f"  {body}: {', '.join(scenarios(body))}: 200, JSON", flush=True)
        results: dict[tuple[str, str], list[dict]] = {}
        other = OtherLoad(proxy.pid, nginx.pid)
        for round_ in range(ROUNDS):
            for body in BODIES:
                for name in scenarios(body):
                    r = wrk(ports[name], body_path(body), proxy.pid)
                    results.setdefault((body, name), []).append(r)
                    print(f"round {round_ + 1}/{ROUNDS} {body:>10} {name:<18} "
                          f"{r['rps']:8.0f} req/s {r['cpu_us']:8.0f} µs CPU/req", flush=True)
        other_share = other.share()
        print(f"other processes used {other_share:.1%} of the machine's CPU during the runs",
              flush=True)
        memory, memory_rows = memory_bench(ports, proxy.pid, admin)
    finally:
        stop(proxy, nginx)
    return envoy_table(results), memory, other_share, results, memory_rows


def stop(*processes: subprocess.Popen) -> None:
    """SIGTERM to each, then a kill for any still there after 15 s."""
    for p in processes:
        p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def median(values: list[float]) -> float:
    return statistics.median(values)


def scenarios(body: str) -> list[str]:
    """The listeners measured on a body."""
    if body in FHIR_SIZES:
        return FHIR_SCENARIOS
    return (SCENARIOS + (DECOMPOSITION if body == DECOMPOSED_SIZE else [])
            + (["finalite-id-kept"] if body == ID_KEPT_SIZE else []))


def cpu_ratios(results: dict, body: str, name: str, baseline: str) -> list[float]:
    """Envoy CPU per request of `name` over `baseline`'s, on `body`, round by round."""
    if (body, name) not in results or (body, baseline) not in results:
        return []
    return paired([r["cpu_us"] for r in results[(body, name)]],
                  [r["cpu_us"] for r in results[(body, baseline)]])


def envoy_table(results: dict) -> str:
    baselines = ["passthrough", "headers-only", "contract", "validate-and-pass", "naive-serde",
                 "scanner"]
    md = [
        "| body | filter | req/s | Envoy CPU µs/req | "
        + " | ".join(f"CPU ÷ {b}" for b in baselines) + " | req/s ÷ naive |",
        "|---|---|---:|---:|" + "---:|" * len(baselines) + "---:|",
    ]
    for body in BODIES:
        for name in scenarios(body):
            rows = results[(body, name)]
            rps = median([r["rps"] for r in rows])
            cpu = median([r["cpu_us"] for r in rows])
            cells = []
            for baseline in baselines:
                ratios = cpu_ratios(results, body, name, baseline)
                cells.append(f"{median(ratios):.2f}×" if ratios else "")
            naive = results.get((body, "naive-serde"))
            rps_naive = (f"{median(paired([r['rps'] for r in rows], [r['rps'] for r in naive])):.2f}×"
                         if naive else "")
            md.append(f"| {body} | {name} | {rps:.0f} | {cpu:.0f} | {' | '.join(cells)} "
                      f"| {rps_naive} |")
    return "\n".join(md)


def vm_memory_mib(admin: int) -> float:
    """finalite's gauge of its largest VM's linear memory (all its VMs in this Envoy)."""
    status, body = get(admin, "/stats?filter=^wasmcustom\\.finalite_vm_memory_bytes$")
    name, _, value = body.decode().strip().partition(": ")
    if status != 200 or name != "wasmcustom.finalite_vm_memory_bytes":
        raise SystemExit(f"bench.py: no finalite_vm_memory_bytes gauge: {body[:300]!r}")
    return int(value) / (1 << 20)


def memory_bench(ports: dict[str, int], pid: int, admin: int) -> tuple[str, dict]:
    """The memory table, and per mode (RSS after each round, VM memory after each round)."""
    rows: dict[str, tuple[list[float], list[float]]] = {}
    md = ["| mode | RSS before | RSS after each round of 16 concurrent 8 MiB responses (MiB) "
          "| largest finalite VM's linear memory after each round (MiB) |",
          "|---|---:|---|---|"]
    for name, label in [("finalite", "buffered"), ("finalite-streaming", "streaming")]:
        before = rss_mib(pid)
        after = []
        vm = []
        for _ in range(MEMORY_ROUNDS):
            statuses: list[int] = []

            def one() -> None:
                status, body = get(ports[name], "/bundle-8MiB.json")
                statuses.append(status if body else 0)

            threads = [threading.Thread(target=one) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            if statuses.count(200) != 16:
                raise SystemExit(f"bench.py: {label}: statuses {statuses}")
            time.sleep(1)
            after.append(rss_mib(pid))
            vm.append(vm_memory_mib(admin))
        md.append(f"| {label} | {before:.0f} | {' → '.join(f'{v:.0f}' for v in after)} "
                  f"| {' → '.join(f'{v:.1f}' for v in vm)} |")
        rows[label] = (after, vm)
        print(f"memory {label}: {before:.0f} MiB, then {after}", flush=True)
    return "\n".join(md), rows


# --- 4. The targets ------------------------------------------------------------------------


class Idle:
    """The machine's idle share (all CPUs, /proc/stat: idle + iowait over all time) from
    construction to `share()`: how much of the machine nothing used while the run lasted."""

    def __init__(self) -> None:
        self.start = self.sample()

    @staticmethod
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])

    def share(self) -> float:
        idle1, total1 = self.sample()
        idle0, total0 = self.start
        return (idle1 - idle0) / max(total1 - total0, 1)


def spaced(size: str) -> str:
    """'64KiB' as prose writes it: '64 KiB'."""
    return re.sub(r"(\d)([KM]iB)", r"\1 \2", size)


def judged(ratios: list[float], limit: float, at_least: bool, stretch: float | None = None) -> str:
    """'yes' or 'no' for the median of paired ratios against a target."""
    if not ratios:
        return "not measured"
    value = median(ratios)
    met = value >= limit if at_least else value <= limit
    if met and stretch is not None:
        return "yes, stretch too" if value >= stretch else "yes (stretch not met)"
    return "yes" if met else "no"


def memory_flat(memory_rows: dict) -> tuple[str, str]:
    """The memory figure and whether it is flat: after the first rounds, a round adds less
    than 2% to Envoy's RSS and to the largest VM's linear memory (a leak adds every round;
    the allocator's high-water mark rises while the worst interleaving of 16 bodies is still
    being met, then stops)."""
    figure, flat = [], True
    for label, (rss, vm) in memory_rows.items():
        figure.append(f"{label}: RSS {' → '.join(f'{v:.0f}' for v in rss)} MiB, VM "
                      f"{' → '.join(f'{v:.1f}' for v in vm)} MiB")
        for values in (rss, vm):
            if len(values) >= 2 and values[-1] > values[-2] * 1.02:
                flat = False
    if not memory_rows or all(len(rss) < 2 for rss, _ in memory_rows.values()):
        return "; ".join(figure), "not measured (fewer than 2 rounds)"
    return "; ".join(figure), "yes (the last round adds < 2%)" if flat else "no (still rising)"


def targets_table(engine: dict, results: dict, memory_rows: dict) -> str:
    """The targets of the performance work against this run, every ratio paired by round."""
    def engine_ratio(engine_name: str, case: str, base: str, size: str,
                     time: bool = False) -> list[float]:
        figures = engine[engine_name]
        if (case, size) not in figures or (base, size) not in figures:
            return []
        a, b = figures[(case, size)][1], figures[(base, size)][1]
        # Throughput ratio; `time`: the case's time over the base's (base MB/s ÷ case MB/s).
        return paired(b, a) if time else paired(a, b)

    def criterion_ratio(case: str, base: str, size: str) -> str:
        case_ns, base_ns = criterion_median_ns(size, case), criterion_median_ns(size, base)
        if case_ns is None or base_ns is None:
            return "criterion not run"
        return f"criterion, ratio of medians measured apart: {base_ns / case_ns:.2f}"

    rows = []

    def row(what: str, target: str, ratios: list[float], limit: float, at_least: bool,
            note: str = "", stretch: float | None = None) -> None:
        figure = spread(ratios) or "not measured"
        rows.append(f"| {what} | {target} | {figure}{f'; {note}' if note else ''} "
                    f"| {judged(ratios, limit, at_least, stretch)} |")

    row("engine, realistic policy, 1 MiB, in V8: throughput ÷ serde_json validation in V8",
        "≥ 0.75 (stretch 1.0)",
        engine_ratio("v8", "finalite/realistic", "validate", "1MiB"), 0.75, True, stretch=1.0)
    row("engine, realistic policy, 1 MiB, natively: throughput ÷ serde_json validation",
        "≥ 0.75", engine_ratio("native", "finalite/realistic", "validate", "1MiB"), 0.75, True,
        criterion_ratio("finalite/realistic", "validate", "1MiB"))
    for body in ["64KiB", "1MiB"]:
        row(f"Envoy CPU per request, {spaced(body)}: finalite ÷ validate-and-pass", "≤ 1.25",
            cpu_ratios(results, body, "finalite", "validate-and-pass"), 1.25, False)
    row("Envoy CPU per request, 1 MiB: finalite ÷ naive serde filter", "≤ 0.17",
        cpu_ratios(results, "1MiB", "finalite", "naive-serde"), 0.17, False)
    row("Envoy CPU per request, 1 KiB: finalite ÷ contract baseline", "≤ 1.10",
        cpu_ratios(results, "1KiB", "finalite", "contract"), 1.10, False)
    row("Envoy CPU per request, 1 KiB: finalite ÷ headers-only filter", "≤ 1.35",
        cpu_ratios(results, "1KiB", "finalite", "headers-only"), 1.35, False)
    row("pseudonym cost, Envoy CPU per request, 1 MiB: realistic ÷ id kept", "≤ 1.10",
        cpu_ratios(results, "1MiB", "finalite", "finalite-id-kept"), 1.10, False)
    row("pseudonym cost, engine time, 1 MiB, in V8: realistic ÷ id kept", "≤ 1.10",
        engine_ratio("v8", "finalite/realistic", "finalite/realistic-id-kept", "1MiB", time=True),
        1.10, False)
    row("pseudonym cost, engine time, 1 MiB, natively: realistic ÷ id kept", "≤ 1.10",
        engine_ratio("native", "finalite/realistic", "finalite/realistic-id-kept", "1MiB",
                     time=True), 1.10, False)
    figure, flat = memory_flat(memory_rows)
    rows.append(f"| memory over rounds of 16 concurrent 8 MiB responses through finalite "
                f"| flat | {figure} | {flat} |")
    # The same targets on real data: HL7's examples, the typed research purpose.
    row("HL7 examples, typed purpose, 1 MiB, engine in V8: throughput ÷ validation",
        "≥ 0.75 (as above)",
        engine_ratio("v8", "finalite/fhir-typed", "validate", "fhir-1MiB"), 0.75, True)
    row("HL7 examples, typed purpose, 1 MiB, engine natively: throughput ÷ validation",
        "≥ 0.75 (as above)",
        engine_ratio("native", "finalite/fhir-typed", "validate", "fhir-1MiB"), 0.75, True,
        criterion_ratio("finalite/fhir-typed", "validate", "fhir-1MiB"))
    for body in FHIR_SIZES:
        row(f"HL7 examples, typed purpose, Envoy CPU, {spaced(body[5:])}: ÷ validate-and-pass",
            "≤ 1.25 (as above)",
            cpu_ratios(results, body, "finalite-typed", "validate-and-pass"), 1.25, False)
    return "\n".join(["| what | target | figure (median of paired per-round ratios; range) "
                      "| met? |", "|---|---|---|---|"] + rows)


README_START = "<!-- bench targets: written by benches/bench.py -->"
README_END = "<!-- end of bench targets -->"


def quote_in_readme(block: str) -> None:
    """Replaces README.md's text between the markers by `block`."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        print("README.md has no bench targets markers: not updated", flush=True)
        return
    readme.write_text(text[:start + len(README_START)] + "\n" + block + "\n" + text[end:])
    print("README.md: the targets table updated", flush=True)


# --- The report ----------------------------------------------------------------------------


def main() -> None:
    envoy = env_path("ENVOY")
    wasm = {
        "finalite": env_path("FINALITE_WASM"),
        "headers-only": env_path("HEADERS_ONLY_WASM"),
        "naive-serde": env_path("NAIVE_SERDE_WASM"),
        "scanner": env_path("SCANNER_WASM"),
        "validate-and-pass": env_path("VALIDATE_AND_PASS_WASM"),
        "contract": env_path("CONTRACT_WASM"),
    }
    runner, runner_wasm = env_path("RUNNER"), env_path("RUNNER_WASM")
    wasmtime = env_path("WASMTIME_RUNNER") if os.environ.get("WASMTIME_RUNNER") else None
    engine_md = Path(os.environ.get("ENGINE_SUMMARY", "/nonexistent"))
    out = Path(os.environ.get("RESULTS", ROOT / "benches" / "RESULTS.md"))

    global TYPED_PURPOSE
    m = machine()
    idle = Idle()
    began = time.monotonic()
    TYPED_PURPOSE = json.loads(run([str(runner), "--typed-purpose"]))
    wasm_md, engine = engine_in_wasm(runner, runner_wasm, wasmtime)
    print(wasm_md, flush=True)
    envoy_md, memory_md, other_share, results, memory_rows = envoy_bench(envoy, wasm, runner)
    print(envoy_md, flush=True)
    print(memory_md, flush=True)
    targets_md = targets_table(engine, results, memory_rows)
    print(targets_md, flush=True)
    idle_share = idle.share()
    minutes = (time.monotonic() - began) / 60
    load_end = Path("/proc/loadavg").read_text().split()[0]

    versions = {
        "envoy": first_line([str(envoy), "--version"]).split("version: ")[-1],
        "node (V8)": first_line(["node", "-p", "process.version + ' (V8 ' + process.versions.v8 + ')'"]),
        "rustc": first_line(["rustc", "--version"]),
        "wrk": first_line(["wrk", "--version"]),
        "nginx": first_line(["nginx", "-v"]),
    }
    sizes = {name: path.stat().st_size for name, path in wasm.items()}
    versions_wasmtime = wasmtime_version() if wasmtime is not None else "(not run)"
    log_note = (" (finalite's audit records are written to Envoy's log, as in production)"
                if AUDIT_WRITTEN else
                " (finalite formats its audit records and Envoy drops them: a production Envoy "
                "at info also writes them)")
    report = f"""# finalite benchmark results

Written by `make bench` on {m['date']}; this script ran for {minutes:.0f} minutes (criterion's
engine benchmark before it not included).

- Machine: {m['nproc']} cores, {m['cpu']}. Idle share while this script ran (all CPUs,
  /proc/stat, idle and iowait over all time): {idle_share:.1%}. During the Envoy runs,
  processes other than the benchmark's own (Envoy, nginx, wrk) used {other_share:.1%} of the
  machine's CPU (load average {m['load']} when bench.py started and {load_end} at its end,
  the benchmark's own load included). This machine is shared and noisy: read the ratios,
  each the median of per-round paired ratios ({ROUNDS} interleaved rounds in Envoy, 9 in
  the engine runner), rather than the absolute numbers.
- CPU pinning of the Envoy runs: {pinning()}.
- Envoy's log level: {LOG_LEVEL}{log_note}.
- Versions: {'; '.join(f'{k} {v}' for k, v in versions.items())}.
- Module sizes: {'; '.join(f'{name} {size:,} bytes' for name, size in sizes.items())}.
- Bodies: FHIR-like searchset Bundles of Patient entries (generated, seeded:
  test-support/bench-common/src/lib.rs), compact JSON with non-ASCII names, escapes and
  numbers; the "1 KiB" body is one entry (about 1.7 KB). `fhir-64KiB` and `fhir-1MiB`: HL7's
  R4 examples (`hl7.fhir.r4.examples` 4.0.1, CC0; tests/data/hl7.fhir.r4.examples/bench/)
  as a pretty-printed searchset of Patients, Observations, Encounters, Conditions,
  Procedures, Practitioners, Organizations and more (test-support/bench-common/src/fhir.rs).
- Policies: the realistic allowlist, 12 nested paths with `entry.resource.id` pseudonymised
  (HMAC-SHA-256); `realistic-id-kept` (`finalite-id-kept` in Envoy) the same with the id
  kept; `denylist` is `default: keep` with `**.ssn: drop`; `drop-most` keeps two top-level
  fields; `fhir-typed` (`finalite-typed` in Envoy) is a research purpose by resource type
  (`type_key: resourceType`; bench-common's `FHIR_TYPED`).
- Baselines: `naive` parses into a `serde_json::Value`, edits and serialises
  (test-support/bench-common/src/naive.rs); `scanner` is a hand-written byte scanner that
  applies the same rules in one pass and validates nothing: no grammar, no UTF-8, no audit
  tallies (test-support/bench-common/src/scanner.rs); both write the same output as finalite
  (tests/bench_baselines.rs). `validate-and-pass` validates the body with serde_json and
  writes it back unchanged; `contract` makes the host calls finalite makes per request
  (header maps, properties, filter state, the body read and written back, a 950-byte audit
  line at info, counters) and nothing else (benches/wasm-contract).

## Targets

Each figure is the median of per-round paired ratios (finalite's figure over the
baseline's in the same round) with their range; engine ratios are throughputs (higher is
better) unless they say time, Envoy ratios CPU per request (lower is better).

{targets_md}

## Engine, native (criterion, `cargo bench --bench engine`)

Chunks of 64 KiB; full validation (RFC 8259, UTF-8, surrogates); medians of each case
measured apart (criterion cannot interleave cases, so its ratios are of medians; the paired
ratios are the runner's, below).

{engine_md.read_text() if engine_md.exists() else '(not run)'}

## Engine natively, inside V8 and inside Wasmtime (benches/wasm-runner; the wasm32-wasip1 build under Node and under Wasmtime)

Median MB/s of 9 rounds in which the cases of a body take turns; "÷ validate" is the case's
throughput over serde_json's validation of the same body, round by round: median (range).
Wasmtime runs the same module (tests/wasmtime-host's `wasmtime-runner`: Wasmtime
{versions_wasmtime}, Cranelift, default settings), as a Wasmtime-based proxy (Kong's
ngx_wasm_module, APISIX's wasm-nginx-module) would compile a filter.

{wasm_md}

## Envoy, one worker, V8 (wrk -t1 -c2, {SECONDS} s per run, {ROUNDS} rounds)

Envoy CPU per request = (utime + stime of the Envoy process over the run) / requests.
req/s and CPU are medians of the rounds; each ratio is the median of the per-round ratios
of the same body. At 1 KiB, `finalite-untouched` is finalite with a purpose that keeps
everything (its request and header work only: the body is never read) and
`finalite-one-field` keeps one top-level field (the body buffered and read, almost nothing
written): they split finalite's cost.

{envoy_md}

## Memory (Envoy RSS, one process hosting all the filters above, and finalite's gauge of its VMs' linear memory)

{memory_md}
"""
    out.write_text(report)
    print(f"\nwritten: {out}")
    if "RESULTS" not in os.environ:
        quote_in_readme(
            f"`make bench` on {m['date']} ({ROUNDS} interleaved rounds of {SECONDS} s in Envoy, "
            f"the machine {idle_share:.0%} idle while it ran; "
            f"[`benches/RESULTS.md`](benches/RESULTS.md)):\n\n{targets_md}")


if __name__ == "__main__":
    main()
