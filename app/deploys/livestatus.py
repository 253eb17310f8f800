"""Deployment status and app health changes, told to every open page that shows them.

Whoever changes a deployment's status or step calls :func:`publish` after the
commit (and, for a final state, after the last build-log lines are flushed). The
event goes on a Redis stream rather than a pub/sub channel: a page records the
stream's last id when it renders (:func:`last_id`) and its websocket reads from
there, so a change made between rendering and connecting is not lost. The
stream is capped (``MAXLEN ~``); a reader that falls further behind than that
simply reloads.

App health changes (``app.deploys.health``) travel on the same stream as events of
kind ``health`` (:func:`publish_health`); a deployment's events have no kind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from redis.exceptions import RedisError
from sqlalchemy import func, select

from app.deploys import buildlog
from app.extensions import db, redis
from app.models import Application, Deployment, Project
from app.models.deployments import FINAL_STATUSES

log = logging.getLogger("slipway.livestatus")
STREAM = "slipway:deploy-events"
STREAM_MAXLEN = 5000


def events_of(deployments: Iterable[Deployment]) -> list[dict]:
    """What pages need to redraw a badge or the progress line; no user text.

    One query, whatever the number of deployments, for the newest deployment of
    each app involved (an app's badge shows its newest deployment, and an older one
    changing, running → replaced, must not repaint it) and the app's team: after a
    commit the rows' app and project are expired, and reading the team through them
    would load each again.
    """
    deployments = list(deployments)
    apps = {d.application_id for d in deployments}
    found = db.session.execute(
        select(Deployment.application_id, func.max(Deployment.id), Project.team_id, Project.id)
        .join(Application, Application.id == Deployment.application_id)
        .join(Project, Project.id == Application.project_id)
        .where(Deployment.application_id.in_(apps))
        .group_by(Deployment.application_id, Project.team_id, Project.id)
    ).all() if apps else []  # fmt: skip
    newest = {app_id: newest_id for app_id, newest_id, _, _ in found}
    team = {app_id: team_id for app_id, _, team_id, _ in found}
    project = {app_id: project_id for app_id, _, _, project_id in found}
    return [
        {
            "deployment_id": d.id,
            "app_id": d.application_id,
            "team_id": team.get(d.application_id) or d.application.project.team_id,
            "project_id": project.get(d.application_id) or d.application.project_id,
            "status": d.status,
            "step": d.step,
            "final": d.status in FINAL_STATUSES,
            "latest": newest.get(d.application_id) == d.id,
        }
        for d in deployments
    ]


def publish(deployments: Deployment | Iterable[Deployment]) -> None:
    """Tell live pages about these deployments' current status (after the commit).

    Best effort: a Redis hiccup must not fail a deploy; pages then catch up on
    their next load.
    """
    if isinstance(deployments, Deployment):
        deployments = [deployments]
    publish_events(events_of(deployments))


def publish_events(events: list[dict]) -> None:
    """Put events made by :func:`events_of` on the stream (after the commit).

    A caller that is about to commit can build its events first, while its rows
    are still loaded, instead of reloading every expired row afterwards.
    """
    try:
        pipe = redis.client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(STREAM, {"event": json.dumps(event)}, maxlen=STREAM_MAXLEN,
                      approximate=True)  # fmt: skip
        for event in events:
            if event.get("final") and "deployment_id" in event:
                # Wake the deployment's log tails (app.live.tails), which wait on its
                # lines' channel: they read this event at once, not at their next tick.
                pipe.publish(buildlog.channel(event["deployment_id"]), "[]")
        pipe.execute()
    except RedisError:
        log.warning("could not publish a deployment status change")


def health_event(app) -> dict:
    """An app's health for live badges: the state and its one-line summary (no output)."""
    return {
        "kind": "health",
        "app_id": app.id,
        "team_id": app.project.team_id,
        "project_id": app.project_id,
        "health": app.health,
        "summary": (app.health_detail or {}).get("summary", ""),
    }


def publish_health(app) -> None:
    """Tell live pages the app's health changed (after the commit)."""
    publish_events([health_event(app)])


def is_health(event: dict) -> bool:
    return event.get("kind") == "health"


def last_id() -> str:
    """The id of the newest event, for a page to hand to its websocket ("0-0": none)."""
    try:
        newest = redis.client.xrevrange(STREAM, count=1)
    except RedisError:
        return "$"
    if not newest:
        return "0-0"
    event_id = newest[0][0]
    return event_id.decode() if isinstance(event_id, bytes) else event_id


def read(client, after: str, block_ms: int | None = None, count: int = 500):
    """Events after ``after``: ``(new last id, [event dict, …])``."""
    found = client.xread({STREAM: after}, count=count, block=block_ms)
    events = []
    for _stream, entries in found or []:
        for event_id, fields in entries:
            after = event_id.decode() if isinstance(event_id, bytes) else event_id
            raw = fields.get(b"event") or fields.get("event")
            try:
                events.append(json.loads(raw))
            except (TypeError, ValueError):
                continue
    return after, events


def valid_id(value: str | None) -> str | None:
    """A stream id from a query string (``<ms>-<seq>``), or None."""
    if not value:
        return None
    ms, sep, seq = value.partition("-")
    if sep and ms.isdigit() and seq.isdigit() and len(value) <= 41:
        return value
    return None
