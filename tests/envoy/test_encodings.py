"""NDJSON bodies, and gzip / deflate bodies: decoded, filtered, sent uncompressed.

Buffered mode (the patients route): a body that cannot be read whole fails closed with a 502
and none of it. The limit (limits.max_body_bytes, 1 MiB as shipped) counts decoded bytes, so
a small compressed body that inflates past it (a zip bomb) is refused. Streamed NDJSON is in
test_streaming.py.

Each body that must be refused carries a canary in a field research keeps as written
(`conditions.code`), so that any of it reaching the client is caught.
"""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from conftest import sample
from harness import assert_json_bytes, assert_problem, describe, media_type
from test_views import research_views

CANARY = b"CANARY-0b9c"
CLIENT = "lab-enc"
NDJSON_TYPES = ["application/x-ndjson", "application/fhir+ndjson", "application/jsonl"]


def research(envoy, token, path):
    t = token("patients:read", ["research"], client_id=CLIENT)
    return envoy.get(path, token=t, purpose="research")


@pytest.fixture(scope="module")
def views(pseudonym_key) -> dict[int, str]:
    """research's view of each sample patient, for CLIENT."""
    return research_views(pseudonym_key, CLIENT)


def patients_ndjson() -> list[bytes]:
    """The sample patients, one compact line each."""
    return [json.dumps(json.loads(sample(f"patients/{i}.json"))).encode() for i in (1, 2, 3)]


def assert_uncompressed_200(r):
    assert r.status_code == 200, describe(r)
    assert "content-encoding" not in r.headers, describe(r)
    assert "content-length" not in r.headers, describe(r)


def assert_bad_gateway(r):
    assert_problem(r, 502, "response-not-filterable", "Bad Gateway",
                   absent=[CANARY, b"1840375999001"])
    assert "content-encoding" not in r.headers


# --- NDJSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", NDJSON_TYPES)
def test_ndjson_each_line_filtered_blank_lines_kept(envoy, upstream, token, views,
                                                    content_type):
    p1, p2, p3 = patients_ndjson()
    upstream.set("/patients", p1 + b"\n\n" + p2 + b"\n\n\n" + p3 + b"\n",
                 content_type=content_type)
    r = research(envoy, token, "/patients")
    assert_uncompressed_200(r)
    assert media_type(r) == content_type
    assert r.content == f"{views[1]}\n\n{views[2]}\n\n\n{views[3]}\n".encode()


def test_ndjson_without_final_line_feed(envoy, upstream, token, views):
    p1, p2, _ = patients_ndjson()
    upstream.set("/patients", p1 + b"\n" + p2, content_type="application/x-ndjson")
    r = research(envoy, token, "/patients")
    assert r.status_code == 200, describe(r)
    assert r.content == f"{views[1]}\n{views[2]}".encode()


def test_ndjson_lines_may_be_any_json_value(envoy, upstream, token, views):
    """Each line is a root: an array of patients, a scalar (withheld: null), an empty object."""
    p1, p2, p3 = patients_ndjson()
    body = b"[" + p1 + b"," + p2 + b"]\n" + b'"CANARY-scalar"\n{}\n' + p3 + b"\n"
    upstream.set("/patients", body, content_type="application/x-ndjson")
    r = research(envoy, token, "/patients")
    assert r.status_code == 200, describe(r)
    assert r.content == f"[{views[1]},{views[2]}]\nnull\n{{}}\n{views[3]}\n".encode()


def test_ndjson_in_small_chunks(envoy, upstream, token, views):
    p1, p2, p3 = patients_ndjson()
    body = p1 + b"\n\n" + p2 + b"\n" + p3 + b"\n"
    upstream.set("/patients", body, content_type="application/x-ndjson", chunk_size=7,
                 delay=0.0005)
    r = research(envoy, token, "/patients")
    assert r.content == f"{views[1]}\n\n{views[2]}\n{views[3]}\n".encode(), describe(r)


KEPT = b'{"conditions": [{"code": "' + CANARY + b'"}], "ssn": "1840375999001"}'
BAD_NDJSON = {
    "invalid-line": KEPT + b"\n" + b'{"id": tru}\n' + KEPT + b"\n",
    "invalid-last-line": KEPT + b"\n" + KEPT + b"\n" + b'{"id": "x"',
    "garbage-line": KEPT + b"\nhello\n",
    "line-feed-inside-a-record": KEPT + b'\n{"id": "x",\n "ssn": "1840375999001"}\n',
    "two-records-on-a-line": KEPT + b" " + KEPT + b"\n",
}


@pytest.mark.parametrize("case", sorted(BAD_NDJSON))
def test_invalid_ndjson_fails_closed(envoy, upstream, token, case):
    upstream.set("/patients", BAD_NDJSON[case], content_type="application/x-ndjson")
    assert_bad_gateway(research(envoy, token, "/patients"))


def test_ndjson_is_not_json(envoy, upstream, token):
    """Several lines announced as application/json are trailing data, not records."""
    upstream.set("/patients", KEPT + b"\n" + KEPT + b"\n")
    assert_bad_gateway(research(envoy, token, "/patients"))


# --- gzip and deflate ---------------------------------------------------------------------

ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,  # HTTP's deflate is the zlib format (RFC 9110, 8.4.1.2)
}


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
@pytest.mark.parametrize("chunk_size", [None, 50])
def test_compressed_json_is_decoded_filtered_and_sent_plain(envoy, upstream, token, views,
                                                            encoding, chunk_size):
    body = ENCODERS[encoding](sample("patients.json"))
    upstream.set("/patients", body, headers=[("content-encoding", encoding)],
                 chunk_size=chunk_size, delay=0.0005)
    r = research(envoy, token, "/patients")
    assert_uncompressed_200(r)
    assert media_type(r) == "application/json"
    assert_json_bytes(r, "[" + ",".join(views[i] for i in (1, 2, 3)) + "]")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_ndjson(envoy, upstream, token, views, encoding):
    p1, p2, p3 = patients_ndjson()
    body = ENCODERS[encoding](p1 + b"\n\n" + p2 + b"\n" + p3 + b"\n")
    upstream.set("/patients", body, content_type="application/x-ndjson",
                 headers=[("content-encoding", encoding)])
    r = research(envoy, token, "/patients")
    assert_uncompressed_200(r)
    assert r.content == f"{views[1]}\n\n{views[2]}\n{views[3]}\n".encode()


def test_billing_view_of_a_gzip_body(envoy, upstream, token):
    upstream.set("/patients/1", gzip.compress(sample("patients/1.json")),
                 headers=[("content-encoding", "gzip")])
    r = envoy.get("/patients/1", token=token("patients:read", ["billing"]), purpose="billing")
    assert_uncompressed_200(r)
    from test_views import BILLING

    assert_json_bytes(r, BILLING[1])


def test_care_without_body_rules_gets_the_upstream_bytes(envoy, upstream, token):
    """care has no body rules, so its body is not read: the upstream's own bytes and encoding
    (requests decodes them)."""
    upstream.set("/patients/1", gzip.compress(sample("patients/1.json")),
                 headers=[("content-encoding", "gzip")])
    r = envoy.get("/patients/1", token=token("patients:read", ["care"]), purpose="care")
    assert r.status_code == 200, describe(r)
    assert r.headers.get("content-encoding") == "gzip"
    assert r.content == sample("patients/1.json")


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress", "unknown"])
def test_other_encodings_are_refused(envoy, upstream, token, encoding):
    # A well-formed gzip stream, mislabelled: the label decides, the body is never guessed at.
    upstream.set("/patients", gzip.compress(b"[" + KEPT + b"]"),
                 headers=[("content-encoding", encoding)])
    assert_bad_gateway(research(envoy, token, "/patients"))


def test_br_is_refused_for_ndjson_too(envoy, upstream, token):
    upstream.set("/patients", KEPT + b"\n", content_type="application/x-ndjson",
                 headers=[("content-encoding", "br")])
    assert_bad_gateway(research(envoy, token, "/patients"))


def corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


BROKEN = {
    "gzip-truncated": ("gzip", gzip.compress(b"[" + KEPT + b"]")[:-9]),
    "gzip-bad-crc": ("gzip", corrupt(gzip.compress(b"[" + KEPT + b"]"), -6)),
    "gzip-trailing-garbage": ("gzip", gzip.compress(b"[" + KEPT + b"]") + b"garbage"),
    "deflate-truncated": ("deflate", zlib.compress(b"[" + KEPT + b"]")[:-5]),
    "deflate-is-raw-deflate": ("deflate", zlib.compress(b"[" + KEPT + b"]")[2:-4]),
    "deflate-is-gzip": ("deflate", gzip.compress(b"[" + KEPT + b"]")),
    "gzip-of-invalid-json": ("gzip", gzip.compress(b"[" + KEPT + b", tru]")),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_compressed_bodies_fail_closed(envoy, upstream, token, case):
    encoding, body = BROKEN[case]
    upstream.set("/patients", body, headers=[("content-encoding", encoding)])
    assert_bad_gateway(research(envoy, token, "/patients"))


# --- The limit counts decoded bytes -------------------------------------------------------


def bomb(decoded_size: int) -> bytes:
    """A valid JSON array of patients whose text is `decoded_size` bytes or more: the first
    one carries the canary in a kept field, the rest is highly compressible padding."""
    pad = b'{"ssn": "1840375999001", "display": "' + b"0" * 4000 + b'"}'
    n = decoded_size // (len(pad) + 1) + 1
    return b"[" + KEPT + b"," + b",".join([pad] * n) + b"]"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_zip_bomb_is_refused(envoy, upstream, token, encoding):
    """16 MiB decoded from about 16 KiB: refused once past the 1 MiB limit."""
    decoded = bomb(16 * 1024 * 1024)
    body = ENCODERS[encoding](decoded, 9)
    assert len(body) < 64 * 1024 < 1048576 < len(decoded)
    upstream.set("/patients", body, headers=[("content-encoding", encoding)],
                 chunk_size=16 * 1024)
    r = research(envoy, token, "/patients")
    problem = assert_problem(r, 502, "response-not-filterable", "Bad Gateway", absent=[CANARY])
    assert "larger than the limit of 1048576 bytes" in problem["detail"], problem


def test_compressed_body_under_the_decoded_limit_passes(envoy, upstream, token):
    decoded = bomb(900 * 1024)
    assert len(decoded) < 1048576
    upstream.set("/patients", gzip.compress(decoded), headers=[("content-encoding", "gzip")])
    r = research(envoy, token, "/patients")
    assert_uncompressed_200(r)
    assert r.content.startswith(b'[{"conditions":[{"code":"' + CANARY + b'"}]}'), describe(r)
    assert b"1840375999001" not in r.content
