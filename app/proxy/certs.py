"""The life of an app's certificates: which ones its domains need, ordering, renewing,
watching what Traefik serves, uploads, and the state in words.

One certificate per domain host: the host and, when the domain's ``www`` is not
``none``, its twin (``www.<host>``, or the apex for a ``www.`` host) as a second SAN.
:func:`sync_for_app` makes and links them and drops the ones no domain needs.

An ACME certificate goes ``pending_dns`` → (preflight passes) ``issuing`` → ``active``;
a failed preflight stays ``pending_dns`` and costs no order, a failed order goes
``failed``; both retry after one minute, doubling up to six hours (``attempts`` counts
the failures in a row). A renewal (due at ``renew_at``, a third of the lifetime before
``not_after``) runs as ``renewing`` while the old certificate keeps serving; if it fails
the state is ``active`` again with ``last_error`` and ``next_attempt_at``.

Failed orders are budgeted per registered domain (:func:`registered_domain`, the last
two labels: ``shop.example.co.uk`` counts under ``co.uk``, which is stricter than the
public suffix list, never looser): at most :data:`BUDGET_FAILED` per hour, well under
Let's Encrypt's limit of 5 failed validations per account, host name and hour.

Everything that changes a certificate runs under a Redis lock per certificate
(:func:`process`), so two workers never order the same one; a certificate left
``issuing``/``renewing`` with no lock held lost its worker and is set back by
:func:`tick`.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime, timedelta

from redis.exceptions import LockError
from sqlalchemy import and_, or_, select

from app.extensions import db, redis
from app.models import Application, NotificationEvent
from app.models.base import utcnow
from app.models.certificates import Certificate, CertSource, CertState
from app.proxy import certstore, certwatch, certwords

# The names the rest of Slipway uses (the Domains tab, jobs, notifications).
describe = certwords.describe
install = certstore.install
twin = certstore.twin
upload = certwatch.upload
watch = certwatch.watch
UploadError = certwatch.UploadError
KEY_CONTEXT = certstore.KEY_CONTEXT

log = logging.getLogger("slipway.certs")
LOCK_KEY = "slipway:cert-lock:{}"
LOCK_SECONDS = 900  # longer than a preflight and an order with all their timeouts
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=6)
BUDGET_KEY = "slipway:acme-failed-orders:{}"
BUDGET_FAILED = 3
BUDGET_WINDOW = timedelta(hours=1)
FAILED_MARK = "failed"  # in warned_json: certificate.failed was sent for this streak


def sync_for_app(app: Application) -> dict[int, str]:
    """Make and keep one certificate per HTTPS domain host (an uploaded one that covers
    it stays), link the domains, drop what no domain needs, and run what is due now.
    Returns {certificate id: what happened}."""
    wanted = certstore.wanted_hosts(app)
    certs = db.session.scalars(
        select(Certificate).where(Certificate.application_id == app.id)
    ).all()
    by_hosts = {frozenset(c.hosts): c for c in certs if c.source == CertSource.acme.value}
    for domain in app.domains:
        hosts = wanted.get(domain.host)
        if hosts is None:
            domain.certificate_id = None
            continue
        if certstore.uploaded_covers(domain.certificate, app, hosts):
            continue
        cert = by_hosts.get(frozenset(hosts))
        if cert is None:
            cert = Certificate(
                application_id=app.id,
                hosts=hosts,
                source=CertSource.acme.value,
                state=CertState.pending_dns.value,
            )
            db.session.add(cert)
            db.session.flush()
            by_hosts[frozenset(hosts)] = cert
        domain.certificate_id = cert.id
    db.session.commit()
    certstore.drop_unused(app)
    now = utcnow()
    due = [c.id for c in db.session.scalars(
        select(Certificate).where(Certificate.application_id == app.id)
    ) if is_due(c, now)]  # fmt: skip
    return {cert_id: process(cert_id) for cert_id in due}


# ---- the due work --------------------------------------------------------------------


def is_due(cert: Certificate, now: datetime) -> bool:
    if cert.source != CertSource.acme.value:
        return False
    waiting = cert.next_attempt_at is not None and cert.next_attempt_at > now
    if cert.state in (CertState.pending_dns.value, CertState.failed.value):
        return not waiting
    if cert.state == CertState.active.value:
        return cert.renew_at is not None and cert.renew_at <= now and not waiting
    return False


def _lock(cert_id: int):
    return redis.client.lock(LOCK_KEY.format(cert_id), timeout=LOCK_SECONDS)


def process(cert_id: int, now: datetime | None = None) -> str:
    """Issue or renew one certificate if it is due, under its lock; returns what happened
    (``busy`` when another worker holds it). An unexpected error is written on the row."""
    lock = _lock(cert_id)
    if not lock.acquire(blocking=False):
        return "busy"
    try:
        db.session.commit()  # read the row as it is now, not a snapshot
        cert = db.session.get(Certificate, cert_id, populate_existing=True)
        if cert is None:
            return "gone"
        if not is_due(cert, now or utcnow()):
            return "not due"
        try:
            return issue(cert)
        except Exception as exc:  # noqa: BLE001 - the row must say why
            log.exception("certificate %s: unexpected failure", cert_id)
            db.session.rollback()
            cert = db.session.get(Certificate, cert_id, populate_existing=True)
            if cert is None:
                return "gone"
            _set_back(cert, _serving(cert), f"unexpected error: {type(exc).__name__}: {exc}",
                      CertState.failed)  # fmt: skip
            return cert.state
    finally:
        try:
            lock.release()
        except LockError:
            pass  # held past its TTL


def _serving(cert: Certificate) -> bool:
    return cert.chain_pem is not None and cert.state in (
        CertState.active.value,
        CertState.renewing.value,
    )


def _backoff(attempts: int) -> timedelta:
    return min(FIRST_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _set_back(cert: Certificate, serving: bool, reason: str, state: CertState,
              at: datetime | None = None, count: bool = True) -> None:  # fmt: skip
    """A failed attempt: the reason, the next try; a serving certificate stays active."""
    if count:
        cert.attempts = (cert.attempts or 0) + 1
    cert.last_error = reason[:4000]
    cert.next_attempt_at = at or utcnow() + _backoff(cert.attempts)
    cert.state = CertState.active.value if serving else state.value
    db.session.commit()


def issue(cert: Certificate) -> str:
    """One attempt at a certificate (first issue or renewal): budget, preflight, order,
    install. Returns the state it ends in.

    The ACME client and the preflight (the acme library, josepy, pyOpenSSL, dnspython)
    are imported here, when a certificate is due: the worker's minute tick with nothing
    to do, and the web, never load them."""
    from app.proxy import acme_client, preflight

    serving = _serving(cert)
    hosts = cert.hosts
    blocked = budget_blocked_until(hosts)
    if blocked is not None:
        domain, until = blocked
        cert.preflight_json = None  # not run: the words are the budget's
        _set_back(cert, serving, f"{BUDGET_FAILED} orders for {domain} failed in the last hour; "
                  f"the next one waits until {certwords.when(until)} so as not to hit the CA's "
                  "rate limits", CertState(cert.state), at=until, count=False)  # fmt: skip
        return cert.state
    result = preflight.run(hosts)
    cert.preflight_json = json.dumps(result)
    if not result["ok"]:
        _set_back(cert, serving, certwords.preflight_words(result), CertState.pending_dns)
        return cert.state
    cert.state = (CertState.renewing if serving else CertState.issuing).value
    db.session.commit()
    try:
        issued = acme_client.order(hosts)
    except acme_client.AcmeError as exc:
        if exc.ordered:
            record_failed_order(hosts)
        _set_back(cert, serving, exc.reason, CertState.failed)
        _notify_failed(cert)
        return cert.state
    certstore.install(cert, issued.fullchain_pem, issued.key_pem)
    return cert.state


def _notify_failed(cert: Certificate) -> None:
    """``certificate.failed``, once per streak of failures (cleared by a success)."""
    found = certstore.marks(cert)
    team_id = certstore.team_id(cert)
    if FAILED_MARK in found or team_id is None:
        return
    cert.warned_json = json.dumps([*found, FAILED_MARK])
    db.session.commit()
    from app import notify

    notify.event(team_id, NotificationEvent.certificate_failed, cert.id)


# ---- the failed-order budget ---------------------------------------------------------


def registered_domain(host: str) -> str:
    return ".".join(host.split(".")[-2:])


def budget_blocked_until(hosts: list[str]) -> tuple[str, datetime] | None:
    """(registered domain, when an order is allowed again) if its budget is spent."""
    now = utcnow().timestamp()
    for domain in sorted({registered_domain(h) for h in hosts}):
        key = BUDGET_KEY.format(domain)
        redis.client.zremrangebyscore(key, 0, now - BUDGET_WINDOW.total_seconds())
        if redis.client.zcard(key) >= BUDGET_FAILED:
            ((_, oldest),) = redis.client.zrange(key, 0, 0, withscores=True)
            return domain, datetime.fromtimestamp(oldest, UTC) + BUDGET_WINDOW
    return None


def record_failed_order(hosts: list[str]) -> None:
    now = utcnow().timestamp()
    for domain in {registered_domain(h) for h in hosts}:
        key = BUDGET_KEY.format(domain)
        redis.client.zadd(key, {f"{now}:{secrets.token_hex(4)}": now})
        redis.client.expire(key, int(BUDGET_WINDOW.total_seconds()) + 60)


# ---- schedules -----------------------------------------------------------------------


def tick(now: datetime | None = None) -> dict[int, str]:
    """Every minute: set back certificates whose worker died mid-order, then process
    every due one (pending or failed past ``next_attempt_at``, active past ``renew_at``)."""
    now = now or utcnow()
    _reap_lost(now)
    waiting_over = or_(Certificate.next_attempt_at.is_(None), Certificate.next_attempt_at <= now)
    due = db.session.scalars(
        select(Certificate.id).where(
            Certificate.source == CertSource.acme.value,
            or_(
                and_(Certificate.state.in_([CertState.pending_dns.value,
                                            CertState.failed.value]), waiting_over),
                and_(Certificate.state == CertState.active.value,
                     Certificate.renew_at <= now, waiting_over),
            ),
        ).order_by(Certificate.id)
    ).all()  # fmt: skip
    return {cert_id: process(cert_id, now) for cert_id in due}


def _reap_lost(now: datetime) -> None:
    stuck = db.session.scalars(
        select(Certificate).where(
            Certificate.state.in_([CertState.issuing.value, CertState.renewing.value])
        )
    ).all()
    for cert in stuck:
        lock = _lock(cert.id)
        if not lock.acquire(blocking=False):
            continue  # an order is under way
        try:
            db.session.refresh(cert)
            if cert.state in (CertState.issuing.value, CertState.renewing.value):
                _set_back(cert, cert.chain_pem is not None,
                          "the worker stopped during the order", CertState.failed)  # fmt: skip
        finally:
            try:
                lock.release()
            except LockError:
                pass


def retry(cert_id: int) -> str:
    """**Retry now**: forget the wait and run the certificate's next attempt at once (a
    renewal that failed is tried again too)."""
    cert = db.session.get(Certificate, cert_id)
    if cert is None:
        return "gone"
    now = utcnow()
    cert.next_attempt_at = None
    if cert.state == CertState.active.value and cert.last_error and cert.renew_at:
        cert.renew_at = min(cert.renew_at, now)
    db.session.commit()
    return process(cert_id, now)
