"""Which host names route to an app, and pointing them at a version's endpoints."""

from __future__ import annotations

from flask import current_app

from app.models import Application
from app.projects import catalog
from app.proxy import traefik


def hosts(app: Application) -> list[str]:
    """The app's default address under the base domain, then its own domains."""
    default = catalog.default_address(app, current_app.config["BASE_DOMAIN"])
    return [default, *(domain.host for domain in app.domains)]


def route_to(app: Application, endpoints: list[str]) -> list[str]:
    """Route the app's hosts to ``endpoints`` (a version's); returns the hosts."""
    names = hosts(app)
    traefik.write_app_routes(app.id, names, endpoints)
    return names
