"""Storing certificates: which hosts an app's domains need one for, writing an issued
or uploaded certificate (the row, the encrypted key, Traefik's file), and dropping the
ones no domain uses any more. Shared by the life cycle (``app.proxy.certs``) and the
uploads and the watch (``app.proxy.certwatch``)."""

from __future__ import annotations

import json
import logging

from sqlalchemy import select

from app import crypto, names
from app.extensions import db
from app.models import Application
from app.models.applications import WwwMode
from app.models.certificates import Certificate, CertSource, CertState
from app.proxy import pem, traefik

log = logging.getLogger("slipway.certs")
KEY_CONTEXT = "certificate_key"


def twin(host: str) -> str:
    """The www twin of a host: ``www.x`` for ``x``, and ``x`` for ``www.x``."""
    return host[4:] if host.startswith("www.") else f"www.{host}"


def _checked(host: str) -> str | None:
    try:
        return names.hostname(host)
    except names.InvalidValue:
        return None


def wanted_hosts(app: Application) -> dict[str, list[str]]:
    """For each HTTPS domain host of the app, the hosts its certificate covers. A host
    that is not an RFC 1123 name (a hostile row) gets no certificate at all."""
    wanted: dict[str, list[str]] = {}
    for domain in app.domains:
        if not domain.https:
            continue
        host = _checked(domain.host)
        if host is None:
            log.warning("app %s: domain %r is not a host name; no certificate", app.id, domain.id)
            continue
        entry = wanted.setdefault(host, [host])
        other = _checked(twin(host))
        if domain.www != WwwMode.none.value and other and other not in entry:
            entry.append(other)
    return wanted


def uploaded_covers(cert: Certificate | None, app: Application, hosts: list[str]) -> bool:
    if cert is None or cert.source != CertSource.uploaded.value or cert.application_id != app.id:
        return False
    try:
        return not pem.uncovered(pem.leaf(cert.chain_pem or ""), hosts)
    except pem.PemError:
        return False


def routes_changed(app: Application | None) -> None:
    """Tell routing (HTTPS on or off for the app's domains); a failure there is logged,
    never a certificate's failure: the next route write picks the state up."""
    if app is None:  # the dashboard's own host (app.proxy.dashboard)
        from app.proxy import dashboard

        dashboard.write_route()
        return
    from app.deploys import routing

    try:
        routing.domains_changed(app)
    except Exception:  # noqa: BLE001 - the certificate itself is fine
        log.exception("app %s: could not rewrite its route after a certificate change", app.id)


def drop_unused(app: Application) -> list[int]:
    """Delete the app's certificates no domain of it uses, and their Traefik files (after
    routing has been told, so no route names a certificate that is gone)."""
    used = {d.certificate_id for d in app.domains}
    certs = db.session.scalars(select(Certificate).where(Certificate.application_id == app.id))
    dropped = [c for c in certs if c.id not in used]
    for cert in dropped:
        db.session.delete(cert)
    db.session.commit()
    if dropped:
        routes_changed(app)
        for cert in dropped:
            traefik.remove_certificate(cert.id)
    return [c.id for c in dropped]


def install(cert: Certificate, chain_pem: str, key_pem: str) -> None:
    """Store a certificate and its key (encrypted), hand it to Traefik, and tell routing.
    The file is written before the row says ``active``: the state never runs ahead of
    what Traefik can serve."""
    leaf = pem.leaf(chain_pem)
    traefik.write_certificate(cert.id, chain_pem, key_pem)
    cert.chain_pem = chain_pem
    cert.key_ciphertext = crypto.encrypt(key_pem, context=KEY_CONTEXT)
    cert.issuer = pem.issuer_name(leaf)
    cert.not_before, cert.not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    lifetime = cert.not_after - cert.not_before
    acme = cert.source == CertSource.acme.value
    cert.renew_at = cert.not_after - lifetime / 3 if acme else None
    cert.state = CertState.active.value
    cert.attempts, cert.last_error, cert.next_attempt_at = 0, None, None
    cert.warned_json = "[]"
    db.session.commit()
    routes_changed(cert.application)


def team_id(cert: Certificate) -> int | None:
    app = cert.application
    return app.project.team_id if app is not None else None


def marks(cert: Certificate) -> list:
    return json.loads(cert.warned_json or "[]")
