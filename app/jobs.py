"""RQ job functions. They take ids (JSON serializer), reload rows, and write results there."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, current_app
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import select

from app.deploys import livestatus, pipeline
from app.extensions import db, redis
from app.models import ACTIVE_STATUSES, Deployment
from app.models.base import utcnow
from app.monitoring import metrics
from app.proxy import traefik
from app.runtime import containers

log = logging.getLogger("slipway.jobs")
_app: Flask | None = None

# A deployment younger than this is never reaped (its job may be starting).
LOST_GRACE = timedelta(seconds=30)


def bind(app: Flask) -> None:
    """``worker.py`` preloads the app before forking; jobs run inside its context."""
    global _app
    _app = app


def _context():
    global _app
    if _app is None:
        from app import create_app

        _app = create_app()
    return _app.app_context()


def _queued_job_exists(job_id: str | None) -> bool:
    if not job_id:
        return False
    try:
        job = Job.fetch(job_id, connection=redis.client, serializer=JSONSerializer)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in (
        JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.STARTED
    )  # fmt: skip


def _is_lost(deployment: Deployment, cutoff) -> bool:
    created = deployment.created_at
    if created.tzinfo is None:  # SQLite returns naive UTC
        created = created.replace(tzinfo=cutoff.tzinfo)
    if created > cutoff:
        return False
    if deployment.status == "queued":
        return not _queued_job_exists(deployment.rq_job_id)
    # building / deploying: the pipeline's heartbeat says whether it is still alive.
    return not pipeline.is_alive(deployment.id)


def reap_lost_deployments() -> int:
    """Mark deployments whose worker died (no heartbeat) or whose job vanished as failed.

    Their half-started containers are removed, unless Traefik routes to them.
    Returns how many were marked, so the scheduler log says what it did.
    """
    with _context():
        cutoff = utcnow() - LOST_GRACE
        lost = [
            d for d in db.session.scalars(
                select(Deployment).where(
                    Deployment.status.in_([s.value for s in ACTIVE_STATUSES])
                )
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
        ids = containers.containers_of(deployment_id=deployment.id)
        if not ids:
            return
        served = traefik.served_by(deployment.application_id) or set()
        port = deployment.application.container_port
        if any(f"http://{a}:{port}" in served for a in containers.addresses(ids)):
            return
        containers.stop_and_remove(ids, timeout=2)
    except Exception:  # noqa: BLE001 - Docker or Traefik away: the next pass retries
        log.warning("could not clean up deployment %s", deployment.id)


def run_deployment(deployment_id: int) -> str:
    """The deploy pipeline for one deployment (``app.pipeline``); a failure notifies."""
    with _context():
        status = pipeline.run(deployment_id)
        if status == "failed":
            from app import notify
            from app.models import NotificationEvent

            deployment = db.session.get(Deployment, deployment_id)
            team_id = deployment.application.project.team_id
            notify.event(team_id, NotificationEvent.deploy_failed, deployment_id)
        return status


def remove_app_resources(app_id: int) -> int:
    """After an app is deleted: its containers, its route file and its images."""
    with _context():
        ids = containers.containers_of(app_id=app_id)
        containers.stop_and_remove(ids, timeout=current_app.config["STOP_TIMEOUT_SECONDS"])
        traefik.remove_app_routes(app_id)
        containers.prune_images(app_id, keep_tags=set())
        return len(ids)


def _stale(max_age_seconds: float) -> bool:
    """Whether this job waited longer than its slot (the worker was busy with a deploy)."""
    job = get_current_job()
    if job is None or job.enqueued_at is None:
        return False
    enqueued = job.enqueued_at
    if enqueued.tzinfo is None:  # RQ stores naive UTC
        enqueued = enqueued.replace(tzinfo=utcnow().tzinfo)
    return (utcnow() - enqueued).total_seconds() > max_age_seconds


def sample_metrics() -> int:
    """One round of metric samples; a round that waited past its 15 s slot is skipped,
    since its timestamp would be wrong and the next round is already queued."""
    with _context():
        if _stale(metrics.RAW):
            log.info("metric sample skipped: it waited longer than its slot")
            return 0
        return metrics.sample()


def maintain_metrics() -> list[int]:
    """Downsample and prune metric samples: [rows written, rows deleted]."""
    with _context():
        return list(metrics.maintain())


# ---- backups (issue 6) ---------------------------------------------------------


def run_backup(backup_id: int) -> str:
    """One backup run (``app.backups.run``)."""
    from app.backups import runs

    with _context():
        return runs.run(backup_id)


def scheduled_backup(policy_id: int, slot: str) -> str:
    """The scheduler's nightly run of a policy for one time slot; a slot runs once."""
    from app.backups import runs

    with _context():
        backup = runs.row_for_slot(policy_id, slot)
        if backup is None:
            return "skipped"
        return runs.run(backup.id)


def reap_lost_backups() -> int:
    """Backups whose worker died end ``failed``; their multipart uploads are aborted."""
    from app.backups import runs

    with _context():
        return runs.reap_lost()


def run_restore(restore_id: int) -> str:
    """One restore or restore drill (``app.restores.run``)."""
    from app.backups import restores

    with _context():
        return restores.run(restore_id)


def start_monthly_drills() -> int:
    """Queue a restore drill of each policy's latest good backup."""
    from app.backups import restores

    with _context():
        return restores.start_monthly_drills()


def send_notification(channel_id: int, event: str, object_id: int) -> str:
    """Deliver one notification, with retries (``app.notify.deliver``)."""
    from app import notify

    with _context():
        return notify.deliver(channel_id, event, object_id)
