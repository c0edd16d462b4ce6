#!/usr/bin/env python3
"""A small personal-data API for the finalite demo (Python standard library only).

It serves *entirely fictional* patients, appointments and open statistics, byte for byte from
the JSON files in ``sample-data/`` next to this script, so what finalite sends to a client
can be compared with what the upstream wrote.

    GET /patients           sample-data/patients.json       (an array of 3 patients)
    GET /patients/{id}      sample-data/patients/{id}.json  (one patient)
    GET /appointments       sample-data/appointments.json
    GET /open/admissions    sample-data/open-admissions.json
    GET /health             sample-data/health.json
    GET /fhir/Bundle/father sample-data/fhir/Bundle-father.json (a FHIR R4 document Bundle:
                            HL7's R4 example, package hl7.fhir.r4.examples 4.0.1, CC0)
    GET /fhir/Observation   sample-data/fhir/Bundle-observations.json (a FHIR searchset of
                            HL7's R4 example Observations of three patients and a Condition,
                            for the SMART scopes demo; query parameters are ignored)
    GET /exports/patients   a bulk export: ``count`` fictional patients (query ``?count=N``,
                            default 1000), one JSON object per line (application/x-ndjson),
                            generated on the fly and sent chunked, so that a large export can
                            be tried against finalite's streaming mode without a large file

Patient responses carry an ``x-patient-count`` header (a header some purposes must not see).
Every request is logged on stderr with the headers finalite and Envoy forwarded (purpose,
accept-encoding, request id), which is handy when trying the demo.

Usage:  python3 envoy/sample_api.py [PORT] [--host HOST]
        PORT defaults to $SAMPLE_API_PORT, then 8080; HOST to $SAMPLE_API_HOST, then 0.0.0.0
        (the docker-compose service listens on every interface of its container; `make run`
        passes --host 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

DATA = Path(__file__).resolve().parent / "sample-data"

# Paths served, each mapped to a file under DATA. Patient ids are digits only, so a request
# can never name a file outside the data directory.
ROUTES = {
    "/patients": "patients.json",
    "/appointments": "appointments.json",
    "/open/admissions": "open-admissions.json",
    "/health": "health.json",
    "/fhir/Bundle/father": "fhir/Bundle-father.json",
    "/fhir/Observation": "fhir/Bundle-observations.json",
}
PATIENT = re.compile(r"^/patients/([0-9]+)$")

EXPORT = "/exports/patients"
EXPORT_DEFAULT_COUNT = 1000
EXPORT_MAX_COUNT = 10_000_000
EXPORT_CHUNK_BYTES = 64 * 1024

# Request headers worth showing in the log (the rest is noise for the demo).
LOGGED_HEADERS = ("x-purpose", "accept-encoding", "x-request-id", "authorization")


def resolve(path: str) -> tuple[Path, dict[str, str]] | None:
    """The file that answers ``path`` and the extra response headers, or None (404)."""
    path = path.split("?", 1)[0]
    if len(path) > 1:
        path = path.rstrip("/")
    if path in ROUTES:
        headers = {"x-patient-count": "3"} if path == "/patients" else {}
        return DATA / ROUTES[path], headers
    m = PATIENT.match(path)
    if m:
        file = DATA / "patients" / f"{m.group(1)}.json"
        if file.is_file():
            return file, {"x-patient-count": "1"}
    return None


# --- The bulk export: fictional patients, generated ----------------------------------------

_FAMILIES = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
             "Leroy", "Moreau", "Nguyen", "Fournier"]
_GIVEN = ["Claire", "Hugo", "Anh", "Léa", "Louis", "Inès", "Jules", "Zoé", "Malo",
          "Yasmine", "Thi", "Sacha"]
_PLACES = [("Lyon", "69003"), ("Bordeaux", "33000"), ("Lille", "59000"), ("Nantes", "44000"),
           ("Rennes", "35000"), ("Nice", "06000"), ("Dijon", "21000")]
_CONDITIONS = [("E11", "Type 2 diabetes mellitus"), ("I10", "Essential hypertension"),
               ("J45", "Asthma"), ("M81", "Osteoporosis"), ("H25", "Age-related cataract")]


def export_record(i: int) -> dict:
    """Fictional patient number `i` of the export (the same `i` always gives the same one)."""
    year, month, day = 1930 + i % 80, 1 + i % 12, 1 + i % 28
    city, postcode = _PLACES[i % len(_PLACES)]
    conditions = [
        {"code": code, "display": display,
         "onset": f"{2000 + (i + k) % 25}-{1 + (i + k) % 12:02d}-{1 + (i * 7 + k) % 28:02d}"}
        for k, (code, display) in enumerate(_CONDITIONS[i % 3:i % 3 + 1 + i % 2])
    ]
    return {
        "id": f"x-{i:07d}",
        "name": {"family": _FAMILIES[i % len(_FAMILIES)],
                 "given": [_GIVEN[(i * 5) % len(_GIVEN)]]},
        "birthDate": f"{year}-{month:02d}-{day:02d}",
        "ssn": f"{1 + i % 2}{year % 100:02d}{month:02d}99{i % 1000000:06d}",
        "address": {"line": f"{1 + i % 90} rue Exemple", "city": city, "postalCode": postcode},
        "phone": f"+33 6 00 {i % 100:02d} {(i // 100) % 100:02d} {(i // 10000) % 100:02d}",
        "conditions": conditions,
    }


def export_lines(count: int, chunk_bytes: int = EXPORT_CHUNK_BYTES) -> Iterator[bytes]:
    """The export as NDJSON, in chunks of about `chunk_bytes` (each ends with a line)."""
    buffer = bytearray()
    for i in range(1, count + 1):
        buffer += json.dumps(export_record(i)).encode() + b"\n"
        if len(buffer) >= chunk_bytes:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def export_count(query: str) -> int | None:
    """`count` of the query string, or None when it is not a number in range."""
    values = parse_qs(query).get("count", [str(EXPORT_DEFAULT_COUNT)])
    try:
        count = int(values[-1])
    except ValueError:
        return None
    return count if 0 <= count <= EXPORT_MAX_COUNT else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's connection pool expects
    server_version = "sample-api/1"

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        url = urlsplit(self.path)
        if url.path.rstrip("/") == EXPORT:
            self.send_export(url.query)
            return
        found = resolve(self.path)
        if found is None:
            self.send_json(404, b'{"error": "not found"}\n', {})
            return
        file, headers = found
        self.send_json(200, file.read_bytes(), headers)

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def send_json(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_export(self, query: str) -> None:
        count = export_count(query)
        if count is None:
            message = f'{{"error": "count must be an integer from 0 to {EXPORT_MAX_COUNT}"}}\n'
            self.send_json(400, message.encode(), {})
            return
        self.send_response(200)
        self.send_header("content-type", "application/x-ndjson")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-export-count", str(count))
        self.end_headers()
        if self.command == "HEAD":
            return
        for chunk in export_lines(count):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        shown = []
        for name in LOGGED_HEADERS:
            value = self.headers.get(name)
            if value is not None:
                if name == "authorization":
                    value = value[:16] + "..."  # enough to see a token was forwarded
                shown.append(f"{name}={value}")
        self.log_message('"%s" %s %s', self.requestline, str(code), " ".join(shown))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", nargs="?", type=int,
                        default=int(os.environ.get("SAMPLE_API_PORT", "8080")))
    parser.add_argument("--host", default=os.environ.get("SAMPLE_API_HOST", "0.0.0.0"))
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"sample-api: serving fictional data from {DATA.name}/ on http://{args.host}:{args.port}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
