"""The scheduler: APScheduler, elected by a Redis lock, enqueueing only.

It runs in a thread of every ``worker.py`` process (or alone: ``worker.py --scheduler``).

Several may be started; one holds ``slipway:scheduler:leader`` and renews it.
The others wait and take over when the holder stops renewing (it died).
Jobs get deterministic ids per time slot and are enqueued through an atomic
Redis claim on that id (``enqueue_unique``), so a job is queued once however
many schedulers fire it.

Backup policies become cron jobs (``policy-<id>``, in the server's time zone
or ``SLIPWAY_TIMEZONE``); every 30 s the schedule is compared with the policy
rows (id, cron, enabled, updated_at), so changes apply without a restart. A
policy job enqueues ``scheduled_backup(policy, slot)`` under the id
``backup-<policy>-<slot>``, the slot being the cron fire time: two schedulers,
a restart or a catch-up cannot run a slot twice (the backups table also has a
unique (policy, slot)). A run missed while no scheduler was up runs once, if it
is less than ``MISFIRE_GRACE`` old.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from flask import Flask
from redis.exceptions import RedisError
from rq.job import Job
from sqlalchemy import select

from app import jobs
from app.extensions import db, queue, redis
from app.models import Backup, BackupPolicy

log = logging.getLogger("slipway.scheduler")
LEADER_KEY = "slipway:scheduler:leader"
LEASE_SECONDS = 30
RENEW_EVERY = 10
RECONCILE_EVERY = 30
MISFIRE_GRACE = timedelta(hours=1)
CERT_TICK_TIMEOUT = 3600  # orders one after the other, each bounded (app.proxy.certs)
AUDIT_RETENTION_TIMEOUT = 3600  # batches of 10,000 rows, each its own transaction
DRILL_CRON = "0 4 1 * *"  # restore drills: the 1st of every month, 04:00

# Extends the lease only if we still hold it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('expire', KEYS[1], ARGV[2])
end
return 0
"""


def enqueue_once(func, slot_seconds: int, queue_name: str = "default", **options) -> str | None:
    """Enqueue ``func`` under an id made of its name and the current time slot."""
    slot = int(time.time()) // slot_seconds
    job_id = f"sched-{func.__name__}-{slot}"
    return enqueue_unique(queue(queue_name), func, job_id=job_id, claim_seconds=2 * slot_seconds,
                          result_ttl=3600, failure_ttl=86400, **options)  # fmt: skip


def enqueue_unique(q, func, *args, job_id: str, claim_seconds: int, **options) -> str | None:
    """Enqueue ``func(*args)`` as ``job_id`` unless some scheduler already did.

    Checking ``Job.exists`` and then enqueueing is a race: two schedulers firing
    the same slot both see no job and both push the id (the queue then holds it
    twice). A ``SET NX`` claim on the id is atomic, so exactly one caller
    enqueues; ``Job.exists`` still covers a claim that expired while the job
    lived on. A failed enqueue gives the claim back so the slot can be retried.
    """
    claim = f"slipway:scheduler:claim:{job_id}"
    if not redis.client.set(claim, "1", nx=True, ex=max(claim_seconds, 1)):
        return None
    if Job.exists(job_id, connection=q.connection):
        return None
    try:
        q.enqueue(func, *args, job_id=job_id, **options)
    except Exception:
        redis.client.delete(claim)
        raise
    return job_id


def acquire(identity: str) -> bool:
    return bool(redis.client.set(LEADER_KEY, identity, nx=True, ex=LEASE_SECONDS))


def renew(identity: str) -> bool:
    return bool(redis.client.eval(_RENEW, 1, LEADER_KEY, identity, LEASE_SECONDS))


def timezone(app: Flask):
    """The zone cron expressions are read in: ``SLIPWAY_TIMEZONE`` or the server's."""
    if app.config.get("TIMEZONE"):
        from zoneinfo import ZoneInfo

        return ZoneInfo(app.config["TIMEZONE"])
    from tzlocal import get_localzone

    return get_localzone()


def last_fire_time(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time of ``trigger`` in (now - MISFIRE_GRACE, now], if any."""
    found, cursor = None, now - MISFIRE_GRACE
    while True:
        nxt = trigger.get_next_fire_time(found, cursor)
        if nxt is None or nxt > now:
            return found
        found, cursor = nxt, nxt + timedelta(microseconds=1)


def slot_of(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%MZ")


def fire_policy(policy_id: int, cron: str, tz, now: datetime | None = None) -> str | None:
    """Enqueue the backup of the slot that is due now, once; returns the RQ job id."""
    now = now or datetime.now(tz)
    when = last_fire_time(CronTrigger.from_crontab(cron, timezone=tz), now)
    if when is None:
        return None
    slot = slot_of(when)
    job_id = f"backup-{policy_id}-{slot}"
    # The claim outlives the grace period, after which the slot is never fired again.
    return enqueue_unique(queue("backup"), jobs.scheduled_backup, policy_id, slot, job_id=job_id,
                          claim_seconds=int(MISFIRE_GRACE.total_seconds()) * 2,
                          result_ttl=86400, failure_ttl=86400)  # fmt: skip


def _fire_in(app: Flask, policy_id: int, cron: str, tz) -> None:
    with app.app_context():
        fire_policy(policy_id, cron, tz)


def fire_drills(tz) -> str | None:
    now = datetime.now(tz)
    job_id = f"drills-{now:%Y-%m}"
    return enqueue_unique(queue("backup"), jobs.start_monthly_drills, job_id=job_id,
                          claim_seconds=40 * 86400, result_ttl=40 * 86400)  # fmt: skip


def sync_policies(app: Flask, scheduler, scheduled: dict[int, tuple]) -> None:
    """Make the scheduler's policy jobs match the policy rows (``scheduled`` is the memo)."""
    tz = timezone(app)
    with app.app_context():
        rows = db.session.execute(
            select(BackupPolicy.id, BackupPolicy.cron, BackupPolicy.updated_at)
            .where(BackupPolicy.enabled)
        ).all()  # fmt: skip
        wanted = {r.id: (r.cron, r.updated_at) for r in rows}
        for policy_id in [p for p in scheduled if scheduled[p] != wanted.get(p)]:
            scheduler.remove_job(f"policy-{policy_id}")
            del scheduled[policy_id]
        for policy_id, (cron, version) in wanted.items():
            if policy_id in scheduled:
                continue
            trigger = CronTrigger.from_crontab(cron, timezone=tz)
            missed = last_fire_time(trigger, datetime.now(tz))
            extra = {}
            if missed is not None and not _slot_done(policy_id, slot_of(missed)):
                extra["next_run_time"] = missed  # runs once now: coalesce + grace
            scheduler.add_job(
                _fire_in, trigger, args=(app, policy_id, cron, tz), id=f"policy-{policy_id}",
                misfire_grace_time=int(MISFIRE_GRACE.total_seconds()), coalesce=True, **extra,
            )  # fmt: skip
            scheduled[policy_id] = (cron, version)
        db.session.remove()


def _slot_done(policy_id: int, slot: str) -> bool:
    return db.session.scalar(
        select(Backup.id).where(Backup.policy_id == policy_id, Backup.slot == slot)
    ) is not None  # fmt: skip


def build(app: Flask) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone=timezone(app),
    )

    def reaper() -> None:
        with app.app_context():
            enqueue_once(jobs.reap_lost_deployments, 30)
            enqueue_once(jobs.reap_lost_backups, 30)

    scheduled: dict[int, tuple] = {}

    def reconcile() -> None:
        try:
            sync_policies(app, scheduler, scheduled)
        except Exception:  # noqa: BLE001 - a bad row must not stop the schedule
            log.exception("could not reconcile the backup policies")

    def drills() -> None:
        with app.app_context():
            fire_drills(timezone(app))

    scheduler.add_job(reaper, "interval", seconds=30, id="reaper")

    def metric_sampler() -> None:
        with app.app_context():
            enqueue_once(jobs.sample_metrics, 15)
            enqueue_once(jobs.maintain_metrics, 60)

    scheduler.add_job(metric_sampler, "interval", seconds=15, id="metrics")

    def certificates() -> None:
        # The tick may order several certificates in a row: a long job timeout. The daily
        # watch is claimed per UTC day, so this check each minute queues it once a day.
        with app.app_context():
            enqueue_once(jobs.certificate_tick, 60, job_timeout=CERT_TICK_TIMEOUT)
            enqueue_once(jobs.certificate_watch, 86400)

    def audit_retention() -> None:
        # Claimed per UTC day: the hourly check queues it once a day, and a scheduler
        # that was down at any given hour still runs it that day.
        with app.app_context():
            enqueue_once(jobs.apply_audit_retention, 86400, job_timeout=AUDIT_RETENTION_TIMEOUT)

    scheduler.add_job(audit_retention, "interval", seconds=3600, id="audit-retention",
                      next_run_time=datetime.now(UTC))  # fmt: skip

    def volume_purge() -> None:
        # Detached volumes past their grace period; one still in use is retried next hour.
        with app.app_context():
            enqueue_once(jobs.purge_due_volumes, 3600)

    scheduler.add_job(volume_purge, "interval", seconds=3600, id="volume-purge",
                      next_run_time=datetime.now(UTC))  # fmt: skip
    scheduler.add_job(certificates, "interval", seconds=60, id="certificates",
                      next_run_time=datetime.now(UTC))  # fmt: skip
    scheduler.add_job(
        reconcile, "interval", seconds=RECONCILE_EVERY, id="policies",
        next_run_time=datetime.now(UTC),
    )  # fmt: skip
    scheduler.add_job(
        drills, CronTrigger.from_crontab(DRILL_CRON, timezone=timezone(app)), id="drills"
    )
    return scheduler


def leader_services(app: Flask) -> list:
    """What runs only in the leader besides the APScheduler, each with ``start()`` and
    ``stop()``: started when this process takes the lease, stopped when it loses it or
    stops: the runtime watcher (``app.runtime.watch``), one per installation."""
    from app.runtime import watch

    return [watch.Watcher(app)]


class _Leadership:
    """The APScheduler and the leader-only services while this process holds the lease."""

    def __init__(self, app: Flask):
        self.scheduler = build(app)
        self.services = leader_services(app)

    def start(self) -> None:
        self.scheduler.start()
        for service in self.services:
            service.start()

    def stop(self) -> None:
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - the others must still stop
                log.exception("could not stop %r", service)
        self.scheduler.shutdown(wait=False)


def run(app: Flask, stop: threading.Event | None = None) -> None:
    """Wait for leadership, schedule while holding it, stop on SIGTERM/SIGINT.

    A Redis error (Redis restarting, the network gone) does not end the loop: the
    lease can no longer be proven, so it counts as lost leadership (the APScheduler
    and the leader services stop, as another scheduler may take over) and the lease
    is tried again every ``RENEW_EVERY`` seconds. In ``worker.py`` this runs in a
    thread of the worker process (the signals are the process's, not this loop's).
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    identity = f"{uuid.uuid4()}"
    scheduler: _Leadership | None = None
    with app.app_context():
        while not stop.is_set():
            try:
                if scheduler is None:
                    if acquire(identity):
                        log.info("scheduler %s is the leader", identity)
                        scheduler = _Leadership(app)
                        scheduler.start()
                elif not renew(identity):
                    log.warning("scheduler %s lost leadership", identity)
                    scheduler.stop()
                    scheduler = None
            except RedisError as exc:
                log.warning("scheduler %s: Redis error (%s); retrying in %s s", identity, exc,
                            RENEW_EVERY)  # fmt: skip
                if scheduler is not None:
                    scheduler.stop()
                    scheduler = None
            stop.wait(RENEW_EVERY)
        if scheduler is not None:
            scheduler.stop()
            try:
                if redis.client.get(LEADER_KEY) == identity.encode():
                    redis.client.delete(LEADER_KEY)
            except RedisError as exc:  # the lease expires on its own
                log.warning("scheduler %s: could not release the lease: %s", identity, exc)
