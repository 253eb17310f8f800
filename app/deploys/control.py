"""Starting, cancelling and rolling back deployments: the one entry point for every trigger.

A button, the API, a webhook or a rollback calls :func:`start_deploy`, which
inserts a ``queued`` row, supersedes older queued rows of the same app, and
enqueues the row's id on the ``deploy`` queue. The request returns at once;
``app.deploys.pipeline`` does the work in the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.exceptions import RedisError
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import select, update

from app import audit
from app.deploys import livestatus
from app.extensions import db, queue, redis
from app.models import SERVED_STATUSES, Application, Deployment, DeploymentStatus, User
from app.models.base import utcnow

log = logging.getLogger("slipway.deploys")
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
    commit_sha: str | None = None,
    commit_message: str | None = None,
    commit_author: str | None = None,
    git_ref: str | None = None,
    before_commit: Callable[[Deployment], None] | None = None,
    raise_if_not_queued: bool = False,
) -> Deployment:
    """Queue a deployment of ``app``; older queued ones become ``superseded``.

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
    deployment = Deployment(
        application_id=app.id,
        status=DeploymentStatus.queued.value,
        trigger=trigger,
        triggered_by_id=user.id if user else None,
        rollback_of_id=rollback_of.id if rollback_of else None,
        image_tag=rollback_of.image_tag if rollback_of else None,
        image_id=rollback_of.image_id if rollback_of else None,
        commit_sha=rollback_of.commit_sha if rollback_of else commit_sha,
        commit_message=rollback_of.commit_message if rollback_of else commit_message,
        commit_author=rollback_of.commit_author if rollback_of else commit_author,
        git_ref=None if rollback_of else git_ref,
    )
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
                audit.Action.DEPLOY_CANCELLED, target=deployment, user_id=user.id if user else None
            )
            db.session.commit()
            db.session.refresh(deployment)
            livestatus.publish(deployment)
            return
        db.session.refresh(deployment)
    if deployment.status != DeploymentStatus.building.value:
        raise DeployError(f"A {deployment.status} deployment cannot be cancelled.")
    redis.client.set(CANCEL_KEY.format(deployment.id), "1", ex=3600)
    audit.record(audit.Action.DEPLOY_CANCEL_REQUESTED, target=deployment,
                  user_id=user.id if user else None)  # fmt: skip
    db.session.commit()


def cancel_requested(deployment: Deployment) -> bool:
    """Whether a building deployment was asked to stop and has not stopped yet."""
    if deployment.status != DeploymentStatus.building.value:
        return False
    return bool(redis.client.exists(CANCEL_KEY.format(deployment.id)))


def rollback(deployment: Deployment, user: User | None = None) -> Deployment:
    """Deploy the image of an earlier successful deployment again, without a rebuild."""
    if not deployment.can_roll_back:
        raise DeployError("Only a deployment that ran successfully can be rolled back to.")
    return start_deploy(
        deployment.application, trigger="rollback", user=user, rollback_of=deployment
    )


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
