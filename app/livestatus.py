"""Deployment status changes, told to every open page that shows them.

Whoever changes a deployment's status or step calls :func:`publish` after the
commit (and, for a final state, after the last build-log lines are flushed). The
event goes on a Redis stream rather than a pub/sub channel: a page records the
stream's last id when it renders (:func:`last_id`) and its websocket reads from
there, so a change made between rendering and connecting is not lost. The
stream is capped (``MAXLEN ~``); a reader that falls further behind than that
simply reloads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from redis.exceptions import RedisError
from sqlalchemy import func, select

from app.extensions import db, redis
from app.models import Deployment
from app.models.deployments import ACTIVE_STATUSES, DeploymentStatus

log = logging.getLogger("slipway.livestatus")
STREAM = "slipway:deploy-events"
STREAM_MAXLEN = 5000
FINAL = frozenset(s.value for s in DeploymentStatus if s not in ACTIVE_STATUSES)


def event_of(deployment: Deployment) -> dict:
    """What a page needs to redraw a badge or the progress line; no user text."""
    app = deployment.application
    newest = db.session.scalar(
        select(func.max(Deployment.id)).where(Deployment.application_id == app.id)
    )
    return {
        "deployment_id": deployment.id,
        "app_id": app.id,
        "team_id": app.project.team_id,
        "status": deployment.status,
        "step": deployment.step,
        "final": deployment.status in FINAL,
        # The app's badge shows its newest deployment; an older one changing
        # (running → replaced) must not repaint it.
        "latest": newest == deployment.id,
    }


def publish(deployments: Deployment | Iterable[Deployment]) -> None:
    """Tell live pages about these deployments' current status (after the commit).

    Best effort: a Redis hiccup must not fail a deploy; pages then catch up on
    their next load.
    """
    if isinstance(deployments, Deployment):
        deployments = [deployments]
    try:
        pipe = redis.client.pipeline(transaction=False)
        for deployment in deployments:
            pipe.xadd(
                STREAM,
                {"event": json.dumps(event_of(deployment))},
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )
        pipe.execute()
    except RedisError:
        log.warning("could not publish a deployment status change")


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
