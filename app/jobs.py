"""RQ job functions. They take ids (JSON serializer), reload rows, and write results there."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.worker import Worker
from sqlalchemy import select

from app.extensions import db, redis
from app.models import ACTIVE_STATUSES, Deployment
from app.models.base import utcnow

log = logging.getLogger("slipway.jobs")
_app: Flask | None = None

# A queued deployment whose job cannot be found after this long was lost.
LOST_GRACE = timedelta(seconds=60)


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


def _job_is_alive(job_id: str | None, live_workers: set[str]) -> bool:
    if not job_id:
        return False
    try:
        job = Job.fetch(job_id, connection=redis.client, serializer=JSONSerializer)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
        return True
    if status == JobStatus.STARTED:
        return job.worker_name in live_workers
    return False


def reap_lost_deployments() -> int:
    """Mark deployments whose RQ job is gone (worker killed, job lost) as failed.

    Returns how many were marked, so the scheduler log says what it did.
    """
    with _context():
        live = {w.name for w in Worker.all(connection=redis.client)}
        cutoff = utcnow() - LOST_GRACE
        reaped = 0
        active = db.session.scalars(
            select(Deployment).where(Deployment.status.in_([s.value for s in ACTIVE_STATUSES]))
        )
        for deployment in active:
            created = deployment.created_at
            if created.tzinfo is None:  # SQLite returns naive UTC
                created = created.replace(tzinfo=cutoff.tzinfo)
            if created > cutoff or _job_is_alive(deployment.rq_job_id, live):
                continue
            deployment.mark_failed("worker lost: its job is no longer running")
            log.warning("deployment %s: worker lost, marked failed", deployment.id)
            reaped += 1
        db.session.commit()
        return reaped
