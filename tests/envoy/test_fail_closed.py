"""Responses finalite cannot filter fail closed: a 502 problem, none of the upstream body.

Each upstream body carries a canary in a field the purpose would keep as written (`id` for
billing), so that an unfiltered or half-filtered body reaching the client is caught. (research
would only show a pseudonym of `id`.)
"""

from __future__ import annotations

import time

import pytest

from harness import assert_problem, describe

CANARY = b"CANARY-7f3a"
GOOD = b'{"id": "' + CANARY + b'", "ssn": "1840375999001", "name": {"family": "Martin"}}'


def billing(envoy, token, path):
    """A purpose with body rules that keeps `id` (and `insurance`) as written."""
    t = token("patients:read", ["billing"])
    return envoy.get(path, token=t, purpose="billing")


def assert_bad_gateway(r):
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway", absent=[CANARY])
    assert b"1840375999001" not in r.content


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/html; charset=utf-8", "application/xml", "application/octet-stream"])
def test_non_json_media_type(envoy, upstream, token, content_type):
    upstream.set("/patients/1", GOOD, content_type=content_type)
    assert_bad_gateway(billing(envoy, token, "/patients/1"))


def test_no_content_type(envoy, upstream, token):
    upstream.set("/patients/1", GOOD, content_type=None)
    assert_bad_gateway(billing(envoy, token, "/patients/1"))


# gzip and deflate are decoded and filtered (see test_encodings.py); anything else, or a
# body that does not decode, fails closed.
@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br", "deflate", "gzip"])
def test_content_encoding(envoy, upstream, token, encoding):
    # GOOD is not compressed: for "deflate" and "gzip" it is a corrupt stream.
    upstream.set("/patients/1", GOOD, headers=[("content-encoding", encoding)])
    r = billing(envoy, token, "/patients/1")
    assert_bad_gateway(r)
    assert "content-encoding" not in r.headers


MALFORMED = {
    "truncated": b'{"id": "' + CANARY + b'", "name": {"family": "Mar',
    "bad-literal": b'{"id": "' + CANARY + b'", "active": tru}',
    "trailing-garbage": GOOD + b" {}",
    "missing-colon": b'{"id" "' + CANARY + b'"}',
    "unterminated-string": b'{"id": "' + CANARY,
    "bad-escape": b'{"id": "' + CANARY + b'", "x": "\\q"}',
    "control-char": b'{"id": "' + CANARY + b'", "x": "a\x01b"}',
    "invalid-utf8": b'{"id": "' + CANARY + b'", "x": "\xff\xfe"}',
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_json(envoy, upstream, token, case):
    upstream.set("/patients/1", MALFORMED[case])
    r = billing(envoy, token, "/patients/1")
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway", absent=[CANARY])


def test_malformed_json_arriving_in_chunks(envoy, upstream, token):
    """The error is at the very end: the filtered start must not have gone out already."""
    body = b'[' + b", ".join([GOOD] * 50) + b', {"id": "x", "ssn": tru}]'
    upstream.set("/patients", body, chunk_size=256, delay=0.002)
    r = billing(envoy, token, "/patients")
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway", absent=[CANARY])


@pytest.mark.parametrize("where", ["kept", "withheld"])
def test_too_deep(envoy, upstream, token, where):
    """limits.max_depth is 64: 200 levels of nesting fail, kept or not."""
    deep = b"[" * 200 + b"1" + b"]" * 200
    key = b"insurance" if where == "kept" else b"phone"
    body = b'{"id": "' + CANARY + b'", "' + key + b'": ' + deep + b"}"
    upstream.set("/patients/1", body)
    assert_bad_gateway(billing(envoy, token, "/patients/1"))


def test_moderate_depth_is_fine(envoy, upstream, token):
    deep = b'{"a":' * 20 + b"1" + b"}" * 20
    upstream.set("/patients/1", b'{"id": "1", "conditions": [' + deep + b"]}")
    r = billing(envoy, token, "/patients/1")
    assert r.status_code == 200, describe(r)
    assert r.json() == {"id": "1"}


# --- Body size ----------------------------------------------------------------------------


def big_body(size: int) -> bytes:
    """A valid JSON array of patients-like objects, at least `size` bytes, canary first."""
    item = b'{"id": "' + CANARY + b'", "ssn": "1840375999001", "phone": "+33 6 00 00 00 01"}'
    n = size // (len(item) + 2) + 1
    return b"[" + b", ".join([item] * n) + b"]"


@pytest.fixture(scope="module")
def small_limit_envoy(plugin_variant):
    def change(conf):
        conf["limits"]["max_body_bytes"] = 1024

    return plugin_variant("small-limit", change)


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_limit(small_limit_envoy, upstream, token, chunked):
    body = big_body(4096)
    upstream.set("/patients", body, chunk_size=512 if chunked else None, delay=0.002)
    r = billing(small_limit_envoy, token, "/patients")
    assert_bad_gateway(r)


def test_body_under_limit_on_small_limit_envoy(small_limit_envoy, upstream, token):
    upstream.set("/patients", big_body(500))
    r = billing(small_limit_envoy, token, "/patients")
    assert r.status_code == 200, describe(r)


def test_body_over_shipped_limit(envoy, upstream, token):
    """1.5 MiB against the shipped 1 MiB limit: a clean 502, not a cut 200 from Envoy."""
    upstream.set("/patients", big_body(1536 * 1024), chunk_size=64 * 1024)
    assert_bad_gateway(billing(envoy, token, "/patients"))


def test_body_just_under_shipped_limit(envoy, upstream, token):
    """Envoy's own buffer limit (listener) leaves room for a body near max_body_bytes."""
    body = big_body(1000 * 1024)
    assert len(body) < 1048576
    upstream.set("/patients", body, chunk_size=64 * 1024)
    r = billing(envoy, token, "/patients")
    assert r.status_code == 200, describe(r)
    assert len(r.json()) == body.count(b'"id"')


def test_a_withheld_response_is_logged_with_its_request_id(envoy, upstream, token):
    """The warning names the request as its audit record does, so an operator can match them;
    an id that does not look like one (a client may send anything) is not copied into
    finalite's line (Envoy's own access log prints what it likes)."""
    upstream.set("/patients/1", MALFORMED["bad-literal"])
    t = token("patients:read", ["billing"])
    for sent, logged in [("fc-7f3a-0001", "fc-7f3a-0001"), ("fc 7f3a forged", "-")]:
        offset = envoy.log_size()
        r = envoy.get("/patients/1", token=t, purpose="billing", headers={"x-request-id": sent})
        assert_bad_gateway(r)
        deadline = time.monotonic() + 5
        while f"request {logged}: response withheld" not in envoy.log_since(offset):
            assert time.monotonic() < deadline, envoy.log_since(offset)
            time.sleep(0.05)
        assert "request fc 7f3a forged" not in envoy.log_since(offset)
