"""Side channels: nothing about a withheld field reaches the client except through the body.

A reuser who may not see a field must not learn it from what travels beside the filtered
body either: the answer to a conditional request, a digest or an ETag of the upstream's bytes,
a partial response, a shared cache holding another purpose's view, trailers, scopes split where
the token did not split them, or an audit record that names the wrong purpose.
"""

from __future__ import annotations

import copy
import http.client
import hashlib
import json
import secrets
import socket
from typing import Any

import pytest

import records
import render
from harness import HTTP_TIMEOUT, assert_problem, describe
from rawupstream import RawConn, RawRequest, with_trailers

C = secrets.token_hex(5)  # in every canary of this module
PATIENT = {"id": "P1", "name": {"family": f"family-{C}"}, "insurance": {"provider": "M"},
           "diagnosis": {"diabetic": True}, "ssn": f"ssn-{C}"}
BODY = json.dumps(PATIENT).encode()
BILLING_VIEW = {"id": "P1", "name": {"family": f"family-{C}"}, "insurance": {"provider": "M"}}
WITHHELD = [f"ssn-{C}", "diabetic"]

pytestmark = pytest.mark.usefixtures("fresh_raw")


def rid(name: str) -> str:
    return f"side-{name}-{secrets.token_hex(6)}"


def billing(token) -> str:
    return token("patients:read", ["billing", "care"], client_id="partner-billing")


def assert_billing_view(r) -> None:
    assert r.status_code == 200, describe(r)
    assert json.loads(r.content) == BILLING_VIEW, describe(r)
    for secret in WITHHELD:
        assert secret.encode() not in r.content, describe(r)
# --- Scopes and purposes in the token -----------------------------------------------------


def test_scopes_are_split_on_ascii_space_only(envoy, upstream, token):
    """RFC 6749 §3.3: a no-break space does not separate two scopes."""
    upstream.set("/patients/1", BODY)
    r = envoy.get("/patients/1", token=token("other\u00a0patients:read", ["billing"]),
                  purpose="billing")
    assert_problem(r, 403, "insufficient-scope", "Forbidden")
    r = envoy.get("/patients/1", token=token("patients:read", "care\u00a0billing"),
                  purpose="billing")
    assert_problem(r, 403, "purpose-not-authorised", "Forbidden")
    # The same claims split on ASCII spaces are granted.
    r = envoy.get("/patients/1", token=token("other patients:read", "care billing"),
                  purpose="billing")
    assert_billing_view(r)
# --- What the record says of a refused purpose --------------------------------------------


def test_an_undefined_purpose_is_not_recorded_as_the_default(envoy, upstream):
    upstream.set("/open/admissions", b"[]")
    request_id = rid("undefined")
    r = envoy.get("/open/admissions", purpose="marketing",
                  headers={"x-request-id": request_id})
    assert_problem(r, 403, "purpose-not-accepted", "Forbidden")
    record = records.audit_of(envoy, request_id)
    assert (record["purpose"], record["decision"]) == (None, "denied_purpose"), record
# --- Digests of the upstream body ---------------------------------------------------------


DIGESTS = [("digest", "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="),
           ("content-digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
           ("repr-digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
           ("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ=="), ("etag", '"v1"')]


def test_digests_of_the_upstream_body_are_removed_when_it_is_filtered(envoy, upstream, token):
    upstream.set("/patients/1", BODY, headers=DIGESTS)
    r = envoy.get("/patients/1", token=billing(token), purpose="billing")
    assert_billing_view(r)
    for name, _ in DIGESTS:
        assert name not in r.headers, describe(r)
    r = envoy.get("/patients/1", token=billing(token), purpose="care")
    assert r.content == BODY
    for name, value in DIGESTS:
        assert r.headers.get(name) == value, describe(r)
# --- Conditional requests -------------------------------------------------------------------


CONDITIONALS = {"if-none-match": '"x"', "if-match": '"x"', "if-range": '"x"',
                "if-modified-since": "Mon, 07 Dec 2026 10:00:00 GMT",
                "if-unmodified-since": "Mon, 07 Dec 2026 10:00:00 GMT"}


def etag_of(body: bytes) -> str:
    """What many web frameworks send: a hash of the body as their ETag."""
    return '"' + hashlib.sha256(body).hexdigest() + '"'


def test_conditional_headers_do_not_reach_the_upstream_of_a_filtered_purpose(
        envoy, upstream, token):
    upstream.set("/patients/1", BODY)
    r = envoy.get("/patients/1", token=billing(token), purpose="billing", headers=CONDITIONALS)
    assert_billing_view(r)
    [rec] = upstream.received("/patients/1")
    for name in CONDITIONALS:
        assert not rec.has_header(name), rec.headers
    # A purpose that sees the upstream's bytes as they are keeps its validators.
    upstream.reset()
    upstream.set("/patients/1", BODY)
    r = envoy.get("/patients/1", token=billing(token), purpose="care", headers=CONDITIONALS)
    assert r.status_code == 200, describe(r)
    [rec] = upstream.received("/patients/1")
    for name, value in CONDITIONALS.items():
        assert rec.header(name) == value, rec.headers


@pytest.fixture(scope="module")
def raw_envoy(envoy_factory, shipped, jwks, wasm, raw):
    """The shipped configuration in front of the raw upstream."""
    cfg = render.render(shipped, api=("127.0.0.1", raw.port), wasm=wasm, jwks=jwks)
    return envoy_factory(cfg, "side-channels-raw")


def test_an_etag_of_the_upstream_body_is_no_oracle(raw_envoy, raw, token):
    """The upstream's ETag hashes its (unfiltered) body and it answers 304 when the client's
    If-None-Match matches: a reuser who guesses the withheld fields must not be able to
    confirm the guess by the status."""
    def answer(req: RawRequest, conn: RawConn) -> None:
        if req.header("if-none-match") == etag_of(BODY):
            conn.respond(304, [("etag", etag_of(BODY))])
        else:
            conn.respond(200, [("content-type", "application/json"), ("etag", etag_of(BODY))],
                         BODY)

    raw.set("/patients/1", answer)
    for guess in (BODY, BODY.replace(b"true", b"false")):
        r = raw_envoy.get("/patients/1", token=billing(token), purpose="billing",
                          headers={"if-none-match": etag_of(guess)})
        assert_billing_view(r)
        assert "etag" not in r.headers, describe(r)


def test_a_304_is_never_forwarded_to_a_filtered_purpose(raw_envoy, raw, token):
    """An upstream that answers 304 anyway (it should not: the validators were removed) is
    not forwarded: the status would say the guess was right. The client gets a 502."""
    raw.set("/patients/1", lambda req, conn: conn.respond(304, [("etag", etag_of(BODY))]))
    r = raw_envoy.get("/patients/1", token=billing(token), purpose="billing",
                      headers={"if-none-match": etag_of(BODY)})
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway")
    # care sees the upstream as it is, 304 included.
    r = raw_envoy.get("/patients/1", token=billing(token), purpose="care")
    assert r.status_code == 304, describe(r)
# --- Partial responses --------------------------------------------------------------------


def test_a_partial_response_fails_closed_for_a_filtered_purpose(raw_envoy, raw, token):
    part = BODY[:40]
    raw.set("/patients/1", lambda req, conn: conn.respond(
        206, [("content-type", "application/json"),
              ("content-range", f"bytes 0-39/{len(BODY)}")], part))
    r = raw_envoy.get("/patients/1", token=billing(token), purpose="billing")
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway", absent=[part])
    assert "content-range" not in r.headers, describe(r)
    # A whole body that says it is a range of a larger one.
    raw.set("/patients/1", lambda req, conn: conn.respond(
        200, [("content-type", "application/json"),
              ("content-range", f"bytes 0-{len(BODY) - 1}/{len(BODY) * 2}")], BODY))
    r = raw_envoy.get("/patients/1", token=billing(token), purpose="billing")
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway", absent=[f"ssn-{C}".encode()])
    # care sees the upstream as it is.
    raw.set("/patients/1", lambda req, conn: conn.respond(
        206, [("content-type", "application/json"),
              ("content-range", f"bytes 0-39/{len(BODY)}")], part))
    r = raw_envoy.get("/patients/1", token=billing(token), purpose="care")
    assert (r.status_code, r.content) == (206, part), describe(r)
# --- Shared caches ------------------------------------------------------------------------


@pytest.mark.parametrize("upstream_value, expected", [
    ("public, max-age=600", "private, max-age=600"),
    ("max-age=60, s-maxage=600, public", "private, max-age=60"),
    (None, "private"),
    ("no-store", "no-store"),
    ("private, no-cache", "private, no-cache"),
])
@pytest.mark.parametrize("purpose", ["billing", "care"])
def test_a_purposes_view_is_private(envoy, upstream, token, purpose, upstream_value, expected):
    """A shared cache in front of Envoy must not serve one purpose's (or client's) view to
    another: every response of a policy that gives different views is `private` (the
    upstream's `no-store` stays as it is)."""
    headers = [] if upstream_value is None else [("cache-control", upstream_value)]
    upstream.set("/patients/1", BODY, headers=headers)
    r = envoy.get("/patients/1", token=billing(token), purpose=purpose)
    assert r.status_code == 200, describe(r)
    assert r.headers.get("cache-control") == expected, describe(r)


def test_open_data_stays_cacheable(envoy, upstream):
    """Open data (no token, one purpose) is the same view for everyone."""
    upstream.set("/open/admissions", b'[{"year": 2025, "count": 12}]',
                 headers=[("cache-control", "public, max-age=600")])
    r = envoy.get("/open/admissions")
    assert r.status_code == 200, describe(r)
    assert r.headers.get("cache-control") == "public, max-age=600", describe(r)
# --- Two purposes in one request ----------------------------------------------------------


def send_twice(port: int, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
    """A GET /patients/1 whose headers may repeat (requests would merge them)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.putrequest("GET", "/patients/1")
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_two_different_purposes_are_refused(envoy, upstream, token):
    """Two x-purpose headers that differ: which one the upstream or another filter acts on
    is not for finalite to guess, so the request is refused (400), and recorded without a
    purpose."""
    upstream.set("/patients/1", BODY)
    t = token("patients:read", ["billing", "research"], client_id="partner-billing")
    request_id = rid("two-purposes")
    status, headers, body = send_twice(envoy.port, [
        ("authorization", f"Bearer {t}"), ("x-request-id", request_id),
        ("x-purpose", "billing"), ("x-purpose", "research")])
    assert status == 400, (status, headers, body)
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert (problem["type"], problem["title"], problem["status"]) == (
        "urn:finalite:problem:purpose-ambiguous", "Bad Request", 400), problem
    assert upstream.received("/patients/1") == []
    record = records.audit_of(envoy, request_id)
    assert (record["purpose"], record["decision"], record["status"]) == (
        None, "denied_purpose", 400), record
    # The same purpose twice is one purpose.
    status, _, body = send_twice(envoy.port, [
        ("authorization", f"Bearer {t}"), ("x-purpose", "billing"), ("x-purpose", "billing")])
    assert (status, json.loads(body)) == (200, BILLING_VIEW)
# --- Trailers -----------------------------------------------------------------------------


def raw_request(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                         bytes, dict[str, str]]:
    """An HTTP/1.1 GET read off the socket: status, headers, body (de-chunked), trailers."""
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: api\r\nte: trailers\r\n"
                  f"connection: close\r\n{head}\r\n".encode())
        data = b""
        while True:
            part = s.recv(65536)
            if not part:
                break
            data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    body, trailers = b"", {}
    if hdrs.get("transfer-encoding") == "chunked":
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2:]
        for line in rest.decode().split("\r\n"):
            if line:
                k, _, v = line.partition(":")
                trailers[k.lower()] = v.strip()
    else:
        body = rest
    return status, hdrs, body, trailers


def trailers_on(cfg: dict[str, Any]) -> dict[str, Any]:
    """HTTP/1 trailers passed on from the upstream and to the client."""
    render.cluster(cfg)["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {"enable_trailers": True}},
        }}
    render.hcm(cfg)["http_protocol_options"] = {"enable_trailers": True}
    return cfg


@pytest.fixture(scope="module")
def trailers_envoy(envoy_factory, shipped, shipped_plugin_config, jwks, wasm, raw):
    """Trailers on, and care (the body as it is) removing x-patient-* headers."""
    conf = copy.deepcopy(shipped_plugin_config)
    conf["policies"]["patients"]["purposes"]["care"]["headers"] = {"remove": ["x-patient-*"]}
    cfg = render.render(shipped, api=("127.0.0.1", raw.port), wasm=wasm, jwks=jwks,
                        plugin_config=conf)
    return envoy_factory(trailers_on(cfg), "side-channels-trailers")


def test_header_rules_apply_to_trailers(trailers_envoy, raw, token):
    canary = f"trailer-{C}"
    raw.set("/patients/1", with_trailers(200, [("content-type", "application/json")], BODY,
                                         [("x-patient-secret", canary), ("x-checksum", "ok")]))
    status, headers, body, trailers = raw_request(
        trailers_envoy.port, "/patients/1",
        {"authorization": f"Bearer {billing(token)}", "x-purpose": "care"})
    assert (status, body) == (200, BODY), (status, headers, body)
    assert trailers.get("x-checksum") == "ok", trailers
    assert "x-patient-secret" not in trailers, trailers
    assert canary not in json.dumps([headers, trailers])
# --- Request ids --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_ids_envoy(envoy_factory, test_config, wasm):
    """The shipped configuration as it is, request ids included."""
    return envoy_factory(test_config(wasm=wasm), "side-channels-own-ids",
                         keep_client_request_id=False)


def test_the_request_id_is_the_proxys_own(own_ids_envoy, upstream, token):
    """A client could otherwise repeat another request's x-request-id and have its own
    request recorded under it: the shipped configuration gives each request an id of its
    own, whatever the client sends."""
    upstream.set("/patients/1", BODY)
    client = f"client-{secrets.token_hex(6)}"
    chosen = rid("chosen")
    r = own_ids_envoy.get("/patients/1", purpose="billing",
                          token=token("patients:read", ["billing"], client_id=client),
                          headers={"x-request-id": chosen})
    assert_billing_view(r)
    record = records.audit_where(own_ids_envoy, "client", client)
    assert record["request_id"] != chosen, record
    assert len(record["request_id"]) == 36 and record["request_id"].count("-") == 4, record
    [rec] = upstream.received("/patients/1")
    assert rec.header("x-request-id") == record["request_id"], rec.headers
# --- 1xx responses ------------------------------------------------------------------------


def raw_exchange(port: int, path: str, headers: dict[str, str]) -> bytes:
    """Everything Envoy writes back to one HTTP/1.1 GET, interim responses included."""
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT) as s:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: api\r\nconnection: close\r\n{head}\r\n".encode())
        data = b""
        while part := s.recv(65536):
            data += part
    return data


@pytest.fixture(scope="module")
def forwarding_1xx_envoy(envoy_factory, shipped, jwks, wasm, raw):
    """What the shipped configuration must never do: proxy_100_continue."""
    cfg = render.render(shipped, api=("127.0.0.1", raw.port), wasm=wasm, jwks=jwks)
    render.hcm(cfg)["proxy_100_continue"] = True
    return envoy_factory(cfg, "side-channels-1xx")


@pytest.mark.parametrize("code", [100, 103])
def test_interim_responses_bypass_the_filter_unless_envoy_drops_them(
        raw_envoy, forwarding_1xx_envoy, raw, token, code):
    """proxy-wasm has no callback for 1xx responses: their headers reach the client without
    the purpose's header rules when Envoy forwards them (proxy_100_continue: true), which
    the shipped configuration never sets; then Envoy answers `Expect: 100-continue` itself
    and drops the upstream's interim responses."""
    canary = f"interim-{C}"

    def answer(req: RawRequest, conn: RawConn) -> None:
        conn.send(f"HTTP/1.1 {code} Interim\r\nx-patient-note: {canary}\r\n\r\n".encode())
        conn.respond(200, [("content-type", "application/json")], BODY)

    raw.set("/patients/1", answer)
    t = token("patients:read", ["research"])
    headers = {"authorization": f"Bearer {t}", "x-purpose": "research"}
    if code == 100:
        headers["expect"] = "100-continue"
    shipped_reply = raw_exchange(raw_envoy.port, "/patients/1", headers)
    assert b"HTTP/1.1 200 OK" in shipped_reply, shipped_reply
    assert canary.encode() not in shipped_reply, shipped_reply
    forwarded = raw_exchange(forwarding_1xx_envoy.port, "/patients/1", headers)
    assert canary.encode() in forwarded, "Envoy no longer forwards 1xx headers: update the docs"


SHIPPED_ENVOY_CONFIGS = ["envoy/envoy.yaml", "envoy/examples/envoy-jwks.yaml"]


@pytest.mark.parametrize("path", SHIPPED_ENVOY_CONFIGS)
def test_shipped_configurations_never_forward_interim_responses(path):
    cfg = render.load(render.SHIPPED.parents[1] / path)
    assert render.hcm(cfg).get("proxy_100_continue") is False, (
        f"{path} must say proxy_100_continue: false, with the reason")


@pytest.mark.parametrize("doc", ["README.md", "docs/envoy-recipes.md"])
def test_the_docs_say_never_to_forward_interim_responses(doc):
    text = (render.SHIPPED.parents[1] / doc).read_text()
    assert "proxy_100_continue" in text and "1xx" in text, doc
# --- Keys that are data, in the audit record ----------------------------------------------


def test_keys_that_are_data_never_reach_the_audit_record(envoy, upstream, token):
    """research's `**.ssn` rule makes the engine look inside every object, so it counts what
    it withholds there by path; a surname or an id used as a map key is body content, and
    only keys the policy names (here `ssn`, `id`, `name`, ...) are written as they are."""
    body = json.dumps({
        "id": "P1",
        "byName": {f"Martin{C}": {"ssn": f"ssn-{C}", "age": 41},
                   f"Dupont{C}": {"ssn": f"ssn2-{C}"}},
        "name": {f"Claire{C}": True},
        f"x2840375{C}": {"ssn": "1"},
    }).encode()
    upstream.set("/patients/1", body)
    request_id = rid("data-keys")
    t = token("patients:read", ["research"], client_id="lab-1")
    r = envoy.get("/patients/1", token=t, purpose="research",
                  headers={"x-request-id": request_id})
    assert r.status_code == 200, describe(r)
    record = records.audit_of(envoy, request_id)
    assert record["withheld"] == records.tally({"*.*.*": 1, "*.*.ssn": 2, "*.ssn": 1,
                                                "name.*": 1}), record
    assert record["transformed"] == records.tally({"id": 1}), record
    for line in records.audit_lines(envoy):
        assert C not in line, line
