"""The dashboard's own host name over HTTPS (issue 13 item 6).

When ``SLIPWAY_PUBLIC_URL`` is ``https://<host>/…``, Traefik routes ``<host>`` to
Slipway's own web server (``traefik.write_dashboard_route``) and the host gets a
certificate the way an app domain does: one ``certificates`` row with no application,
ordered, renewed and watched by ``app.proxy.certs``. :func:`sync` runs with every
certificate tick (each minute), so changing the setting and restarting is all it takes.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from app import names
from app.extensions import db
from app.models import Certificate, CertSource, CertState
from app.proxy import traefik

log = logging.getLogger("slipway.certs")


def host() -> str | None:
    """The host of SLIPWAY_PUBLIC_URL when it is an https:// URL with a host name."""
    url = urlsplit(current_app.config.get("PUBLIC_URL") or "")
    if url.scheme != "https" or not url.hostname:
        return None
    try:
        return names.hostname(url.hostname)
    except names.InvalidValue:
        log.warning("SLIPWAY_PUBLIC_URL's host %r is not a host name: not routed", url.hostname)
        return None


def certificate() -> Certificate | None:
    wanted = host()
    if wanted is None:
        return None
    return next((c for c in _app_less() if c.hosts == [wanted]), None)


def _app_less() -> list[Certificate]:
    return list(db.session.scalars(select(Certificate).where(Certificate.application_id.is_(None))))


def usable(cert: Certificate | None) -> bool:
    return cert is not None and cert.state in (CertState.active.value, CertState.renewing.value)


def sync() -> Certificate | None:
    """Keep one certificate for the dashboard's host (none without one), drop the ones of
    an earlier host, and write its route for the certificate's state now."""
    wanted = host()
    keep = None
    for cert in _app_less():
        if wanted is not None and cert.hosts == [wanted] and keep is None:
            keep = cert
            continue
        db.session.delete(cert)
        db.session.commit()
        traefik.remove_certificate(cert.id)
    if wanted is not None and keep is None:
        keep = Certificate(
            application_id=None, hosts=[wanted], source=CertSource.acme.value,
            state=CertState.pending_dns.value,
        )  # fmt: skip
        db.session.add(keep)
        db.session.commit()
    write_route(keep)
    return keep


def write_route(cert: Certificate | None = None) -> None:
    cert = cert if cert is not None else certificate()
    traefik.write_dashboard_route(host(), usable(cert))
