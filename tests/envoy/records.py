"""Reading what finalite leaves in Envoy's log: its audit records and the access-log lines.

Both end up in the file the harness captures Envoy's output in:

- an audit record is one info line of the wasm component,
  `[...][info][wasm] [...] wasm log finalite finalite finalite: {"audit":"finalite",...}`;
- the shipped access log (envoy/envoy.yaml) writes one JSON object per line to stdout, which
  Envoy flushes about once a second: readers poll.

Records are found by the request id the test sent in `x-request-id` (test Envoys keep a
client's id, see harness.EnvoyProcess; the shipped configuration does not) or by another
value the test chose (a client id).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any, Callable

from harness import EnvoyProcess

AUDIT_MARK = '{"audit":"finalite"'
AUDIT_LINE = re.compile(r"^\[[^\]]+\]\[\d+\]\[info\]\[wasm\] \[[^\]]+\] wasm log finalite\b[^{]*: "
                        r"(\{\"audit\":\"finalite\".*\})$")
# What every record holds, and nothing else.
AUDIT_KEYS = {"audit", "time", "request_id", "route", "policy", "policy_hash", "client",
              "purpose", "decision", "dry_run", "status", "withheld", "transformed",
              "bytes_in", "bytes_out"}
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
POLICY_HASH = re.compile(r"^[0-9a-f]{12}$")
WAIT = 10.0  # seconds; the access log is flushed about every second


def wait_for(probe: Callable[[], Any], what: str, envoy: EnvoyProcess,
             timeout: float = WAIT) -> Any:
    """The first truthy value of `probe()` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s in {envoy.log_path}")
        time.sleep(0.05)


def audit_lines(envoy: EnvoyProcess) -> list[str]:
    """Every line of Envoy's log that carries an audit record, as written."""
    return [line for line in envoy.log().splitlines() if AUDIT_MARK in line]


def audit_records(envoy: EnvoyProcess) -> list[dict[str, Any]]:
    """Every audit record in Envoy's log so far, parsed; each line must be exactly the
    wasm component's info line holding one JSON object."""
    records = []
    for line in audit_lines(envoy):
        m = AUDIT_LINE.match(line)
        assert m, f"an audit record in an unexpected line:\n{line}"
        records.append(json.loads(m.group(1)))
    return records


def audit_where(envoy: EnvoyProcess, key: str, value: Any,
                settle: float = 0.3) -> dict[str, Any]:
    """The one audit record whose `key` is `value` (waits for it, then checks, after
    `settle` seconds, that no second record for the same request follows)."""
    def find() -> list[dict[str, Any]]:
        return [r for r in audit_records(envoy) if r.get(key) == value]

    wait_for(find, f"audit record with {key}={value!r}", envoy)
    time.sleep(settle)
    found = find()
    assert len(found) == 1, f"{len(found)} audit records with {key}={value!r}: {found}"
    return found[0]


def audit_of(envoy: EnvoyProcess, request_id: str, settle: float = 0.3) -> dict[str, Any]:
    """The one audit record of the request sent with this x-request-id."""
    return audit_where(envoy, "request_id", request_id, settle)


def access_log_lines(envoy: EnvoyProcess) -> list[dict[str, Any]]:
    """Every access-log line (a JSON object on a line of its own) so far."""
    lines = []
    for line in envoy.log().splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "request_id" in entry:
                lines.append(entry)
    return lines


def access_log_of(envoy: EnvoyProcess, request_id: str) -> dict[str, Any]:
    """The one access-log line of the request sent with this x-request-id."""
    def find() -> list[dict[str, Any]]:
        return [e for e in access_log_lines(envoy) if e["request_id"] == request_id]

    found = wait_for(find, f"access-log line with request_id={request_id!r}", envoy)
    assert len(found) == 1, f"{len(found)} access-log lines for {request_id!r}: {found}"
    return found[0]


def tally(paths: dict[str, int] | None = None, more: int = 0) -> dict[str, Any]:
    """A record's `withheld` / `transformed` value with these path counts."""
    paths = dict(paths or {})
    return {"count": sum(paths.values()) + more, "paths": paths, "more": more}


def check_record(record: dict[str, Any], **expected: Any) -> None:
    """`record` has exactly the keys of an audit record, a well-formed time and policy hash,
    and the `expected` values (keys not given: no field withheld or transformed, no body
    bytes, not a dry run). `withheld_resources` (the resources SMART scopes withheld, by
    type) must be in the record exactly when it is expected."""
    keys = AUDIT_KEYS | ({"withheld_resources"} if "withheld_resources" in expected else set())
    assert set(record) == keys, f"keys {sorted(record)}"
    assert record["audit"] == "finalite"
    assert TIME.match(record["time"]), record["time"]
    when = datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 120, record["time"]
    if record["policy"] is None:
        assert record["policy_hash"] is None, record
    else:
        assert POLICY_HASH.match(record["policy_hash"] or ""), record
    want = {"withheld": tally(), "transformed": tally(), "bytes_in": 0, "bytes_out": 0,
            "dry_run": False, **expected}
    got = {k: record[k] for k in want}
    assert got == want, f"audit record differs\nexpected: {want}\n     got: {got}\n{record}"


# --- Plugin variants shared by several test modules (plugin_variant caches them by name) ---


def unmatched_allow(conf: dict[str, Any]) -> None:
    """`plugin_variant("unmatched-allow", unmatched_allow)`: what no policy covers passes."""
    conf["unmatched"] = "allow"


def patients_dry_run(conf: dict[str, Any]) -> None:
    """`plugin_variant("dry-run", patients_dry_run)`: the patients policy in dry run."""
    conf["policies"]["patients"]["mode"] = "dry_run"
