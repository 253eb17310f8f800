"""An app's git integration settings: webhook URL and secret, deploy key, HTTPS token,
watch paths and tag deploys; and its webhook delivery log."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from app import access
from app.extensions import db
from app.forms import GitSettingsForm, GitTokenForm
from app.models import Application, WebhookDelivery
from app.sources import credentials, webhooks
from app.urls import unreachable_base, webhook_url
from app.web import reauth

bp = Blueprint("repos", __name__)
DELIVERIES_SHOWN = 200


def _page(app: Application, settings_form=None, token_form=None, status: int = 200, secret=None):
    settings_form = settings_form or GitSettingsForm(
        formdata=None,
        watch_paths=app.watch_paths,
        deploy_tags=app.deploy_tags or "",
        submodules=app.git_submodules,
    )
    page = render_template(
        "repos/show.html",
        app=app,
        urls={p: webhook_url(app, p) for p in webhooks.PROVIDERS},
        unreachable=unreachable_base(),
        can_reveal=access.allows(access.Action.APP_SECRETS, app),
        secret=secret,
        host_keys=credentials.host_keys(app),
        settings_form=settings_form,
        token_form=token_form or GitTokenForm(formdata=None),
    )
    return page, status


def _back(app: Application, anchor: str):
    return redirect(url_for("repos.show", app_id=app.id, _anchor=anchor), 303)


@bp.get("/apps/<int:app_id>/git")
def show(app_id: int):
    return _page(access.application(app_id, access.Action.APP_UPDATE))


@bp.post("/apps/<int:app_id>/git/secret")
def rotate_secret(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    secret = webhooks.rotate_secret(app)
    # Shown once, in this response only; afterwards the page shows it masked.
    return render_template(
        "repos/secret.html", app=app, secret=secret, url=webhook_url(app, "github"),
        unreachable=unreachable_base(),
    )  # fmt: skip


@bp.post("/apps/<int:app_id>/git/secret/reveal")
def reveal_secret(app_id: int):
    # A POST, so no GET page ever carries the secret; team admins only, audited.
    app = access.application(app_id, access.Action.APP_SECRETS)
    if (redirect_ := reauth.required(url_for("repos.show", app_id=app.id))) is not None:
        return redirect_
    return _page(app, secret=webhooks.reveal_secret(app, current_user.id))


@bp.post("/apps/<int:app_id>/git/deploy-key")
def generate_key(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    credentials.generate_deploy_key(app)
    flash("New deploy key generated: add the public key to the repository.", "success")
    return _back(app, "deploy-key")


@bp.post("/apps/<int:app_id>/git/host-key/forget")
def forget_host_key(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    credentials.forget_host_keys(app)
    flash("Pinned host key forgotten: the next clone pins the server's key.", "success")
    return _back(app, "deploy-key")


@bp.post("/apps/<int:app_id>/git/token")
def set_token(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    form = GitTokenForm()
    if not form.validate():
        form.token.data = ""
        return _page(app, token_form=form, status=422)
    credentials.set_token(app, form.token.data, form.user.data or "")
    flash("Access token saved.", "success")
    return _back(app, "token")


@bp.post("/apps/<int:app_id>/git/token/clear")
def clear_token(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    credentials.set_token(app, "", "")
    flash("Access token removed.", "success")
    return _back(app, "token")


@bp.post("/apps/<int:app_id>/git/settings")
def save_settings(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    form = GitSettingsForm()
    if not form.validate():
        return _page(app, settings_form=form, status=422)
    credentials.save_push_settings(
        app, form.watch_paths.data, form.deploy_tags.data, submodules=form.submodules.data
    )
    flash("Push settings saved.", "success")
    return _back(app, "push")


@bp.get("/apps/<int:app_id>/webhooks/deliveries")
def deliveries(app_id: int):
    app = access.application(app_id)
    rows = db.session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.application_id == app.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(DELIVERIES_SHOWN)
    ).all()
    return render_template(
        "repos/deliveries.html",
        app=app,
        deliveries=rows,
        can_edit=access.allows(access.Action.APP_UPDATE, app),
    )
