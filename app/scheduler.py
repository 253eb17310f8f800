"""The scheduler process: APScheduler, elected by a Redis lock, enqueueing only.

Several may be started; one holds ``slipway:scheduler:leader`` and renews it.
The others wait and take over when the holder stops renewing (it died).
Jobs get deterministic ids per time slot, so a job already queued is not
queued again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from rq.job import Job

from app import jobs
from app.extensions import queue, redis

log = logging.getLogger("slipway.scheduler")
LEADER_KEY = "slipway:scheduler:leader"
LEASE_SECONDS = 30
RENEW_EVERY = 10

# Extends the lease only if we still hold it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('expire', KEYS[1], ARGV[2])
end
return 0
"""


def enqueue_once(func, slot_seconds: int, queue_name: str = "default") -> str | None:
    """Enqueue ``func`` under an id made of its name and the current time slot."""
    slot = int(time.time()) // slot_seconds
    job_id = f"sched-{func.__name__}-{slot}"
    q = queue(queue_name)
    if Job.exists(job_id, connection=q.connection):
        return None
    q.enqueue(func, job_id=job_id, result_ttl=3600, failure_ttl=86400)
    return job_id


def acquire(identity: str) -> bool:
    return bool(redis.client.set(LEADER_KEY, identity, nx=True, ex=LEASE_SECONDS))


def renew(identity: str) -> bool:
    return bool(redis.client.eval(_RENEW, 1, LEADER_KEY, identity, LEASE_SECONDS))


def build(app: Flask) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
    )

    def reaper() -> None:
        with app.app_context():
            enqueue_once(jobs.reap_lost_deployments, 30)

    scheduler.add_job(reaper, "interval", seconds=30, id="reaper")

    def metric_sampler() -> None:
        with app.app_context():
            enqueue_once(jobs.sample_metrics, 15)
            enqueue_once(jobs.maintain_metrics, 60)

    scheduler.add_job(metric_sampler, "interval", seconds=15, id="metrics")
    return scheduler


def run(app: Flask, stop: threading.Event | None = None) -> None:
    """Wait for leadership, schedule while holding it, stop on SIGTERM/SIGINT."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    identity = f"{uuid.uuid4()}"
    scheduler: BackgroundScheduler | None = None
    with app.app_context():
        while not stop.is_set():
            if scheduler is None:
                if acquire(identity):
                    log.info("scheduler %s is the leader", identity)
                    scheduler = build(app)
                    scheduler.start()
            elif not renew(identity):
                log.warning("scheduler %s lost leadership", identity)
                scheduler.shutdown(wait=False)
                scheduler = None
            stop.wait(RENEW_EVERY)
        if scheduler is not None:
            scheduler.shutdown(wait=False)
            if redis.client.get(LEADER_KEY) == identity.encode():
                redis.client.delete(LEADER_KEY)
