"""Where the dashboard is reached: its base URL, and full URLs to its own pages.

``SLIPWAY_PUBLIC_URL`` when it is set (behind a proxy the request's host may be
an internal name), else the host the request came to. An app's own address is
``projects.catalog.app_url``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request, url_for

from app import names

# Names that only mean something on a local network: forges on the internet cannot
# resolve them (no DNS lookup here: a page must not wait for one).
_LOCAL_SUFFIXES = (".local", ".internal", ".lan", ".home.arpa", ".localdomain")


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


def unreachable_base() -> str | None:
    """Why forges cannot reach the webhook addresses shown, or None.

    Without ``SLIPWAY_PUBLIC_URL`` the addresses use the host this request came to; when
    that is loopback, a private address or a local-network name, a forge outside
    cannot post to it."""
    if current_app.config.get("PUBLIC_URL"):
        return None
    host = (urlsplit(request.host_url).hostname or "").lower()
    single_label = "." not in host and ":" not in host  # "myserver": a LAN name
    if names.is_internal_address(host) or host.endswith(_LOCAL_SUFFIXES) or single_label:
        return host
    return None
