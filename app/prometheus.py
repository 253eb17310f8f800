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
        return func.extract("epoch", Deployment.finished_at - Deployment.started_at)
    return (func.julianday(Deployment.finished_at) - func.julianday(Deployment.started_at)) * 86400


def _deployment_metrics() -> Iterator[Metric]:
    outcomes = GaugeMetricFamily(
        "slipway_deployments", "Deployments recorded, by status.", labels=["status"]
    )
    for status, count in db.session.execute(
        select(Deployment.status, func.count()).group_by(Deployment.status)
    ):
        outcomes.add_metric([status], count)
    yield outcomes

    duration = _duration_expression()
    columns = [Deployment.status, func.count(), func.coalesce(func.sum(duration), 0.0)]
    columns += [func.sum(case((duration <= bound, 1), else_=0)) for bound in DEPLOY_BUCKETS]
    rows = db.session.execute(
        select(*columns)
        .where(Deployment.started_at.is_not(None), Deployment.finished_at.is_not(None))
        .group_by(Deployment.status)
    )
    family = HistogramMetricFamily(
        "slipway_deployment_duration_seconds",
        "From the worker taking a deployment to its final state, by final status.",
        labels=["status"],
    )
    for status, count, total, *in_buckets in rows:
        buckets = [(_le(b), int(n or 0)) for b, n in zip(DEPLOY_BUCKETS, in_buckets, strict=True)]
        buckets.append(("+Inf", int(count)))
        family.add_metric([status], buckets, float(total))
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
