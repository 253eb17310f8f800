"""An app's Domains tab: its host names with their certificate state, add, retry, remove."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from app import access
from app.forms import DomainForm
from app.models import Application, Role
from app.proxy import domains
from app.web.htmx import is_htmx

bp = Blueprint("domains", __name__)


def _context(app: Application, form: DomainForm) -> dict:
    rows = domains.views(app)
    return {
        "app": app,
        "rows": rows,
        "polling": any(not row.settled for row in rows),
        "can_edit": access.can(app.project.team_id, Role.developer),
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
    app = access.application(app_id, Role.developer)
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
    app = access.application(app_id, Role.developer)
    domain = _domain(app, domain_id)
    warnings = domains.retry_certificate(domain)
    if not warnings:
        flash(f"Trying the certificate of {domains.display(domain.host)} again now.", "success")
    _flash(warnings)
    return redirect(url_for("domains.index", app_id=app.id), 303)


@bp.get("/apps/<int:app_id>/domains/<int:domain_id>/remove")
def remove_get(app_id: int, domain_id: int):
    app = access.application(app_id, Role.developer)
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
    app = access.application(app_id, Role.developer)
    domain = _domain(app, domain_id)
    shown = domains.display(domain.host)
    outcome = domains.remove_domain(domain)
    flash(f"{shown} removed.", "success")
    _flash(outcome.warnings)
    return redirect(url_for("domains.index", app_id=app.id), 303)
