"""Metric samples: take them (worker), downsample and prune them, read them for charts.

Every 15 s the worker samples each running app container (Docker stats, the
replicas of one app summed), each running database container and the host (psutil)
into ``metric_samples`` at resolution 15. A maintenance job folds complete minutes
into 60 s rows and complete quarter hours into 900 s rows, then prunes each resolution past its
retention, so a series holds a bounded number of rows (see RETENTION).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psutil
from sqlalchemy import delete, func, select

from app.extensions import db
from app.models import Application, MetricSample, MetricScope
from app.models.base import utcnow
from app.runtime import containers

log = logging.getLogger("slipway.metrics")

RAW = 15
# resolution (s) → how long its rows are kept
RETENTION = {RAW: timedelta(hours=2), 60: timedelta(hours=26), 900: timedelta(days=7)}
# target resolution ← source resolution
DOWNSAMPLE = ((60, RAW), (900, 60))
# a chart range → (resolution it reads, how far back)
RANGES = {
    "hour": (RAW, timedelta(hours=1)),
    "day": (60, timedelta(days=1)),
    "week": (900, timedelta(days=7)),
}
HOST_CPU_INTERVAL = 1.0


@dataclass(frozen=True)
class Figures:
    cpu_percent: float | None
    mem_bytes: int | None
    mem_limit_bytes: int | None
    net_rx_bytes: int | None
    net_tx_bytes: int | None


def container_figures(doc: dict, host_memory: int | None = None) -> Figures | None:
    """CPU %, memory without page cache and network counters from a Docker stats document.

    CPU % is the container's share of the host over the engine's two readings
    (``cpu_stats`` vs ``precpu_stats``) times the online CPUs, as ``docker
    stats`` shows it. Memory excludes inactive file cache (cgroup v1
    ``total_inactive_file``, v2 ``inactive_file``). A container without a memory
    limit reports the host's memory as its limit: that is no limit (None).
    Returns None for a document without readings (the container stopped).
    """
    cpu, pre = doc.get("cpu_stats") or {}, doc.get("precpu_stats") or {}
    usage = (cpu.get("cpu_usage") or {}).get("total_usage")
    if usage is None:
        return None
    cpu_percent = 0.0
    cpu_delta = usage - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = (
        cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    )
    if pre.get("system_cpu_usage") and system_delta > 0 and cpu_delta >= 0:
        cpu_percent = cpu_delta / system_delta * online * 100.0
    memory = doc.get("memory_stats") or {}
    mem = memory.get("usage")
    if mem is not None:
        stats = memory.get("stats") or {}
        cache = stats.get("total_inactive_file", stats.get("inactive_file", 0))
        mem = mem - cache if cache < mem else mem
    networks = (doc.get("networks") or {}).values()
    limit = memory.get("limit")
    if limit and host_memory and limit >= host_memory:
        limit = None
    return Figures(
        cpu_percent=round(cpu_percent, 3),
        mem_bytes=mem,
        mem_limit_bytes=limit,
        net_rx_bytes=sum(n.get("rx_bytes", 0) for n in networks) if networks else None,
        net_tx_bytes=sum(n.get("tx_bytes", 0) for n in networks) if networks else None,
    )


def _total(values: Iterable[int | float | None]) -> int | float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def host_figures(cpu_interval: float = HOST_CPU_INTERVAL) -> Figures:
    """The host's CPU % (over ``cpu_interval``), memory in use and external network counters.

    Loopback and Docker's bridges and veths are left out of the network sums:
    they would count container traffic twice.
    """
    cpu = psutil.cpu_percent(interval=cpu_interval)
    memory = psutil.virtual_memory()
    nics = psutil.net_io_counters(pernic=True)
    external = [
        c for name, c in nics.items()
        if name != "lo" and not name.startswith(("veth", "docker", "br-"))
    ]  # fmt: skip
    return Figures(
        cpu_percent=cpu,
        mem_bytes=memory.total - memory.available,
        mem_limit_bytes=memory.total,
        net_rx_bytes=sum(c.bytes_recv for c in external),
        net_tx_bytes=sum(c.bytes_sent for c in external),
    )


def _summed(figures: list[Figures]) -> Figures:
    """The replicas of one app as one: each figure summed."""
    return Figures(
        *(_total(getattr(f, name) for f in figures) for name in Figures.__dataclass_fields__)
    )


def _sample(scope: MetricScope, now: datetime, count: int, f: Figures, **owner) -> MetricSample:
    return MetricSample(
        scope=scope.value, ts=now, resolution=RAW, containers=count,
        cpu_percent=f.cpu_percent, mem_bytes=f.mem_bytes, mem_limit_bytes=f.mem_limit_bytes,
        net_rx_bytes=f.net_rx_bytes, net_tx_bytes=f.net_tx_bytes, **owner,
    )  # fmt: skip


def sample(now: datetime | None = None) -> int:
    """Take one round of samples: each app with running containers, and the host.

    Host CPU is measured in a thread while the engine answers for the
    containers, so a round takes about as long as the slowest stats call.
    Returns how many rows were written.
    """
    now = now or utcnow()
    host: list[Figures] = []
    thread = threading.Thread(target=lambda: host.append(host_figures()), daemon=True)
    thread.start()
    try:
        listed = containers.running_app_containers()
        databases = containers.running_database_containers()
        docs = containers.raw_stats([*listed, *databases])
    except Exception as exc:  # noqa: BLE001 - the engine away: the host is still sampled
        log.warning("container stats unavailable: %s", exc)
        listed, databases, docs = {}, {}, {}
    per_app: dict[int, list[Figures]] = {}
    per_database: dict[int, Figures] = {}
    host_memory = psutil.virtual_memory().total
    for cid, doc in docs.items():
        figures = container_figures(doc, host_memory)
        if figures is None:
            continue
        if cid in listed:
            per_app.setdefault(listed[cid], []).append(figures)
        else:
            per_database[databases[cid]] = figures
    known = set(
        db.session.scalars(select(Application.id).where(Application.id.in_(per_app)))
    ) if per_app else set()  # fmt: skip
    rows = [
        _sample(MetricScope.app, now, len(figs), _summed(figs), application_id=app_id)
        for app_id, figs in sorted(per_app.items())
        if app_id in known  # a container of a deleted app is being removed
    ]
    rows += [
        _sample(MetricScope.database, now, 1, figures, database_id=database_id)
        for database_id, figures in sorted(per_database.items())
    ]
    thread.join()
    if host:
        rows.append(_sample(MetricScope.host, now, len(docs), host[0]))
    db.session.add_all(rows)
    db.session.commit()
    return len(rows)


# ---- downsampling and retention ---------------------------------------------


def _epoch(ts: datetime) -> float:
    return ts.timestamp()  # aware: the column type returns UTC (models.base.UTCDateTime)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def fold(rows: list[MetricSample], resolution: int, before: float) -> list[MetricSample]:
    """Fold rows of one series into buckets of ``resolution`` seconds starting before ``before``.

    Gauges (CPU, memory, its limit, containers) are averaged over the rows in
    the bucket; the network counters keep the bucket's last reading, so the
    rate between two buckets is still their difference over the time between.
    Only whole buckets (ending at or before ``before``) are folded.
    """
    buckets: dict[int, list[MetricSample]] = {}
    for row in rows:
        start = int(_epoch(row.ts)) // resolution * resolution
        if start + resolution <= before:
            buckets.setdefault(start, []).append(row)
    folded = []
    for start, members in sorted(buckets.items()):
        members.sort(key=lambda r: _epoch(r.ts))
        last = members[-1]
        limit = _mean([m.mem_limit_bytes for m in members])
        mem = _mean([m.mem_bytes for m in members])
        folded.append(
            MetricSample(
                scope=last.scope,
                application_id=last.application_id,
                database_id=last.database_id,
                ts=_at(start),
                resolution=resolution,
                containers=round(_mean([m.containers for m in members]) or 0),
                cpu_percent=_mean([m.cpu_percent for m in members]),
                mem_bytes=round(mem) if mem is not None else None,
                mem_limit_bytes=round(limit) if limit is not None else None,
                net_rx_bytes=last.net_rx_bytes,
                net_tx_bytes=last.net_tx_bytes,
            )  # fmt: skip
        )
    return folded


def _series_keys(resolution: int) -> list[tuple[str, int | None]]:
    """(scope, owner) of every series at ``resolution``: the owner is the app's id, the
    database's id, or None for the host."""
    found = db.session.execute(
        select(MetricSample.scope, MetricSample.application_id, MetricSample.database_id)
        .where(MetricSample.resolution == resolution)
        .distinct()
    ).tuples()
    return [(scope, app_id if app_id is not None else database_id)
            for scope, app_id, database_id in found]  # fmt: skip


def _series_filter(scope: str, owner: int | None):
    """The rows of one series: the host (owner None), an app or a database."""
    if scope == MetricScope.database.value:
        return (MetricSample.scope == scope, MetricSample.database_id == owner)
    app_clause = (
        MetricSample.application_id.is_(None) if owner is None
        else MetricSample.application_id == owner
    )  # fmt: skip
    return (MetricSample.scope == scope, app_clause)


def downsample(now: datetime | None = None) -> int:
    """Fold complete buckets not folded yet, for every series; returns rows written."""
    # A sample is stamped when its round starts and committed a moment later:
    # wait one raw interval before a bucket counts as complete.
    now_s = _epoch(now or utcnow()) - RAW
    written = 0
    for target, source in DOWNSAMPLE:
        before = now_s // target * target
        for scope, app_id in _series_keys(source):
            where = _series_filter(scope, app_id)
            newest = db.session.scalar(
                select(func.max(MetricSample.ts)).where(*where, MetricSample.resolution == target)
            )
            start = _epoch(newest) + target if newest is not None else 0
            if start >= before:
                continue
            rows = db.session.scalars(
                select(MetricSample).where(
                    *where,
                    MetricSample.resolution == source,
                    MetricSample.ts >= _at(start),
                    MetricSample.ts < _at(before),
                )  # fmt: skip
            ).all()
            folded = fold(list(rows), target, before)
            db.session.add_all(folded)
            written += len(folded)
        db.session.flush()  # the next, coarser step reads what this one wrote
    db.session.commit()
    return written


def prune(now: datetime | None = None) -> int:
    """Delete rows older than their resolution's retention; returns how many."""
    now = now or utcnow()
    removed = 0
    for resolution, keep in RETENTION.items():
        result = db.session.execute(
            delete(MetricSample).where(
                MetricSample.resolution == resolution, MetricSample.ts < now - keep
            )
        )
        removed += result.rowcount or 0
    db.session.commit()
    return removed


def rows_bound(series: int) -> int:
    """The most rows ``series`` series hold after a prune: per resolution, its
    retention over its interval, plus the row on the boundary."""
    return series * sum(int(keep.total_seconds()) // res + 1 for res, keep in RETENTION.items())


def maintain(now: datetime | None = None) -> tuple[int, int]:
    """Downsample, then prune: (rows written, rows deleted)."""
    return downsample(now), prune(now)


# ---- reading a chart --------------------------------------------------------


def _rate(prev: int | None, cur: int | None, seconds: float) -> float | None:
    """Bytes per second between two counter readings; a drop means the counters
    restarted (a new container), so the new reading is all that was counted."""
    if prev is None or cur is None or seconds <= 0:
        return None
    delta = cur - prev if cur >= prev else cur
    return round(delta / seconds, 3)


def series(
    app_id: int | None, range_name: str, now: datetime | None = None,
    database_id: int | None = None,
) -> dict:  # fmt: skip
    """The points of one chart: an app (``app_id``), a database (``database_id``) or the
    host (neither) over a range.

    Returns ``{"range", "resolution", "from", "to", "t": [epoch s], "cpu_percent",
    "mem_bytes", "mem_limit_bytes", "net_rx_bps", "net_tx_bps"}``; a rate is None
    at the first point and after a gap of more than two missed samples.
    """
    resolution, span = RANGES[range_name]
    now = now or utcnow()
    if database_id is not None:
        scope, owner = MetricScope.database.value, database_id
    else:
        scope = MetricScope.host.value if app_id is None else MetricScope.app.value
        owner = app_id
    rows = db.session.execute(
        select(
            MetricSample.ts, MetricSample.cpu_percent, MetricSample.mem_bytes,
            MetricSample.mem_limit_bytes, MetricSample.net_rx_bytes, MetricSample.net_tx_bytes,
        )
        .where(
            *_series_filter(scope, owner), MetricSample.resolution == resolution,
            MetricSample.ts >= now - span, MetricSample.ts <= now,
        )
        .order_by(MetricSample.ts)
    ).all()  # fmt: skip
    out: dict = {
        "range": range_name, "resolution": resolution,
        "from": int(_epoch(now - span)), "to": int(_epoch(now)),
        "t": [], "cpu_percent": [], "mem_bytes": [], "mem_limit_bytes": [],
        "net_rx_bps": [], "net_tx_bps": [],
    }  # fmt: skip
    prev = None
    for ts, cpu, mem, limit, rx, tx in rows:
        t = _epoch(ts)
        gap = prev is None or t - prev[0] > 3 * resolution
        seconds = 0 if gap else t - prev[0]
        out["t"].append(int(t))
        out["cpu_percent"].append(None if cpu is None else round(cpu, 2))
        out["mem_bytes"].append(mem)
        out["mem_limit_bytes"].append(limit)
        out["net_rx_bps"].append(None if gap else _rate(prev[1], rx, seconds))
        out["net_tx_bps"].append(None if gap else _rate(prev[2], tx, seconds))
        prev = (t, rx, tx)
    return out


SUMMARY_FIELDS = ("cpu_percent", "mem_bytes", "net_rx_bps", "net_tx_bps")


def summary(chart: dict) -> dict[str, dict[str, float | None]]:
    """Latest, mean and peak of each figure of a chart (the page without JavaScript)."""
    out = {}
    for field in SUMMARY_FIELDS:
        values = [v for v in chart[field] if v is not None]
        out[field] = {
            "latest": values[-1] if values else None,
            "mean": sum(values) / len(values) if values else None,
            "peak": max(values) if values else None,
        }
    return out


def table_rows(chart: dict, limit: int = 60) -> list[dict]:
    """At most ``limit`` evenly spaced points of a chart, newest first, for a table."""
    count = len(chart["t"])
    step = max(1, -(-count // limit))
    picked = range(count - 1, -1, -step)
    keys = ("cpu_percent", "mem_bytes", "mem_limit_bytes", "net_rx_bps", "net_tx_bps")
    return [
        {"ts": datetime.fromtimestamp(chart["t"][i], UTC)} | {k: chart[k][i] for k in keys}
        for i in picked
    ]
