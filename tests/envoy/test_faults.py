"""Upstream faults: what a client observes when the origin misbehaves, and that nothing leaks.

The origin here is rawupstream.RawUpstream (raw sockets), so it can cut a body, drip it, or
follow it with trailers. Every upstream body carries canaries in the fields the purpose must
not see; no canary may reach the client, in the body or in a header, whatever the fault.

What the client observes (Envoy 1.40, the shipped configuration):

- connection closed (FIN) or reset (RST) mid-body:
  - buffered purpose (billing; finalite holds the headers): Envoy's own `502` ("upstream
    connect error or disconnect/reset before headers"), nothing of the upstream body;
  - streamed policy (exports) or unfiltered purpose (care): the `200` headers went out, then
    the body stops short: the client gets an error (incomplete chunked body, or fewer bytes
    than content-length), never a cut body presented as complete;
- slow drip (one byte per write): exactly the filtered body;
- 4xx/5xx with a JSON body: filtered like a 200, status unchanged; a 5xx that is not JSON
  (an HTML error page) fails closed with finalite's 502;
- HEAD, 204, 304: no body, headers only;
- HTTP/1.1 trailers: Envoy's HTTP/1 codec drops them unless the cluster sets
  `enable_trailers` (the shipped one does not), so the filter sees a plain body: the client
  gets the filtered body and no trailer. With `enable_trailers`, the filter sees the trailers
  after a body it can no longer rewrite and fails closed: `502` (buffered) or a reset
  (streamed).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

import render
from harness import HTTP_TIMEOUT, assert_problem, describe, pseudonym
from rawupstream import RawConn, RawRequest, cut_after, drip, with_trailers

CLIENT = "test-client"  # client_id of the session's tokens (conftest `token`)
JSON = [("content-type", "application/json")]
NDJSON = [("content-type", "application/x-ndjson")]

# Canaries in fields billing must not see (billing keeps id, name, insurance) and research
# must not see (research: pseudonymised id, birth year, postcode prefix, condition codes).
SSN = "CANARY-F-ssn"
PHONE = "CANARY-F-phone"
DISPLAY = "CANARY-F-display"
NAME = "CANARY-F-name"
CITY = "CANARY-F-city"
HEADER = "CANARY-F-header"  # in an x-patient-* header: research removes those
TRAILER = "CANARY-F-trailer"
NOT_FOR_BILLING = [SSN, PHONE, DISPLAY, CITY]
NOT_FOR_RESEARCH = [SSN, PHONE, DISPLAY, CITY, NAME, HEADER]


def patient(i: int = 1) -> dict[str, Any]:
    return {"id": f"P{i}", "name": {"family": NAME}, "birthDate": "1984-03-12", "ssn": SSN,
            "phone": PHONE, "address": {"city": CITY, "postalCode": "69003"},
            "insurance": {"provider": "Mutuelle Exemple"},
            "conditions": [{"code": "E11", "display": DISPLAY, "onset": "2015-06-01"}]}


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


PATIENT = compact(patient())
BILLING_VIEW = b'{"id":"P1","name":{"family":"' + NAME.encode() + \
    b'"},"insurance":{"provider":"Mutuelle Exemple"}}'


def research_line(key: str, i: int) -> bytes:
    return (b'{"id":"' + pseudonym(key, f"P{i}", CLIENT).encode() +
            b'","birthDate":"1984","address":{"postalCode":"69"},'
            b'"conditions":[{"code":"E11","onset":"2015"}]}\n')


EXPORT = b"".join(compact(patient(i)) + b"\n" for i in range(1, 4))


def assert_no_canary(r: requests.Response | None, canaries: list[str], partial: bytes = b""):
    """No canary in the body (or the part received before an error) nor in any header."""
    seen = partial
    if r is not None:  # a response read in full
        seen += r.content
        seen += "\n".join(f"{k}: {v}" for k, v in r.headers.items()).encode()
    for c in canaries:
        assert c.encode() not in seen, f"{c} leaked: {seen[:2000]!r}"


# --- Fixtures -----------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("fresh_raw")


def with_trailers_enabled(cfg: dict[str, Any]) -> dict[str, Any]:
    """Envoy's HTTP/1 codec passes upstream trailers on only with `enable_trailers`."""
    render.cluster(cfg)["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {"enable_trailers": True}},
        }}
    return cfg


@pytest.fixture(scope="module")
def fenvoy(envoy_factory, shipped, jwks, wasm, raw):
    """The shipped configuration in front of the raw upstream."""
    cfg = render.render(shipped, api=("127.0.0.1", raw.port), wasm=wasm, jwks=jwks)
    return envoy_factory(cfg, "faults")


@pytest.fixture(scope="module")
def trailers_envoy(envoy_factory, shipped, jwks, wasm, raw):
    """The same, with upstream HTTP/1 trailers passed on to the filters."""
    cfg = render.render(shipped, api=("127.0.0.1", raw.port), wasm=wasm, jwks=jwks)
    return envoy_factory(with_trailers_enabled(cfg), "faults-trailers")


@pytest.fixture(scope="module")
def tok(token):
    return token("patients:read exports:read", ["billing", "research", "care"])


def get(envoy, path, tok, purpose, **kw) -> requests.Response:
    return envoy.get(path, token=tok, purpose=purpose, **kw)


def get_streamed(envoy, path, tok, purpose) -> tuple[requests.Response, bytes, Exception | None]:
    """The response, the body bytes received, and the error that stopped the body (if any)."""
    r = requests.get(envoy.url(path), headers={"authorization": f"Bearer {tok}",
                                               "x-purpose": purpose},
                     timeout=HTTP_TIMEOUT, stream=True)
    got = b""
    try:
        for piece in r.iter_content(chunk_size=None):
            got += piece
    except requests.exceptions.RequestException as e:
        return r, got, e
    return r, got, None


# --- Connection closed or reset mid-body --------------------------------------------------

BIG = b"[" + b",".join([PATIENT] * 100) + b"]"  # ~27 KiB: several reads for Envoy


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_cut_mid_body_buffered_is_a_502(fenvoy, raw, tok, how, framing):
    """finalite holds the headers: Envoy answers 502 itself, nothing of the body goes out."""
    raw.set("/patients", cut_after(200, JSON, BIG, len(BIG) // 2, rst=how == "rst",
                                   chunked=framing == "chunked"))
    r = get(fenvoy, "/patients", tok, "billing")
    assert r.status_code == 502, describe(r)
    assert b"upstream connect error or disconnect/reset before headers" in r.content, describe(r)
    assert b"P1" not in r.content and b"Mutuelle" not in r.content, describe(r)
    assert_no_canary(r, NOT_FOR_BILLING + [NAME])


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_cut_mid_body_streamed_is_an_error(fenvoy, raw, tok, pseudonym_key, how, framing):
    """The streamed research export: 200 and filtered lines went out, then the body stops
    short: the client sees an incomplete body (an error), never a complete-looking export."""
    body = b"".join(compact(patient(i)) + b"\n" for i in range(1, 101))
    raw.set("/exports/patients", cut_after(200, NDJSON, body, len(body) // 2,
                                           rst=how == "rst", chunked=framing == "chunked"))
    r, got, error = get_streamed(fenvoy, "/exports/patients", tok, "research")
    assert r.status_code == 200, describe(r)
    assert error is not None, f"a cut export was presented as complete ({len(got)} bytes)"
    # What did arrive is filtered: whole research lines (the last one possibly cut).
    lines = got.split(b"\n")
    for i, line in enumerate(lines[:-1], start=1):
        assert line + b"\n" == research_line(pseudonym_key, i), got[:2000]
    assert_no_canary(None, NOT_FOR_RESEARCH, partial=got)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_cut_mid_body_unfiltered_purpose_is_an_error(fenvoy, raw, tok, framing):
    """care has no body rules (its body is not held): the client's read fails."""
    raw.set("/patients", cut_after(200, JSON, BIG, len(BIG) // 2, rst=True,
                                   chunked=framing == "chunked"))
    r, got, error = get_streamed(fenvoy, "/patients", tok, "care")
    assert r.status_code == 200, describe(r)
    assert error is not None, f"a cut body was presented as complete ({len(got)} bytes)"
    assert len(got) < len(BIG)


def test_reset_before_headers_is_a_5xx(fenvoy, raw, tok):
    """Envoy answers its own 503 (text/plain, "upstream connect error or disconnect/reset
    before headers"). That local reply goes through finalite's response path like an
    upstream answer, and a text/plain body for a purpose with body rules fails closed: the
    client gets finalite's 502 problem. (Envoy's 504 timeouts and 503s for an unreachable
    upstream become 502 the same way: safe, but the upstream's state is hidden.)"""
    raw.set("/patients/1", lambda req, conn: conn.reset())
    r = get(fenvoy, "/patients/1", tok, "billing")
    if r.status_code == 502:
        assert_problem(r, 502, "response-not-filterable", "Bad Gateway")
    else:
        assert r.status_code == 503, describe(r)
    assert_no_canary(r, NOT_FOR_BILLING)


# --- Slow drip ----------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_slow_drip_buffered(fenvoy, raw, tok, framing):
    raw.set("/patients/1", drip(200, JSON, PATIENT, 0.002, chunked=framing == "chunked"))
    r = get(fenvoy, "/patients/1", tok, "billing")
    assert r.status_code == 200, describe(r)
    assert r.content == BILLING_VIEW
    assert_no_canary(r, NOT_FOR_BILLING)


def test_slow_drip_streamed(fenvoy, raw, tok, pseudonym_key):
    raw.set("/exports/patients", drip(200, NDJSON, EXPORT, 0.001, chunked=True))
    r = get(fenvoy, "/exports/patients", tok, "research")
    assert r.status_code == 200, describe(r)
    assert r.content == b"".join(research_line(pseudonym_key, i) for i in range(1, 4))
    assert_no_canary(r, NOT_FOR_RESEARCH)


# --- Error statuses with JSON bodies ------------------------------------------------------

ERROR_BODY = compact({"error": "database unavailable", "id": "P1",
                      "patient": {"id": "P1", "name": NAME, "ssn": SSN},
                      "ssn": SSN, "name": {"family": NAME}})


@pytest.mark.parametrize("status", [500, 503, 404, 409])
def test_error_status_with_json_body_is_filtered(fenvoy, raw, tok, pseudonym_key, status):
    raw.set_json("/patients/1", ERROR_BODY, status=status,
                 headers=[("x-patient-note", HEADER)])
    r = get(fenvoy, "/patients/1", tok, "billing")
    assert r.status_code == status, describe(r)
    assert r.content == b'{"id":"P1","name":{"family":"' + NAME.encode() + b'"}}', describe(r)
    assert_no_canary(r, NOT_FOR_BILLING)
    r = get(fenvoy, "/patients/1", tok, "research")
    assert r.status_code == status, describe(r)
    assert r.content == b'{"id":"' + pseudonym(pseudonym_key, "P1", CLIENT).encode() + b'"}'
    assert_no_canary(r, NOT_FOR_RESEARCH)


def test_error_status_with_html_body_fails_closed(fenvoy, raw, tok):
    page = f"<html><body>500 for {SSN}</body></html>".encode()
    raw.set("/patients/1", lambda req, conn: conn.respond(
        500, [("content-type", "text/html")], page))
    r = get(fenvoy, "/patients/1", tok, "billing")
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway", absent=[SSN.encode()])


# --- Bodiless responses -------------------------------------------------------------------


@pytest.fixture(scope="module")
def head_tok(token):
    """HEAD is not GET for finalite's scopes: the shipped patients policy requires its "*"
    scope (patients:write) for any method other than GET."""
    return token("patients:read patients:write", ["billing", "research"])


@pytest.mark.parametrize("purpose", ["billing", "research"])
def test_head(fenvoy, raw, head_tok, purpose):
    raw.set_json("/patients/1", PATIENT, headers=[("x-patient-note", HEADER), ("etag", '"v1"')])
    r = get(fenvoy, "/patients/1", head_tok, purpose, method="HEAD")
    assert r.status_code == 200, describe(r)
    assert r.content == b""
    # The upstream's content-length and etag describe the unfiltered body, not what a GET
    # for this purpose returns (filtered, chunked, without an etag): they are removed.
    assert r.headers.get("content-length") in (None, "0"), describe(r)
    assert "etag" not in r.headers, describe(r)
    assert_no_canary(r, NOT_FOR_RESEARCH if purpose == "research" else NOT_FOR_BILLING)
    assert [q.method for q in raw.received] == ["HEAD"]


def test_204(fenvoy, raw, tok):
    raw.set("/patients/1", lambda req, conn: conn.respond(
        204, JSON + [("x-patient-note", HEADER)]))
    r = get(fenvoy, "/patients/1", tok, "research")
    assert r.status_code == 204, describe(r)
    assert r.content == b""
    assert_no_canary(r, NOT_FOR_RESEARCH)


def test_304(fenvoy, raw, tok):
    def answer(req: RawRequest, conn: RawConn) -> None:
        if req.header("if-none-match") == '"v1"':
            conn.respond(304, [("etag", '"v1"'), ("x-patient-note", HEADER)])
        else:
            conn.respond(200, JSON + [("etag", '"v1"')], PATIENT)

    raw.set("/patients/1", answer)
    # research filters the body: its validator is not sent upstream (a 304 would confirm
    # that it matches the unfiltered body), so it gets its view.
    r = get(fenvoy, "/patients/1", tok, "research", headers={"if-none-match": '"v1"'})
    assert r.status_code == 200, describe(r)
    assert json.loads(r.content)["birthDate"] == "1984", describe(r)
    assert_no_canary(r, NOT_FOR_RESEARCH)
    assert raw.received[-1].header("if-none-match") is None, raw.received[-1].headers
    # care sees the upstream's bytes: its validators, and the 304, are about them.
    r = get(fenvoy, "/patients/1", tok, "care", headers={"if-none-match": '"v1"'})
    assert r.status_code == 304, describe(r)
    assert r.content == b""


# --- Trailers -----------------------------------------------------------------------------


def test_trailers_dropped_by_envoy_by_default(fenvoy, raw, tok, pseudonym_key):
    """The shipped cluster does not enable HTTP/1 trailers: Envoy's codec drops them, the
    filter sees an ordinary body, and the client gets the filtered body and no trailer."""
    raw.set("/patients/1", with_trailers(200, JSON, PATIENT, [("x-checksum", TRAILER)],
                                         chunk_size=50))
    r = get(fenvoy, "/patients/1", tok, "billing")
    assert r.status_code == 200, describe(r)
    assert r.content == BILLING_VIEW
    assert_no_canary(r, NOT_FOR_BILLING + [TRAILER])
    raw.set("/exports/patients", with_trailers(200, NDJSON, EXPORT, [("x-checksum", TRAILER)]))
    r = get(fenvoy, "/exports/patients", tok, "research")
    assert r.status_code == 200, describe(r)
    assert r.content == b"".join(research_line(pseudonym_key, i) for i in range(1, 4))
    assert_no_canary(r, NOT_FOR_RESEARCH + [TRAILER])


def test_trailers_after_a_buffered_body_fail_closed(trailers_envoy, raw, tok):
    raw.set("/patients/1", with_trailers(200, JSON, PATIENT, [("x-checksum", TRAILER)],
                                         chunk_size=50))
    r = get(trailers_envoy, "/patients/1", tok, "billing")
    problem = assert_problem(r, 502, "response-not-filterable", "Bad Gateway",
                             absent=[c.encode() for c in NOT_FOR_BILLING + [NAME, TRAILER]])
    assert "trailers" in problem["detail"]
    assert b"P1" not in r.content


def test_trailers_after_a_streamed_body_reset_it(trailers_envoy, raw, tok):
    raw.set("/exports/patients", with_trailers(200, NDJSON, EXPORT, [("x-checksum", TRAILER)]))
    r, got, error = get_streamed(trailers_envoy, "/exports/patients", tok, "research")
    assert r.status_code == 200, describe(r)
    assert error is not None, f"the export was presented as complete: {got!r}"
    assert_no_canary(None, NOT_FOR_RESEARCH + [TRAILER], partial=got)
