"""Traefik configuration. The only module that writes what Traefik reads.

Traefik runs with a static file Slipway writes (``static_config``): the ``web``
entrypoint on ``SLIPWAY_HTTP_PORT``, ``websecure`` (TLS) on ``SLIPWAY_HTTPS_PORT``, a
file provider watching the dynamic folder, and its API reachable only on a loopback
entrypoint (never the insecure API). On ``web``, ``/.well-known/acme-challenge/`` and
``/.well-known/slipway/`` go to Slipway's own web server, ahead of every app route
(the ACME HTTP-01 answers and the preflight's self-probe, ``app.web.wellknown``).
Certificates are dynamic files too, one per certificate (``write_certificate``).
Each port of ``SLIPWAY_DATABASE_PUBLIC_PORTS`` is an entrypoint of its own
(``db-<port>``), on which a database with that public port gets a TCP router
(``write_database_route``): TLS ends at Traefik (PostgreSQL's in-protocol upgrade too),
with the certificate Slipway holds for the name the client sent, else the default one.
Each app has one dynamic file, written atomically through a YAML serializer; host
names pass ``names.hostname`` at use, so nothing a user typed can add a rule.

A switch is confirmed through Traefik's API in about 10 ms (``bench/traefik_switch.py``),
thanks to two things. The default TLS store has a certificate of Slipway's (made once):
without one, Traefik generates a new RSA-2048 certificate on every reload, 50-500 ms on
a small CPU. And a dynamic file is written in the ``staging`` folder beside the watched
one and renamed into it, so the watched folder sees the rename alone: a temporary file
inside it would start a reload of the old content, and the new one would then wait for
``providersThrottleDuration``. The file provider was kept over Traefik's Redis and HTTP
providers: as fast with a few apps; slower with 200 (it reads every file on a change), but
the files outlive any restart (the embedded Redis persists nothing), need no
``notify-keyspace-events`` on a shared Redis, and nothing polls (figures in
``docs/BENCHMARKS.md``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from flask import current_app

from app import names
from app.models.applications import HttpsMode, WwwMode

INTERNAL_ENTRYPOINT = "slipway-internal"
HTTP_ENTRYPOINT = "web"
HTTPS_ENTRYPOINT = "websecure"
WELL_KNOWN_ROUTER = "slipway-well-known"
WEB_SERVICE = "slipway-web"
DATABASE_TLS_OPTIONS = "slipway-databases"
# Above any priority an app route gets (Traefik's default is the rule's length).
WELL_KNOWN_PRIORITY = 1_000_000
# App routes: this plus the path prefix's length (at most 255), so far below it.
ROUTE_PRIORITY = 10_000
DEFAULT_CERT_DAYS = 3650
# A second change within this long of the previous reload waits for its end.
THROTTLE = "10ms"
# The retry middleware of an app with an exclusive volume: a request that finds no
# listener (the old version stopped, the new one starting) is tried again with an
# exponential back-off from RETRY_INTERVAL, RETRY_ATTEMPTS times in all (≈ 20 s).
RETRY_ATTEMPTS = 12
RETRY_INTERVAL = "100ms"


class ProxyError(Exception):
    pass


def proxy_dir() -> Path:
    return Path(current_app.config["PROXY_DIR"])


def dynamic_dir() -> Path:
    return proxy_dir() / "dynamic"


def staging_dir() -> Path:
    """Where dynamic files are written before they are renamed into the watched folder."""
    return proxy_dir() / "staging"


def _write_atomic(path: Path, data: dict, staging: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    # Never ending in .yml, never in the watched folder: Traefik would read it there.
    # mkstemp makes the file 0600, and rename keeps that.
    fd, tmp = tempfile.mkstemp(dir=staging, prefix=".tmp-", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(data, fh, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _default_certificate() -> dict:
    """The default TLS store's certificate: a self-signed ECDSA one, made once, 0600.

    Traefik serves it to a TLS client whose name has no certificate. Without it Traefik
    makes an RSA-2048 one on every configuration reload, which is most of a switch's time.
    """
    folder = proxy_dir() / "certs"
    cert_file, key_file = folder / "default.crt", folder / "default.key"
    if not (cert_file.is_file() and key_file.is_file()):
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Slipway default certificate")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=DEFAULT_CERT_DAYS))
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(key_file, key_pem)
        _write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    return {"certFile": str(cert_file), "keyFile": str(key_file)}


def _write_private(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
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
            HTTP_ENTRYPOINT: {
                "address": f":{cfg['HTTP_PORT']}",
                "http": {"aliasHeadersStrategy": "delete"},
            },
            HTTPS_ENTRYPOINT: {
                "address": f":{cfg['HTTPS_PORT']}",
                "http": {"aliasHeadersStrategy": "delete", "tls": {}},
            },
            INTERNAL_ENTRYPOINT: {
                "address": f"127.0.0.1:{cfg['PROXY_API_PORT']}",
                "http": {"aliasHeadersStrategy": "delete"},
            },
        }
        | {
            # TCP only; the strategy is set as on the others (Traefik warns otherwise).
            database_entrypoint(port): {
                "address": f":{port}",
                "http": {"aliasHeadersStrategy": "delete"},
            }
            for port in cfg.get("DATABASE_PUBLIC_PORTS", ())
        },
        "providers": {
            "providersThrottleDuration": THROTTLE,
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
                },
                WELL_KNOWN_ROUTER: {
                    "rule": "PathPrefix(`/.well-known/acme-challenge/`) || "
                    "PathPrefix(`/.well-known/slipway/`)",
                    "entryPoints": [HTTP_ENTRYPOINT],
                    "service": WEB_SERVICE,
                    "priority": WELL_KNOWN_PRIORITY,
                },
            },
            "services": {
                WEB_SERVICE: {
                    "loadBalancer": {
                        "servers": [{"url": cfg["WEB_UPSTREAM"]}],
                        "passHostHeader": True,
                    }
                }
            },
        },
        "tls": {
            "stores": {"default": {"defaultCertificate": _default_certificate()}},
            # libpq 17 offers the ALPN protocol "postgresql" and ends the handshake when
            # the server has no protocol in common (as Traefik's default list of h2 and
            # http/1.1 is); clients that offer none (redis-cli, socat) are not asked.
            "options": {DATABASE_TLS_OPTIONS: {"alpnProtocols": ["postgresql"]}},
        },
    }
    _write_atomic(dynamic_dir() / "_slipway.yml", internal, staging_dir())
    path = proxy_dir() / "traefik.yml"
    _write_atomic(path, static, proxy_dir())  # not watched: read once at Traefik's start
    return path


def route_name(app_id: int) -> str:
    return f"app-{app_id}"


def app_route_path(app_id: int) -> Path:
    return dynamic_dir() / f"{route_name(app_id)}.yml"


@dataclass(frozen=True)
class Route:
    """One host (and path prefix) of an app's route, as ``app.deploys.routing`` sees it.

    The default address is ``Route(host)``: plain HTTP on ``web``, the whole host.
    ``tls_ready``: the host's certificate is usable (active or renewing), so a
    ``redirect`` domain sends plain HTTP to HTTPS; until then it serves plain HTTP too."""

    host: str
    path_prefix: str = "/"
    strip_prefix: bool = False
    https_mode: str = HttpsMode.off.value
    www: str = WwwMode.none.value
    tls_ready: bool = False


def _checked_route(route: Route | str) -> Route:
    """The route with every part a rule is built from validated again (SECURITY case 16)."""
    if isinstance(route, str):
        route = Route(route)
    try:
        host = names.hostname(route.host)
        prefix = names.path_prefix(route.path_prefix)
        https_mode, www = HttpsMode(route.https_mode).value, WwwMode(route.www).value
        if www != WwwMode.none.value:
            names.hostname(names.www_twin(host))
    except (names.InvalidValue, ValueError) as exc:
        raise ProxyError(f"cannot route this app: {exc}") from None
    if prefix != route.path_prefix or host != route.host:
        raise ProxyError("cannot route this app: a host or prefix is not in its stored form")
    return replace(route, host=host, path_prefix=prefix, https_mode=https_mode, www=www)


def route_priority(prefix: str) -> int:
    """Longer prefixes first on a shared host; all below the /.well-known router."""
    return ROUTE_PRIORITY + len(prefix)


def _rule(hosts: list[str], prefix: str) -> str:
    rule = " || ".join(f"Host(`{h}`)" for h in hosts)
    if prefix == "/":
        return rule
    if len(hosts) > 1:
        rule = f"({rule})"
    # Path or PathPrefix of "<prefix>/": /v2 matches /v2 and /v2/…, never /v2x.
    return f"{rule} && (Path(`{prefix}`) || PathPrefix(`{prefix}/`))"


def _port_suffix(scheme: str) -> str:
    port = current_app.config["HTTPS_PORT" if scheme == "https" else "HTTP_PORT"]
    return "" if port == {"https": 443, "http": 80}[scheme] else f":{port}"


def _redirect_to(scheme: str, target: str) -> dict:
    """A permanent redirect to ``scheme://target`` with the path and query kept.

    Traefik's permanent redirects answer 301 to GET and 308 to every other method
    (which must keep its method and body); it has no setting for a 308 on GET."""
    return {"redirectRegex": {
        "regex": "^https?://[^/]+(.*)$",
        "replacement": f"{scheme}://{target}{_port_suffix(scheme)}${{1}}",
        "permanent": True,
    }}  # fmt: skip


def _to_https() -> dict:
    """Plain HTTP of a host to the same URL on HTTPS (permanent), its port kept right."""
    if current_app.config["HTTPS_PORT"] == 443:
        return {"redirectScheme": {"scheme": "https", "permanent": True}}
    return {"redirectRegex": {
        "regex": "^http://([^/:]+)(:[0-9]+)?(.*)$",
        "replacement": f"https://${{1}}{_port_suffix('https')}${{3}}",
        "permanent": True,
    }}  # fmt: skip


def _names(route: Route) -> tuple[list[str], tuple[str, str] | None]:
    """The hosts that serve, and (a host, the host it redirects to) for to_apex/to_www."""
    host, www = route.host, route.www
    if www == WwwMode.none.value:
        return [host], None
    twin = names.www_twin(host)
    apex, www_name = (twin, host) if host.startswith("www.") else (host, twin)
    if www == WwwMode.both.value:
        return [host, twin], None
    if www == WwwMode.to_apex.value:
        return [apex], (www_name, apex)
    return [www_name], (apex, www_name)


def _route_config(
    service: str, base: str, route: Route, first: tuple[str, ...] = ()
) -> tuple[dict, dict]:
    """The routers and middlewares (named ``<base>-…``) of one route to ``service``;
    ``first``: middlewares (defined elsewhere) every serving router starts with."""
    serving, redirect = _names(route)
    prefix, priority = route.path_prefix, route_priority(route.path_prefix)
    routers, middlewares = {}, {}
    serve_middlewares = list(first)
    if route.strip_prefix and prefix != "/":
        middlewares[f"{base}-strip"] = {"stripPrefix": {"prefixes": [prefix]}}
        serve_middlewares.append(f"{base}-strip")
    https = route.https_mode != HttpsMode.off.value
    upgrade = route.https_mode == HttpsMode.redirect.value and route.tls_ready

    def router(hosts, entrypoint, chain):
        found = {"rule": _rule(hosts, prefix), "entryPoints": [entrypoint], "service": service,
                 "priority": priority}  # fmt: skip
        if chain:
            found["middlewares"] = list(chain)
        if entrypoint == HTTPS_ENTRYPOINT:
            found["tls"] = {}
        return found

    if route.https_mode != HttpsMode.only.value:
        if upgrade:
            middlewares[f"{base}-to-https"] = _to_https()
        chain = [f"{base}-to-https"] if upgrade else serve_middlewares
        routers[f"{base}-web"] = router(serving, HTTP_ENTRYPOINT, chain)
        if redirect:
            hop = f"{base}-www-web"
            middlewares[hop] = _redirect_to("https" if upgrade else "http", redirect[1])
            routers[hop] = router([redirect[0]], HTTP_ENTRYPOINT, [hop])
    if https:
        routers[f"{base}-tls"] = router(serving, HTTPS_ENTRYPOINT, serve_middlewares)
        if redirect:
            hop = f"{base}-www-tls"
            middlewares[hop] = _redirect_to("https", redirect[1])
            routers[hop] = router([redirect[0]], HTTPS_ENTRYPOINT, [hop])
    return routers, middlewares


def write_app_routes(
    app_id: int, routes: list[Route | str], servers: list[str], *, retry: bool = False
) -> Path:
    """Route the app's ``routes`` (a host name alone is its default address's kind: plain
    HTTP, the whole host) to ``servers`` (``http://ip:port``), replacing the app's file.

    Per route: a router on ``web`` unless the mode is ``only`` (redirecting to HTTPS once
    the certificate is usable, for ``redirect``), one on ``websecure`` unless ``off``
    (Traefik picks the certificate by SNI), and for ``to_apex``/``to_www`` a router that
    redirects the other name (permanently). Explicit priorities make the longest prefix
    win on a shared host. ``retry``: serving routers go through Traefik's ``retry``
    middleware (an app with an exclusive volume, see ``app.deploys.routing``)."""
    checked = [_checked_route(r) for r in routes]
    if not checked:
        raise ProxyError("an app needs at least one host name")
    name = route_name(app_id)
    routers, middlewares = {}, {}
    first: tuple[str, ...] = ()
    if retry:
        first = (retry_middleware(app_id),)
        middlewares[first[0]] = {
            "retry": {"attempts": RETRY_ATTEMPTS, "initialInterval": RETRY_INTERVAL}
        }
    for index, route in enumerate(checked):
        found_routers, found_middlewares = _route_config(name, f"{name}-{index}", route, first)
        routers |= found_routers
        middlewares |= found_middlewares
    http = {
        "routers": routers,
        "services": {
            name: {
                "loadBalancer": {
                    "servers": [{"url": url} for url in servers],
                    "passHostHeader": True,
                }
            }
        },
    }
    if middlewares:
        http["middlewares"] = middlewares
    path = app_route_path(app_id)
    _write_atomic(path, {"http": http}, staging_dir())
    return path


DASHBOARD_ROUTE = "slipway-dashboard"


def write_dashboard_route(host: str | None, tls_ready: bool) -> None:
    """Serve the dashboard on its own host (SLIPWAY_PUBLIC_URL's, when it is https://)
    through Traefik: HTTPS on ``websecure`` and, once its certificate is usable, plain
    HTTP redirected there (until then plain HTTP serves, so the ACME answers and the
    dashboard keep working). ``host=None`` removes the route."""
    path = dynamic_dir() / f"{DASHBOARD_ROUTE}.yml"
    if host is None:
        path.unlink(missing_ok=True)
        return
    route = _checked_route(Route(host, https_mode=HttpsMode.redirect.value, tls_ready=tls_ready))
    routers, middlewares = _route_config(WEB_SERVICE, DASHBOARD_ROUTE, route)
    http: dict = {"routers": routers}
    if middlewares:
        http["middlewares"] = middlewares
    _write_atomic(path, {"http": http}, staging_dir())


def certificate_route_path(cert_id: int) -> Path:
    return dynamic_dir() / f"cert-{cert_id}.yml"


def write_certificate(cert_id: int, chain_pem: str, key_pem: str) -> Path:
    """Give Traefik a certificate (it picks one by SNI among all it has), replacing the
    file of ``cert_id``. The PEMs are inline in the 0600 file: Traefik cannot decrypt,
    so this file is the one place the key is in clear (the database holds it encrypted)."""
    data = {"tls": {"certificates": [{"certFile": chain_pem, "keyFile": key_pem}]}}
    path = certificate_route_path(cert_id)
    _write_atomic(path, data, staging_dir())
    return path


def remove_certificate(cert_id: int) -> None:
    certificate_route_path(cert_id).unlink(missing_ok=True)


def remove_app_routes(app_id: int) -> None:
    app_route_path(app_id).unlink(missing_ok=True)


def database_entrypoint(port: int) -> str:
    return f"db-{int(port)}"


def database_route_name(database_id: int) -> str:
    return f"database-{int(database_id)}"


def database_route_path(database_id: int) -> Path:
    return dynamic_dir() / f"{database_route_name(database_id)}.yml"


def write_database_route(database_id: int, port: int, address: str) -> Path:
    """Route the public ``port`` (an entrypoint of the static file) to ``address``
    (``ip:port`` of the database's container), TLS ending here: any name the client
    sends (or none) matches, as the port is this database's alone."""
    if int(port) not in current_app.config.get("DATABASE_PUBLIC_PORTS", ()):
        raise ProxyError(f"port {port} is not one of SLIPWAY_DATABASE_PUBLIC_PORTS")
    name = database_route_name(database_id)
    data = {
        "tcp": {
            "routers": {
                name: {
                    "rule": "HostSNI(`*`)",
                    "entryPoints": [database_entrypoint(port)],
                    "service": name,
                    "tls": {"options": DATABASE_TLS_OPTIONS},
                }
            },
            "services": {name: {"loadBalancer": {"servers": [{"address": address}]}}},
        }
    }
    path = database_route_path(database_id)
    try:
        if yaml.safe_load(path.read_text()) == data:
            return path  # as it is: no write, so no reload of Traefik
    except (OSError, yaml.YAMLError):
        pass
    _write_atomic(path, data, staging_dir())
    return path


def remove_database_route(database_id: int) -> None:
    database_route_path(database_id).unlink(missing_ok=True)


def database_served_by(database_id: int) -> set[str] | None:
    """The addresses Traefik routes the database's public port to, or None (no route)."""
    service = _api(f"/tcp/services/{database_route_name(database_id)}@file")
    if service is None:
        return None
    return {s["address"] for s in service.get("loadBalancer", {}).get("servers", [])}


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


def retry_middleware(app_id: int) -> str:
    return f"{route_name(app_id)}-retry"


def wait_for_retry(app_id: int, timeout: float = 5) -> None:
    """Block until Traefik has loaded the app's retry middleware."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _api(f"/http/middlewares/{retry_middleware(app_id)}@file") is not None:
                return
        except ProxyError:
            pass
        time.sleep(0.01)
    raise ProxyError("Traefik did not load the retry middleware in time")


def served_by(app_id: int) -> set[str] | None:
    """The server URLs Traefik currently uses for the app, or None if it has no route."""
    service = _api(f"/http/services/{route_name(app_id)}@file")
    if service is None:
        return None
    return {s["url"] for s in service.get("loadBalancer", {}).get("servers", [])}


def wait_until_served(app_id: int, servers: list[str], timeout: float = 15) -> None:
    """Block until Traefik has loaded exactly ``servers`` for the app.

    A reload takes about 10 ms, so the API is asked every 5 ms for the first second
    (one local request each), then every 50 ms.
    """
    started = time.monotonic()
    deadline = started + timeout
    wanted = set(servers)
    while time.monotonic() < deadline:
        try:
            if served_by(app_id) == wanted:
                return
        except ProxyError:
            pass
        time.sleep(0.005 if time.monotonic() - started < 1 else 0.05)
    raise ProxyError("Traefik did not load the new route in time")
