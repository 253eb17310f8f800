"""Traefik configuration. The only module that writes what Traefik reads.

Traefik runs with a static file Slipway writes (``static_config``): the ``web``
entrypoint on ``SLIPWAY_HTTP_PORT``, a file provider watching the dynamic
folder, and its API reachable only on a loopback entrypoint (never the
insecure API). Each app has one dynamic file, written atomically through a YAML
serializer; host names pass ``names.hostname`` at use, so nothing a user typed
can add a rule.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from flask import current_app

from app import names

INTERNAL_ENTRYPOINT = "slipway-internal"


class ProxyError(Exception):
    pass


def proxy_dir() -> Path:
    return Path(current_app.config["PROXY_DIR"])


def dynamic_dir() -> Path:
    return proxy_dir() / "dynamic"


def _write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not ending in .yml: Traefik would load the half-written file as config.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(data, fh, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_static_config() -> Path:
    """Write Traefik's static configuration and the internal API route; return its path."""
    cfg = current_app.config
    static = {
        "entryPoints": {
            # Drop X_Forwarded.For-style aliases of the headers Traefik sets, which
            # WSGI/CGI backends would read as the real ones.
            "web": {
                "address": f":{cfg['HTTP_PORT']}",
                "http": {"aliasHeadersStrategy": "delete"},
            },
            INTERNAL_ENTRYPOINT: {
                "address": f"127.0.0.1:{cfg['PROXY_API_PORT']}",
                "http": {"aliasHeadersStrategy": "delete"},
            },
        },
        "providers": {
            "providersThrottleDuration": "100ms",
            "file": {"directory": str(dynamic_dir()), "watch": True},
        },
        "api": {"dashboard": False, "insecure": False},
        "ping": {"entryPoint": INTERNAL_ENTRYPOINT},
        "log": {"level": "WARN"},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }
    internal = {
        "http": {
            "routers": {
                "slipway-api": {
                    "rule": "PathPrefix(`/api`)",
                    "entryPoints": [INTERNAL_ENTRYPOINT],
                    "service": "api@internal",
                }
            }
        }
    }
    _write_atomic(dynamic_dir() / "_slipway.yml", internal)
    path = proxy_dir() / "traefik.yml"
    _write_atomic(path, static)
    return path


def route_name(app_id: int) -> str:
    return f"app-{app_id}"


def app_route_path(app_id: int) -> Path:
    return dynamic_dir() / f"{route_name(app_id)}.yml"


def write_app_routes(app_id: int, hosts: list[str], servers: list[str]) -> Path:
    """Route ``hosts`` to ``servers`` (``http://ip:port``), replacing the app's file."""
    try:
        checked = [names.hostname(h) for h in hosts]
    except names.InvalidValue as exc:
        raise ProxyError(f"cannot route this app: {exc}") from None
    if not checked:
        raise ProxyError("an app needs at least one host name")
    rule = " || ".join(f"Host(`{h}`)" for h in checked)
    name = route_name(app_id)
    data = {
        "http": {
            "routers": {name: {"rule": rule, "entryPoints": ["web"], "service": name}},
            "services": {
                name: {
                    "loadBalancer": {
                        "servers": [{"url": url} for url in servers],
                        "passHostHeader": True,
                    }
                }
            },
        }
    }
    path = app_route_path(app_id)
    _write_atomic(path, data)
    return path


def remove_app_routes(app_id: int) -> None:
    app_route_path(app_id).unlink(missing_ok=True)


def _api(path: str) -> dict | None:
    url = f"http://127.0.0.1:{current_app.config['PROXY_API_PORT']}/api{path}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ProxyError(f"Traefik's API answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ProxyError(f"Traefik is not reachable: {exc}") from None


def served_by(app_id: int) -> set[str] | None:
    """The server URLs Traefik currently uses for the app, or None if it has no route."""
    service = _api(f"/http/services/{route_name(app_id)}@file")
    if service is None:
        return None
    return {s["url"] for s in service.get("loadBalancer", {}).get("servers", [])}


def wait_until_served(app_id: int, servers: list[str], timeout: float = 15) -> None:
    """Block until Traefik has loaded exactly ``servers`` for the app."""
    deadline = time.monotonic() + timeout
    wanted = set(servers)
    while time.monotonic() < deadline:
        try:
            if served_by(app_id) == wanted:
                return
        except ProxyError:
            pass
        time.sleep(0.05)
    raise ProxyError("Traefik did not load the new route in time")
