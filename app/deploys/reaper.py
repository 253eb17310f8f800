"""The deployment reaper: deployments whose worker died end ``failed``.

The scheduler runs it every few seconds (``app.jobs.reap_lost_deployments``). A
deployment is lost when its queued job vanished from Redis, or when its pipeline
stopped refreshing the heartbeat key. Half-started containers of a lost
deployment are removed, unless Traefik routes to them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import select

from app.deploys import livestatus, pipeline
from app.extensions import db, redis
from app.models import ACTIVE_STATUSES, Deployment, DeploymentStatus, Project
from app.models.base import utcnow
from app.proxy import traefik
from app.runtime import containers

log = logging.getLogger("slipway.reaper")

# A deployment younger than this is never reaped (its job may be starting).
LOST_GRACE = timedelta(seconds=30)


def _job_status(job_id: str | None) -> JobStatus | None:
    if not job_id:
        return None
    try:
        job = Job.fetch(job_id, connection=redis.client, serializer=JSONSerializer)
    except NoSuchJobError:
        return None
    return job.get_status(refresh=False)


def _is_lost(deployment: Deployment, cutoff: datetime) -> bool:
    created = deployment.created_at
    if created > cutoff:
        return False
    if deployment.status == DeploymentStatus.queued:
        status = _job_status(deployment.rq_job_id)
        if status == JobStatus.STARTED:
            # Its job waits for the app's lock or a build slot: alive while it beats.
            return not pipeline.is_alive(deployment.id)
        return status not in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
    # building / deploying: the pipeline's heartbeat says whether it is still alive.
    return not pipeline.is_alive(deployment.id)


def reap_lost_deployments() -> int:
    """Mark deployments whose worker died (no heartbeat) or whose job vanished as failed.

    Their half-started containers are removed, unless Traefik routes to them.
    Returns how many were marked, so the scheduler log says what it did.
    """
    cutoff = utcnow() - LOST_GRACE
    lost = [
        d for d in db.session.scalars(
            select(Deployment).where(Deployment.status.in_([s.value for s in ACTIVE_STATUSES]))
        )
        if _is_lost(d, cutoff)
    ]  # fmt: skip
    for deployment in lost:
        deployment.mark_failed("worker lost: its job is no longer running")
        log.warning("deployment %s: worker lost, marked failed", deployment.id)
    db.session.commit()
    livestatus.publish(lost)
    for deployment in lost:
        _remove_unserving(deployment)
    return len(lost)


def _remove_unserving(deployment: Deployment) -> None:
    try:
        port = deployment.application.container_port
        version = containers.find_version(deployment.id, port)
        if not version.replicas:
            return
        served = traefik.served_by(deployment.application_id) or set()
        if served & set(version.endpoints):
            return
        containers.stop_version(version, timeout=2)
    except Exception:  # noqa: BLE001 - Docker or Traefik away: the next pass retries
        log.warning("could not clean up deployment %s", deployment.id)


class CleanupIncomplete(RuntimeError):
    """Something of a deleted app is still there: the job fails, so the Workers page shows
    it and its Retry finishes the cleanup."""


def remove_app_resources(app_id: int) -> int:
    """After an app is deleted: its route file, its containers, its images, and the
    networks of projects that are gone. Idempotent: a second run (or one racing it) finds
    less to do and succeeds.

    The route goes first, so from then on Traefik answers 404 for the app's hosts rather
    than 502 for containers on their way out. A container already gone or being removed
    by someone else counts as removed. Raises :class:`CleanupIncomplete` (after logging
    what is left) only when a container or an image of the app is really still there.

    Returns how many containers were there to remove.
    """
    traefik.remove_app_routes(app_id)
    ids = containers.containers_of(app_id=app_id)
    containers.stop_and_remove(ids, timeout=current_app.config["STOP_TIMEOUT_SECONDS"])
    containers.prune_images(app_id, keep_tags=set())
    containers.prune_networks(set(db.session.scalars(select(Project.id))))
    left_containers = containers.containers_of(app_id=app_id)
    left_images = containers.app_images(app_id)
    if left_containers or left_images:
        log.error(
            "app %s: cleanup left %d containers %s and images %s; retry the job",
            app_id, len(left_containers), [c[:12] for c in left_containers], left_images,
        )  # fmt: skip
        raise CleanupIncomplete(
            f"app {app_id}: {len(left_containers)} containers and {len(left_images)} images "
            "are still there (see the worker log); retry the job to finish the cleanup"
        )
    return len(ids)
