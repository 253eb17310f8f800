"""Certificates Slipway did not order itself, and the daily look at what is served.

:func:`upload`: a user's own certificate for some of an app's domain hosts, checked
(parseable, the key is the leaf's, every host covered by a SAN, wildcards included,
not expired), stored like an ordered one but never renewed.

:func:`watch`: for every certificate in use, a TLS handshake with Traefik's HTTPS
entrypoint on loopback, SNI = each host, compared with the stored leaf (a difference
writes the certificate file again); and the ``certificate.expiring`` warnings 21, 14
and 7 days before ``not_after``, each once per certificate and ``not_after``. An ACME
certificate is only warned about once its renewal is overdue (``renew_at`` passed):
before that, its renewal is the plan, not a problem.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from app import audit, crypto, names
from app.extensions import db
from app.models import Application, NotificationEvent
from app.models.base import utcnow
from app.models.certificates import Certificate, CertSource, CertState
from app.proxy import certstore, pem, traefik

log = logging.getLogger("slipway.certs")
WARN_DAYS = (21, 14, 7)
HANDSHAKE_SECONDS = 5.0


class UploadError(ValueError):
    """An uploaded certificate that cannot be used; the message says why."""


def _domain_hosts(app: Application) -> set[str]:
    found = set()
    for domain in app.domains:
        found.add(domain.host)
        found.add(certstore.twin(domain.host))
    return found


def _check_upload(app: Application, hosts: list[str], chain_pem: str, key_pem: str):
    try:
        checked = [names.hostname(h.strip().lower()) for h in hosts]
    except names.InvalidValue as exc:
        raise UploadError(str(exc)) from None
    if not checked:
        raise UploadError("Name at least one host the certificate is for.")
    foreign = sorted(set(checked) - _domain_hosts(app))
    if foreign:
        raise UploadError(f"{', '.join(foreign)} is not a domain of this app.")
    try:
        chain = pem.chain(chain_pem)
        key = pem.private_key(key_pem)
    except pem.PemError as exc:
        raise UploadError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None
    leaf = chain[0]
    if not pem.key_matches(leaf, key):
        raise UploadError("The private key does not belong to the certificate.")
    if leaf.not_valid_after_utc <= utcnow():
        raise UploadError(f"The certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}.")
    wanted = certstore.wanted_hosts(app)
    off = [h for h in checked if h not in wanted and certstore.twin(h) not in wanted]
    if off:
        raise UploadError(f"{', '.join(off)} has HTTPS turned off; turn it on first.")
    for host in checked:
        twins = [h for h in wanted.get(host, []) if h not in checked]
        if twins:
            checked += twins  # the domain's www twin is served with the same certificate
    missing = pem.uncovered(leaf, checked)
    if missing:
        have = ", ".join(pem.dns_names(leaf)) or "no host name"
        raise UploadError(f"The certificate does not cover {', '.join(missing)} (it is for "
                          f"{have}).")  # fmt: skip
    return checked


def upload(app: Application, hosts: list[str], chain_pem: str, key_pem: str) -> Certificate:
    """Store and serve a user's certificate for ``hosts`` (domain hosts of ``app``); the
    domains of those hosts use it from now on. Raises :class:`UploadError`."""
    checked = _check_upload(app, hosts, chain_pem, key_pem)
    chain_pem = pem.to_pem(pem.chain(chain_pem))
    cert = Certificate(application_id=app.id, hosts=checked, source=CertSource.uploaded.value,
                       state=CertState.active.value)  # fmt: skip
    db.session.add(cert)
    db.session.flush()
    for domain in app.domains:
        if domain.host in checked:
            domain.certificate_id = cert.id
    audit.record(audit.Action.DOMAIN_CERTIFICATE_UPLOADED, team_id=app.project.team_id,
                 target=cert, hosts=checked)  # fmt: skip
    certstore.install(cert, chain_pem, key_pem)  # commits, writes the file, tells routing
    certstore.drop_unused(app)
    return cert


# ---- watching --------------------------------------------------------------------------


def served_leaf(host: str) -> bytes | None:
    """The DER leaf Traefik's HTTPS entrypoint serves for SNI ``host``; None if none."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # compared byte for byte with the stored leaf
    port = current_app.config["HTTPS_PORT"]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_SECONDS) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        log.warning("watch: no TLS handshake for %s on port %s: %s", host, port, exc)
        return None


def check_served(cert: Certificate) -> list[str]:
    """The hosts of ``cert`` for which Traefik serves another certificate; if any, the
    certificate file is written again from the stored chain and key."""
    stored = pem.der(pem.leaf(cert.chain_pem))
    wrong = [h for h in cert.hosts if not h.startswith("*.") and served_leaf(h) != stored]
    if wrong and cert.key_ciphertext:
        log.warning("certificate %s: Traefik serves another one for %s; writing it again",
                    cert.id, ", ".join(wrong))  # fmt: skip
        key_pem = crypto.decrypt(cert.key_ciphertext, context=certstore.KEY_CONTEXT)
        traefik.write_certificate(cert.id, cert.chain_pem, key_pem)
    return wrong


def warn_expiry(cert: Certificate, now: datetime) -> int | None:
    """Send ``certificate.expiring`` for the smallest threshold newly reached; returns it."""
    if cert.not_after is None:
        return None
    if cert.source == CertSource.acme.value and cert.renew_at and now < cert.renew_at:
        return None
    left = cert.not_after - now
    reached = [d for d in WARN_DAYS if left <= timedelta(days=d)]
    marks = certstore.marks(cert)
    if not reached or all(d in marks for d in reached):
        return None
    # The larger thresholds count as warned too: one message, not three at once.
    cert.warned_json = json.dumps(marks + [d for d in reached if d not in marks])
    db.session.commit()
    team_id = cert.application.project.team_id if cert.application else None
    if team_id is not None:
        from app import notify

        notify.event(team_id, NotificationEvent.certificate_expiring, cert.id)
    return min(reached)


def watch(now: datetime | None = None) -> dict:
    """The daily look: {"checked": n, "rewritten": [ids], "warned": {id: days}}."""
    now = now or utcnow()
    report: dict = {"checked": 0, "rewritten": [], "warned": {}}
    rows = db.session.scalars(
        select(Certificate).where(
            Certificate.state.in_([CertState.active.value, CertState.renewing.value]),
            Certificate.chain_pem.is_not(None),
        ).order_by(Certificate.id)
    ).all()  # fmt: skip
    for cert in rows:
        report["checked"] += 1
        try:
            if check_served(cert):
                report["rewritten"].append(cert.id)
        except (pem.PemError, crypto.SecretError, traefik.ProxyError, OSError) as exc:
            log.warning("certificate %s: could not check what is served: %s", cert.id, exc)
        days = warn_expiry(cert, now)
        if days is not None:
            report["warned"][cert.id] = days
    return report
