"""The API's own description, and who the key belongs to."""

from __future__ import annotations

from flask import g
from flask_login import current_user

from app import access
from app.extensions import db
from app.models import ApiKey
from app.web.api import spec
from app.web.api.base import bp, respond
from app.web.api.conventions import iso


@bp.get("/openapi.json")
@spec.operation("getOpenApi", "Meta", "This document (OpenAPI 3.1)", None, response="OpenApi",
                public=True)  # fmt: skip
def openapi_json():
    return respond(spec.document())


def present_key(key: ApiKey) -> dict:
    return {
        "id": key.id, "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
        "project_ids": key.project_ids, "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at), "created_at": iso(key.created_at),
        "revoked_at": iso(key.revoked_at),
    }  # fmt: skip


@bp.get("/me")
@spec.operation("getMe", "Meta", "The key's member, team and scopes", None, response="Me")
def me_get():
    membership = access.current_membership()
    key = db.session.get(ApiKey, g.api_credential.key_id)
    return respond({
        "id": current_user.id, "email": current_user.email, "name": current_user.name,
        "team": {"id": membership.team_id, "name": membership.team.name, "role": membership.role},
        "key": present_key(key),
    })  # fmt: skip
