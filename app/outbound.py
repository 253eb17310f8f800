"""Connections Slipway opens to hosts users name: git, S3, databases, webhooks, SMTP.

A form refuses an internal address when the value is saved (``app.names``); the
check here runs again at every use, because DNS can turn an accepted name
internal at any time (docs/SECURITY.md). One setting,
``SLIPWAY_OUTBOUND_ALLOWED_HOSTS``, names the internal hosts an admin allows for
all of them; ``SLIPWAY_BACKUP_ALLOWED_HOSTS`` and ``SLIPWAY_GIT_ALLOWED_HOSTS``
are read as aliases (``app.config``).
"""

from __future__ import annotations

from flask import current_app

from app import names


class HostRefused(names.InvalidValue):
    """The host resolves to an internal address and no admin allow-listed it."""


def allowed_hosts() -> tuple[str, ...]:
    """The hosts an admin allows although they are internal (plain ``http://`` too)."""
    return tuple(current_app.config["OUTBOUND_ALLOWED_HOSTS"])


def check_host(host: str, allowed: tuple[str, ...] | None = None) -> str:
    """SSRF guard at use: refuse ``host`` if it resolves internally and is not allowed.

    ``allowed`` defaults to :func:`allowed_hosts`; callers without an app context
    (the git helpers take their list as an argument) pass it in.
    """
    allowed = allowed_hosts() if allowed is None else allowed
    if host not in allowed and names.resolves_internally(host):
        raise HostRefused(names.internal_refused(host, resolves=True))
    return host
