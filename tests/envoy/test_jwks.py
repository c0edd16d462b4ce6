"""Bearer tokens verified by finalite itself (`token.from: "jwks"`), without jwt_authn.

Every Envoy here runs envoy/examples/envoy-jwks.yaml, the shipped example of this set-up (no
jwt_authn filter; finalite, then the router), rendered like envoy.yaml (listener, `api`
endpoint, module path). The example's `idp.example` cluster is pointed at the test upstream
(plain HTTP, without the example's TLS) or at a closed port, and only finalite's `token`
section changes from one Envoy to the next.

Keys are generated for this module (RSA, P-256, Ed25519, and an HMAC secret passed through
Envoy's environment); tokens are minted here with PyJWT, or by hand for the forged ones (alg
none, algorithm confusion, JWE-shaped). Every refusal is checked for its exact status,
WWW-Authenticate and problem type, and for never reaching the upstream.

Four Envoys (each compiles the module once, the slow part of a start):
- `inline_envoy`: an inline JWK Set and an HMAC secret;
- `gated`: jwks_uri with refresh_seconds 300, whose first answer the test upstream holds back
  until the first test releases it; the last test rotates its keys, which only an early
  refresh (a token with an unknown kid, at most once every 30 s) can bring in. The tests in
  between fill those 30 s, so keep these two tests first and last in the file;
- an IdP at a closed port, and an IdP that fails in several ways (refresh_seconds 1), each
  for one test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from requests.structures import CaseInsensitiveDict

import records
import render  # envoy/render.py
from harness import ROOT, assert_json_bytes, assert_problem, describe, free_port
from test_views import BILLING

EXAMPLE = ROOT / "envoy" / "examples" / "envoy-jwks.yaml"
IDP_CLUSTER = "idp.example"
ISSUER = "https://idp.example"
AUDIENCE = "patients-api"
CLIENT = "jwks-client"
SECRET_ENV = "FINALITE_TEST_JWT_SECRET"
EARLY_REFRESH_MIN_SECONDS = 30  # src/auth/verifier.rs

# --- Expected refusals --------------------------------------------------------------------


def challenge(description: str) -> str:
    return f'Bearer error="invalid_token", error_description="{description}"'


NO_TOKEN = "the request carries no bearer token"
NOT_BEARER = "the authorization header does not use the Bearer scheme"
MALFORMED_AUTHORIZATION = "the authorization header does not hold exactly one bearer token"
ENCRYPTED = "encrypted tokens (JWE) are not accepted"
NOT_COMPACT = "the token is not a JWS in compact serialization"
UNSECURED = "unsecured tokens (alg none) are not accepted"
KEY_IN_HEADER = ("the token's header names its own key (jku, x5u, jwk or x5c), "
                 "which is not accepted")
UNKNOWN_KEY = "the token's key id is not known"
NO_KEY_FOR_ALG = "no key accepts the token's algorithm"
ALG_MISMATCH = "the token's algorithm does not match its key"
BAD_SIGNATURE = "the token's signature does not verify"
NO_EXPIRY = "the token has no expiry (exp)"
EXPIRED = "the token has expired"
NOT_YET_VALID = "the token is not valid yet (nbf)"
ISSUED_IN_FUTURE = "the token's issue time (iat) is in the future"
BAD_ISSUER = "the token's issuer is not accepted"
BAD_AUDIENCE = "the token's audience is not accepted"


def assert_invalid_token(r: requests.Response, description: str, *,
                         token: str | None = None) -> None:
    """finalite's 401 for a token it refused, naming the check; the token is not echoed."""
    absent = [token.encode()] + [p.encode() for p in token.split(".") if len(p) > 8] \
        if token else []
    assert_problem(r, 401, "invalid-token", "Unauthorized",
                   www_authenticate=challenge(description), absent=absent)


def assert_keys_unavailable(r: requests.Response, retry_after: int | None = None) -> int:
    """503 keys-unavailable with a Retry-After of 1..60 seconds (returned)."""
    assert_problem(r, 503, "keys-unavailable", "Service Unavailable")
    assert "www-authenticate" not in r.headers, describe(r)
    value = r.headers.get("retry-after", "")
    assert value.isdigit() and 1 <= int(value) <= 60, describe(r)
    if retry_after is not None:
        assert int(value) == retry_after, describe(r)
    return int(value)


def assert_not_forwarded(upstream, path: str = "/patients/1") -> None:
    assert upstream.received(path) == [], "a refused request reached the upstream"


# --- Keys and tokens ----------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


def claims(now: int | None = None, **changes: Any) -> dict[str, Any]:
    """Claims the test Envoys accept (billing purpose on /patients); a change to None removes."""
    now = int(time.time()) if now is None else now
    c: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
                         "client_id": CLIENT, "scope": "patients:read", "purposes": ["billing"]}
    for name, value in changes.items():
        if value is None:
            c.pop(name, None)
        else:
            c[name] = value
    return c


def sign(key: Any, alg: str, kid: str | None, payload: dict[str, Any] | None = None,
         **headers: Any) -> str:
    """A JWS signed by PyJWT; `headers` are added to the protected header."""
    h = dict(headers)
    if kid is not None:
        h["kid"] = kid
    return jwt.encode(payload or claims(), key, algorithm=alg, headers=h)


def forge(header: dict[str, Any], payload: dict[str, Any],
          signer: Callable[[bytes], bytes] = lambda _: b"") -> str:
    """A compact token built by hand (what PyJWT refuses to produce)."""
    signing_input = (b64url(json.dumps(header).encode()) + "."
                     + b64url(json.dumps(payload).encode()))
    return signing_input + "." + b64url(signer(signing_input.encode()))


class Keys:
    """This module's keys: fresh for every test session."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.p256 = ec.generate_private_key(ec.SECP256R1())
        self.ed25519 = ed25519.Ed25519PrivateKey.generate()
        self.other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rotation_old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rotation_new = ec.generate_private_key(ec.SECP256R1())
        self.hmac_secret = secrets.token_urlsafe(48)  # 64 characters

    def inline_jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.rsa, "rsa-1", "RS256"),
                         public_jwk(self.p256, "ec-1", "ES256"),
                         public_jwk(self.ed25519, "ed-1", "EdDSA")]}

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def old_token(keys: Keys) -> str:
    return sign(keys.rotation_old, "RS256", "rot-old")


def new_token(keys: Keys) -> str:
    return sign(keys.rotation_new, "ES256", "rot-new")


def jwks_body(*jwks: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(jwks)}).encode()


# --- Envoys running the shipped example ---------------------------------------------------


def example_config(wasm: Path, api_port: int, token: dict[str, Any],
                   idp: tuple[str, int] | None = None, *, idp_tls: bool = False,
                   env_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """envoy/examples/envoy-jwks.yaml rendered for this machine, its token section changed by
    `token` (a value of None removes a key), `idp.example`'s endpoint moved to `idp` (over
    plain HTTP unless `idp_tls`: then with the example's TLS settings as they are), and
    `env_keys` added to the VM's host_env_keys."""
    cfg = render.load(EXAMPLE)
    assert all(f["name"] != render.JWT_AUTHN for f in render.hcm(cfg)["http_filters"])
    plugin = render.plugin_config(cfg)
    for name, value in token.items():
        if value is None:
            plugin["token"].pop(name, None)
        else:
            plugin["token"][name] = value
    cfg = render.render(cfg, api=("127.0.0.1", api_port), wasm=wasm, plugin_config=plugin)
    cluster = render.cluster(cfg, IDP_CLUSTER)
    if idp is not None:
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"] = {"address": idp[0], "port_value": idp[1]}
        if not idp_tls:
            cluster.pop("transport_socket")
    if env_keys:
        vm_env = render.wasm_config(cfg)["vm_config"]["environment_variables"]
        vm_env["host_env_keys"] = list(vm_env["host_env_keys"]) + list(env_keys)
    return cfg


INLINE = {"jwks_uri": None, "clock_skew_seconds": 30}


def remote(path: str, refresh_seconds: int) -> dict[str, Any]:
    return {"jwks_uri": {"cluster": IDP_CLUSTER, "path": path,
                         "refresh_seconds": refresh_seconds}, "clock_skew_seconds": 30}


@pytest.fixture(scope="module")
def start(envoy_factory, wasm, upstream_server):
    """`start(name, token, idp=True, idp_tls=False, env=None, env_keys=())`: an Envoy running
    the example; `idp=True` points idp.example at the test upstream, a (host, port)
    elsewhere."""

    def make(name: str, token: dict[str, Any], *, idp: Any = True, idp_tls: bool = False,
             env: dict[str, str | None] | None = None, env_keys: tuple[str, ...] = ()):
        if idp is True:
            idp = ("127.0.0.1", upstream_server.port)
        cfg = example_config(wasm, upstream_server.port, token, idp, idp_tls=idp_tls,
                             env_keys=env_keys)
        return envoy_factory(cfg, name, env=env)

    return make


@pytest.fixture(scope="module")
def inline_envoy(start, keys):
    """An inline JWK Set (one RSA, one P-256 and one Ed25519 key) and an HMAC secret from
    Envoy's environment (hmac_secret_env, passed to the VM by host_env_keys)."""
    return start("jwks-inline", {**INLINE, "jwks": keys.inline_jwks(),
                                 "hmac_secret_env": SECRET_ENV},
                 env={SECRET_ENV: keys.hmac_secret}, env_keys=(SECRET_ENV,))


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25):
    """Polls `check` until it returns something other than None or False."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is not None and last is not False:  # a 4xx Response is falsy
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def status_is(envoy, token: str, status: int):
    """A check for wait_for: the request with `token` answered `status` (the response)."""

    def check():
        r = envoy.get("/patients/1", token=token, purpose="billing")
        return r if r.status_code == status else None

    return check


def thread_of(line: str) -> str:
    """The thread id of an Envoy log line `[time][tid][level][component] ...`."""
    return line.split("][", 2)[1]


def worker_thread(envoy) -> str:
    """The thread of the worker's VM: the one that writes the audit records."""
    lines = [line for line in envoy.log().splitlines() if records.AUDIT_MARK in line]
    assert lines, "no audit record yet"
    return thread_of(lines[-1])


def worker_failures(envoy, offset: int, reason: str) -> int:
    """Failed fetches the worker's VM logged since `offset` with `reason` in the message.

    (The main thread's VM fetches too; only the worker's copy of the keys serves requests.)"""
    worker = worker_thread(envoy)
    return sum(1 for line in envoy.log_since(offset, max_lines=10**6).splitlines()
               if "JWKS fetch failed" in line and reason in line and thread_of(line) == worker)


GATED_PATH = "/idp/gated/jwks.json"


class Gate:
    """The IdP of the `gated` Envoy: its JWK Set is held back until the test releases it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.released = threading.Event()
        self.first_set_at: float | None = None
        self.envoy: Any = None
        self.fetches: list[Any] = []  # the first fetches, as the upstream recorded them

    def serve(self, upstream) -> None:
        """(Re)install the held answer (each test starts with an emptied upstream)."""

        def held():
            # A fetch still held after finalite's 5 s timeout fails, and finalite retries.
            self.released.wait(60)
            yield self.body

        upstream.set(GATED_PATH, stream=held)

    def open(self, upstream, token: str) -> requests.Response:
        """Release the set and wait until `token` gets its 200."""
        self.serve(upstream)
        self.released.set()
        r = wait_for(status_is(self.envoy, token, 200), 12, "a 200 once the set is served")
        if self.first_set_at is None:
            self.first_set_at = time.monotonic()
        return r


@pytest.fixture(scope="module", autouse=True)
def gated(start, keys, upstream_server):
    """An Envoy fetching its keys from the test upstream every 300 s, started with this
    module's first test while the upstream holds the set back. It serves the first test
    (requests before the set arrives) and the last one (an early refresh, which needs 30 s
    since the previous fetch: the tests in between fill them)."""
    gate = Gate(jwks_body(public_jwk(keys.rsa, "rsa-1", "RS256"),
                          public_jwk(keys.rotation_old, "rot-old", "RS256")))
    gate.serve(upstream_server)
    gate.envoy = start("jwks-uri-gated", remote(GATED_PATH, 300))
    # Both VMs (the main thread's and the worker's) have asked and are held, whatever the
    # upstream is told afterwards.
    gate.fetches = wait_for(lambda: len(upstream_server.received(GATED_PATH)) >= 2
                            and upstream_server.received(GATED_PATH), 5, "both first fetches")
    yield gate
    gate.released.set()
    gate.envoy.stop()


# --- jwks_uri: before the first set arrives (first in this file) ---------------------------


def test_requests_before_the_first_set_get_503_then_verify(gated, upstream, keys,
                                                           sample_patients):
    """Requests while the first fetch is held get 503 with Retry-After, never an unverified
    pass; once the set arrives, tokens verify."""
    assert not gated.released.is_set(), "this test must run before the set is released"
    gated.serve(upstream)
    envoy = gated.envoy
    token = sign(keys.rsa, "RS256", "rsa-1")
    for forged in (False, True):
        r = envoy.get("/patients/1", purpose="billing",
                      token=forge({"alg": "none"}, claims()) if forged else token)
        # Retry-After is 1 while a fetch is under way (it is, unless it already timed out).
        in_flight = "JWKS fetch failed" not in envoy.log()
        assert_keys_unavailable(r, retry_after=1 if in_flight else None)
    # No token at all is a 401 whether or not keys are known.
    assert_invalid_token(envoy.get("/patients/1", purpose="billing"), NO_TOKEN)
    assert_not_forwarded(upstream)

    r = gated.open(upstream, token)
    assert_json_bytes(r, BILLING[1])
    fetches = gated.fetches + upstream.received(GATED_PATH)
    assert all(f.method == "GET" for f in fetches)
    # The cluster's name is the fetch's authority: name the cluster after the IdP's host.
    assert {f.header("host") for f in fetches} == {IDP_CLUSTER}
    assert {f.header("accept") for f in fetches} == {"application/json"}
    assert "JWKS fetch: JWKS updated: 2 keys" in envoy.log()
    # Now tokens are checked, and without an HMAC secret an HS256 token has no key, even when
    # keyed by the RSA public key (algorithm confusion).
    assert_invalid_token(envoy.get("/patients/1", token=forge({"alg": "none"}, claims()),
                                   purpose="billing"), UNSECURED)
    confused = forge({"alg": "HS256", "kid": "rsa-1"}, claims(),
                     lambda m: hmac.new(keys.rsa_public_pem(), m, hashlib.sha256).digest())
    assert_invalid_token(envoy.get("/patients/1", token=confused, purpose="billing"),
                         NO_KEY_FOR_ALG, token=confused)
    assert len(upstream.received("/patients/1")) == 1


# --- Inline keys: each algorithm family, filtered views -----------------------------------


@pytest.mark.parametrize("alg,key,kid", [("RS256", "rsa", "rsa-1"), ("ES256", "p256", "ec-1"),
                                         ("EdDSA", "ed25519", "ed-1")])
def test_inline_jwks_token_gets_the_filtered_view(inline_envoy, sample_patients, keys, alg,
                                                  key, kid):
    token = sign(getattr(keys, key), alg, kid)
    r = inline_envoy.get("/patients/1", token=token, purpose="billing")
    assert_json_bytes(r, BILLING[1])
    assert len(sample_patients.received("/patients/1")) == 1


def test_token_without_kid_is_tried_against_the_keys_of_its_algorithm(inline_envoy,
                                                                     sample_patients, keys):
    r = inline_envoy.get("/patients/1", token=sign(keys.p256, "ES256", None), purpose="billing")
    assert_json_bytes(r, BILLING[1])


def test_scheme_is_case_insensitive(inline_envoy, sample_patients, keys):
    token = sign(keys.rsa, "RS256", "rsa-1")
    r = inline_envoy.get("/patients/1", headers={"authorization": f"bEaReR {token}",
                                                  "x-purpose": "billing"})
    assert_json_bytes(r, BILLING[1])


def test_verified_token_still_needs_scope_and_purpose(inline_envoy, sample_patients, keys):
    """Verification gives claims; scopes and purposes are enforced on them as with jwt_authn."""
    token = sign(keys.rsa, "RS256", "rsa-1", claims(scope="appointments:read"))
    r = inline_envoy.get("/patients/1", token=token, purpose="billing")
    assert_problem(r, 403, "insufficient-scope", "Forbidden",
                   www_authenticate='Bearer error="insufficient_scope", scope="patients:read"')
    token = sign(keys.rsa, "RS256", "rsa-1")
    r = inline_envoy.get("/patients/1", token=token, purpose="research")
    assert r.status_code == 403, describe(r)
    assert_not_forwarded(sample_patients)


# --- Inline keys: every refusal -----------------------------------------------------------


def refused_tokens(keys: Keys) -> list[tuple[str, str, str]]:
    """(case, token, error_description) for tokens the inline Envoy must refuse."""
    now = int(time.time())
    rsa_pem = keys.rsa_public_pem()
    good = claims(now)
    jwe_header = b64url(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "rsa-1"})
                        .encode())
    return [
        ("expired", sign(keys.rsa, "RS256", "rsa-1", claims(now, exp=now - 3600)), EXPIRED),
        ("nbf in the future",
         sign(keys.p256, "ES256", "ec-1", claims(now, nbf=now + 3600)), NOT_YET_VALID),
        ("iat in the future",
         sign(keys.ed25519, "EdDSA", "ed-1", claims(now, iat=now + 3600)), ISSUED_IN_FUTURE),
        ("no exp", sign(keys.rsa, "RS256", "rsa-1", claims(now, exp=None)), NO_EXPIRY),
        ("wrong iss", sign(keys.rsa, "RS256", "rsa-1", claims(now, iss="https://evil.example")),
         BAD_ISSUER),
        ("iss missing", sign(keys.rsa, "RS256", "rsa-1", claims(now, iss=None)), BAD_ISSUER),
        ("wrong aud", sign(keys.rsa, "RS256", "rsa-1", claims(now, aud="other-api")),
         BAD_AUDIENCE),
        ("aud list without ours",
         sign(keys.p256, "ES256", "ec-1", claims(now, aud=["a", "b"])), BAD_AUDIENCE),
        ("alg none", forge({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, good), UNSECURED),
        ("alg None", forge({"alg": "None", "kid": "rsa-1"}, good), UNSECURED),
        ("alg none with a signature",
         forge({"alg": "none"}, good, lambda m: hashlib.sha256(m).digest()), UNSECURED),
        # Algorithm confusion: HS256 keyed by the RSA public key the verifier trusts.
        ("HS256 with the RSA public key as secret",
         forge({"alg": "HS256", "kid": "rsa-1"}, good,
               lambda m: hmac.new(rsa_pem, m, hashlib.sha256).digest()), BAD_SIGNATURE),
        ("HS256 with the RSA public key, no kid",
         forge({"alg": "HS256"}, good,
               lambda m: hmac.new(rsa_pem, m, hashlib.sha256).digest()), BAD_SIGNATURE),
        ("HS256 with the JWK's modulus as secret",
         forge({"alg": "HS256"}, good,
               lambda m: hmac.new(public_jwk(keys.rsa, "x", "RS256")["n"].encode(), m,
                                  hashlib.sha256).digest()), BAD_SIGNATURE),
        ("ES256 token naming the RSA key",
         sign(keys.p256, "ES256", "rsa-1"), ALG_MISMATCH),
        ("PS256 with the RS256 key (JWK alg is RS256)",
         sign(keys.rsa, "PS256", "rsa-1"), ALG_MISMATCH),
        ("signed by another key under a known kid",
         sign(keys.other_rsa, "RS256", "rsa-1"), BAD_SIGNATURE),
        ("payload swapped after signing",
         (lambda t: t.split(".")[0] + "." + b64url(json.dumps(claims(now, scope="patients:read "
                                                                    "patients:write")).encode())
          + "." + t.split(".")[2])(sign(keys.rsa, "RS256", "rsa-1")), BAD_SIGNATURE),
        ("unknown kid", sign(keys.other_rsa, "RS256", "nope"), UNKNOWN_KEY),
        # Keys named by the token itself, even when its signature verifies with a trusted key.
        ("jku header", sign(keys.rsa, "RS256", "rsa-1",
                            jku="https://evil.example/jwks.json"), KEY_IN_HEADER),
        ("x5u header", sign(keys.rsa, "RS256", "rsa-1",
                            x5u="https://evil.example/cert.pem"), KEY_IN_HEADER),
        ("embedded jwk header", sign(keys.other_rsa, "RS256", "rsa-1",
                                     jwk=public_jwk(keys.other_rsa, "x", "RS256")),
         KEY_IN_HEADER),
        ("JWE (5 parts)", ".".join([jwe_header] + [b64url(secrets.token_bytes(n))
                                                   for n in (256, 12, 64, 16)]), ENCRYPTED),
        ("JWE header in 3 parts", jwe_header + "." + b64url(b"x" * 20) + "." + b64url(b"y" * 20),
         ENCRYPTED),
        ("2 parts", "eyJhbGciOiJSUzI1NiJ9.e30", NOT_COMPACT),
        ("4 parts", "a.b.c.d", NOT_COMPACT),
    ]


def test_refused_tokens_are_401_naming_the_check(inline_envoy, sample_patients, keys):
    failures = []
    for case, token, description in refused_tokens(keys):
        r = inline_envoy.get("/patients/1", token=token, purpose="billing")
        try:
            assert_invalid_token(r, description, token=token)
        except AssertionError as e:
            failures.append(f"{case}: {e}")
    assert not failures, "\n\n".join(failures)
    assert_not_forwarded(sample_patients)


@pytest.mark.parametrize("headers,description", [
    ({}, NO_TOKEN),
    ({"authorization": ""}, NO_TOKEN),
    ({"authorization": "Basic dXNlcjpwYXNz"}, NOT_BEARER),
    ({"authorization": "Token abc.def.ghi"}, NOT_BEARER),
    ({"authorization": "Bearer"}, MALFORMED_AUTHORIZATION),
    ({"authorization": "Bearer "}, MALFORMED_AUTHORIZATION),
    ({"authorization": "Bearer a.b.c d.e.f"}, MALFORMED_AUTHORIZATION),
    ({"authorization": "Bearer  a.b.c"}, MALFORMED_AUTHORIZATION),
], ids=["none", "empty", "basic", "other-scheme", "bearer-alone", "bearer-space",
        "two-tokens", "two-spaces"])
def test_missing_or_malformed_authorization_is_401(inline_envoy, sample_patients, headers,
                                                    description):
    r = inline_envoy.get("/patients/1", headers={**headers, "x-purpose": "billing"})
    assert_invalid_token(r, description)
    assert_not_forwarded(sample_patients)


def raw_get(envoy, path: str, headers: list[tuple[str, str]]) -> requests.Response:
    """A GET with exactly these header lines (repeated names allowed)."""
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        r = requests.Response()
        r.status_code = resp.status
        r.headers = CaseInsensitiveDict(resp.getheaders())
        r._content = resp.read()
        return r
    finally:
        conn.close()


@pytest.mark.parametrize("order", ["valid-first", "valid-second", "both-valid"])
def test_two_authorization_headers_are_refused(inline_envoy, sample_patients, keys, order):
    """RFC 6750: exactly one token. Two authorization header lines must not let the
    verifier and the upstream see different tokens."""
    valid = sign(keys.rsa, "RS256", "rsa-1")
    other = {"valid-first": "garbage", "valid-second": "garbage",
             "both-valid": sign(keys.p256, "ES256", "ec-1")}[order]
    first, second = (other, valid) if order == "valid-second" else (valid, other)
    r = raw_get(inline_envoy, "/patients/1", [("authorization", f"Bearer {first}"),
                                              ("authorization", f"Bearer {second}"),
                                              ("x-purpose", "billing")])
    assert_invalid_token(r, MALFORMED_AUTHORIZATION)
    assert_not_forwarded(sample_patients)


def test_refusal_is_audited_as_denied_token_without_the_token(inline_envoy, sample_patients,
                                                               keys):
    token = sign(keys.rsa, "RS256", "rsa-1", claims(exp=int(time.time()) - 3600))
    request_id = "jwks-" + secrets.token_hex(8)
    r = inline_envoy.get("/patients/1", token=token, purpose="billing",
                         headers={"x-request-id": request_id})
    assert_invalid_token(r, EXPIRED, token=token)
    record = records.audit_of(inline_envoy, request_id)
    assert record["decision"] == "denied_token" and record["status"] == 401, record
    assert record["client"] is None, record  # an unverified token names no one
    assert token.split(".")[1] not in inline_envoy.log()


# --- HMAC secret from the VM's environment ------------------------------------------------


def test_hmac_tokens_with_the_secret_from_the_environment(inline_envoy, sample_patients, keys):
    secret = keys.hmac_secret.encode()  # 64 bytes: enough for HS512 too
    for alg in ("HS256", "HS384", "HS512"):
        r = inline_envoy.get("/patients/1", token=sign(secret, alg, None), purpose="billing")
        assert_json_bytes(r, BILLING[1])
    # The same set's public keys still verify next to the secret.
    r = inline_envoy.get("/patients/1", token=sign(keys.rsa, "RS256", "rsa-1"),
                         purpose="billing")
    assert_json_bytes(r, BILLING[1])


def test_hmac_refusals(inline_envoy, sample_patients, keys):
    secret = keys.hmac_secret.encode()
    cases = [
        ("wrong secret", sign(b"x" * 64, "HS256", None), BAD_SIGNATURE),
        ("right secret, signature cut short",
         (lambda t: t.rsplit(".", 1)[0] + "." + b64url(
             base64.urlsafe_b64decode(t.rsplit(".", 1)[1] + "==")[:-1]))(
             sign(secret, "HS256", None)), BAD_SIGNATURE),
        ("expired", sign(secret, "HS256", None, claims(exp=int(time.time()) - 3600)), EXPIRED),
        ("wrong audience", sign(secret, "HS512", None, claims(aud="other-api")), BAD_AUDIENCE),
    ]
    for case, token, description in cases:
        r = inline_envoy.get("/patients/1", token=token, purpose="billing")
        assert_invalid_token(r, description, token=token)
    assert_not_forwarded(sample_patients)


def test_hmac_secret_comes_from_the_environment_not_the_file(inline_envoy, keys):
    text = inline_envoy.config_path.read_text()
    assert SECRET_ENV in text and keys.hmac_secret not in text
    assert keys.hmac_secret not in inline_envoy.log()


# --- jwks_uri: an unreachable IdP, failing refreshes, rotation -----------------------------


def test_unreachable_jwks_endpoint_is_503_never_a_pass(start, upstream, keys, sample_patients):
    """The example's idp.example cluster as shipped (TLS, the system CAs), its endpoint moved
    to a closed port."""
    closed = ("127.0.0.1", free_port())
    envoy = start("jwks-uri-unreachable", {}, idp=closed, idp_tls=True)
    try:
        token = sign(keys.rsa, "RS256", "rsa-1")
        assert_keys_unavailable(envoy.get("/patients/1", token=token, purpose="billing"))
        # Envoy answers the fetch itself (503, upstream connect error); finalite backs off
        # (1, 2, 4 ... s) and keeps refusing.
        wait_for(lambda: worker_failures(envoy, 0, "") >= 2, 8, "two failed fetches")
        for t in (token, forge({"alg": "none"}, claims())):
            assert_keys_unavailable(envoy.get("/patients/1", token=t, purpose="billing"))
        assert_invalid_token(envoy.get("/patients/1", purpose="billing"), NO_TOKEN)
        assert_not_forwarded(sample_patients)
        assert "no key set yet: requests that need a token get 503" in envoy.log()
    finally:
        envoy.stop()


def test_failing_refreshes_keep_the_last_good_set_and_rotation_removes_the_old_key(
        start, upstream, keys, sample_patients):
    """refresh_seconds 1. The IdP serves a set, then fails in several ways (500, an HTML
    page, a set holding a private key): tokens are still verified with the last good set.
    Then it serves a set where the old key is replaced: the new key is accepted and the old
    one refused."""
    path = "/idp/flaky/jwks.json"
    old, new = old_token(keys), new_token(keys)
    forged = sign(keys.other_rsa, "RS256", "rot-old")
    upstream.set(path, jwks_body(public_jwk(keys.rotation_old, "rot-old", "RS256")))
    envoy = start("jwks-uri-flaky", remote(path, 1))
    try:
        wait_for(status_is(envoy, old, 200), 8, "the first set")
        private = jwt.algorithms.RSAAlgorithm.to_jwk(keys.other_rsa, as_dict=True)
        failures = [
            (500, b'{"error": "down"}', "application/json",
             "the response status is 500, not 200; keeping the last good set; "
             "next attempt in 1 s"),
            (200, b"<html>Sign in</html>", "text/html", "the JWK Set is refused"),
            (200, jwks_body(dict(private, kid="rot-old")), "application/json",
             "a JWK Set must hold public keys only"),
        ]
        for status, body, media_type, reason in failures:
            offset = envoy.log_size()
            upstream.set(path, body, status=status, content_type=media_type)
            wait_for(lambda: worker_failures(envoy, offset, reason) >= 1, 6, reason)
            assert_json_bytes(envoy.get("/patients/1", token=old, purpose="billing"),
                              BILLING[1])
            # Still verified, not waved through.
            assert_invalid_token(envoy.get("/patients/1", token=forged, purpose="billing"),
                                 BAD_SIGNATURE)
            assert_invalid_token(envoy.get("/patients/1", token=new, purpose="billing"),
                                 UNKNOWN_KEY)

        # Rotation: the old key leaves the set, a new one (of another type) arrives.
        upstream.set(path, jwks_body(public_jwk(keys.rotation_new, "rot-new", "ES256")))
        r = wait_for(status_is(envoy, new, 200), 6, "the new key accepted")
        assert_json_bytes(r, BILLING[1])
        r = wait_for(status_is(envoy, old, 401), 6, "the old key refused")
        assert_invalid_token(r, UNKNOWN_KEY, token=old)
    finally:
        envoy.stop()
    assert len(sample_patients.received("/patients/1")) == 1 + len(failures) + 1


def test_the_example_keeps_the_shipped_patients_policy(shipped_plugin_config):
    """The example differs from envoy/envoy.yaml only where it says it does."""
    example = render.load(EXAMPLE)
    plugin = render.plugin_config(example)
    assert plugin["policies"]["patients"] == shipped_plugin_config["policies"]["patients"]
    for key in ("purpose_header", "unmatched", "limits", "pseudonymization"):
        assert plugin[key] == shipped_plugin_config[key], key
    shipped = render.load()
    assert render.wasm_config(example)["vm_config"] == render.wasm_config(shipped)["vm_config"]
    for key in ("failure_policy", "allow_on_headers_stop_iteration"):
        assert render.wasm_config(example)[key] == render.wasm_config(shipped)[key]
    idp = render.cluster(example, IDP_CLUSTER)
    assert plugin["token"]["jwks_uri"]["cluster"] == idp["name"]
    assert idp["transport_socket"]["name"] == "envoy.transport_sockets.tls"


# Last in this file: by now the 30 s between early refreshes have (nearly) passed.
def test_unknown_kid_triggers_an_early_refresh(gated, upstream, keys, sample_patients):
    """refresh_seconds is 300: only the early refresh that a token with an unknown kid asks
    for (at most once every 30 s) can bring a new key in before then."""
    if gated.first_set_at is None:  # run on its own
        gated.open(upstream, sign(keys.rsa, "RS256", "rsa-1"))
    new = new_token(keys)
    upstream.set(GATED_PATH, jwks_body(public_jwk(keys.rsa, "rsa-1", "RS256"),
                                       public_jwk(keys.rotation_old, "rot-old", "RS256"),
                                       public_jwk(keys.rotation_new, "rot-new", "ES256")))
    r = gated.envoy.get("/patients/1", token=new, purpose="billing")
    assert_invalid_token(r, UNKNOWN_KEY, token=new)
    left = EARLY_REFRESH_MIN_SECONDS - (time.monotonic() - gated.first_set_at)
    r = wait_for(status_is(gated.envoy, new, 200), max(left, 0) + 8,
                 "the new key, after an early refresh", interval=0.5)
    assert time.monotonic() - gated.first_set_at < 300
    assert_json_bytes(r, BILLING[1])
    assert_json_bytes(gated.envoy.get("/patients/1", token=old_token(keys), purpose="billing"),
                      BILLING[1])
    assert "JWKS fetch: JWKS updated: 3 keys" in gated.envoy.log()
    # One early fetch by the worker's VM (the main thread's VM sees no requests).
    assert len(upstream.received(GATED_PATH)) == 1
