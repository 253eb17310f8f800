"""Live tails: a deployment's build log, an app's runtime output, status changes.

Each tail is a loop that sends JSON frames through a ``send`` callable (the
websocket) until it is done, the socket closes, or :class:`~app.sockets.AccessWatch`
says the user lost access. None of them holds a database session while it
waits: they read what they need in short sessions and remove them.

Build log: subscribe to the Redis channel first, read the stored rows after the
sequence number the page already shows, then follow the channel, dropping lines
whose ``seq`` was already sent. When the deployment reaches a final status
(published after its last lines), read the rows once more and end.

Runtime log: the app's secret env values are redacted from every line (page,
frames, download) as in build logs, for every role: no role reads a secret value
back in Slipway (they are write-only), so none reads it in the app's output.
Follow ``docker logs`` of the app's running deployment's
containers (the last lines first); when another deployment of the app becomes
``running``, switch to its containers. Lines are coalesced into one frame per
``LIVE_FRAME_SECONDS``, at most ``LIVE_LINES_PER_SECOND`` on average; the rest is
dropped and counted ("N lines skipped"), so a flood cannot grow the web
process's memory or starve its other requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from flask import current_app
from sqlalchemy import select

from app.deploys import buildlog, control, livestatus
from app.extensions import db, redis
from app.live import logformat, runtimelogs
from app.live.sockets import AccessWatch
from app.models import Application, Deployment, DeploymentLogLine, DeploymentStatus
from app.projects import envvars
from app.runtime import containers

Send = Callable[[dict], None]
IsOpen = Callable[[], bool]
# How a stored or published line becomes a frame's line: HTML for pages (the default),
# plain text for the API's Server-Sent Events (app.web.api.logs).
LineOf = Callable[[dict], dict]
REPLAY_BATCH = 500
# Seconds between checks (status events, access) while a build log is quiet, and
# how long a status socket waits for an event. Lines arrive at once either way; a
# worker holding 200 idle live views spent ~50 % of a CPU at 0.2 s / 0.5 s, ~9 % at
# 1 s / 2 s (issue 17, item 12), CPU the pages beside them need.
TICK = 1.0
STATUS_WAIT_MS = 2000


def _line(row) -> dict:
    return {"seq": row["seq"], "stream": row["stream"], "html": str(logformat.to_html(row["text"]))}


def _stored_after(deployment_id: int, after: int) -> list[dict]:
    """Stored rows with ``seq > after`` in replay-sized batches (short session)."""
    try:
        rows = db.session.execute(
            select(DeploymentLogLine.seq, DeploymentLogLine.stream, DeploymentLogLine.text)
            .where(DeploymentLogLine.deployment_id == deployment_id, DeploymentLogLine.seq > after)
            .order_by(DeploymentLogLine.seq)
            .limit(REPLAY_BATCH)
        ).all()
        return [{"seq": r.seq, "stream": r.stream, "text": r.text} for r in rows]
    finally:
        db.session.remove()


def _status_frame(deployment_id: int) -> dict:
    try:
        dep = db.session.get(Deployment, deployment_id)
        return {
            "type": "status", "deployment_id": dep.id, "status": dep.status,
            "step": dep.step, "final": dep.is_final,
        }  # fmt: skip
    finally:
        db.session.remove()


class BuildLogTail:
    """Replay, then follow, one deployment's build log; ends when it is final."""

    def __init__(self, deployment_id: int, after_seq: int, send: Send, is_open: IsOpen,
                 watch: AccessWatch, line_of: LineOf = _line):  # fmt: skip
        self.deployment_id = deployment_id
        self.last = max(after_seq, 0)
        self.send = send
        self.line_of = line_of
        self.is_open = is_open
        self.watch = watch

    def _send_lines(self, rows: list[dict]) -> None:
        fresh = [r for r in rows if r["seq"] > self.last]
        if fresh:
            fresh.sort(key=lambda r: r["seq"])
            self.last = fresh[-1]["seq"]
            self.send({"type": "lines", "lines": [self.line_of(r) for r in fresh]})

    def _catch_up(self) -> None:
        while True:
            rows = _stored_after(self.deployment_id, self.last)
            if not rows:
                return
            self._send_lines(rows)

    def run(self) -> str:
        """Stream until the deployment is final; returns why it stopped."""
        client = redis.client
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(buildlog.channel(self.deployment_id))
            # Wait for the confirmation: from here on, every published batch reaches us.
            while (msg := pubsub.get_message(timeout=5)) is not None:
                if msg["type"] == "subscribe":
                    break
            events_after = livestatus.last_id()
            status = _status_frame(self.deployment_id)
            self._catch_up()
            self.send(status)
            if status["final"]:
                return "final"
            return self._follow(pubsub, client, events_after)
        finally:
            pubsub.close()

    def _follow(self, pubsub, client, events_after: str) -> str:
        while self.is_open():
            batch: list[dict] = []
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=TICK)
            while message is not None:
                if message["type"] == "message":
                    batch.extend(json.loads(message["data"]))
                if len(batch) >= REPLAY_BATCH:
                    break
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            self._send_lines(batch)
            events_after, events = livestatus.read(client, events_after)
            mine = [e for e in events if e.get("deployment_id") == self.deployment_id]
            for event in mine:
                self.send({"type": "status", **_public(event)})
            if any(e["final"] for e in mine):
                # The final status is published after the last lines were stored:
                # whatever the channel has not delivered yet is in the table.
                self._catch_up()
                return "final"
            if not self.watch.still_allowed():
                return "access"
        return "closed"


def _public(event: dict) -> dict:
    if livestatus.is_health(event):
        return {k: event.get(k) for k in ("kind", "app_id", "health", "summary")}
    return {k: event[k] for k in ("deployment_id", "app_id", "status", "step", "final", "latest")}


def status_stream(team_ids: set[int], since: str, send: Send, is_open: IsOpen,
                  watch: AccessWatch, project_ids: set[int] | None = None) -> str:  # fmt: skip
    """Forward status changes of the user's teams' deployments from ``since`` on.

    ``project_ids`` (a project-limited member's projects) narrows them further."""
    client = redis.client
    after = since
    while is_open():
        after, events = livestatus.read(client, after, block_ms=STATUS_WAIT_MS)
        changes = [
            _public(e)
            for e in events
            if e.get("team_id") in team_ids
            and (project_ids is None or e.get("project_id") in project_ids)
        ]
        if changes:
            send({"type": "status", "changes": changes})
        if not watch.still_allowed():
            return "access"
    return "closed"


# ---- runtime logs ---------------------------------------------------------------


class RuntimeTail:
    """Follow the running containers of one app, across redeploys."""

    def __init__(self, app_id: int, send: Send, is_open: IsOpen, watch: AccessWatch,
                 line_of=runtimelogs.runtime_line):  # fmt: skip
        cfg = current_app.config
        self.app_id = app_id
        self.line_of = line_of  # (replica label, raw bytes, secrets) -> a frame's line
        self.send = send
        self.is_open = is_open
        self.watch = watch
        self.frame_seconds = cfg["LIVE_FRAME_SECONDS"]
        self.rate = cfg["LIVE_LINES_PER_SECOND"]
        self.burst = cfg["LIVE_BURST_LINES"]
        self.tail_lines = cfg["LOG_TAIL_LINES"]
        self.buffer = runtimelogs.LineBuffer(cfg["LIVE_BUFFER_LINES"], runtimelogs.LINE_BYTES)
        self.follows: list[runtimelogs.ContainerFollow] = []
        self.deployment_id: int | None = None
        self.secrets: list[str] = []
        self.redis = redis.client

    def _current(self) -> int | None:
        try:
            dep = control.current(self.app_id)
            return dep.id if dep else None
        finally:
            db.session.remove()

    def _attach(self, deployment_id: int | None) -> None:
        self._detach()
        self.deployment_id = deployment_id
        self.secrets = _secrets(self.app_id)  # read again: a redeploy may bring new values
        replicas = containers.replicas_of(self.app_id, deployment_id) if deployment_id else []
        for container_id, label in replicas:
            try:
                follow = runtimelogs.ContainerFollow.join(
                    container_id, label, self.buffer, self.tail_lines
                )
            except containers.ContainerError:
                continue
            self.follows.append(follow)
        self.send({"type": "attached", "deployment_id": deployment_id,
                   "replicas": [label for _, label in replicas]})  # fmt: skip

    def _detach(self) -> None:
        for follow in self.follows:
            follow.leave(self.buffer)
        self.follows = []

    def run(self) -> str:
        events_after = livestatus.last_id()
        try:
            self._attach(self._current())
            return self._loop(events_after)
        finally:
            self._detach()

    def _frames(self):
        """Every frame period: the buffered lines sent at the rate (the rest counted as
        skipped), then the caller's turn (yield); ends when the socket closes."""
        tokens = float(self.burst)
        last = time.monotonic()
        while self.is_open():
            time.sleep(self.frame_seconds)
            now = time.monotonic()
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            last = now
            lines, skipped = self.buffer.take(int(tokens))
            tokens -= len(lines)
            if lines or skipped:
                frame = {
                    "type": "lines",
                    "lines": [self.line_of(s, raw, self.secrets) for s, raw in lines],
                }
                if skipped:
                    frame["skipped"] = skipped
                self.send(frame)
            yield now

    def _loop(self, events_after: str) -> str:
        for _now in self._frames():
            events_after, events = livestatus.read(self.redis, events_after)
            for event in events:
                if livestatus.is_health(event):
                    if event.get("app_id") == self.app_id:  # the page's health badge
                        self.send({**_public(event), "type": "health"})
                    continue
                if (event["app_id"] == self.app_id and event["status"] == DeploymentStatus.running
                        and event["deployment_id"] != self.deployment_id):  # fmt: skip
                    self._attach(event["deployment_id"])
            if not self.watch.still_allowed():
                return "access"
        return "closed"


class DatabaseTail(RuntimeTail):
    """Follow a managed database's container; a restart or a start after a stop may
    make a new one, so which container it is is asked again every ``CHECK_SECONDS``."""

    CHECK_SECONDS = 2.0

    def __init__(self, database_id: int, name: str, send: Send, is_open: IsOpen,
                 watch: AccessWatch):  # fmt: skip
        super().__init__(0, send, is_open, watch)
        self.database_id = database_id
        self.name = name
        self.container_id: str | None = None

    def _current(self) -> str | None:
        from app.runtime import databases as runtime_databases

        found = runtime_databases.container_of(self.database_id)
        return found if found and runtime_databases.state(found) == "running" else None

    def _attach(self, container_id: str | None) -> None:
        self._detach()
        self.container_id = container_id
        if container_id:
            try:
                self.follows.append(runtimelogs.ContainerFollow.join(
                    container_id, self.name, self.buffer, self.tail_lines))  # fmt: skip
            except containers.ContainerError:
                pass
        self.send({"type": "attached", "container": bool(self.follows),
                   "following": f"Following {self.name}'s container." if self.follows
                   else "The database is not running: waiting for it."})  # fmt: skip

    def _loop(self, events_after: str) -> str:
        next_check = time.monotonic() + self.CHECK_SECONDS
        for now in self._frames():
            if now >= next_check:
                next_check = now + self.CHECK_SECONDS
                current = self._current()
                if current != self.container_id:
                    self._attach(current)
            if not self.watch.still_allowed():
                return "access"
        return "closed"


def _secrets(app_id: int) -> list[str]:
    """The app's secret values to redact from its output (short session)."""
    try:
        app = db.session.get(Application, app_id)
        return buildlog.secrets_to_redact(envvars.secret_values(app) if app else [])
    finally:
        db.session.remove()


def _current_replicas(app_id: int) -> list[tuple[str, str]]:
    try:
        dep = control.current(app_id)
        deployment_id = dep.id if dep else None
    finally:
        db.session.remove()
    return containers.replicas_of(app_id, deployment_id) if deployment_id else []


def recent_runtime_lines(app_id: int, tail: int) -> tuple[list[dict], str | None]:
    """The last ``tail`` lines of each running replica, oldest first, for the page.

    Returns ``(lines, problem)``; ``problem`` says why there are none when the
    engine cannot be asked.
    """
    secrets = _secrets(app_id)
    try:
        replicas = _current_replicas(app_id)
        lines = []
        for container_id, label in replicas:
            raw = containers.recent_logs(container_id, tail)
            lines += [
                runtimelogs.parse_runtime_line(label, line, secrets)
                for line in raw.split(b"\n")
                if line
            ]
    except containers.ContainerError as exc:
        return [], f"The Docker engine did not answer: {exc}"
    lines.sort(key=lambda line: line["ts"])
    return lines, None


def container_lines(container_id: str | None, label: str, tail: int) -> list[dict]:
    """The last ``tail`` lines of one container (a database's), for its page; raises
    ``ContainerError`` when the engine cannot be asked."""
    if not container_id:
        return []
    raw = containers.recent_logs(container_id, tail)
    return [runtimelogs.parse_runtime_line(label, line) for line in raw.split(b"\n") if line]


def runtime_text(app_id: int, tail: int) -> tuple[str, str | None]:
    """The last ``tail`` lines of each running replica as plain text (download), secrets
    redacted."""
    secrets = _secrets(app_id)
    try:
        parts = []
        for container_id, label in _current_replicas(app_id):
            raw = containers.recent_logs(container_id, tail).decode("utf-8", "replace")
            parts += [f"{label} {buildlog.redact(line, secrets)}" for line in raw.splitlines()]
    except containers.ContainerError as exc:
        return f"The Docker engine did not answer: {exc}\n", str(exc)
    return "\n".join(parts) + ("\n" if parts else ""), None
