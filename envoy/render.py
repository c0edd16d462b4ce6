#!/usr/bin/env python3
"""Render envoy/envoy.yaml for another machine than docker-compose's.

The shipped envoy.yaml is written for docker-compose (upstream host `api:8080`, module at
/etc/finalite/finalite.wasm, listener on 0.0.0.0:10000). `make run` and the integration tests
use this module to change *only* what differs on a developer machine, by editing the parsed
YAML structurally (never by string replacement), so that the configuration they run is the
shipped one:

- the `api` cluster's endpoint (address, port);
- the wasm module's file name;
- the listener's address and port, the admin port;
- optionally the jwt_authn provider's inline JWKS and finalite's plugin configuration (and
  whether it is written as a StringValue holding JSON, as shipped, or as a Struct).

Everything else (filters, routes, limits, policies) stays as shipped. Secrets such as the
pseudonymisation key are not in the YAML at all: Envoy passes them from its own environment
(vm_config.environment_variables.host_env_keys), so whoever starts Envoy sets them.

As a module:

    import render
    cfg = render.load()                                   # the shipped file, as a dict
    cfg = render.render(cfg, api=("127.0.0.1", 8080), wasm="target/.../finalite.wasm")
    render.write(cfg, "out.yaml")

On the command line (see --help):

    python3 envoy/render.py -o .run/envoy.yaml --api 127.0.0.1:8080 \\
        --wasm target/wasm32-wasip1/release/finalite.wasm --listen 127.0.0.1:10000

Needs PyYAML.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import yaml

SHIPPED = Path(__file__).resolve().parent / "envoy.yaml"

HCM = "envoy.filters.network.http_connection_manager"
JWT_AUTHN = "envoy.filters.http.jwt_authn"
WASM = "envoy.filters.http.wasm"
API_CLUSTER = "api"
JWT_PROVIDER = "idp"


class RenderError(Exception):
    """The YAML does not have the shape this renderer expects (it names what is missing)."""


# --- Reading ------------------------------------------------------------------------------


def load(path: Path | str = SHIPPED) -> dict[str, Any]:
    """Parse an Envoy bootstrap YAML file (the shipped one by default)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _one(items: list[dict[str, Any]], what: str, **match: Any) -> dict[str, Any]:
    found = [i for i in items if all(i.get(k) == v for k, v in match.items())]
    if len(found) != 1:
        raise RenderError(f"expected exactly one {what} with {match}, found {len(found)}")
    return found[0]


def listener(cfg: dict[str, Any]) -> dict[str, Any]:
    listeners = cfg["static_resources"]["listeners"]
    if len(listeners) != 1:
        raise RenderError(f"expected one listener, found {len(listeners)}")
    return listeners[0]


def hcm(cfg: dict[str, Any]) -> dict[str, Any]:
    """The HttpConnectionManager's typed_config."""
    chains = listener(cfg)["filter_chains"]
    managers = [f for chain in chains for f in chain["filters"] if f["name"] == HCM]
    if len(managers) != 1:
        raise RenderError(f"expected one {HCM}, found {len(managers)}")
    return managers[0]["typed_config"]


def http_filter(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """The typed_config of the named HTTP filter."""
    return _one(hcm(cfg)["http_filters"], "HTTP filter", name=name)["typed_config"]


def routes(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for vh in hcm(cfg)["route_config"]["virtual_hosts"] for r in vh["routes"]]


def cluster(cfg: dict[str, Any], name: str = API_CLUSTER) -> dict[str, Any]:
    return _one(cfg["static_resources"]["clusters"], "cluster", name=name)


def wasm_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """finalite's PluginConfig (`config` of the wasm filter)."""
    return http_filter(cfg, WASM)["config"]


STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
STRUCT = "type.googleapis.com/google.protobuf.Struct"


def plugin_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """finalite's plugin configuration, parsed: the JSON inside the StringValue (as shipped),
    or the value of a google.protobuf.Struct."""
    conf = wasm_config(cfg)["configuration"]
    if conf.get("@type") == STRING_VALUE:
        return json.loads(conf["value"])
    if conf.get("@type") == STRUCT:
        return copy.deepcopy(conf["value"])
    raise RenderError(f"finalite's configuration is a {conf.get('@type')}, expected a "
                      "google.protobuf.StringValue holding JSON or a google.protobuf.Struct")


_plugin_config = plugin_config  # render() has a parameter of that name


def jwks(cfg: dict[str, Any]) -> dict[str, Any]:
    """The jwt_authn provider's inline JWKS, parsed."""
    provider = http_filter(cfg, JWT_AUTHN)["providers"][JWT_PROVIDER]
    return json.loads(provider["local_jwks"]["inline_string"])


# --- Rewriting ----------------------------------------------------------------------------


def _set_socket(socket: dict[str, Any], address: str | None, port: int | None) -> None:
    if address is not None:
        socket["address"] = address
    if port is not None:
        socket["port_value"] = int(port)


def render(
    cfg: dict[str, Any],
    *,
    api: tuple[str, int] | None = None,
    wasm: Path | str | None = None,
    listen: tuple[str | None, int | None] | None = None,
    admin: tuple[str | None, int | None] | None = None,
    jwks: dict[str, Any] | None = None,
    plugin_config: dict[str, Any] | None = None,
    plugin_config_as: str | None = None,
) -> dict[str, Any]:
    """A copy of `cfg` with the given parts replaced; None leaves a part as it is.

    api:           (host, port) of the `api` cluster's single endpoint
    wasm:          path of finalite.wasm (made absolute: Envoy resolves it from its own cwd)
    listen, admin: (address, port) of the listener / admin interface; either may be None
    jwks:          the JWK Set the `idp` provider verifies tokens with
    plugin_config: finalite's configuration, as a dict (serialised to the StringValue)
    plugin_config_as: "string" (a StringValue holding JSON, as shipped) or "struct" (the same
                   configuration as a google.protobuf.Struct, which Envoy hands the module
                   serialised); None keeps the type as it is
    """
    out = copy.deepcopy(cfg)
    if api is not None:
        endpoints = cluster(out)["load_assignment"]["endpoints"]
        lb = [e for group in endpoints for e in group["lb_endpoints"]]
        if len(lb) != 1:
            raise RenderError(f"expected one endpoint in cluster {API_CLUSTER}, found {len(lb)}")
        _set_socket(lb[0]["endpoint"]["address"]["socket_address"], api[0], api[1])
    if wasm is not None:
        code = wasm_config(out)["vm_config"]["code"]
        code["local"] = {"filename": str(Path(wasm).resolve())}
    if listen is not None:
        _set_socket(listener(out)["address"]["socket_address"], *listen)
    if admin is not None:
        _set_socket(out["admin"]["address"]["socket_address"], *admin)
    if jwks is not None:
        provider = http_filter(out, JWT_AUTHN)["providers"][JWT_PROVIDER]
        provider["local_jwks"] = {"inline_string": json.dumps(jwks)}
    if plugin_config is not None or plugin_config_as is not None:
        conf = plugin_config if plugin_config is not None else _plugin_config(out)
        kind = plugin_config_as or (
            "struct" if wasm_config(out)["configuration"].get("@type") == STRUCT else "string")
        if kind == "string":
            wasm_config(out)["configuration"] = {"@type": STRING_VALUE,
                                                 "value": json.dumps(conf, indent=2)}
        elif kind == "struct":
            wasm_config(out)["configuration"] = {"@type": STRUCT, "value": copy.deepcopy(conf)}
        else:
            raise RenderError(f"plugin_config_as: {kind!r} is neither 'string' nor 'struct'")
    return out


def without_filter(cfg: dict[str, Any], name: str = WASM) -> dict[str, Any]:
    """A copy of `cfg` without the named HTTP filter (and its per-route configs).

    For checking the rest of the set-up (upstream, jwt_authn, tokens) when no module is built.
    """
    out = copy.deepcopy(cfg)
    manager = hcm(out)
    manager["http_filters"] = [f for f in manager["http_filters"] if f["name"] != name]
    for route in routes(out):
        per_filter = route.get("typed_per_filter_config", {})
        per_filter.pop(name, None)
        if not per_filter:
            route.pop("typed_per_filter_config", None)
    return out


def dump(cfg: dict[str, Any]) -> str:
    return ("# Rendered from envoy/envoy.yaml by envoy/render.py: do not edit, edit the source.\n"
            + yaml.safe_dump(cfg, sort_keys=False, width=100))


def write(cfg: dict[str, Any], path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(cfg), encoding="utf-8")
    return path


# --- Command line -------------------------------------------------------------------------


def _host_port(text: str) -> tuple[str | None, int]:
    """`HOST:PORT`, or `PORT` alone (address unchanged)."""
    host, sep, port = text.rpartition(":")
    return (host or None) if sep else None, int(port)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Render envoy/envoy.yaml for this machine.")
    p.add_argument("-o", "--output", required=True, help="where to write the rendered YAML")
    p.add_argument("--source", default=str(SHIPPED), help="the YAML to start from")
    p.add_argument("--api", metavar="HOST:PORT", help="the sample API (cluster `api`)")
    p.add_argument("--wasm", metavar="PATH", help="finalite.wasm")
    p.add_argument("--listen", metavar="[ADDR:]PORT", help="the listener")
    p.add_argument("--admin", metavar="[ADDR:]PORT", help="the admin interface")
    p.add_argument("--jwks", metavar="FILE", help="a JWKS file for the jwt_authn provider")
    p.add_argument("--plugin-config", metavar="FILE", help="a finalite configuration (JSON)")
    p.add_argument("--plugin-config-as", choices=["string", "struct"],
                   help="write finalite's configuration as a StringValue (JSON) or a Struct")
    args = p.parse_args(argv)

    api = None
    if args.api:
        host, port = _host_port(args.api)
        if host is None:
            p.error("--api needs HOST:PORT")
        api = (host, port)
    cfg = render(
        load(args.source),
        api=api,
        wasm=args.wasm,
        listen=_host_port(args.listen) if args.listen else None,
        admin=_host_port(args.admin) if args.admin else None,
        jwks=json.loads(Path(args.jwks).read_text()) if args.jwks else None,
        plugin_config=json.loads(Path(args.plugin_config).read_text())
        if args.plugin_config else None,
        plugin_config_as=args.plugin_config_as,
    )
    write(cfg, args.output)


if __name__ == "__main__":
    main()
