"""Soak: 16 connections for a while through a real Envoy; nothing leaks, nothing drifts.

`make test` runs it for 60 seconds, `make soak` for 10 minutes: the duration is
FINALITE_SOAK_SECONDS (default 60). Deselect it with `-m "not soak"`.

The upstream (rawupstream.RawUpstream) builds every answer from the request: each request
gets a number `n`, and every field value the upstream writes is a canary `CANARY-<n>-<field>`
(ids, dates and numbers aside), in the body and in an `x-patient-ref` header. The clients mix:

- allowed requests for several purposes, routes and shapes (care, billing, research with two
  reusers, appointments, the streamed NDJSON export, open data, a gzip body): the body must be
  exactly the expected view, byte for byte;
- refused requests (401 no/bad/expired token, 403 scope, 403 purpose undeclared / not
  authorised, 403 no policy): finalite's problem response, and the upstream never asked;
- failed-closed responses (malformed JSON, an HTML error page, a body over the 1 MiB limit:
  502; a streamed export that turns malformed: the stream is reset).

For every response, every canary found in its body or headers must carry the request's own
`n` (no answer crosses to another request) and name a field the purpose may see. Envoy's RSS
is sampled at 25% of the run and at the end: it must stay flat (growth under 20 MiB).
"""

from __future__ import annotations

import collections
import gzip
import itertools
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

import render
from harness import HTTP_TIMEOUT, pseudonym
from rawupstream import RawConn, RawRequest, RawUpstream

pytestmark = pytest.mark.soak

DURATION = float(os.environ.get("FINALITE_SOAK_SECONDS") or 60)
CONNECTIONS = 16
MAX_REQUESTS = 2_000_000  # a bound whatever the duration
RSS_GROWTH_LIMIT = 20 * 1024 * 1024
CANARY = re.compile(rb"CANARY-(\d+)-([a-z]+)")
LIMIT = 1048576  # limits.max_body_bytes in the shipped configuration


# --- What the upstream answers ------------------------------------------------------------


def c(n: int, name: str) -> str:
    return f"CANARY-{n}-{name}"


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def patient(n: int, i: int = 0) -> dict[str, Any]:
    """A patient whose every string is a canary for request n (ids and dates excepted)."""
    return {
        "id": f"P{n}-{i}",
        "name": {"family": c(n, "family"), "given": [c(n, "given")]},
        "birthDate": f"19{50 + n % 50}-0{1 + n % 9}-1{n % 10}",
        "ssn": c(n, "ssn"),
        "address": {"line": c(n, "line"), "city": c(n, "city"), "postalCode": c(n, "postal")},
        "phone": c(n, "phone"),
        "insurance": {"provider": c(n, "insurer"), "number": c(n, "insno")},
        "conditions": [{"code": c(n, "code"), "display": c(n, "diagnosis"),
                        "onset": f"20{10 + n % 10}-0{1 + n % 9}-01"}],
        "emergencyContact": {"name": c(n, "contact"), "ssn": c(n, "contactssn")},
        "active": True, "visits": n % 97,
    }


def patient_bytes(n: int, i: int = 0) -> bytes:
    body = compact(patient(n, i))
    if n % 3 == 0:  # the same key, spelled with an escape: still `ssn`
        body = body.replace(b'"ssn":', b'"s\\u0073n":', 1)
    return body


def appointment(n: int) -> dict[str, Any]:
    return {"id": f"A{n}", "patientId": f"P{n}-0", "date": "2026-01-15", "act": c(n, "act"),
            "practitioner": c(n, "practitioner"), "notes": c(n, "notes"),
            "details": {"room": c(n, "room"), "notes": c(n, "detailnotes")}}


def admissions(n: int) -> dict[str, Any]:
    return {"service": c(n, "service"), "year": 2025, "admissions": n, "averageStay": 4.25,
            "patients": [{"name": c(n, "family"), "ssn": c(n, "ssn")}], "manager": c(n, "manager")}


BAD_LINE = b'{"id": "bad", "ssn": tru}\n'
FILLER = b",".join([b'{"id":"filler","value":"' + b"x" * 200 + b'"}'] * (LIMIT // 200))


def answer(req: RawRequest, conn: RawConn) -> None:
    """The soak upstream: parses n from `?n=` and the answer wanted from the path."""
    q = req.query
    n = int(q.get("n", "0"))
    if q.get("refused"):
        REACHED_WHEN_REFUSED.append(req.target)  # must never happen
    head = req.method == "HEAD"
    path = req.path
    ref = [("x-patient-ref", c(n, "xpatient"))]
    json_type = [("content-type", "application/json")]
    fault = q.get("fault")
    if path.startswith("/exports/"):
        lines = [patient_bytes(n, i) + b"\n" for i in range(5)]
        if fault == "malformed":
            lines.insert(3, BAD_LINE)
        conn.respond(200, [("content-type", "application/x-ndjson")], b"".join(lines),
                     chunked=True)
    elif path.startswith("/patients/"):
        body = patient_bytes(n)
        hdrs = json_type + ref
        if fault == "malformed":
            body = body[: len(body) * 2 // 3]
        elif fault == "html":
            body = f"<html><body>error for {c(n, 'ssn')}</body></html>".encode()
            hdrs = [("content-type", "text/html")] + ref
        elif fault == "oversize":
            body = b"[" + body + b"," + FILLER + b"]"
        elif q.get("enc") == "gzip":
            body = gzip.compress(body, compresslevel=1)
            hdrs = hdrs + [("content-encoding", "gzip")]
        conn.respond(200, hdrs, body, head=head)
    elif path == "/patients":
        body = b"[" + b",".join(patient_bytes(n, i) for i in range(3)) + b"]"
        conn.respond(200, json_type + ref, body, head=head)
    elif path.startswith("/appointments/"):
        conn.respond(200, json_type, compact(appointment(n)), head=head)
    elif path.startswith("/open/"):
        conn.respond(200, json_type, compact(admissions(n)), head=head)
    else:  # /unlisted/...: finalite refuses it before it gets here
        conn.respond(200, json_type + ref, compact(patient(n)), head=head)


REACHED_WHEN_REFUSED: list[str] = []


# --- Expected views -----------------------------------------------------------------------


def billing_patient(n: int, i: int = 0) -> dict[str, Any]:
    p = patient(n, i)
    return {"id": p["id"], "name": p["name"], "insurance": p["insurance"]}


def research_patient(n: int, key: str, client: str, i: int = 0) -> dict[str, Any]:
    p = patient(n, i)
    return {"id": pseudonym(key, p["id"], client), "birthDate": p["birthDate"][:4],
            "address": {"postalCode": p["address"]["postalCode"][:2]},
            "conditions": [{"code": x["code"], "onset": x["onset"][:4]}
                           for x in p["conditions"]]}


def care_appointment(n: int) -> dict[str, Any]:
    a = appointment(n)
    del a["notes"], a["details"]["notes"]
    return a


def billing_appointment(n: int) -> dict[str, Any]:
    a = appointment(n)
    return {k: a[k] for k in ("id", "patientId", "date", "act")}


def open_view(n: int) -> dict[str, Any]:
    a = admissions(n)
    return {k: a[k] for k in ("service", "year", "admissions", "averageStay")}


# Canary names each view may show (everything else is a leak).
ALL_PATIENT = {"family", "given", "ssn", "line", "city", "postal", "phone", "insurer", "insno",
               "code", "diagnosis", "contact", "contactssn", "xpatient"}
BILLING_SEES = {"family", "given", "insurer", "insno", "xpatient"}
RESEARCH_SEES = {"code"}  # the postcode is cut to "CA": no canary left; x-patient-* removed
CARE_APPT_SEES = {"act", "practitioner", "room"}
BILLING_APPT_SEES = {"act"}
OPEN_SEES = {"service"}


# --- The request mix ----------------------------------------------------------------------


@dataclass
class Kind:
    name: str
    weight: int
    group: str  # allowed, refused, failed
    path: Callable[[int], str]
    token: str | None  # a key of the tokens fixture
    purpose: str | None
    status: int | None  # None: the stream is reset after 200 headers
    sees: set[str] = field(default_factory=set)
    slug: str | None = None  # problem type of a refusal / failure
    expected: Callable[[int, str], bytes] | None = None  # (n, pseudonym key) -> body


def kinds() -> list[Kind]:
    lab_a, lab_b = "lab-a", "lab-b"
    P = lambda n: f"/patients/{n}?n={n}"  # noqa: E731
    return [
        # allowed
        Kind("care", 8, "allowed", P, "all", "care", 200, ALL_PATIENT,
             expected=lambda n, k: patient_bytes(n)),
        Kind("billing", 10, "allowed", P, "all", "billing", 200, BILLING_SEES,
             expected=lambda n, k: compact(billing_patient(n))),
        Kind("billing-list", 5, "allowed", lambda n: f"/patients?n={n}", "all", "billing", 200,
             BILLING_SEES,
             expected=lambda n, k: compact([billing_patient(n, i) for i in range(3)])),
        Kind("billing-gzip", 3, "allowed", lambda n: f"/patients/{n}?n={n}&enc=gzip", "all",
             "billing", 200, BILLING_SEES, expected=lambda n, k: compact(billing_patient(n))),
        Kind("research-a", 8, "allowed", P, "lab-a", "research", 200, RESEARCH_SEES,
             expected=lambda n, k: compact(research_patient(n, k, lab_a))),
        Kind("research-b-list", 5, "allowed", lambda n: f"/patients?n={n}", "lab-b",
             "research", 200, RESEARCH_SEES,
             expected=lambda n, k: compact([research_patient(n, k, lab_b, i)
                                            for i in range(3)])),
        Kind("export", 4, "allowed", lambda n: f"/exports/patients?n={n}", "lab-a", "research",
             200, RESEARCH_SEES,
             expected=lambda n, k: b"".join(compact(research_patient(n, k, lab_a, i)) + b"\n"
                                            for i in range(5))),
        Kind("appt-care", 5, "allowed", lambda n: f"/appointments/{n}?n={n}", "all", "care",
             200, CARE_APPT_SEES, expected=lambda n, k: compact(care_appointment(n))),
        Kind("appt-billing", 4, "allowed", lambda n: f"/appointments/{n}?n={n}", "all",
             "billing", 200, BILLING_APPT_SEES,
             expected=lambda n, k: compact(billing_appointment(n))),
        Kind("open-data", 4, "allowed", lambda n: f"/open/admissions?n={n}", None, None, 200,
             OPEN_SEES, expected=lambda n, k: compact(open_view(n))),
        # refused: finalite answers, the upstream never sees the request
        Kind("no-token", 4, "refused", lambda n: f"/patients/{n}?n={n}&refused=1", None,
             "billing", 401, slug="invalid-token"),
        Kind("bad-token", 3, "refused", lambda n: f"/patients/{n}?n={n}&refused=1", "forged",
             "billing", 401, slug="invalid-token"),
        Kind("expired-token", 2, "refused", lambda n: f"/patients/{n}?n={n}&refused=1",
             "expired", "billing", 401, slug="invalid-token"),
        Kind("scope", 4, "refused", lambda n: f"/patients/{n}?n={n}&refused=1", "appts-only",
             "billing", 403, slug="insufficient-scope"),
        Kind("purpose-not-authorised", 4, "refused",
             lambda n: f"/patients/{n}?n={n}&refused=1", "billing-only", "research", 403,
             slug="purpose-not-authorised"),
        Kind("purpose-undeclared", 2, "refused", lambda n: f"/patients/{n}?n={n}&refused=1",
             "all", None, 403, slug="purpose-undeclared"),
        Kind("no-policy", 2, "refused", lambda n: f"/unlisted/{n}?n={n}&refused=1", "all",
             "care", 403, slug="no-policy"),
        # failed closed
        Kind("malformed", 5, "failed", lambda n: f"/patients/{n}?n={n}&fault=malformed", "all",
             "billing", 502, slug="response-not-filterable"),
        Kind("html", 3, "failed", lambda n: f"/patients/{n}?n={n}&fault=html", "all",
             "research", 502, slug="response-not-filterable"),
        Kind("oversize", 1, "failed", lambda n: f"/patients/{n}?n={n}&fault=oversize", "all",
             "billing", 502, slug="response-not-filterable"),
        Kind("export-malformed", 2, "failed",
             lambda n: f"/exports/patients?n={n}&fault=malformed", "lab-a", "research", None,
             RESEARCH_SEES),
    ]


# --- Fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def soak_upstream() -> RawUpstream:
    server = RawUpstream(default=answer)
    server.record = False
    yield server
    server.close()


@pytest.fixture(scope="module")
def soak_envoy(envoy_factory, shipped, jwks, wasm, soak_upstream):
    """The shipped configuration, unchanged but for addresses, in front of the soak upstream."""
    cfg = render.render(shipped, api=("127.0.0.1", soak_upstream.port), wasm=wasm, jwks=jwks)
    return envoy_factory(cfg, "soak")


@pytest.fixture(scope="module")
def tokens(token) -> dict[str, str]:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    every = "patients:read appointments:read exports:read"
    return {
        "all": token(every, ["care", "billing", "research"], client_id="hospital-partner"),
        "lab-a": token(every, ["research"], client_id="lab-a"),
        "lab-b": token(every, ["research"], client_id="lab-b"),
        "forged": token(every, ["billing"], key=forger),
        "expired": token(every, ["billing"], ttl=-3600),
        "appts-only": token("appointments:read", ["billing"]),
        "billing-only": token(every, ["billing"]),
    }


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def mib(b: float) -> str:
    return f"{b / 1048576:.1f} MiB"


# --- The run ------------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[str] = collections.Counter()
        self.groups: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []  # unexpected statuses, wrong bodies, errors
        self.leaks: list[str] = []
        self.exact = 0

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def leak(self, text: str) -> None:
        with self.lock:
            self.leaks.append(text)


def check_canaries(kind: Kind, n: int, seen: bytes, tally: Tally) -> None:
    for m in CANARY.finditer(seen):
        owner, name = int(m.group(1)), m.group(2).decode()
        if owner != n or name not in kind.sees:
            tally.leak(f"{kind.name} n={n}: {m.group(0).decode()} "
                       f"({'another request' if owner != n else 'withheld field'})")


def one_request(session: requests.Session, kind: Kind, n: int, tokens: dict[str, str],
                envoy, key: str, tally: Tally) -> None:
    headers = {}
    if kind.token is not None:
        headers["authorization"] = f"Bearer {tokens[kind.token]}"
    if kind.purpose is not None:
        headers["x-purpose"] = kind.purpose
    url = envoy.url(kind.path(n))
    got = b""
    try:
        r = session.get(url, headers=headers, timeout=HTTP_TIMEOUT, stream=True)
        for piece in r.iter_content(chunk_size=None):
            got += piece
    except requests.exceptions.RequestException as e:
        if kind.status is None:  # the expected reset: what arrived must still be filtered
            check_canaries(kind, n, got, tally)
            with tally.lock:
                tally.by_kind[kind.name] += 1
                tally.statuses["reset"] += 1
                tally.groups[kind.group] += 1
            return
        tally.problem(f"{kind.name} n={n}: {type(e).__name__}: {e}")
        return
    seen = got + "\n".join(f"{k}: {v}" for k, v in r.headers.items()).encode()
    check_canaries(kind, n, seen, tally)
    with tally.lock:
        tally.by_kind[kind.name] += 1
        tally.statuses[str(r.status_code)] += 1
        tally.groups[kind.group] += 1
    if kind.status is None:
        tally.problem(f"{kind.name} n={n}: a complete {r.status_code} where a reset was due "
                      f"({got[:300]!r})")
        return
    if r.status_code != kind.status:
        tally.problem(f"{kind.name} n={n}: status {r.status_code}, expected {kind.status}: "
                      f"{got[:300]!r}")
        return
    if kind.slug is not None:
        ctype = r.headers.get("content-type", "")
        try:
            problem = json.loads(got)
        except ValueError:
            problem = {}
        if ctype != "application/problem+json" or \
                problem.get("type") != f"urn:finalite:problem:{kind.slug}":
            tally.problem(f"{kind.name} n={n}: not the {kind.slug} problem: {ctype} {got[:300]!r}")
    if kind.expected is not None:
        want = kind.expected(n, key)
        if got != want:
            tally.problem(f"{kind.name} n={n}: body differs\n  expected {want[:400]!r}\n"
                          f"       got {got[:400]!r}")
        else:
            with tally.lock:
                tally.exact += 1


def test_soak(soak_envoy, soak_upstream, tokens, pseudonym_key):
    table = kinds()
    weights = [k.weight for k in table]
    numbers = itertools.count(1)
    tally = Tally()
    stop_at = time.monotonic() + DURATION
    pid = soak_envoy.proc.pid
    REACHED_WHEN_REFUSED.clear()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with requests.Session() as session:
            while time.monotonic() < stop_at:
                n = next(numbers)
                if n > MAX_REQUESTS:
                    return
                kind = rng.choices(table, weights)[0]
                try:
                    one_request(session, kind, n, tokens, soak_envoy, pseudonym_key, tally)
                except Exception as e:  # a bug here must fail the test, not kill the thread
                    tally.problem(f"{kind.name} n={n}: client error {type(e).__name__}: {e}")

    # Warm up (first requests compile code paths in V8), then the run.
    for kind in table:
        with requests.Session() as s:
            one_request(s, kind, next(numbers), tokens, soak_envoy, pseudonym_key, tally)
    assert not tally.problems and not tally.leaks, (tally.problems, tally.leaks)
    start = time.monotonic()
    stop_at = start + DURATION
    rss_start = rss(pid)
    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(CONNECTIONS)]
    for t in threads:
        t.start()
    time.sleep(DURATION * 0.25)
    rss_quarter = rss(pid)
    for t in threads:
        t.join(DURATION + 4 * HTTP_TIMEOUT)
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "a client thread is stuck"
    rss_end = rss(pid)
    total = sum(tally.by_kind.values())
    reloads = {k: int(v) for k, _, v in (line.partition(": ") for line in soak_envoy.admin(
        "/stats?filter=^wasm\\.finalite\\.vm_reload").text.splitlines()) if v}

    print(f"\nsoak: {total} requests in {elapsed:.0f}s ({total / elapsed:.0f}/s) over "
          f"{CONNECTIONS} connections: allowed {tally.groups['allowed']} "
          f"({tally.exact} exact bodies), refused {tally.groups['refused']}, "
          f"failed closed {tally.groups['failed']}; statuses "
          f"{dict(sorted(tally.statuses.items()))}; unexpected {len(tally.problems)}, "
          f"leaks {len(tally.leaks)}")
    print(f"soak: Envoy RSS at start {mib(rss_start)}, at 25% {mib(rss_quarter)}, at the end "
          f"{mib(rss_end)} (growth since 25%: {mib(rss_end - rss_quarter)})")
    print(f"soak: by kind {dict(sorted(tally.by_kind.items()))}")

    assert not tally.leaks, f"{len(tally.leaks)} leaks, first: {tally.leaks[:10]}"
    assert not tally.problems, (f"{len(tally.problems)} unexpected results, first:\n"
                                + "\n".join(tally.problems[:10]))
    assert not REACHED_WHEN_REFUSED, f"refused requests reached the upstream: " \
                                     f"{REACHED_WHEN_REFUSED[:5]}"
    assert not soak_upstream.errors, soak_upstream.errors[:5]
    assert all(tally.by_kind[k.name] > 0 for k in table), tally.by_kind
    assert soak_envoy.running(), soak_envoy.describe()
    # No VM trap during the run: a trap would have reloaded the VM.
    assert not any(reloads.values()), reloads
    assert rss_end - rss_quarter < RSS_GROWTH_LIMIT, (
        f"Envoy RSS grew {mib(rss_end - rss_quarter)} from {mib(rss_quarter)} "
        f"to {mib(rss_end)}")
