"""Live views: the app's Logs page, and the websockets behind live pages.

Every socket is authorised before the handshake, like any request: the request
guard wants a session, then :func:`_before_handshake` checks ``Origin`` and looks
the object up through ``access`` (another team's object is a 404, so no socket
is ever opened for it). The handler then counts the socket against the user's
cap, removes its database session and streams (``app.live.tails``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from flask import Blueprint, Response, current_app, g, render_template, request
from flask_login import current_user
from redis.exceptions import RedisError

from app import access
from app.deploys import livestatus
from app.extensions import db, sock
from app.live import sockets, tails
from app.runtime import containers
from app.web.htmx import error_json, is_websocket

bp = Blueprint("live", __name__)
log = logging.getLogger("slipway.live")
DOWNLOAD_LINES = 5000


# ---- pages ------------------------------------------------------------------


@bp.get("/apps/<int:app_id>/logs")
def logs(app_id: int):
    app = access.application(app_id)
    lines, problem = tails.recent_runtime_lines(app.id, current_app.config["LOG_TAIL_LINES"])
    return render_template("live/logs.html", app=app, lines=lines, problem=problem)


@bp.get("/apps/<int:app_id>/logs/download")
def logs_download(app_id: int):
    app = access.application(app_id)
    text, _problem = tails.runtime_text(app.id, DOWNLOAD_LINES)
    return Response(
        text,
        mimetype="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{app.name}-logs.txt"'},
    )


# ---- sockets ----------------------------------------------------------------

_AUTHORIZE: dict[str, Callable[..., set[int]]] = {
    "live.build_log_socket": lambda deployment_id: {
        access.deployment(deployment_id).application.project.team_id
    },
    "live.runtime_log_socket": lambda app_id: {access.application(app_id).project.team_id},
    "live.database_log_socket": lambda database_id: {access.database(database_id).project.team_id},
    "live.status_socket": lambda: {access.current_team().id},
}


@bp.before_request
def _before_handshake():
    """Origin and object checks happen here, before a websocket exists."""
    authorize = _AUTHORIZE.get(request.endpoint or "")
    if authorize is None:
        return None
    if not is_websocket():
        return error_json(400, "websocket_only", "This address speaks websocket only."), 400
    if not sockets.origin_allowed():
        return error_json(403, "bad_origin", "Cross-site websocket refused."), 403
    g.live_teams = authorize(**(request.view_args or {}))
    return None


def _stream(ws, run: Callable) -> None:
    """Count the socket (in this process, then per user), drop the DB session, stream."""
    cfg = current_app.config
    user_id, version = current_user.id, current_user.session_version
    db.session.remove()
    if not sockets.seats.take(cfg["LIVE_VIEWS_PER_WORKER"]):
        log.warning(
            "live view %s refused: this worker holds its %d live views "
            "(raise SLIPWAY_WEB_THREADS to admit more)",
            request.path,
            cfg["LIVE_VIEWS_PER_WORKER"],
        )
        ws.close(sockets.CLOSE_BUSY, "The server is busy: live updates paused.")
        return
    try:
        _stream_counted(ws, run, user_id, version)
    finally:
        sockets.seats.release()


def _stream_counted(ws, run: Callable, user_id: int, version: int) -> None:
    slot = sockets.Slot(user_id)
    if not slot.take(current_app.config["WS_MAX_PER_USER"]):
        ws.close(sockets.CLOSE_TOO_MANY, "Too many live views open: close another tab.")
        return
    try:
        watch = sockets.AccessWatch(user_id, version, g.live_teams, slot)

        def send(frame: dict) -> None:
            ws.send(json.dumps(frame, separators=(",", ":")))

        try:
            reason = run(send, lambda: ws.connected, watch)
        except (RedisError, containers.ContainerError):
            log.warning("live view %s stopped: Redis or Docker failed", request.path)
            ws.close(sockets.CLOSE_UNAVAILABLE, "Live updates are unavailable; retrying.")
            return
        if reason == "access":
            ws.close(sockets.CLOSE_ACCESS_LOST, "You no longer have access.")
        elif reason == "final":
            ws.close(sockets.CLOSE_DONE, "The deployment has finished.")
    finally:
        slot.release()


@sock.route("/ws/deployments/<int:deployment_id>/log", bp=bp)
def build_log_socket(ws, deployment_id: int):
    after = request.args.get("after", 0, type=int)
    _stream(ws, lambda send, is_open, watch: tails.BuildLogTail(
        deployment_id, after, send, is_open, watch).run())  # fmt: skip


@sock.route("/ws/apps/<int:app_id>/logs", bp=bp)
def runtime_log_socket(ws, app_id: int):
    _stream(ws, lambda send, is_open, watch: tails.RuntimeTail(
        app_id, send, is_open, watch).run())  # fmt: skip


@sock.route("/ws/databases/<int:database_id>/logs", bp=bp)
def database_log_socket(ws, database_id: int):
    name = access.database(database_id).name
    _stream(ws, lambda send, is_open, watch: tails.DatabaseTail(
        database_id, name, send, is_open, watch).run())  # fmt: skip


@sock.route("/ws/status", bp=bp)
def status_socket(ws):
    since = livestatus.valid_id(request.args.get("since")) or livestatus.last_id()
    teams = g.live_teams
    projects = access.visible_project_ids(current_user, next(iter(teams)))
    _stream(ws, lambda send, is_open, watch: tails.status_stream(
        teams, since, send, is_open, watch, projects))  # fmt: skip
