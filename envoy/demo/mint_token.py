#!/usr/bin/env python3
"""Mint a DEMO access token (JWT, RS256) for trying finalite locally.

The token is signed with the demo key next to this script (DEMO-ONLY-signing-key.pem, public,
never for production) and carries the claims finalite reads through Envoy's jwt_authn:

    iss        https://idp.example          (the jwt_authn provider `idp` in envoy/envoy.yaml)
    aud        patients-api
    exp, iat   now + --ttl seconds, now
    client_id  --client-id                  (the data reuser; finalite's token.client_claim)
    scope      --scope, space-separated     (e.g. "patients:read purpose:care")
    purposes   --purposes, repeatable       (finalite's token.purposes_claim)
    NAME       --claim NAME=VALUE, repeatable (e.g. patient=example: the SMART launch patient,
                                            finalite's fhir.patient_claim)

Examples (with the project's venv, `make venv`):

    .venv/bin/python envoy/demo/mint_token.py --client-id billing-partner \\
        --scope patients:read --purposes billing
    .venv/bin/python envoy/demo/mint_token.py --print-jwks   # the public half, as a JWKS

Needs PyJWT with the `crypto` extra (cryptography). Importable: tests call `mint()` with a
key they generate themselves.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import jwt
from cryptography.hazmat.primitives import serialization

HERE = Path(__file__).resolve().parent
DEMO_KEY = HERE / "DEMO-ONLY-signing-key.pem"
DEMO_KID = "finalite-demo-1"
ISSUER = "https://idp.example"
AUDIENCE = "patients-api"


def load_private_key(path: Path | str = DEMO_KEY):
    """Load a PEM private key (text before the BEGIN line is ignored)."""
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def jwks(private_or_public_key, kid: str = DEMO_KID) -> dict[str, Any]:
    """The JWK Set holding the public half of an RSA key, as Envoy's `local_jwks` wants it."""
    key = private_or_public_key
    if hasattr(key, "public_key"):
        key = key.public_key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return {"keys": [{k: jwk[k] for k in ("kty", "kid", "alg", "use", "n", "e")}]}


def mint(
    key=None,
    *,
    kid: str = DEMO_KID,
    issuer: str | None = ISSUER,
    audience: str | list[str] | None = AUDIENCE,
    client_id: str | None = "demo-client",
    scope: str | Iterable[str] | None = None,
    purposes: Iterable[str] | str | None = None,
    ttl: int = 3600,
    now: int | None = None,
    extra: dict[str, Any] | None = None,
    algorithm: str = "RS256",
) -> str:
    """A signed JWT. A claim given as None is left out; `extra` adds or overrides claims."""
    if key is None:
        key = load_private_key()
    now = int(time.time()) if now is None else now
    claims: dict[str, Any] = {"iat": now, "exp": now + ttl}
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    if client_id is not None:
        claims["client_id"] = client_id
    if scope is not None:
        claims["scope"] = scope if isinstance(scope, str) else " ".join(scope)
    if purposes is not None:
        claims["purposes"] = purposes if isinstance(purposes, str) else list(purposes)
    if extra:
        claims.update(extra)
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Mint a DEMO token signed with the demo key (never for production).")
    p.add_argument("--client-id", default="demo-client")
    p.add_argument("--scope", default="patients:read",
                   help='space-separated scopes, e.g. "patients:read purpose:care"')
    p.add_argument("--purposes", action="append", default=None, metavar="PURPOSE",
                   help="an authorised purpose (repeat the option for several)")
    p.add_argument("--claim", action="append", default=[], metavar="NAME=VALUE",
                   help="another string claim, e.g. patient=example (repeat for several)")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    p.add_argument("--iss", default=ISSUER)
    p.add_argument("--aud", default=AUDIENCE)
    p.add_argument("--kid", default=DEMO_KID)
    p.add_argument("--key", default=str(DEMO_KEY), help="PEM private key (default: the demo key)")
    p.add_argument("--print-jwks", action="store_true",
                   help="print the JWKS of the key's public half and exit")
    args = p.parse_args(argv)
    extra = {}
    for claim in args.claim:
        name, sep, value = claim.partition("=")
        if not sep or not name:
            p.error(f"--claim {claim!r}: expected NAME=VALUE")
        extra[name] = value
    key = load_private_key(args.key)
    if args.print_jwks:
        json.dump(jwks(key, args.kid), sys.stdout)
        print()
        return
    print(mint(key, kid=args.kid, issuer=args.iss, audience=args.aud, client_id=args.client_id,
               scope=args.scope, purposes=args.purposes, ttl=args.ttl, extra=extra))


if __name__ == "__main__":
    main()
