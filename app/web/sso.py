"""Single sign-on: the sign-in through a provider, and the installation owner's settings."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from app import access, urls
from app.accounts import sso
from app.extensions import db, limiter
from app.forms import PasswordLoginForm, SsoProviderForm
from app.models.sso import OidcProvider
from app.web import auth

bp = Blueprint("sso", __name__)


def _callback_url(slug: str) -> str:
    return urls.external_url("sso.callback", slug=slug)


def _refused(provider: OidcProvider, exc: sso.LoginRefused):
    return render_template("sso/refused.html", provider=provider, message=str(exc)), exc.status


def _limit() -> str:
    return current_app.config["LOGIN_LIMIT_IP"]


# Anonymous, and each one costs a request to the provider and a pending flow in Redis:
# limited per address like the login form.
@bp.get("/sso/<slug>/login")
@limiter.limit(_limit)
def login(slug: str):
    provider = sso.enabled_provider(slug) or abort(404)
    try:
        next_url = auth.safe_next(request.args.get("next"))
        url = sso.begin_login(provider, _callback_url(slug), next_url)
    except sso.LoginRefused as exc:
        return _refused(provider, exc)
    return redirect(url, 303)


@bp.get("/sso/<slug>/callback")
@limiter.limit(_limit)
def callback(slug: str):
    provider = sso.enabled_provider(slug) or abort(404)
    try:
        user, next_url = sso.complete_login(provider, request.args.to_dict(), _callback_url(slug))
    except sso.LoginRefused as exc:
        return _refused(provider, exc)
    return auth.start_session(user, method="sso", next_url=next_url)


# ---- settings (the installation's owner) ---------------------------------------------


def _provider(provider_id: int) -> OidcProvider:
    access.require_installation_owner()
    return db.session.get(OidcProvider, provider_id) or abort(404)


def _settings_page(password_form: PasswordLoginForm | None = None, status: int = 200):
    return render_template(
        "sso/settings.html", providers=sso.providers(), password_login=sso.password_login_on(),
        password_form=password_form or PasswordLoginForm(formdata=None),
    ), status  # fmt: skip


@bp.get("/installation/sso")
def settings_get():
    access.require_installation_owner()
    return _settings_page()


@bp.post("/installation/sso/password-login")
def password_login_post():
    access.require_installation_owner()
    form = PasswordLoginForm()
    if form.validate() and form.change.data in ("on", "off"):
        try:
            sso.set_password_login(form.change.data == "on")
        except sso.PasswordLoginRefused as exc:
            form.change.errors = [str(exc)]
        else:
            state = "on" if form.change.data == "on" else "off for everyone but owners"
            flash(f"Password login is {state}.", "success")
            return redirect(url_for("sso.settings_get"), 303)
    elif not form.change.errors:
        form.change.errors = ["Choose on or off."]
    return _settings_page(form, 422)


def _form(provider: OidcProvider | None = None, formdata=None) -> SsoProviderForm:
    if provider is not None and formdata is None:
        form = SsoProviderForm(formdata=None, obj=provider)
        form.group_roles.data = sso.group_roles_text(provider.group_roles)
        form.client_secret.data = ""  # never the stored secret, not even its ciphertext
    else:
        form = SsoProviderForm() if formdata is None else SsoProviderForm(formdata=formdata)
    form.team_id.choices = [(team.id, team.name) for team in sso.teams()]
    return form


def _edit_page(form: SsoProviderForm, provider: OidcProvider | None, status: int = 200):
    return render_template(
        "sso/provider.html", form=form, provider=provider,
        callback_url=_callback_url(provider.slug if provider else "SLUG").replace(
            "/SLUG/", "/<slug>/"
        ),
    ), status  # fmt: skip


def _save(provider: OidcProvider | None):
    form = _form(formdata=request.form)
    if form.validate():
        fields = sso.ProviderFields(
            slug=form.slug.data, name=form.name.data, discovery_url=form.discovery_url.data,
            client_id=form.client_id.data, client_secret=form.client_secret.data or "",
            allowed_domains=form.allowed_domains.data, team_id=form.team_id.data,
            default_role=form.default_role.data, groups_claim=form.groups_claim.data or "",
            group_roles=form.group_roles.data or "", enabled=form.enabled.data,
        )  # fmt: skip
        try:
            saved = sso.save_provider(provider, fields)
        except sso.ProviderInvalid as exc:
            for name, message in exc.errors.items():
                getattr(form, name).errors = [message]
        else:
            flash(f"Provider {saved.name} saved.", "success")
            return redirect(url_for("sso.settings_get"), 303)
    form.client_secret.data = ""
    return _edit_page(form, provider, 422)


@bp.get("/installation/sso/new")
def new_get():
    access.require_installation_owner()
    return _edit_page(_form(formdata=None), None)


@bp.post("/installation/sso/new")
def new_post():
    access.require_installation_owner()
    return _save(None)


@bp.get("/installation/sso/<int:provider_id>/edit")
def edit_get(provider_id: int):
    provider = _provider(provider_id)
    return _edit_page(_form(provider), provider)


@bp.post("/installation/sso/<int:provider_id>/edit")
def edit_post(provider_id: int):
    return _save(_provider(provider_id))


@bp.get("/installation/sso/<int:provider_id>/delete")
def delete_get(provider_id: int):
    provider = _provider(provider_id)
    return render_template(
        "confirm.html", title=f"Delete provider {provider.name}?",
        message="Its users keep their accounts but can no longer sign in through it.",
        action=url_for("sso.delete_post", provider_id=provider.id),
        confirm_label="Delete provider", back=url_for("sso.settings_get"),
    )  # fmt: skip


@bp.post("/installation/sso/<int:provider_id>/delete")
def delete_post(provider_id: int):
    provider = _provider(provider_id)
    name = provider.name
    try:
        sso.delete_provider(provider)
    except sso.PasswordLoginRefused as exc:
        flash(str(exc), "error")
        return redirect(url_for("sso.settings_get"), 303)
    flash(f"Provider {name} deleted.", "success")
    return redirect(url_for("sso.settings_get"), 303)
