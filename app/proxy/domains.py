"""An app's own domains: adding, changing and removing them, and how the Domains tab
shows them.

A host name belongs to one team in the whole installation, together with its www twin
(``www.<host>``, or a ``www.`` host's apex): a host any of whose rows, or whose twin's
rows, belong to another team is refused with the same words whether it exists or not
("this host name is taken"), naming neither the team nor the app. Within a team two apps
may share a host under different path prefixes; one (host, prefix) routes to one app,
the twin counting as claimed when the www option is on. Another app's default address
and the dashboard's own host are refused too.

Each change is committed first; then the route is rewritten at once
(``routing.domains_changed``) and the certificates are synced by the worker
(``app.jobs.sync_certificates``). Both are best effort: a Redis or Traefik failure
never loses the change, and the caller gets words to show about it.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import audit, names
from app.deploys import routing
from app.extensions import db, queue, redis
from app.models import Application, Certificate, CertState, Domain, HttpsMode, WwwMode

log = logging.getLogger("slipway.domains")

TAKEN = "This host name is taken."
CLAIM_LOCK = "slipway:domain-claim:{}"
CLAIM_LOCK_TTL = 10
USABLE = (CertState.active.value, CertState.renewing.value)


class DomainRefused(Exception):
    """A domain change refused; ``field`` names the form field the message belongs to."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class Outcome:
    """What a change did: the domain (None once removed), and what to tell the user
    about the route and the certificate when they could not follow at once."""

    domain: Domain | None
    warnings: list[str] = field(default_factory=list)


def _mode(value: str, kind: type, what: str, field_name: str) -> str:
    try:
        return kind(value).value
    except ValueError:
        raise DomainRefused(field_name, f"Choose one of the {what} options.") from None


def _prefix(path_prefix: str) -> str:
    try:
        return names.path_prefix(path_prefix)
    except names.InvalidValue as exc:
        raise DomainRefused("path_prefix", str(exc)) from None


def _parsed(host: str, path_prefix: str) -> tuple[str, str]:
    try:
        host = names.domain_host(host)
    except names.InvalidValue as exc:
        raise DomainRefused("host", str(exc)) from None
    return host, _prefix(path_prefix)


def _twin_of(host: str, www: str) -> str:
    """The host's www twin; DomainRefused when the www option cannot have one."""
    twin = names.www_twin(host)
    if www != WwwMode.none.value:
        try:
            names.domain_host(twin)
        except names.InvalidValue:
            raise DomainRefused(
                "www", f"{host} has no www twin: choose 'the host alone'."
            ) from None
    return twin


def _claimed(row: Domain) -> set[str]:
    found = {row.host}
    if row.www != WwwMode.none.value:
        found.add(names.www_twin(row.host))
    return found


def _default_address_owner(name: str) -> int | None:
    base = current_app.config["BASE_DOMAIN"]
    suffix = f".{base}"
    if not name.endswith(suffix):
        return None
    return db.session.scalar(
        select(Application.id).where(Application.address == name[: -len(suffix)])
    )


def _dashboard_host() -> str:
    return (urlsplit(current_app.config.get("PUBLIC_URL") or "").hostname or "").lower()


def _check_claims(app: Application, host: str, prefix: str, www: str, exclude_id=None) -> None:
    """Refuse a (host, prefix, www) another team, another app's address or another of
    the team's routes holds. Reads committed rows; the claim lock is held."""
    twin = _twin_of(host, www)
    team_id = app.project.team_id
    query = select(Domain).where(Domain.host.in_((host, twin)))
    if exclude_id is not None:
        query = query.where(Domain.id != exclude_id)
    rows = list(db.session.scalars(query))
    if any(row.team_id != team_id for row in rows):
        raise DomainRefused("host", TAKEN)
    for name in (host, twin):
        owner = _default_address_owner(name)
        if name == host and owner == app.id:
            raise DomainRefused("host", "This is the app's default address already.")
        if owner is not None and owner != app.id:
            raise DomainRefused("host", TAKEN)
        if name == twin and owner == app.id and www != WwwMode.none.value:
            raise DomainRefused("www", "The www twin is the app's default address: choose none.")
        if name == _dashboard_host():
            raise DomainRefused("host", "This is Slipway's own address; it cannot be an app's.")
    wanted = {host, twin} if www != WwwMode.none.value else {host}
    for row in rows:
        if row.path_prefix == prefix and _claimed(row) & wanted:
            other = row.application.name
            where = "this app" if row.application_id == app.id else f"the app {other}"
            raise DomainRefused(
                "path_prefix" if prefix != "/" else "host",
                f"{display(host)}{'' if prefix == '/' else prefix} already routes to {where} "
                "(the www twin counts when the www option is on): choose another path prefix.",
            )


@contextmanager
def _claim_lock(host: str):
    """Serialise claims of one host pair across processes (the unique constraint covers
    one (host, prefix); two teams taking one host under two prefixes is this lock's).
    Without Redis the check runs unlocked: SQLite serialises writers anyway."""
    with ExitStack() as stack:
        for name in sorted({host, names.www_twin(host)}):
            try:
                lock = redis.client.lock(
                    CLAIM_LOCK.format(name), timeout=CLAIM_LOCK_TTL, blocking_timeout=CLAIM_LOCK_TTL
                )
                acquired = lock.acquire()
            except RedisError:
                log.warning("claiming %s without the lock: Redis is not answering", host)
                break
            if not acquired:
                raise DomainRefused("host", "This host name is being changed elsewhere; try again.")
            stack.callback(_release, lock)
        yield


def _release(lock) -> None:
    try:
        lock.release()
    except RedisError:
        pass  # expired or Redis gone: the TTL frees it


def _commit_claim(app: Application, domain: Domain) -> None:
    """Commit, turning the unique constraint's refusal (a race lost) into the words."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        owner = db.session.scalar(
            select(Domain.team_id).where(
                Domain.host == domain.host, Domain.path_prefix == domain.path_prefix
            )
        )
        if owner is not None and owner != app.project.team_id:
            raise DomainRefused("host", TAKEN) from None
        raise DomainRefused(
            "path_prefix", "This host name and path prefix were just added: reload the page."
        ) from None


def add_domain(
    app: Application,
    host: str,
    path_prefix: str = "/",
    *,
    strip_prefix: bool = False,
    https_mode: str = HttpsMode.redirect.value,
    www: str = WwwMode.none.value,
) -> Outcome:
    """Add a host name (and path prefix) the app answers on, audited and committed;
    DomainRefused (nothing written) when it is not valid or not the team's to take."""
    host, prefix = _parsed(host, path_prefix)
    https_mode = _mode(https_mode, HttpsMode, "HTTPS", "https_mode")
    www = _mode(www, WwwMode, "www", "www")
    with _claim_lock(host):
        db.session.commit()  # read what other transactions committed (SQLite's snapshot)
        _check_claims(app, host, prefix, www)
        domain = Domain(
            application_id=app.id, team_id=app.project.team_id, host=host, path_prefix=prefix,
            strip_prefix=bool(strip_prefix) and prefix != "/", https_mode=https_mode, www=www,
        )  # fmt: skip
        db.session.add(domain)
        audit.record(
            audit.Action.DOMAIN_ADDED, team_id=app.project.team_id, target=app, host=host,
            path_prefix=prefix, https_mode=https_mode, www=www,
        )  # fmt: skip
        _commit_claim(app, domain)
    return Outcome(domain, _after_change(app))


def update_domain(
    domain: Domain, *, strip_prefix: bool, https_mode: str, www: str, path_prefix: str | None = None
) -> Outcome:
    """Change how a domain is served (path prefix, strip, HTTPS mode, www), audited and
    committed; the host stays. DomainRefused (nothing written) when the change is not
    valid or its (host, prefix) is another route's. ``path_prefix`` None keeps it."""
    app = domain.application
    prefix = domain.path_prefix
    if path_prefix is not None:
        prefix = _prefix(path_prefix)
    https_mode = _mode(https_mode, HttpsMode, "HTTPS", "https_mode")
    www = _mode(www, WwwMode, "www", "www")
    with _claim_lock(domain.host):
        db.session.commit()
        _check_claims(app, domain.host, prefix, www, exclude_id=domain.id)
        domain.path_prefix = prefix
        domain.strip_prefix = bool(strip_prefix) and prefix != "/"
        domain.https_mode, domain.www = https_mode, www
        audit.record(
            audit.Action.DOMAIN_UPDATED, team_id=domain.team_id, target=app, host=domain.host,
            path_prefix=prefix, https_mode=https_mode, www=www,
        )  # fmt: skip
        _commit_claim(app, domain)
    return Outcome(domain, _after_change(app))


def remove_domain(domain: Domain) -> Outcome:
    """Remove a domain, audited and committed; its route goes at once."""
    app = domain.application
    audit.record(
        audit.Action.DOMAIN_REMOVED, team_id=domain.team_id, target=app, host=domain.host,
        path_prefix=domain.path_prefix,
    )  # fmt: skip
    app.domains.remove(domain)
    db.session.delete(domain)
    db.session.commit()
    return Outcome(None, _after_change(app))


def retry_certificate(domain: Domain) -> list[str]:
    """Ask the worker to try the domain's certificate again now (its order, or the
    app's certificate sync when it has none yet). Returns words when it could not."""
    audit.record(
        audit.Action.DOMAIN_CERTIFICATE_RETRIED, team_id=domain.team_id,
        target=domain.application, host=domain.host,
    )  # fmt: skip
    db.session.commit()
    try:
        if domain.certificate_id is not None:
            queue("default").enqueue("app.jobs.retry_certificate", domain.certificate_id)
        else:
            queue("default").enqueue("app.jobs.sync_certificates", domain.application_id)
    except RedisError:
        log.warning("domain %s: the certificate retry could not be queued", domain.id)
        return [QUEUE_DOWN]
    return []


QUEUE_DOWN = (
    "The certificate could not be asked for now (the job queue is not answering); "
    "the domain is saved: press Retry now in a moment."
)
ROUTE_DOWN = (
    "The domain is saved, but the proxy's route could not be rewritten now; "
    "it takes effect at the app's next deploy or Apply."
)


def _after_change(app: Application) -> list[str]:
    """Rewrite the route and have the certificates synced; words for what failed."""
    warnings = []
    try:
        routing.domains_changed(app)
    except Exception:  # Redis, Docker or Traefik: the change is committed, say so
        log.exception("app %s: the route was not rewritten after a domain change", app.id)
        db.session.rollback()
        warnings.append(ROUTE_DOWN)
    try:
        queue("default").enqueue("app.jobs.sync_certificates", app.id)
    except RedisError:
        log.warning("app %s: sync_certificates could not be queued", app.id)
        warnings.append(QUEUE_DOWN)
    return warnings


# ---- what the Domains tab shows ---------------------------------------------------


def display(host: str) -> str:
    """The host as people read it (Unicode for an international name)."""
    return names.domain_display(host) or host


def certificate_words(cert: Certificate) -> str:
    """The certificate's state in words (``app.proxy.certwords``)."""
    from app.proxy import certwords

    return certwords.describe(cert)


@dataclass(frozen=True)
class DomainView:
    domain: Domain
    host: str  # Unicode
    twin: str | None  # Unicode, when the www option is on
    url: str
    state: str
    settled: bool  # nothing will change without a user: no need to poll
    can_retry: bool


def _url(domain: Domain) -> str:
    cfg = current_app.config
    secure = domain.https_mode != HttpsMode.off.value
    port = cfg["HTTPS_PORT"] if secure else cfg["HTTP_PORT"]
    default = 443 if secure else 80
    suffix = "" if port == default else f":{port}"
    path = "/" if domain.path_prefix == "/" else f"{domain.path_prefix}/"
    return f"{'https' if secure else 'http'}://{domain.host}{suffix}{path}"


def view(domain: Domain) -> DomainView:
    cert = domain.certificate
    twin = names.www_twin(domain.host) if domain.www != WwwMode.none.value else None
    if domain.https_mode == HttpsMode.off.value:
        state, settled, retry = "HTTP only", True, False
    elif cert is None:
        state, settled, retry = "Waiting for the certificate to be ordered", False, True
    else:
        state = certificate_words(cert)
        settled = cert.state in USABLE
        # Not before a first attempt failed: right after an add the order is on its way.
        retry = cert.state == CertState.failed.value or (
            cert.state == CertState.pending_dns.value and cert.attempts > 0
        )
    return DomainView(domain, display(domain.host), twin and display(twin), _url(domain),
                      state, settled, retry)  # fmt: skip


def views(app: Application) -> list[DomainView]:
    return [view(d) for d in sorted(app.domains, key=lambda d: (d.host, d.path_prefix))]


def get(app: Application, domain_id: int) -> Domain | None:
    """The app's domain of that id; None for another app's (of any team)."""
    found = db.session.get(Domain, domain_id)
    return found if found is not None and found.application_id == app.id else None
