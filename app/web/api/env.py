"""``/api/v1/apps/<id>/env``: an app's environment variables (the app page's list).

A secret's value is write-only: it is stored encrypted and every answer carries
``value: null, secret: true`` for it (as the page shows a mask)."""

from __future__ import annotations

from app import access, names
from app.access import Action
from app.models import Application, EnvVar
from app.projects import catalog
from app.web.api import base, spec
from app.web.api.base import bp
from app.web.api.conventions import iso
from app.web.api.projects import invalid

KEY_LIMIT = 255  # EnvVarForm's


def present_env_var(var: EnvVar) -> dict:
    return {
        "key": var.key,
        "value": None if var.is_secret else (var.value or ""),
        "secret": bool(var.is_secret),
        "updated_at": iso(var.updated_at or var.created_at),
    }


def _find(app: Application, key: str) -> EnvVar | None:
    return next((v for v in app.env_vars if v.key == key), None)


@bp.get("/apps/<int:app_id>/env")
@spec.operation("listEnv", "Environment variables", "An app's variables (no secret values)",
                Action.APP_READ, response="EnvVarList")  # fmt: skip
def env_list(app_id: int):
    app = access.application(app_id, Action.APP_READ)
    return base.respond({"data": [present_env_var(v) for v in app.env_vars], "next_cursor": None})


@bp.put("/apps/<int:app_id>/env/<key>")
@spec.operation("putEnv", "Environment variables", "Set a variable (create or replace)",
                Action.APP_UPDATE, body="EnvVarPut", response="EnvVar", etag=True)  # fmt: skip
def env_put(app_id: int, key: str):
    app = access.application(app_id, Action.APP_UPDATE)
    data = base.body()
    try:
        if len(key) > KEY_LIMIT:
            raise names.InvalidValue(f"The key is limited to {KEY_LIMIT} characters.")
        names.env_key(key)
    except names.InvalidValue as exc:
        invalid("key", str(exc))
    existing = _find(app, key)
    base.if_match(present_env_var(existing) if existing is not None else None)
    catalog.set_env_var(app, key, data.value, secret=data.secret)
    return base.respond(present_env_var(_find(app, key)), etag=True)


@bp.delete("/apps/<int:app_id>/env/<key>")
@spec.operation("deleteEnv", "Environment variables", "Remove a variable", Action.APP_UPDATE,
                status=204, etag=True)  # fmt: skip
def env_delete(app_id: int, key: str):
    app = access.application(app_id, Action.APP_UPDATE)
    var = _find(app, key)
    if var is None:
        base.fail(404, "not_found", f"The app has no variable {key[:KEY_LIMIT]!r}.")
    base.if_match(present_env_var(var))
    catalog.delete_env_var(app, var)
    return base.no_content()
