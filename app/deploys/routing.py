"""Which host names route to an app, and pointing them at a version's live replicas.

A host is routed to one app only. The default address is unique in the installation
(``applications.address``); a domain is unique across teams, and a domain that is
another app's default address is never routed (the default address wins), so no
router is ever written for a host another app owns.

Which version serves is ``applications.routed_deployment_id``: :func:`route_to`
(the pipeline's switch, revert and restore) sets it, :func:`refresh` (the runtime
watcher) recomputes the route from that deployment's replicas as they are now, and
:func:`unroute` removes the route. All three run under a per-app Redis lock and read
the routed deployment inside it, so a watcher's write never undoes a switch or a
revert made meanwhile. A route never points at an address that another container
holds: every endpoint written is one the engine's network table gives to that very
container id, running, at the time of the write (``runtime.watch``); a replica that
is not running is left out, and a route with no replica left answers 503 (Traefik's
"no available server"), never another app's pages.

An app with an ``exclusive`` volume is routed through Traefik's ``retry`` middleware:
its deploys stop the old version before the new one starts, and a request that meets
no listener in between is tried again until the new one answers. During that gap the
pipeline holds the route (:func:`hold_route`), so the watcher does not write an empty server
list over it (Traefik answers that with 503 at once, and retries it against the same
empty list).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from flask import current_app
from redis.exceptions import LockError
from sqlalchemy import select, update

from app import names
from app.extensions import db, redis
from app.models import Application, CertState, WwwMode
from app.projects import catalog, volumes
from app.proxy import traefik
from app.runtime import containers

log = logging.getLogger("slipway.routing")


USABLE_CERTIFICATE = (CertState.active.value, CertState.renewing.value)


def routes(app: Application) -> list[traefik.Route]:
    """The app's default address under the base domain (plain HTTP), then its domains
    with their prefixes and modes. A domain (or www twin) that is another app's default
    address, or the dashboard's own host, is left out: the default address wins."""
    base = current_app.config["BASE_DOMAIN"]
    default = catalog.default_address(app, base)
    found = [traefik.Route(default)]
    dashboard = (urlsplit(current_app.config.get("PUBLIC_URL") or "").hostname or "").lower()
    for domain in app.domains:
        if domain.host in (default, dashboard) or _foreign_address(domain.host, app.id, base):
            log.warning("app %s: not routing %s, another app's default address", app.id,
                        domain.host)  # fmt: skip
            continue
        www = domain.www
        twin = names.www_twin(domain.host)
        if www != WwwMode.none.value and (
            twin in (default, dashboard) or _foreign_address(twin, app.id, base)
        ):
            log.warning("app %s: not routing the www twin of %s", app.id, domain.host)
            www = WwwMode.none.value
        cert = domain.certificate
        found.append(traefik.Route(
            domain.host, domain.path_prefix, domain.strip_prefix, domain.https_mode, www,
            tls_ready=cert is not None and cert.state in USABLE_CERTIFICATE,
        ))  # fmt: skip
    return found


def hosts(app: Application) -> list[str]:
    """The host names the app's route answers on (default address first)."""
    return list(dict.fromkeys(route.host for route in routes(app)))


def _foreign_address(host: str, app_id: int, base: str) -> bool:
    suffix = f".{base}"
    return host.endswith(suffix) and _address_owner(host[: -len(suffix)]) not in (None, app_id)


def _address_owner(address: str) -> int | None:
    return db.session.scalar(select(Application.id).where(Application.address == address))


LOCK_KEY = "slipway:route-lock:{}"
LOCK_TTL = 30  # a route write takes milliseconds; a dead holder frees the app this fast
# How often a writer tries a held lock again. The holder is done within milliseconds; at
# redis-py's default (0.1 s) a switch that met the watcher's check of the same app (both
# apps of a pair deployed at once: their new containers' start events) lost ≈0.1 s.
LOCK_RETRY_SECONDS = 0.005


@contextmanager
def app_lock(app_id: int):
    """The per-app routing lock (every route write of an app holds it)."""
    lock = redis.client.lock(
        LOCK_KEY.format(app_id), timeout=LOCK_TTL, blocking_timeout=LOCK_TTL,
        sleep=LOCK_RETRY_SECONDS,
    )  # fmt: skip
    if not lock.acquire():
        raise traefik.ProxyError("the app's route is being written elsewhere; try again")
    try:
        yield
    finally:
        try:
            lock.release()
        except LockError:
            pass  # expired: it was held past its TTL, and another writer may hold it now


HOLD_KEY = "slipway:route-hold:{}"


def hold_route(app_id: int, seconds: int = 300) -> None:
    """Until :func:`release` (or ``seconds``), :func:`refresh` (the watcher) leaves the
    app's route as it is: an exclusive handover has the old version stopped and the new
    one not yet started."""
    redis.client.set(HOLD_KEY.format(app_id), "1", ex=seconds)


def release(app_id: int) -> None:
    redis.client.delete(HOLD_KEY.format(app_id))


def held(app_id: int) -> bool:
    return bool(redis.client.exists(HOLD_KEY.format(app_id)))


def retries(app_id: int) -> bool:
    """Whether the app's route holds requests through a stop-then-start deploy."""
    return volumes.is_exclusive(app_id)


@dataclass(frozen=True)
class Routed:
    """What the app's route serves: a deployment's replicas, how many, on which port."""

    deployment_id: int
    replicas: int
    port: int


def routed(app_id: int) -> Routed | None:
    """The routed deployment, read now (not the session's copy of the row)."""
    db.session.commit()  # end any open read transaction: SQLite would show its snapshot
    row = db.session.execute(
        select(
            Application.routed_deployment_id, Application.routed_replicas,
            Application.routed_port, Application.container_port,
        ).where(Application.id == app_id)
    ).first()  # fmt: skip
    if row is None or row[0] is None:
        return None
    return Routed(row[0], row[1] or 0, row[2] or row[3])


def _set_routed(app_id: int, found: Routed | None) -> None:
    values = {"routed_deployment_id": None, "routed_replicas": None, "routed_port": None}
    if found is not None:
        values = {"routed_deployment_id": found.deployment_id,
                  "routed_replicas": found.replicas, "routed_port": found.port}  # fmt: skip
    # Not a change of the app's settings: updated_at stays.
    db.session.execute(
        update(Application)
        .where(Application.id == app_id)
        .values(**values, updated_at=Application.updated_at)
    )
    db.session.commit()


def _port_of(version: containers.Version, default: int) -> int:
    for endpoint in version.endpoints:
        port = urlsplit(endpoint).port
        if port:
            return port
    return default


def route_to(app: Application, version: containers.Version) -> list[str]:
    """Route the app's hosts to ``version``'s replicas and record it as the routed one.

    Only replicas the engine shows running at their address are written (a replica
    that died since it was started is left out: the caller's wait for Traefik then
    sees the difference). Returns the hosts.
    """
    wanted = routes(app)
    port = _port_of(version, app.container_port)
    with app_lock(app.id):
        live = containers.deployment_replicas(
            app.id, version.deployment_id, ids=version.container_ids
        )
        endpoints = [f.endpoint(port) for f in live if f.serving]
        traefik.write_app_routes(app.id, wanted, endpoints, retry=retries(app.id))
        _set_routed(app.id, Routed(version.deployment_id, len(version.replicas), port))
    return list(dict.fromkeys(route.host for route in wanted))


def unroute(app: Application) -> None:
    """Remove the app's route (its hosts then get Traefik's 404): nothing is routed."""
    with app_lock(app.id):
        traefik.remove_app_routes(app.id)
        _set_routed(app.id, None)


def refresh(
    app: Application, leaving: frozenset[str] = frozenset(), *, rewrite: bool = False
) -> tuple[Routed | None, list[containers.ReplicaFacts]]:
    """Recompute the route from the routed deployment's replicas as they are now.

    ``leaving``: ids of containers being stopped (the engine sent them a stop
    signal): they are left out while they still run, before their address is freed.
    Returns ``(what is routed, its replicas' facts)``; ``(None, [])`` when
    nothing is routed. Writes only when what Traefik serves differs, or always with
    ``rewrite`` (see :func:`domains_changed`).
    """
    with app_lock(app.id):
        found = routed(app.id)
        if found is None or held(app.id):
            return None, []  # held: nothing to judge while an exclusive handover runs
        live = [
            replace(f, state="stopping", address="") if f.id in leaving and f.serving else f
            for f in containers.deployment_replicas(app.id, found.deployment_id)
        ]
        endpoints = [f.endpoint(found.port) for f in live if f.serving]
        try:
            served = traefik.served_by(app.id)
        except traefik.ProxyError:
            served = None  # Traefik is not answering: write, it reads the file when it is back
        if rewrite or served is None or served != set(endpoints):
            traefik.write_app_routes(app.id, routes(app), endpoints, retry=retries(app.id))
            log.info("app %s: routing to %d replica(s) of deployment %s",
                     app.id, len(endpoints), found.deployment_id)  # fmt: skip
        return found, live


def domains_changed(app: Application) -> None:
    """Write the app's route again for its domains as they are now (added, removed, a
    certificate that became active or lapsed), to the replicas it serves now."""
    db.session.refresh(app)
    refresh(app, rewrite=True)


def adopt(app: Application, deployment_id: int) -> None:
    """Record an app routed before ``routed_deployment_id`` existed (its running
    deployment, with the app's replicas and port), unless something was routed since."""
    with app_lock(app.id):
        if routed(app.id) is None:
            _set_routed(app.id, Routed(deployment_id, app.replicas, app.container_port))
