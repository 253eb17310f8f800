"""``/api/v1/.../domains``: an app's own host names (the Domains tab), through
``app.proxy.domains``: add, list, read, change how one is served, remove.

A change is committed even when the route or the certificate could not follow at once;
what the tab would flash about that comes in ``Warning`` headers (``199 slipway "..."``).
"""

from __future__ import annotations

from flask import abort
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app import access
from app.access import Action
from app.extensions import db
from app.models import Domain
from app.proxy import domains
from app.web.api import base, spec
from app.web.api.base import bp
from app.web.api.conventions import iso

MAX_ID = 2**63 - 1  # a larger id in the URL is a 404, not a database overflow


def present_domain(domain: Domain) -> dict:
    shown = domains.view(domain)
    cert = domain.certificate
    return {
        "id": domain.id, "app_id": domain.application_id, "host": domain.host,
        "host_display": shown.host, "path_prefix": domain.path_prefix,
        "strip_prefix": bool(domain.strip_prefix), "https_mode": domain.https_mode,
        "www": domain.www, "www_host": shown.twin, "url": shown.url,
        "certificate_state": cert.state if cert is not None else None,
        "certificate_expires_at": iso(cert.not_after) if cert is not None else None,
        "state": shown.state, "created_at": iso(domain.created_at),
    }  # fmt: skip


def _domain(domain_id: int, action: Action) -> Domain:
    found = db.session.get(Domain, domain_id) if 0 < domain_id <= MAX_ID else None
    if found is None:
        abort(404)
    return access.authorize(action, found)


def _refused(exc: domains.DomainRefused):
    db.session.rollback()
    base.fail(422, "invalid", str(exc), {"fields": {exc.field: str(exc)}})


def _warning(text: str) -> tuple[str, str]:
    """What the Domains tab would flash, as an HTTP ``Warning`` header."""
    return "Warning", '199 slipway "' + text.replace('"', "'") + '"'


def _answer(outcome: domains.Outcome, status: int = 200):
    domain = outcome.domain
    headers = {"Location": f"/api/v1/domains/{domain.id}"} if status == 201 else None
    response = base.respond(present_domain(domain), status, etag=True, headers=headers)
    for name, value in map(_warning, outcome.warnings):
        response.headers.add(name, value)
    return response


@bp.get("/apps/<int:app_id>/domains")
@spec.operation("listDomains", "Domains", "An app's domains", Action.APP_READ,
                query="PageQuery", response="DomainPage")  # fmt: skip
def domains_list(app_id: int):
    app = access.application(app_id, Action.APP_READ)
    params = base.query()
    statement = (
        select(Domain)
        .where(Domain.application_id == app.id)
        .options(selectinload(Domain.certificate))
    )
    return base.page(statement, Domain.id, present_domain, params)


@bp.post("/apps/<int:app_id>/domains")
@spec.operation("addDomain", "Domains", "Add a host name (and path prefix) the app answers on",
                Action.APP_UPDATE, body="DomainCreate", response="Domain", status=201,
                etag=True)  # fmt: skip
def domains_add(app_id: int):
    app = access.application(app_id, Action.APP_UPDATE)
    data = base.body()
    try:
        outcome = domains.add_domain(
            app, data.host, data.path_prefix, strip_prefix=data.strip_prefix,
            https_mode=data.https_mode, www=data.www,
        )  # fmt: skip
    except domains.DomainRefused as exc:
        _refused(exc)
    return _answer(outcome, 201)


@bp.get("/domains/<int:domain_id>")
@spec.operation("getDomain", "Domains", "A domain, with its certificate's state",
                Action.APP_READ, response="Domain", etag=True)  # fmt: skip
def domains_get(domain_id: int):
    domain = _domain(domain_id, Action.APP_READ)
    return base.respond(present_domain(domain), etag=True)


@bp.patch("/domains/<int:domain_id>")
@spec.operation("updateDomain", "Domains", "Change how a domain is served (not its host)",
                Action.APP_UPDATE, body="DomainUpdate", response="Domain", etag=True)  # fmt: skip
def domains_update(domain_id: int):
    domain = _domain(domain_id, Action.APP_UPDATE)
    data = base.body()
    base.if_match(present_domain(domain))
    sent = data.model_fields_set
    changes = {
        "path_prefix": data.path_prefix if "path_prefix" in sent else domain.path_prefix,
        "strip_prefix": data.strip_prefix if "strip_prefix" in sent else domain.strip_prefix,
        "https_mode": data.https_mode if "https_mode" in sent else domain.https_mode,
        "www": data.www if "www" in sent else domain.www,
    }
    try:
        outcome = domains.update_domain(domain, **changes)
    except domains.DomainRefused as exc:
        _refused(exc)
    return _answer(outcome)


@bp.delete("/domains/<int:domain_id>")
@spec.operation("deleteDomain", "Domains", "Remove a domain; the app stops answering on it",
                Action.APP_UPDATE, status=204, etag=True)  # fmt: skip
def domains_delete(domain_id: int):
    domain = _domain(domain_id, Action.APP_UPDATE)
    base.if_match(present_domain(domain))
    outcome = domains.remove_domain(domain)
    return "", 204, [_warning(text) for text in outcome.warnings]
