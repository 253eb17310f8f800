"""Prometheus figures: request durations (kept in Redis), queues, deployments.

Gunicorn runs several web processes, so request durations are counted in one
Redis hash that every process increments (one pipelined round trip per
request, and only while ``SLIPWAY_METRICS_TOKEN`` is set). The scrape reads it
back as a histogram. Queue depths come from RQ and deployment outcomes and
durations from one aggregate query, both at scrape time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from sqlalchemy import case, func, select

from app.extensions import QUEUE_TIMEOUTS, db, queue, redis
from app.models import Deployment

log = logging.getLogger("slipway.prometheus")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
HTTP_KEY = "slipway:prom:http"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEPLOY_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
QUEUES = tuple(QUEUE_TIMEOUTS)


def _le(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def observe_request(method: str, endpoint: str, status: int, seconds: float) -> None:
    """Count one request in its duration bucket; a Redis hiccup never fails the request."""
    labels = f"{method}|{endpoint}|{status}"
    bucket = next((b for b in HTTP_BUCKETS if seconds <= b), float("inf"))
    try:
        pipe = redis.client.pipeline(transaction=False)
        pipe.hincrby(HTTP_KEY, f"b|{labels}|{_le(bucket)}", 1)
        pipe.hincrbyfloat(HTTP_KEY, f"s|{labels}", seconds)
        pipe.execute()
    except RedisError as exc:
        log.debug("request duration not counted: %s", exc)


def _request_histogram() -> Metric:
    family = HistogramMetricFamily(
        "slipway_http_request_duration_seconds",
        "Time to answer a request, by method, Flask endpoint and status (all web processes).",
        labels=["method", "endpoint", "status"],
    )
    counts: dict[tuple[str, ...], dict[str, int]] = {}
    sums: dict[tuple[str, ...], float] = {}
    for raw_field, raw_value in redis.client.hgetall(HTTP_KEY).items():
        kind, *rest = raw_field.decode().split("|")
        if kind == "b" and len(rest) == 4:
            counts.setdefault(tuple(rest[:3]), {})[rest[3]] = int(raw_value)
        elif kind == "s" and len(rest) == 3:
            sums[tuple(rest)] = float(raw_value)
    for labels, per_bucket in sorted(counts.items()):
        running, buckets = 0, []
        for bound in (*HTTP_BUCKETS, float("inf")):
            running += per_bucket.get(_le(bound), 0)
            buckets.append((_le(bound), running))
        family.add_metric(list(labels), buckets, sums.get(labels, 0.0))
    return family


def _queue_gauges() -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "slipway_queue_jobs", "RQ jobs per queue and state.", labels=["queue", "state"]
    )
    for name in QUEUES:
        q: Queue = queue(name)
        registries = {
            "started": StartedJobRegistry,
            "failed": FailedJobRegistry,
            "deferred": DeferredJobRegistry,
            "scheduled": ScheduledJobRegistry,
        }
        jobs.add_metric([name, "queued"], q.count)
        for state, registry in registries.items():
            jobs.add_metric([name, state], registry(queue=q).count)
    yield jobs
    workers = GaugeMetricFamily("slipway_workers", "RQ workers alive.")
    workers.add_metric([], Worker.count(connection=redis.client))
    yield workers


def _duration_expression():
    if db.engine.dialect.name == "postgresql":
        # date_part is double precision; extract() is numeric, measurably slower
        return func.date_part("epoch", Deployment.finished_at - Deployment.started_at)
    return (func.julianday(Deployment.finished_at) - func.julianday(Deployment.started_at)) * 86400


def _materialized_cte_supported() -> bool:
    """``AS MATERIALIZED``: PostgreSQL 12+, SQLite 3.35+."""
    version = db.engine.dialect.server_version_info or ()
    if db.engine.dialect.name == "sqlite":
        return version >= (3, 35)
    return db.engine.dialect.name == "postgresql" and version >= (12,)


def _deployment_metrics() -> Iterator[Metric]:
    outcomes = GaugeMetricFamily(
        "slipway_deployments", "Deployments recorded, by status.", labels=["status"]
    )
    for status, count in db.session.execute(
        select(Deployment.status, func.count()).group_by(Deployment.status)
    ):
        outcomes.add_metric([status], count)
    yield outcomes

    # One pass: each finished deployment's duration (computed once: a materialized
    # CTE, else the bucket CASE would recompute it per bound), its bucket, grouped.
    finished = (
        select(Deployment.status.label("status"), _duration_expression().label("seconds"))
        .where(Deployment.started_at.is_not(None), Deployment.finished_at.is_not(None))
        .cte("finished")
    )
    if _materialized_cte_supported():
        finished = finished.prefix_with("MATERIALIZED")
    bucket = case(
        *((finished.c.seconds <= bound, index) for index, bound in enumerate(DEPLOY_BUCKETS)),
        else_=len(DEPLOY_BUCKETS),
    ).label("bucket")
    rows = db.session.execute(
        select(finished.c.status, bucket, func.count(), func.sum(finished.c.seconds))
        .group_by(finished.c.status, bucket)
    )  # fmt: skip
    per_status: dict[str, list] = {}
    for status, index, count, total in rows:
        counts, _ = per_status.setdefault(status, [[0] * (len(DEPLOY_BUCKETS) + 1), 0.0])
        counts[index] += count
        per_status[status][1] += float(total or 0)
    family = HistogramMetricFamily(
        "slipway_deployment_duration_seconds",
        "From the worker taking a deployment to its final state, by final status.",
        labels=["status"],
    )
    for status, (counts, total) in sorted(per_status.items()):
        running, buckets = 0, []
        for bound, count in zip((*DEPLOY_BUCKETS, float("inf")), counts, strict=True):
            running += count
            buckets.append((_le(bound), running))
        family.add_metric([status], buckets, total)
    yield family


class SlipwayCollector(Collector):
    """Everything ``/metrics`` shows, read when it is scraped (inside an app context)."""

    def collect(self) -> Iterator[Metric]:
        yield _request_histogram()
        yield from _queue_gauges()
        yield from _deployment_metrics()


def scrape() -> bytes:
    """The Prometheus text exposition of all Slipway figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SlipwayCollector())
    return generate_latest(registry)
