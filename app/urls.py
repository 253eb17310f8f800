"""Where the dashboard is reached: its base URL, and full URLs to its own pages.

``SLIPWAY_PUBLIC_URL`` when it is set (behind a proxy the request's host may be
an internal name), else the host the request came to. An app's own address is
``projects.catalog.app_url``.
"""

from __future__ import annotations

from flask import current_app, request, url_for


def dashboard_bases() -> list[str]:
    """Every base URL the dashboard answers as here: the public one first, then the request's."""
    bases = [current_app.config.get("PUBLIC_URL") or "", request.host_url]
    return [b.rstrip("/") for b in bases if b]


def dashboard_base() -> str:
    """The dashboard's base URL, without a trailing slash."""
    return dashboard_bases()[0]


def external_url(endpoint: str, **values) -> str:
    """A full URL to a dashboard endpoint, for a person or a forge to use from outside."""
    return dashboard_base() + url_for(endpoint, **values)


def webhook_url(app, provider: str) -> str | None:
    """The URL a forge posts ``provider`` pushes of ``app`` to (None without a token)."""
    if not app.webhook_token:
        return None
    return external_url("webhooks.receive", provider=provider, token=app.webhook_token)
