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
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(__file__).resolve().parent / "sample-data"

# Paths served, each mapped to a file under DATA. Patient ids are digits only, so a request
# can never name a file outside the data directory.
ROUTES = {
    "/patients": "patients.json",
    "/appointments": "appointments.json",
    "/open/admissions": "open-admissions.json",
    "/health": "health.json",
}
PATIENT = re.compile(r"^/patients/([0-9]+)$")

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's connection pool expects
    server_version = "sample-api/1"

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
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
