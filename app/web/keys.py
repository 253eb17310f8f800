"""The API keys page: the user's keys for the current team, a new one, revoking one.

A key belongs to its member and the team it was made in (``access.current_team``), so
any member may make one (``TEAM_READ``): the gate never lets a key do more than its
member's role. The token is in the answer to the POST that made it and nowhere else
(never in a URL or a flash message); only its SHA-256 is kept. Another user's key, or
one of another team, is a 404.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from app import access
from app.accounts import apikeys
from app.extensions import db
from app.forms import ApiKeyForm
from app.models import ApiKey, Team, User

bp = Blueprint("keys", __name__, url_prefix="/account/api-keys")


def _user() -> User:
    return db.session.get(User, current_user.id)


def _form(team: Team) -> ApiKeyForm:
    form = ApiKeyForm()
    form.projects.choices = [(p.id, p.name) for p in access.visible_projects(team)]
    return form


def _page(team: Team, form: ApiKeyForm, status: int = 200):
    keys = apikeys.listing(_user(), team)
    names = {p.id: p.name for p in access.visible_projects(team)}
    return render_template(
        "keys/index.html", team=team, form=form, keys=keys, project_names=names,
        scope_labels=apikeys.SCOPE_LABELS,
    ), status  # fmt: skip


def _expiry(day) -> datetime | None:
    """The end of ``day`` (UTC): a key "valid until" a date works through that day."""
    if day is None:
        return None
    return datetime.combine(day, time(), tzinfo=UTC) + timedelta(days=1)


@bp.get("/")
def index():
    team = access.in_current_team(access.Action.TEAM_READ)
    return _page(team, _form(team))


@bp.post("/")
def create_post():
    team = access.in_current_team(access.Action.TEAM_READ)
    form = _form(team)
    if not form.validate():
        return _page(team, form, 422)
    try:
        key, token = apikeys.create(
            _user(), team, form.name.data, form.scopes.data, form.projects.data or None,
            _expiry(form.expires_on.data),
        )  # fmt: skip
    except apikeys.KeyRefused as exc:
        field = {"expires_at": "expires_on"}.get(exc.field, exc.field)
        getattr(form, field, form.name).errors = [str(exc)]
        return _page(team, form, 422)
    # Shown once, in the answer to this POST.
    return render_template("keys/created.html", key=key, token=token, team=team)


def _own_key(key_id: int) -> ApiKey:
    team = access.in_current_team(access.Action.TEAM_READ)
    key = apikeys.own_key(_user(), key_id)
    if key is None or key.team_id != team.id:
        abort(404)
    return key


@bp.get("/<int:key_id>/revoke")
def revoke_get(key_id: int):
    key = _own_key(key_id)
    if key.revoked_at is not None:
        return redirect(url_for("keys.index"))
    return render_template(
        "confirm.html", title=f"Revoke the key {key.name}?",
        message=f"Anything using {key.prefix}… gets 401 from now on. This cannot be undone.",
        action=url_for("keys.revoke_post", key_id=key.id), confirm_label="Revoke key",
        back=url_for("keys.index"),
    )  # fmt: skip


@bp.post("/<int:key_id>/revoke")
def revoke_post(key_id: int):
    key = _own_key(key_id)
    apikeys.revoke(_user(), key)
    flash(f"Key {key.name} revoked: it no longer works.", "success")
    return redirect(url_for("keys.index"), 303)
