"""The Workers page's facts, read from RQ's own registries and worker heartbeats.

The page is installation-wide, so it shows job ids, function names and a
one-line exception summary, never job arguments or results. Slipway's jobs take
ids anyway; the summary has URL credentials masked and is cut short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import JSONSerializer
from rq.worker import Worker

from app import audit
from app.extensions import QUEUE_TIMEOUTS, db, queue, redis

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+(:[^/\s@]*)?@")
_ASSIGNED_SECRET = re.compile(r"(?i)\b(password|passwd|secret|token|key)=\S+")
SUMMARY_LENGTH = 200
FAILED_SHOWN = 50


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    hostname: str | None
    pid: int | None
    state: str
    queues: list[str]
    current_job_id: str | None
    current_function: str | None
    last_heartbeat: datetime | None
    started: datetime | None
    successful: int
    failed: int


@dataclass(frozen=True)
class QueueInfo:
    name: str
    queued: int
    started: int
    failed: int
    deferred: int
    scheduled: int


@dataclass(frozen=True)
class FailedJob:
    id: str
    queue: str
    function: str | None
    ended_at: datetime | None
    error: str


def _function(job_id: str | None) -> str | None:
    if not job_id:
        return None
    try:
        return Job.fetch(job_id, connection=redis.client, serializer=JSONSerializer).func_name
    except NoSuchJobError:
        return None
    except Exception:  # noqa: BLE001 - a payload we cannot read: show the id alone
        return None


def workers() -> list[WorkerInfo]:
    """Every worker registered in Redis, with its heartbeat and current job."""
    found = []
    for worker in Worker.all(connection=redis.client, serializer=JSONSerializer):
        current = worker.get_current_job_id()
        found.append(
            WorkerInfo(
                name=worker.name,
                hostname=worker.hostname,
                pid=worker.pid,
                state=worker.get_state(),
                queues=worker.queue_names(),
                current_job_id=current,
                current_function=_function(current),
                last_heartbeat=worker.last_heartbeat,
                started=worker.birth_date,
                successful=worker.successful_job_count,
                failed=worker.failed_job_count,
            )  # fmt: skip
        )
    return sorted(found, key=lambda w: w.name)


def queues() -> list[QueueInfo]:
    """Depth of each queue Slipway uses, and the size of its registries."""
    result = []
    for name in QUEUE_TIMEOUTS:
        q = queue(name)
        result.append(
            QueueInfo(
                name=name,
                queued=q.count,
                started=StartedJobRegistry(queue=q).count,
                failed=FailedJobRegistry(queue=q).count,
                deferred=DeferredJobRegistry(queue=q).count,
                scheduled=ScheduledJobRegistry(queue=q).count,
            )  # fmt: skip
        )
    return result


def error_summary(text: str | None) -> str:
    """The last line of a traceback (the exception), credentials masked, cut short."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    summary = lines[-1] if lines else "no error recorded"
    summary = _URL_CREDENTIALS.sub(r"\1***@", summary)
    summary = _ASSIGNED_SECRET.sub(r"\1=***", summary)
    if len(summary) > SUMMARY_LENGTH:
        summary = summary[: SUMMARY_LENGTH - 1] + "…"
    return summary


def _failed(job: Job, queue_name: str) -> FailedJob:
    result = job.latest_result()
    return FailedJob(
        id=job.id, queue=queue_name, function=job.func_name, ended_at=job.ended_at,
        error=error_summary(result.exc_string if result is not None else None),
    )  # fmt: skip


def failed_jobs(limit: int = FAILED_SHOWN) -> list[FailedJob]:
    """The newest failed jobs of every queue (at most ``limit`` per queue)."""
    found = []
    for name in QUEUE_TIMEOUTS:
        registry = FailedJobRegistry(queue=queue(name))
        ids = registry.get_job_ids(0, limit - 1, desc=True)
        jobs = Job.fetch_many(ids, connection=redis.client, serializer=JSONSerializer)
        found.extend(_failed(job, name) for job in jobs if job is not None)
    return sorted(found, key=lambda j: j.ended_at.timestamp() if j.ended_at else 0, reverse=True)


def find_failed(job_id: str) -> tuple[str, Job] | None:
    """(queue name, job) when ``job_id`` is in a failed registry, else None."""
    if not JOB_ID.match(job_id):
        return None
    for name in QUEUE_TIMEOUTS:
        registry = FailedJobRegistry(queue=queue(name))
        if registry.connection.zscore(registry.key, job_id) is None:
            continue
        try:
            return name, Job.fetch(job_id, connection=redis.client, serializer=JSONSerializer)
        except NoSuchJobError:
            return None
    return None


def retry(job_id: str, *, team_id: int | None = None) -> FailedJob | None:
    """Put a failed job back on its queue; None when it is not a failed job (any more).

    The audit row has no team unless one is given: the queues are installation-wide."""
    found = find_failed(job_id)
    if found is None:
        return None
    name, job = found
    info = _failed(job, name)
    try:
        FailedJobRegistry(queue=queue(name)).requeue(job)
    except InvalidJobOperation:
        return None  # someone else retried it first
    audit.record(
        audit.Action.JOB_RETRIED, team_id=team_id, job_id=info.id, queue=info.queue,
        function=info.function,
    )  # fmt: skip
    db.session.commit()
    return info
