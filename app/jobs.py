"""RQ job functions. They take ids (JSON serializer), reload rows, and write results there."""

from __future__ import annotations

import logging
import time

from flask import Flask
from rq import get_current_job

from app.deploys import pipeline, reaper
from app.extensions import db
from app.models import Deployment
from app.models.base import utcnow
from app.monitoring import metrics
from app.runtime import containers

log = logging.getLogger("slipway.jobs")
_app: Flask | None = None


def bind(app: Flask) -> None:
    """``worker.py`` preloads the app before forking; jobs run inside its context.

    Binding is the worker's start-up, so the engine's unlabelled Slipway objects
    are adopted here, once (``app.runtime.installation``). A test app skips that
    unless ``ADOPT_UNLABELLED`` is off (``SLIPWAY_ADOPT_UNLABELLED=0``; the test
    suite's apps and worker processes have it off): a test run must not claim the
    objects of the installation it shares the engine with.
    """
    global _app
    _app = app
    if app.config["ADOPT_UNLABELLED"]:
        with app.app_context():
            containers.adopt_unlabelled()


def _context():
    global _app
    if _app is None:
        from app import create_app

        _app = create_app(migrations=False, web=False)  # a job renders no page
    return _app.app_context()


def reap_lost_deployments() -> int:
    """Deployments whose worker died end ``failed`` (``app.deploys.reaper``).

    The scheduler enqueues this by its path, ``app.jobs.reap_lost_deployments``.
    """
    with _context():
        return reaper.reap_lost_deployments()


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
        return reaper.remove_app_resources(app_id)


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


# ---- backups ---------------------------------------------------------------------


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


def send_notification(channel_id: int, event: str, object_id: int, attempt: int = 0) -> str:
    """One attempt at a notification; a failure schedules the next (``app.notify.deliver``)."""
    from app import notify

    with _context():
        return notify.deliver(channel_id, event, object_id, attempt)


def notification_attempt_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback of ``send_notification``: the attempt raised or ran out of
    its job timeout (a channel that accepts and never answers); schedule the next."""
    from app import notify

    channel_id, event, object_id, *rest = job.args
    with _context():
        notify.retry_later(channel_id, event, object_id, rest[0] if rest else 0)


def send_password_reset(user_id: int) -> str:
    """Mail a one-time password reset link to the user (``app.accounts.resets``)."""
    from app.accounts import resets

    with _context():
        return resets.send_mail(user_id)


# ---- certificates ----------------------------------------------------------------


def sync_certificates(app_id: int) -> dict:
    """After an app's domains changed: its certificates made, linked, dropped, and what
    is due ordered now (``app.proxy.certs.sync_for_app``)."""
    from app.models import Application
    from app.proxy import certs

    with _context():
        app_row = db.session.get(Application, app_id)
        if app_row is None:
            return {}
        return certs.sync_for_app(app_row)


def retry_certificate(cert_id: int) -> str:
    """**Retry now**: the certificate's next attempt at once (``app.proxy.certs.retry``)."""
    from app.proxy import certs

    with _context():
        return certs.retry(cert_id)


def certificate_tick() -> dict:
    """Every minute: the dashboard host's certificate kept (``app.proxy.dashboard``), then
    due orders, retries and renewals (``app.proxy.certs.tick``)."""
    from app.proxy import certs, dashboard

    with _context():
        dashboard.sync()
        return certs.tick()


def certificate_watch() -> dict:
    """Daily: what Traefik serves for each certificate, and expiry warnings."""
    from app.proxy import certs

    with _context():
        return certs.watch()


def apply_audit_retention() -> dict:
    """Daily: delete audit rows past their team's retention (``app.audit.apply_retention``);
    one log line with the counts."""
    from app import audit

    with _context():
        started = time.monotonic()
        counts = audit.apply_retention()
        log.info("audit retention: %d rows deleted (%d of no team) over %d teams in %.1f s",
                 counts["deleted"], counts["teamless"], counts["teams"],
                 time.monotonic() - started)  # fmt: skip
        return counts


# ---- databases ---------------------------------------------------------------------


def database_create(database_id: int) -> str:
    """A new database: its image pulled if missing, its volume, its first start, ready
    (``app.databases.lifecycle.run_create``)."""
    from app.databases import lifecycle

    with _context():
        return lifecycle.run_create(database_id)


def database_action(database_id: int, action: str) -> str:
    """Start, stop or restart a database's container."""
    from app.databases import lifecycle

    with _context():
        return lifecycle.run_action(database_id, action)


def database_rotate(database_id: int) -> str:
    """A new password in the engine and stored; linked apps redeployed."""
    from app.databases import lifecycle

    with _context():
        return lifecycle.run_rotate(database_id)


def database_delete(database_id: int, final_backup: bool = True) -> str:
    """The final backup, then the container removed and the volume detached."""
    from app.databases import lifecycle

    with _context():
        return lifecycle.run_delete(database_id, final_backup)


# Volumes of apps (app.projects.volumes).
def purge_volume(volume_id: int, user_id: int | None = None) -> bool:
    """The second step of deleting a volume, asked for by an admin (``user_id``): remove
    it now (False while a container still uses it: the hourly purge retries it)."""
    from app.models import User
    from app.models.databases import Volume, VolumeState
    from app.projects import volumes

    with _context():
        volume = db.session.get(Volume, volume_id)
        if volume is None or volume.state != VolumeState.detached.value:
            return False
        by = db.session.get(User, user_id) if user_id else None
        return volumes.purge_now(volume, by=by)


def purge_due_volumes() -> list[int]:
    """Hourly: remove detached volumes whose grace period is over."""
    from app.projects import volumes

    with _context():
        purged = volumes.purge_due()
        if purged:
            log.info("volumes purged after their grace period: %s", purged)
        return purged
