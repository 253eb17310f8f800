"""``/keys``: the key's member's API keys in the key's team.

Any member may list, make and revoke their own keys (``TEAM_READ``: the gate never lets
a key exceed its member's role), but a key never reaches past itself
(``apikeys.check_within``): the keys it makes, and the other keys it revokes, hold only
scopes it holds, only projects it is limited to, and (making) expire no later than it.
The token is in the 201 answer only; a retry with the same ``Idempotency-Key`` gets a
409 that names the key instead (``shown_once``), so the token is never kept anywhere.
"""

from __future__ import annotations

from datetime import UTC

from flask import abort
from flask_login import current_user
from sqlalchemy import select

from app import access
from app.access import Action
from app.accounts import apikeys
from app.extensions import db
from app.models import ApiKey, User
from app.web.api import base, spec
from app.web.api.base import bp
from app.web.api.meta import present_key


def _refused(exc: apikeys.KeyRefused):
    fields = {"team": "body", "projects": "project_ids"}.get(exc.field, exc.field)
    if isinstance(exc, apikeys.KeyExceeds):
        base.fail(403, "key_exceeded", str(exc), {"fields": {fields: str(exc)}})
    base.fail(422, "invalid", str(exc), {"fields": {fields: str(exc)}})


@bp.get("/keys")
@spec.operation("listApiKeys", "Keys", "Your API keys in this team (revoked ones too)",
                Action.TEAM_READ, query="ApiKeyQuery", response="ApiKeyPage")  # fmt: skip
def keys_list():
    team = access.in_current_team(Action.TEAM_READ)
    params = base.query()
    statement = select(ApiKey).where(ApiKey.user_id == current_user.id, ApiKey.team_id == team.id)
    return base.page(statement, ApiKey.id, present_key, params)


@bp.post("/keys")
@spec.operation("createApiKey", "Keys", "Make a key (its token is in this answer only)",
                Action.TEAM_READ, body="ApiKeyCreate", response="ApiKeyCreated", status=201,
                shown_once=True)  # fmt: skip
def keys_create():
    team = access.in_current_team(Action.TEAM_READ)
    data = base.body()
    expires_at = data.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    parent = db.session.get(ApiKey, apikeys.current().key_id)
    try:
        key, token = apikeys.create(
            db.session.get(User, current_user.id), team, data.name, list(data.scopes),
            data.project_ids, expires_at, within=parent,
        )  # fmt: skip
    except apikeys.KeyRefused as exc:
        _refused(exc)
    return base.respond(present_key(key) | {"token": token}, 201)


@bp.delete("/keys/<int:key_id>")
@spec.operation("revokeApiKey", "Keys", "Revoke one of your keys (this one too)",
                Action.TEAM_READ, status=204)  # fmt: skip
def keys_revoke(key_id: int):
    team = access.in_current_team(Action.TEAM_READ)
    user = db.session.get(User, current_user.id)
    key = apikeys.own_key(user, key_id)
    if key is None or key.team_id != team.id:
        abort(404)
    parent = db.session.get(ApiKey, apikeys.current().key_id)
    if key.id != parent.id:
        try:
            apikeys.check_within(parent, key.scopes, key.project_ids, None, what="revoke")
        except apikeys.KeyRefused as exc:
            _refused(exc)
    apikeys.revoke(user, key)
    return base.no_content()
