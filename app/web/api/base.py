"""The ``/api/v1`` blueprint and the rules every API request passes.

- **Credential**: ``Authorization: Bearer slw_<id>_<secret>`` only. A session cookie is
  ignored here (so there is no CSRF surface), a key in the query string is refused (it
  would end up in logs), and a revoked, expired or unknown key is a 401.
- **Rate limit** per key (``SLIPWAY_API_RATE_LIMIT``), counted by the token itself so a
  stranger's bad tokens never spend a member's budget; ``RateLimit-*`` on every answer,
  ``Retry-After`` on a 429.
- **Idempotency-Key** on a POST: the first answer is kept (``app.web.api.conventions``)
  and a retry gets it again instead of acting twice.
- **Errors**: ``{"error": {"code", "message", "details"}}`` for every failure.

Handlers parse with :func:`body` / :func:`query` (pydantic models named by the
operation, imported on the first API request, not at start-up), call one domain
function, and answer with :func:`respond` or :func:`page`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from app import access
from app.accounts import apikeys
from app.extensions import client_address, db, limiter
from app.web.api import conventions, spec
from app.web.api.errors import ApiError, fail
from app.web.htmx import error_json

bp = Blueprint("api", __name__, url_prefix="/api/v1")
__all__ = ["ApiError", "bp", "body", "fail", "if_match", "no_content", "page", "query", "respond"]


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def rate_limit_key() -> str:
    """The bucket: the token's hash (a stranger's guesses never spend a real key's
    budget), or the client address for a request without one."""
    token = _bearer()
    if token:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    return "ip:" + client_address()


limiter.limit(lambda: current_app.config["API_RATE_LIMIT"], key_func=rate_limit_key)(bp)


@bp.before_request
def _authenticate():
    operation = spec.OPERATIONS.get(request.endpoint or "")
    if operation is not None and operation.public:
        return None
    if any(name.lower() in ("api_key", "apikey", "key", "token", "access_token")
           for name in request.args):  # fmt: skip
        fail(400, "key_in_query", "Send the API key in the Authorization header, never in the URL.")
    token = _bearer()
    if token is None:
        fail(401, "unauthenticated", "Send an API key: Authorization: Bearer slw_<id>_<secret>.")
    key = apikeys.find(token)
    if key is None:
        fail(401, "invalid_key", "This API key is unknown, revoked or expired.")
    apikeys.use(key)
    # The key's member is this request's user; the session cookie is never read here.
    g._login_user = key.user
    return conventions.idempotency_start()


@bp.after_request
def _finish(response):
    current = limiter.current_limit
    if current is not None:
        response.headers["RateLimit-Limit"] = str(current.limit.amount)
        response.headers["RateLimit-Remaining"] = str(max(current.remaining, 0))
        response.headers["RateLimit-Reset"] = str(max(int(current.reset_at - time.time()), 0))
        response.headers["RateLimit-Policy"] = (
            f"{current.limit.amount};w={current.limit.get_expiry()}"
        )
    return conventions.idempotency_finish(response)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return error_json(exc.status, exc.code, exc.message, exc.details), exc.status


@bp.errorhandler(RateLimitExceeded)
def _too_many(exc: RateLimitExceeded):
    current = limiter.current_limit
    wait = max(int(current.reset_at - time.time()), 1) if current else 60
    response = error_json(429, "rate_limited", f"Too many requests: {exc.description}.")
    response.status_code = 429
    response.headers["Retry-After"] = str(wait)
    return response


def _forbidden_message() -> tuple[str, dict]:
    """Why the gate said 403: the key's scopes, or the member's role."""
    action = g.get("access_refused")
    key = apikeys.current()
    if action is None or key is None:
        return "This key may not do that.", {}
    details = {"action": action.value, "scopes": list(key.scopes)}
    if action not in key.actions:
        scopes = ", ".join(key.scopes) or "none"
        return (f"This API key's scopes ({scopes}) do not allow {action.value}: use a key "
                "with a scope that holds it."), details  # fmt: skip
    team_wide = access.TABLE[action].scope is access.Scope.TEAM
    if key.project_ids is not None and team_wide and action not in access.LIMITED_TEAM_ACTIONS:
        return (f"This API key is limited to some projects: on the team as a whole it may "
                f"only read, not {action.value}."), details  # fmt: skip
    return f"Your role does not allow {action.value} here.", details


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    code = exc.code or 500
    name = exc.name.lower().replace(" ", "_")
    if code == 403:
        message, details = _forbidden_message()
        return error_json(403, name, message, details), 403
    return error_json(code, name, exc.description or exc.name), code


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    current_app.logger.exception("API request failed")
    db.session.rollback()
    return error_json(500, "internal_error", "Something went wrong on our side."), 500


# ---- parsing and answering --------------------------------------------------


def _model(name: str):
    return getattr(spec.schemas(), name)


def _field_errors(exc) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "body"
        fields.setdefault(where, error["msg"])
    return fields


def body(model: str | None = None):
    """The request's JSON body, validated by the operation's body model (422 with the
    field errors in ``details.fields``; 415 when it is not JSON)."""
    from pydantic import ValidationError

    name = model or spec.current().body
    if not request.mimetype == "application/json":
        fail(415, "unsupported_media_type", "Send the body as application/json.")
    raw = request.get_data(cache=True)
    try:
        return _model(name).model_validate_json(raw or b"{}")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            fail(400, "invalid_json", "The body is not valid JSON.")
        fail(422, "invalid", "Some fields are not valid.", {"fields": _field_errors(exc)})


def query(model: str | None = None):
    """The query string, validated by the operation's query model (422 on a bad one)."""
    from pydantic import ValidationError

    name = model or spec.current().query
    try:
        return _model(name).model_validate(request.args.to_dict())
    except ValidationError as exc:
        fail(422, "invalid", "Some query parameters are not valid.",
             {"fields": _field_errors(exc)})  # fmt: skip


def respond(data: Any, status: int = 200, *, etag: bool = False, headers: dict | None = None):
    """``data`` as JSON; ``etag=True`` adds its ETag (what ``If-Match`` is checked against)."""
    response = jsonify(data)
    response.status_code = status
    if etag:
        response.headers["ETag"] = conventions.etag_of(data)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def no_content():
    return "", 204


def page(statement, id_column, present, params, *, newest_first: bool = True):
    """One page of ``statement`` (``{"data": [...], "next_cursor": ...}``), ordered by
    ``id_column``; ``params`` has ``limit`` and ``cursor`` (a :class:`PageQuery`)."""
    rows, next_cursor = conventions.paginate(
        statement, id_column, params.limit, params.cursor, newest_first
    )
    return respond({"data": [present(row) for row in rows], "next_cursor": next_cursor})


def if_match(current: Any) -> None:
    """412 when the request's ``If-Match`` names another version than ``current``'s."""
    conventions.check_if_match(current)
