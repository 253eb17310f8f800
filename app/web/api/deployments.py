"""Deployments: list, deploy, read, cancel, roll back, the stored build log.

A deploy, cancel or rollback calls ``app.deploys.control`` as the dashboard's buttons do
(trigger ``api``). ``?wait=<seconds>`` (create and read) holds the answer until the
deployment is final or the wait ends (at most ``API_WAIT_MAX_SECONDS``): the handler
removes its database session first (CONVENTIONS 12) and waits on the deployment status
stream (``app.deploys.livestatus``), reading the row again in a short session when its
final event arrives, and every few seconds in case an event was lost.
"""

from __future__ import annotations

import time

from flask import current_app, request
from flask_login import current_user
from redis.exceptions import RedisError
from sqlalchemy import select

from app import access
from app.access import Action
from app.deploys import control, livestatus
from app.extensions import db, redis
from app.models import Deployment, DeploymentLogLine
from app.web.api import spec
from app.web.api.base import bp, fail, page, query, respond
from app.web.api.conventions import iso

TRIGGER = "api"
# While waiting: how long one read of the status stream blocks, and how often the row
# itself is read again (a lost event costs at most this much).
WAIT_BLOCK_MS = 1000
WAIT_RECHECK_SECONDS = 5.0


def present_deployment(d: Deployment) -> dict:
    return {
        "id": d.id, "app_id": d.application_id, "status": d.status, "step": d.step,
        "trigger": d.trigger, "final": d.is_final, "commit_sha": d.commit_sha,
        "commit_message": d.commit_message, "git_ref": d.git_ref, "image": d.image_tag,
        "rollback_of_id": d.rollback_of_id, "error": d.error, "created_at": iso(d.created_at),
        "started_at": iso(d.started_at), "finished_at": iso(d.finished_at),
        "url": f"/api/v1/deployments/{d.id}",
    }  # fmt: skip


def _location(d: Deployment) -> dict:
    return {"Location": f"/api/v1/deployments/{d.id}"}


def optional_body(model: str):
    """The operation's body; a POST without any body counts as ``{}``."""
    from app.web.api import base

    if not request.get_data(cache=True) and not request.mimetype:
        return base._model(model).model_validate({})
    return base.body(model)


def _wait_seconds() -> float:
    return float(query("WaitQuery").wait or 0)


def _is_final(deployment_id: int) -> bool:
    """Whether the deployment is final now (a short session of its own)."""
    try:
        dep = db.session.get(Deployment, deployment_id)
        return dep is None or dep.is_final
    finally:
        db.session.remove()


def wait_until_final(deployment_id: int, seconds: float, events_after: str) -> None:
    """Return when the deployment is final or ``seconds`` have passed, holding no DB
    session. ``events_after`` is a status stream id read before the caller last saw
    the row, so that no change after that read is missed."""
    seconds = min(seconds, current_app.config["API_WAIT_MAX_SECONDS"])
    db.session.remove()
    deadline = time.monotonic() + seconds
    recheck = time.monotonic() + WAIT_RECHECK_SECONDS
    client = redis.client
    while (left := deadline - time.monotonic()) > 0:
        block = max(1, int(min(left, WAIT_BLOCK_MS / 1000) * 1000))
        try:
            events_after, events = livestatus.read(client, events_after, block_ms=block)
        except RedisError:
            time.sleep(min(left, WAIT_BLOCK_MS / 1000))
            events = []
        final = any(e.get("deployment_id") == deployment_id and e.get("final") for e in events)
        if final or time.monotonic() >= recheck:
            if _is_final(deployment_id):
                return
            recheck = time.monotonic() + WAIT_RECHECK_SECONDS


def _answer(deployment_id: int, wait: float, events_after: str, *, created: bool):
    """The deployment after an optional wait. A create answers 202, or 200 when it waited
    and the deployment is final; a read answers 200."""
    if wait > 0:
        wait_until_final(deployment_id, wait, events_after)
    deployment = db.session.get(Deployment, deployment_id)
    status = 200 if not created or (wait > 0 and deployment.is_final) else 202
    headers = _location(deployment) if created else None
    return respond(present_deployment(deployment), status, etag=not created, headers=headers)


@bp.get("/apps/<int:app_id>/deployments")
@spec.operation("listDeployments", "Deployments", "The app's deployments, newest first",
                Action.APP_READ, query="DeploymentListQuery",
                response="DeploymentPage")  # fmt: skip
def deployments_list(app_id: int):
    app = access.application(app_id, Action.APP_READ)
    params = query()
    statement = select(Deployment).where(Deployment.application_id == app.id)
    if params.status:
        statement = statement.where(Deployment.status == params.status)
    return page(statement, Deployment.id, present_deployment, params)


@bp.post("/apps/<int:app_id>/deployments")
@spec.operation(
    "createDeployment", "Deployments", "Deploy the app", Action.APP_DEPLOY,
    body="DeploymentCreate", query="WaitQuery", response="Deployment", status=202,
    extra_statuses=(200,),
    description="202 with `Location`; with `?wait=<seconds>`, 200 (the same Deployment) "
    "once it is final.",
)  # fmt: skip
def deployments_create(app_id: int):
    app = access.application(app_id, Action.APP_DEPLOY)
    data = optional_body("DeploymentCreate")
    wait = _wait_seconds()
    if data.ref is not None and app.source_type != "git":
        fail(422, "invalid", "Only a git app deploys a ref.",
             {"fields": {"ref": "This app runs an image: it has no git ref."}})  # fmt: skip
    events_after = livestatus.last_id()
    deployment = control.start_deploy(app, trigger=TRIGGER, user=current_user, git_ref=data.ref)
    return _answer(deployment.id, wait, events_after, created=True)


@bp.get("/deployments/<int:deployment_id>")
@spec.operation("getDeployment", "Deployments", "One deployment (`?wait=` until final)",
                Action.APP_READ, query="WaitQuery", response="Deployment", etag=True)  # fmt: skip
def deployment_get(deployment_id: int):
    deployment = access.deployment(deployment_id, Action.APP_READ)
    wait = _wait_seconds()
    events_after = livestatus.last_id() if wait > 0 and not deployment.is_final else "$"
    return _answer(deployment.id, wait if not deployment.is_final else 0, events_after,
                   created=False)  # fmt: skip


@bp.post("/deployments/<int:deployment_id>/cancel")
@spec.operation("cancelDeployment", "Deployments", "Cancel a queued or building deployment",
                Action.APP_DEPLOY, response="Deployment", status=202)  # fmt: skip
def deployment_cancel(deployment_id: int):
    deployment = access.deployment(deployment_id, Action.APP_DEPLOY)
    if deployment.is_final:
        fail(409, "conflict", f"A {deployment.status} deployment cannot be cancelled.",
             {"status": deployment.status})  # fmt: skip
    try:
        control.cancel(deployment, current_user)
    except control.DeployError as exc:
        fail(409, "conflict", str(exc), {"status": deployment.status})
    return respond(present_deployment(deployment), 202, headers=_location(deployment))


@bp.post("/deployments/<int:deployment_id>/rollback")
@spec.operation(
    "rollbackDeployment", "Deployments", "Deploy this deployment's image again",
    Action.APP_DEPLOY, body="RollbackCreate", response="Deployment", status=202,
    description="A new deployment (its `Location`), with the env and settings this one "
    "ran with (`keep_env`: today's env).",
)  # fmt: skip
def deployment_rollback(deployment_id: int):
    deployment = access.deployment(deployment_id, Action.APP_DEPLOY)
    data = optional_body("RollbackCreate")
    try:
        new = control.rollback(deployment, current_user, keep_env=data.keep_env)
    except control.DeployError as exc:
        fail(409, "conflict", str(exc), {"status": deployment.status})
    return respond(present_deployment(new), 202, headers=_location(new))


@bp.get("/deployments/<int:deployment_id>/log")
@spec.operation("getDeploymentLog", "Deployments", "The stored build log",
                Action.APP_READ, query="BuildLogQuery", response="BuildLog")  # fmt: skip
def deployment_log(deployment_id: int):
    deployment = access.deployment(deployment_id, Action.APP_READ)
    params = query()
    rows = db.session.execute(
        select(DeploymentLogLine.seq, DeploymentLogLine.stream, DeploymentLogLine.ts,
               DeploymentLogLine.text)
        .where(DeploymentLogLine.deployment_id == deployment.id,
               DeploymentLogLine.seq > params.after)
        .order_by(DeploymentLogLine.seq)
        .limit(params.limit + 1)
    ).all()  # fmt: skip
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    return respond({
        "lines": [{"n": r.seq, "text": r.text, "stream": r.stream, "ts": iso(r.ts)}
                  for r in rows],
        "truncated": bool(deployment.log_truncated),
        "dropped_lines": deployment.log_dropped_lines or 0,
        "next_after": rows[-1].seq if more and rows else None,
        "final": deployment.is_final,
    })  # fmt: skip
