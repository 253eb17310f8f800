"""Live logs as Server-Sent Events: a deployment's build log, an app's runtime output.

The streams are the websocket log pages' own tails (``app.live.tails``), so the
guarantees are theirs: the build log subscribes first, replays the stored lines after
``Last-Event-ID`` (or ``?after=``), then follows Redis dropping what it already sent, so
no line is lost or sent twice at the hand-over; the runtime log follows the running
containers and switches to the new ones on a redeploy.

A tail pushes frames through a ``send`` callable while a WSGI response pulls: the tail
runs in a thread of its own (with its own app context and short DB sessions) and hands
frames over a small bounded queue; the response generator writes them as events, and a
comment every ``API_SSE_KEEPALIVE_SECONDS`` while there is nothing to say. The handler
authorises, then removes its DB session before the stream starts (CONVENTIONS 12). An
open stream takes a live-view seat of this process and a slot of the key's member, as a
websocket does (``app.live.sockets``), and re-checks every ``WS_RECHECK_SECONDS`` that the
key is still live and may still read the object.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

from flask import current_app, g, request
from redis.exceptions import RedisError
from sqlalchemy import select

from app import access
from app.access import Action
from app.extensions import db
from app.live import runtimelogs, sockets, tails
from app.models import ApiKey, Deployment, DeploymentLogLine, Membership
from app.models.base import utcnow
from app.runtime import containers
from app.web.api import spec
from app.web.api.base import bp, fail, query

log = logging.getLogger("slipway.api.sse")
KEEPALIVE_SECONDS = 15.0
QUEUE_FRAMES = 64  # a slow client holds the tail back instead of growing memory
_DONE = object()
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def event(name: str | None, data: dict | None = None, event_id: int | None = None) -> str:
    """One SSE event (``name`` None: a comment carrying ``data`` as text)."""
    out = f"id: {event_id}\n" if event_id is not None else ""
    out += f"event: {name}\n" if name else ""
    return out + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n"


class KeyWatch:
    """The websocket's ``AccessWatch`` for a key: still live, its member still in the
    team (a removed or demoted member's keys are revoked), the object still its team's."""

    def __init__(self, key_id: int, team_id: int, slot: sockets.Slot, every: float):
        self.key_id, self.team_id, self.slot, self.every = key_id, team_id, slot, every
        self.next_check = time.monotonic() + every

    def still_allowed(self) -> bool:
        if time.monotonic() < self.next_check:
            return True
        self.next_check = time.monotonic() + self.every
        try:
            key = db.session.get(ApiKey, self.key_id)
            if key is None or key.revoked_at is not None or key.team_id != self.team_id:
                return False
            if key.expires_at is not None and key.expires_at <= utcnow():
                return False
            member = db.session.scalar(select(Membership.id).where(
                Membership.team_id == key.team_id, Membership.user_id == key.user_id))  # fmt: skip
            if member is None:
                return False
        finally:
            db.session.remove()
        self.slot.renew()
        return True


def _bridge(run: Callable, frames: queue.Queue, stopped: threading.Event, app, watch) -> None:
    """The tail's thread: run it in an app context, hand frames over, then ``_DONE``."""

    def send(frame: dict) -> None:
        while not stopped.is_set():
            try:
                frames.put(frame, timeout=0.5)
                return
            except queue.Full:
                continue

    reason = "closed"
    with app.app_context():
        try:
            reason = run(send, lambda: not stopped.is_set(), watch)
        except (RedisError, containers.ContainerError) as exc:
            log.warning("event stream stopped: Redis or Docker failed: %s", exc)
            reason = "unavailable"
        except Exception:  # the thread has no error handler: say so, end the stream
            log.exception("event stream failed")
            reason = "unavailable"
        finally:
            db.session.remove()
    send({"type": "_done", "reason": reason})


def stream(run: Callable, render: Callable[[dict], Iterator[str]], team_id: int):
    """A ``text/event-stream`` response following ``run(send, is_open, watch)`` (a tail);
    ``render(frame)`` yields the events of one frame, the last one ``{"type": "_done",
    "reason"}`` (why the tail stopped). Seats and slots as a websocket."""
    app = current_app._get_current_object()
    cfg = app.config
    key_id, user_id = g.api_credential.key_id, g._login_user.id
    db.session.remove()
    if not sockets.seats.take(cfg["LIVE_VIEWS_PER_WORKER"]):
        fail(503, "busy", "This server holds all the live streams it can: retry later.")
    slot = sockets.Slot(user_id)
    try:
        if not slot.take(cfg["WS_MAX_PER_USER"]):
            fail(429, "too_many_streams", "Too many live views and streams open: close one.")
    except BaseException:
        sockets.seats.release()
        raise
    watch = KeyWatch(key_id, team_id, slot, cfg["WS_RECHECK_SECONDS"])
    keepalive = float(cfg.get("API_SSE_KEEPALIVE_SECONDS", KEEPALIVE_SECONDS))
    released = threading.Event()
    stopped = threading.Event()

    def release() -> None:  # when the server closes the response, started or not
        stopped.set()
        if not released.is_set():
            released.set()
            slot.release()
            sockets.seats.release()

    def generate() -> Iterator[str]:
        frames: queue.Queue = queue.Queue(QUEUE_FRAMES)
        thread = threading.Thread(target=_bridge, args=(run, frames, stopped, app, watch),
                                  daemon=True, name="sse-tail")  # fmt: skip
        try:
            thread.start()
            yield ": stream open\n\n"
            while True:
                try:
                    frame = frames.get(timeout=keepalive)
                except queue.Empty:
                    yield ": keep-alive\n\n"
                    continue
                yield from render(frame)
                if frame["type"] == "_done":
                    if frame["reason"] in ("access", "unavailable"):
                        yield event("error", {"reason": frame["reason"]})
                    return
        finally:
            release()

    response = app.response_class(generate(), mimetype="text/event-stream", headers=HEADERS)
    response.call_on_close(release)
    return response


def _resume_after(params) -> int:
    header = request.headers.get("Last-Event-ID", "").strip()
    if header:
        if not header.isdigit() or len(header) > 10:
            fail(422, "invalid", "Last-Event-ID is not a line number.",
                 {"fields": {"Last-Event-ID": "A line number from an earlier event."}})  # fmt: skip
        return int(header)
    return params.after or 0


def _text_line(row: dict) -> dict:
    return {"n": row["seq"], "text": row["text"], "stream": row["stream"]}


def _end_event(deployment_id: int) -> str:
    try:
        dep = db.session.get(Deployment, deployment_id)
        return event("end", {"status": dep.status, "error": dep.error})
    finally:
        db.session.remove()


def _build_frames(deployment_id: int, app) -> Callable[[dict], Iterator[str]]:
    def render(frame: dict) -> Iterator[str]:
        if frame["type"] == "lines":
            for line in frame["lines"]:
                yield event("line", line, line["n"])
        elif frame["type"] == "status" and not frame.get("final"):
            yield event("status", {k: frame.get(k) for k in ("status", "step")})
        elif frame["type"] == "_done" and frame["reason"] == "final":
            # After the tail's last catch-up: every line is out before this.
            with app.app_context():
                yield _end_event(deployment_id)

    return render


def _stored_events(deployment_id: int, after: int) -> Iterator[str]:
    """The stored lines after ``after`` (without follow), in batches."""
    while True:
        rows = db.session.execute(
            select(DeploymentLogLine.seq, DeploymentLogLine.stream, DeploymentLogLine.text)
            .where(DeploymentLogLine.deployment_id == deployment_id,
                   DeploymentLogLine.seq > after)
            .order_by(DeploymentLogLine.seq).limit(tails.REPLAY_BATCH)
        ).all()  # fmt: skip
        if not rows:
            return
        for r in rows:
            yield event("line", {"n": r.seq, "text": r.text, "stream": r.stream}, r.seq)
        after = rows[-1].seq


@bp.get("/deployments/<int:deployment_id>/logs")
@spec.operation(
    "streamDeploymentLogs", "Deployments", "The build log as Server-Sent Events",
    Action.APP_READ, query="DeploymentLogsQuery", stream=True,
    description="`event: line` (`id` = line number; resume with `Last-Event-ID` or `after`), "
    '`event: status` while it moves on, `event: end` `{"status", "error"}` once final. '
    "Without `follow=1`: the lines so far, and `end` only if final.",
)  # fmt: skip
def deployment_logs(deployment_id: int):
    deployment = access.deployment(deployment_id, Action.APP_READ)
    params = query()
    after = _resume_after(params)
    team_id = deployment.application.project.team_id
    if not params.follow:
        # Read whole while the session is open (the stored log is capped).
        body = "".join(_stored_events(deployment.id, after))
        if deployment.is_final:
            body += event("end", {"status": deployment.status, "error": deployment.error})
        return current_app.response_class(body, mimetype="text/event-stream", headers=HEADERS)
    app = current_app._get_current_object()

    def run(send, is_open, watch):
        tail = tails.BuildLogTail(deployment_id, after, send, is_open, watch, _text_line)
        return tail.run()

    return stream(run, _build_frames(deployment_id, app), team_id)


def _runtime_text(label: str, raw: bytes, secrets) -> dict:
    line = runtimelogs.parse_runtime_line(label, raw, secrets)
    return {"text": line["text"], "stream": None, "replica": label, "ts": line["ts"] or None}


def _runtime_frames(frame: dict) -> Iterator[str]:
    if frame["type"] == "lines":
        for line in frame["lines"]:
            yield event("line", line)
        if frame.get("skipped"):
            yield event("skipped", {"count": frame["skipped"]})
    elif frame["type"] == "attached":
        yield event("attached", {"deployment_id": frame["deployment_id"],
                                 "replicas": frame["replicas"]})  # fmt: skip


@bp.get("/apps/<int:app_id>/logs")
@spec.operation(
    "streamAppLogs", "Deployments", "The app's runtime output as Server-Sent Events",
    Action.APP_READ, query="AppLogsQuery", stream=True,
    description="`event: attached` `{deployment_id, replicas}` when it follows a version "
    "(again after a redeploy), `event: line` `{text, stream, replica, ts}`, `event: skipped` "
    "`{count}` when a flood was thinned. Secret env values are redacted.",
)  # fmt: skip
def app_logs(app_id: int):
    app_row = access.application(app_id, Action.APP_READ)
    params = query()
    team_id = app_row.project.team_id
    if not params.follow:
        tail = current_app.config["LOG_TAIL_LINES"]
        lines, problem = tails.recent_runtime_lines(app_row.id, tail)
        if problem:
            fail(503, "unavailable", problem)
        body = "".join(
            event("line", {"text": ln["text"], "stream": None, "replica": ln["src"],
                           "ts": ln["ts"] or None})
            for ln in lines
        )  # fmt: skip
        return current_app.response_class(body, mimetype="text/event-stream", headers=HEADERS)

    def run(send, is_open, watch):
        return tails.RuntimeTail(app_id, send, is_open, watch, _runtime_text).run()

    return stream(run, _runtime_frames, team_id)
