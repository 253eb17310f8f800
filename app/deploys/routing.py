"""Which host names route to an app, and pointing them at a version's endpoints.

A host is routed to one app only. The default address is unique in the installation
(``applications.address``); a domain is unique across teams, and a domain that is
another app's default address is never routed (the default address wins), so no
router is ever written for a host another app owns.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Application
from app.projects import catalog
from app.proxy import traefik

log = logging.getLogger("slipway.routing")


def hosts(app: Application) -> list[str]:
    """The app's default address under the base domain, then its own domains."""
    base = current_app.config["BASE_DOMAIN"]
    found = [catalog.default_address(app, base)]
    suffix = f".{base}"
    for domain in app.domains:
        host = domain.host
        if host.endswith(suffix) and _address_owner(host[: -len(suffix)]) not in (None, app.id):
            log.warning("app %s: not routing %s, another app's default address", app.id, host)
            continue
        if host not in found:
            found.append(host)
    return found


def _address_owner(address: str) -> int | None:
    return db.session.scalar(select(Application.id).where(Application.address == address))


def route_to(app: Application, version) -> list[str]:
    """Route the app's hosts to ``version``'s endpoints; returns the hosts."""
    names = hosts(app)
    traefik.write_app_routes(app.id, names, version.endpoints)
    return names
