"""Starting, cancelling and rolling back deployments: the one entry point for every trigger.

A button, the API, a webhook or a rollback calls :func:`start_deploy`, which
inserts a ``queued`` row, supersedes older queued rows of the same app, and
enqueues the row's id on the ``deploy`` queue. The request returns at once;
``app.deploys.pipeline`` does the work in the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import select, update

from app import audit
from app.deploys import livestatus
from app.extensions import db, queue, redis
from app.models import (
    SERVED_STATUSES,
    Application,
    Deployment,
    DeploymentStatus,
    DeployStep,
    User,
)
from app.models.base import utcnow
from app.projects import envvars

log = logging.getLogger("slipway.deploys")

# A deployment's thread that waits for something of its app naps on a list instead of
# sleeping, so that what it waits for wakes it at once: a deployment in its watch window
# waits for a newer one to be ``queued`` (pushed when one is), a queued one for the
# app's deploy ``lock`` (pushed when it is released). A token nobody takes expires; a
# lost one costs one nap.
WAKE_KEY = "slipway:deploy-wake:{}:{}"
WAKE_TTL = 10


def wake(app_id: int, what: str) -> None:
    """Wake the deployment threads of ``app_id`` that nap for ``what`` (best effort)."""
    key = WAKE_KEY.format(app_id, what)
    try:
        pipe = redis.client.pipeline(transaction=False)
        pipe.lpush(key, 1).ltrim(key, 0, 3).expire(key, WAKE_TTL).execute()
    except RedisError as exc:
        log.debug("could not wake the deployments of app %s: %s", app_id, exc)


def nap(app_id: int, what: str, seconds: float) -> None:
    """Sleep up to ``seconds``, less if :func:`wake` is called for ``app_id`` and ``what``."""
    try:
        redis.client.blpop([WAKE_KEY.format(app_id, what)], timeout=seconds)
    except RedisError:
        time.sleep(seconds)


CANCEL_KEY = "slipway:cancel:{}"
ROLLBACK_STATUSES = tuple(s.value for s in SERVED_STATUSES)  # plain strings: bound in SQL


class DeployError(Exception):
    """The request cannot start or change a deployment; the message says why."""


class DeployNotQueued(DeployError):
    """The deployment row was made, but the job queue refused it: the row is failed."""

    def __init__(self, deployment: Deployment, reason: str):
        super().__init__(f"deployment {deployment.id} could not be queued: {reason}")
        self.deployment = deployment


def _drop_job(job_id: str | None) -> None:
    if not job_id:
        return
    try:
        Job.fetch(job_id, connection=redis.client, serializer=JSONSerializer).cancel()
    except (NoSuchJobError, InvalidJobOperation, RedisError):
        pass  # gone, or cancelled already by a concurrent start_deploy of the same app


def start_deploy(
    app: Application,
    *,
    trigger: str,
    user: User | None = None,
    rollback_of: Deployment | None = None,
    reuse: Deployment | None = None,
    keep_env: bool = False,
    commit_sha: str | None = None,
    commit_message: str | None = None,
    commit_author: str | None = None,
    git_ref: str | None = None,
    before_commit: Callable[[Deployment], None] | None = None,
    raise_if_not_queued: bool = False,
) -> Deployment:
    """Queue a deployment of ``app``; older queued ones become ``superseded``.

    ``reuse`` (an apply or restart) or ``rollback_of`` names the deployment whose image
    the new row starts: the row carries its image tag and id from the moment it is
    queued (no clone, no build; the worker's lanes rely on it). A rollback also
    carries that deployment's env and settings, unless ``keep_env`` (today's env).

    ``before_commit`` is called with the new row (id assigned) inside the same
    transaction: a webhook links its delivery record there. If the job queue
    refuses the job, the row is marked failed (committed, published) and either
    returned, or, with ``raise_if_not_queued``, :class:`DeployNotQueued` is raised
    so that the caller knows without reading the row.
    """
    older = db.session.scalars(
        select(Deployment).where(
            Deployment.application_id == app.id,
            Deployment.status == DeploymentStatus.queued.value,
        )
    ).all()
    for stale in older:
        stale.status = DeploymentStatus.superseded.value
        stale.finished_at = utcnow()
        _drop_job(stale.rq_job_id)
    source = rollback_of or reuse
    deployment = Deployment(
        application_id=app.id,
        status=DeploymentStatus.queued.value,
        trigger=trigger,
        triggered_by_id=user.id if user else None,
        rollback_of_id=rollback_of.id if rollback_of else None,
        image_tag=source.image_tag if source else None,
        image_id=source.image_id if source else None,
        image_digest=source.image_digest if source else None,
        commit_sha=source.commit_sha if source else commit_sha,
        commit_message=source.commit_message if source else commit_message,
        commit_author=source.commit_author if source else commit_author,
        git_ref=None if source else git_ref,
    )
    if rollback_of is not None:
        _restore_release(deployment, rollback_of, keep_env=keep_env)
    db.session.add(deployment)
    db.session.flush()
    deployment.rq_job_id = f"deploy-{deployment.id}"
    audit.record(
        audit.Action.DEPLOY_STARTED, team_id=app.project.team_id, target=deployment,
        trigger=trigger,
        app=app.name,
    )  # fmt: skip
    if before_commit is not None:
        before_commit(deployment)
    # Built while the rows are loaded: after the commit they would be reloaded.
    changes = livestatus.events_of([*older, deployment])
    db.session.commit()
    try:
        queue("deploy").enqueue(
            "app.jobs.run_deployment",
            deployment.id,
            job_id=deployment.rq_job_id,
            result_ttl=86400,
            failure_ttl=7 * 86400,
        )
        wake(app.id, "queued")  # a deployment of the app in its watch window accepts at once
    except RedisError as exc:
        deployment.mark_failed(f"could not queue the deployment: {exc}")
        db.session.commit()
        changes[-1] |= {"status": deployment.status, "final": True}
        livestatus.publish_events(changes)
        if raise_if_not_queued:
            raise DeployNotQueued(deployment, str(exc)) from exc
        return deployment
    livestatus.publish_events(changes)
    return deployment


def cancel(deployment: Deployment, user: User | None = None) -> None:
    """Cancel a queued deployment now, or ask the worker to stop a building one."""
    if deployment.status == DeploymentStatus.queued.value:
        changed = db.session.execute(
            update(Deployment)
            .where(Deployment.id == deployment.id)
            .where(Deployment.status == DeploymentStatus.queued.value)
            .values(status=DeploymentStatus.cancelled.value, finished_at=utcnow(),
                    error="cancelled before it started")
        ).rowcount  # fmt: skip
        if changed:
            _drop_job(deployment.rq_job_id)
            audit.record(
                audit.Action.DEPLOY_CANCELLED, team_id=deployment.application.project.team_id,
                target=deployment, user_id=user.id if user else None,
            )  # fmt: skip
            db.session.commit()
            db.session.refresh(deployment)
            livestatus.publish(deployment)
            return
        db.session.refresh(deployment)
    if deployment.status != DeploymentStatus.building.value:
        raise DeployError(f"A {deployment.status} deployment cannot be cancelled.")
    redis.client.set(CANCEL_KEY.format(deployment.id), "1", ex=3600)
    audit.record(audit.Action.DEPLOY_CANCEL_REQUESTED,
                 team_id=deployment.application.project.team_id, target=deployment,
                 user_id=user.id if user else None)  # fmt: skip
    db.session.commit()


def cancel_requested(deployment: Deployment) -> bool:
    """Whether a building deployment was asked to stop and has not stopped yet."""
    if deployment.status != DeploymentStatus.building.value:
        return False
    return bool(redis.client.exists(CANCEL_KEY.format(deployment.id)))


def _restore_release(row: Deployment, of: Deployment, *, keep_env: bool) -> None:
    """A rollback runs with the env and settings ``of`` ran with (today's env when asked,
    or when ``of`` is from before deployments recorded them)."""
    row.settings = of.settings
    if keep_env:
        row.env_source = "kept"
    elif of.env_ciphertext:
        row.env_ciphertext, row.env_digest = of.env_ciphertext, of.env_digest
        row.env_source = "restored"
    else:
        row.env_source = "unrecorded"


def rollback(deployment: Deployment, user: User | None = None, *, keep_env: bool = False
             ) -> Deployment:  # fmt: skip
    """Deploy the image of an earlier successful deployment again, without a rebuild,
    with the env and settings it ran with (``keep_env``: today's env)."""
    if not deployment.can_roll_back:
        raise DeployError("Only a deployment that ran successfully can be rolled back to.")
    return start_deploy(
        deployment.application, trigger="rollback", user=user, rollback_of=deployment,
        keep_env=keep_env,
    )  # fmt: skip


def apply(app: Application, user: User | None = None) -> Deployment:
    """Start the serving image again with today's env and settings (no clone, no build),
    through the same switch and watch window as a deploy."""
    return start_deploy(app, trigger="apply", user=user, reuse=_serving_image(app))


def restart(app: Application, user: User | None = None) -> Deployment:
    """Replace the serving version with fresh containers of the same image (today's
    values), through the switch and watch window."""
    return start_deploy(app, trigger="restart", user=user, reuse=_serving_image(app))


def _serving_image(app: Application) -> Deployment:
    found = serving(app.id)
    if found is None or not found.image_id:
        raise DeployError("Nothing is serving yet: deploy the app first.")
    return found


def serving(app_id: int) -> Deployment | None:
    """The deployment whose version serves now: one in its watch window, else the
    running one."""
    watching = db.session.scalar(
        select(Deployment)
        .where(
            Deployment.application_id == app_id,
            Deployment.status == DeploymentStatus.deploying.value,
            Deployment.step == DeployStep.watch.value,
        )
        .order_by(Deployment.id.desc())
    )
    return watching or current(app_id)


def runtime_settings(app: Application) -> dict:
    """What the pipeline reads from the app to run a version (recorded per deployment)."""
    return {
        "container_port": app.container_port,
        "replicas": app.replicas,
        "cpu_limit": app.cpu_limit,
        "memory_limit_mb": app.memory_limit_mb,
        "health_check_path": app.health_check_path,
    }


SETTING_LABELS = {
    "container_port": "container port",
    "replicas": "replicas",
    "cpu_limit": "CPU limit",
    "memory_limit_mb": "memory limit",
    "health_check_path": "health-check path",
}


def not_applied(app: Application, serving_row: Deployment | None) -> list[str] | None:
    """What differs between today's env and settings and the serving deployment's
    (``["environment variables", "replicas", …]``); None when that deployment recorded
    nothing to compare with (it ran before deployments recorded their release)."""
    if serving_row is None or not serving_row.settings or not serving_row.env_digest:
        return None
    changed = []
    if envvars.stored_digest(app) != serving_row.env_digest:
        changed.append("environment variables")
    ran = serving_row.runtime_settings or {}
    now = runtime_settings(app)
    changed += [SETTING_LABELS[k] for k in SETTING_LABELS if ran.get(k) != now[k]]
    return changed


def current(app_id: int) -> Deployment | None:
    """The deployment serving the app now, if any."""
    return db.session.scalar(
        select(Deployment)
        .where(
            Deployment.application_id == app_id,
            Deployment.status == DeploymentStatus.running.value,
        )
        .order_by(Deployment.id.desc())
    )
