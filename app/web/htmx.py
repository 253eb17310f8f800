"""What kind of request this is and the shapes of answers the blueprints share.

The blueprints import these from here, not from ``app.web``, whose ``register``
imports the blueprints: that way round there is no import cycle.
"""

from __future__ import annotations

from flask import current_app, jsonify, request
from sqlalchemy import select

from app.extensions import db
from app.models import Installation


def wants_json() -> bool:
    return request.path.startswith("/api/") or (request.accept_mimetypes.best == "application/json")


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def is_websocket() -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def error_json(status: int, code: str, message: str, details: dict | None = None):
    return jsonify({"error": {"code": code, "message": message, "details": details or {}}})


def installed() -> bool:
    """Whether first-run setup has happened; once true, remembered for the process."""
    if current_app.extensions.get("slipway_installed"):
        return True
    done = db.session.scalar(select(Installation.id)) is not None
    current_app.extensions["slipway_installed"] = done
    return done
