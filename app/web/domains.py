"""An app's Domains tab: its host names with their certificate state, add, edit, retry,
remove, and uploading a certificate of one's own."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from app import access, names
from app.extensions import db
from app.forms import CertificateUploadForm, DomainEditForm, DomainForm
from app.models import Application, Domain, WwwMode
from app.proxy import certs, domains
from app.web.htmx import is_htmx

bp = Blueprint("domains", __name__)


def _context(app: Application, form: DomainForm) -> dict:
    rows = domains.views(app)
    return {
        "app": app,
        "rows": rows,
        "polling": any(not row.settled for row in rows),
        "can_edit": access.allows(access.Action.APP_UPDATE, app),
        "form": form,
    }


def _page(app: Application, form: DomainForm, status: int = 200):
    return render_template("domains/index.html", **_context(app, form)), status


def _domain(app: Application, domain_id: int):
    found = domains.get(app, domain_id)
    if found is None:
        abort(404)
    return found


def _flash(warnings: list[str]) -> None:
    for warning in warnings:
        flash(warning, "error")


@bp.get("/apps/<int:app_id>/domains")
def index(app_id: int):
    app = access.application(app_id)
    if is_htmx():  # the table alone: it polls itself while a certificate is on its way
        return render_template("domains/_table.html", **_context(app, DomainForm()))
    return _page(app, DomainForm(formdata=None))


@bp.post("/apps/<int:app_id>/domains")
def add(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    form = DomainForm()
    if not form.validate():
        return _page(app, form, 422)
    try:
        outcome = domains.add_domain(
            app, form.host.data, form.path_prefix.data, strip_prefix=form.strip_prefix.data,
            https_mode=form.https_mode.data, www=form.www.data,
        )  # fmt: skip
    except domains.DomainRefused as exc:
        field = getattr(form, exc.field)
        field.errors = [*field.errors, str(exc)]
        return _page(app, form, 422)
    added = domains.view(outcome.domain)
    flash(f"{added.host}{added.domain.path_prefix if added.domain.path_prefix != '/' else ''} "
          "added.", "success")  # fmt: skip
    _flash(outcome.warnings)
    return redirect(url_for("domains.index", app_id=app.id), 303)


@bp.post("/apps/<int:app_id>/domains/<int:domain_id>/retry")
def retry(app_id: int, domain_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    domain = _domain(app, domain_id)
    warnings = domains.retry_certificate(domain)
    if not warnings:
        flash(f"Trying the certificate of {domains.display(domain.host)} again now.", "success")
    _flash(warnings)
    return redirect(url_for("domains.index", app_id=app.id), 303)


@bp.get("/apps/<int:app_id>/domains/<int:domain_id>/remove")
def remove_get(app_id: int, domain_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    domain = _domain(app, domain_id)
    shown = domains.view(domain)
    return render_template(
        "confirm.html",
        title=f"Remove {shown.host}{'' if domain.path_prefix == '/' else domain.path_prefix}?",
        message=(
            "The app stops answering on it at once (its www twin too); the app's other "
            "domains and its default address are not touched."
        ),
        action=url_for("domains.remove_post", app_id=app.id, domain_id=domain.id),
        confirm_label="Remove domain",
        back=url_for("domains.index", app_id=app.id),
    )


@bp.post("/apps/<int:app_id>/domains/<int:domain_id>/remove")
def remove_post(app_id: int, domain_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    domain = _domain(app, domain_id)
    shown = domains.display(domain.host)
    outcome = domains.remove_domain(domain)
    flash(f"{shown} removed.", "success")
    _flash(outcome.warnings)
    return redirect(url_for("domains.index", app_id=app.id), 303)


def _edit_page(app, domain, form: DomainEditForm, status: int = 200, error: str | None = None):
    return render_template("domains/edit.html", app=app, domain=domain,
                           shown=domains.view(domain), form=form, error=error), status  # fmt: skip


@bp.get("/apps/<int:app_id>/domains/<int:domain_id>/edit")
def edit_get(app_id: int, domain_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    domain = _domain(app, domain_id)
    form = DomainEditForm(formdata=None, obj=domain)
    return _edit_page(app, domain, form)


@bp.post("/apps/<int:app_id>/domains/<int:domain_id>/edit")
def edit_post(app_id: int, domain_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    domain = _domain(app, domain_id)
    form = DomainEditForm()
    if not form.validate():
        return _edit_page(app, domain, form, 422)
    try:
        outcome = domains.update_domain(
            domain, path_prefix=form.path_prefix.data or "/", strip_prefix=form.strip_prefix.data,
            https_mode=form.https_mode.data, www=form.www.data,
        )  # fmt: skip
    except domains.DomainRefused as exc:
        db.session.rollback()
        domain = _domain(app, domain_id)
        field = getattr(form, exc.field, None)
        if field is None:  # the host's own words (taken, changed elsewhere): at the top
            return _edit_page(app, domain, form, 422, error=str(exc))
        field.errors = [*field.errors, str(exc)]
        return _edit_page(app, domain, form, 422)
    flash(f"{domains.display(domain.host)} changed.", "success")
    _flash(outcome.warnings)
    return redirect(url_for("domains.index", app_id=app.id), 303)


def _cert_hosts(domain: Domain) -> list[str]:
    hosts = [domain.host]
    if domain.www != WwwMode.none.value:
        hosts.append(names.www_twin(domain.host))
    return hosts


def _certificate_page(app, domain, form, status: int = 200, error: str | None = None):
    form.key_pem.data = ""  # the key is never sent back, not even on a refusal
    return render_template(
        "domains/certificate.html", app=app, domain=domain, shown=domains.view(domain),
        hosts=[domains.display(h) for h in _cert_hosts(domain)], form=form, error=error,
    ), status  # fmt: skip


@bp.get("/apps/<int:app_id>/domains/<int:domain_id>/certificate")
def certificate_get(app_id: int, domain_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    domain = _domain(app, domain_id)
    return _certificate_page(app, domain, CertificateUploadForm(formdata=None))


@bp.post("/apps/<int:app_id>/domains/<int:domain_id>/certificate")
def certificate_post(app_id: int, domain_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    domain = _domain(app, domain_id)
    form = CertificateUploadForm()
    if not form.validate():
        return _certificate_page(app, domain, form, 422)
    try:
        cert = certs.upload(app, _cert_hosts(domain), form.chain_pem.data, form.key_pem.data)
    except certs.UploadError as exc:
        db.session.rollback()
        domain = _domain(app, domain_id)
        message = str(exc)
        if "private key" in message:
            form.key_pem.errors = [message]
        elif message.startswith("The certificate"):
            form.chain_pem.errors = [message]
        else:
            return _certificate_page(app, domain, form, 422, error=message)
        return _certificate_page(app, domain, form, 422)
    flash(f"Certificate for {domains.display(domain.host)} uploaded: "
          f"{domains.certificate_words(cert)}.", "success")  # fmt: skip
    return redirect(url_for("domains.index", app_id=app.id), 303)
