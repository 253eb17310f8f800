"""Metric pages: an app's charts, the server's charts, and their JSON series."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template, request

from app import access
from app.monitoring import metrics
from app.web.htmx import error_json

bp = Blueprint("metrics", __name__)


def _range() -> str:
    name = request.args.get("range", "hour")
    if name not in metrics.RANGES:
        abort(400, f"Unknown range {name[:20]!r}: choose hour, day or week.")
    return name


def _json(app_id: int | None):
    name = request.args.get("range", "hour")
    if name not in metrics.RANGES:
        message = "Unknown range: choose hour, day or week."
        return error_json(400, "bad_range", message, {"range": ["hour", "day", "week"]}), 400
    return jsonify(metrics.series(app_id, name))


@bp.get("/apps/<int:app_id>/metrics")
def app_page(app_id: int):
    app = access.application(app_id)
    name = _range()
    chart = metrics.series(app.id, name)
    return render_template(
        "metrics/app.html", app=app, range_name=name, chart=chart,
        summary=metrics.summary(chart), rows=metrics.table_rows(chart),
    )  # fmt: skip


@bp.get("/apps/<int:app_id>/metrics.json")
def app_series(app_id: int):
    app = access.application(app_id)
    return _json(app.id)


@bp.get("/server")
def server_page():
    access.require_installation_admin()
    name = _range()
    chart = metrics.series(None, name)
    return render_template(
        "metrics/server.html", range_name=name, chart=chart,
        summary=metrics.summary(chart), rows=metrics.table_rows(chart),
    )  # fmt: skip


@bp.get("/server/metrics.json")
def server_series():
    access.require_installation_admin()
    return _json(None)
