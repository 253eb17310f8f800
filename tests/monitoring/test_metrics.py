"""Metric sampling against the real Docker engine; downsampling, retention and rates."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import docker
import pytest
from sqlalchemy import func, insert, select

from app import jobs
from app.extensions import db
from app.models import MetricSample
from app.models.base import utcnow
from app.monitoring import metrics
from app.runtime import containers, installation
from tests import lab
from tests.factories import make_app, make_project, make_team, make_user

TEST_LABEL = "slipway.test"
T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def engine(app):
    make_user()  # an Installation row: the containers carry its id, ours whoever claimed
    lab.ensure_base_image()
    client = docker.from_env()
    started: list = []

    def run(app_id: int, **options):
        container = client.containers.run(
            lab.BASE_IMAGE, ["/bin/busybox", "sleep", "300"], detach=True,
            labels={containers.LABEL_APP: str(app_id), TEST_LABEL: "metrics",
                    **installation.labels()},
            **options,
        )  # fmt: skip
        started.append(container)
        return container

    yield run
    for container in started:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    client.close()


def _far_app():
    """An app whose id no container of anyone else's carries."""
    return make_app(make_project(make_team()), id=random.randrange(10**6, 10**9))


def _rows(**where) -> list[MetricSample]:
    query = select(MetricSample).filter_by(**where).order_by(MetricSample.ts)
    return list(db.session.scalars(query))


def test_a_round_samples_each_app_container_and_the_host(app, engine, monkeypatch):
    monkeypatch.setattr(metrics, "HOST_CPU_INTERVAL", 0.1)
    app_row = _far_app()
    engine(app_row.id)
    engine(app_row.id)  # two replicas are summed into one row
    limited = _far_app()
    engine(limited.id, mem_limit="64m")
    engine(random.randrange(10**9, 2 * 10**9))  # no such app: not stored

    written = metrics.sample()

    app_rows = _rows(scope="app", application_id=app_row.id)
    assert len(app_rows) == 1
    row = app_rows[0]
    assert row.resolution == 15 and row.containers == 2
    assert row.cpu_percent is not None and row.cpu_percent >= 0
    assert row.mem_bytes > 0
    assert row.mem_limit_bytes is None  # started without a limit: the host's memory is none
    (limited_row,) = _rows(scope="app", application_id=limited.id)
    assert limited_row.mem_limit_bytes == 64 * 2**20
    assert row.net_rx_bytes is not None and row.net_tx_bytes is not None
    host = _rows(scope="host")
    assert len(host) == 1 and host[0].application_id is None
    assert 0 <= host[0].cpu_percent <= 100
    assert 0 < host[0].mem_bytes < host[0].mem_limit_bytes
    assert written == db.session.scalar(select(func.count(MetricSample.id)))


def test_a_container_gone_between_list_and_stats_does_not_break_the_round(app, engine, monkeypatch):
    monkeypatch.setattr(metrics, "HOST_CPU_INTERVAL", 0.1)
    app_row = _far_app()
    alive = engine(app_row.id)
    stopped = engine(app_row.id)
    removed = engine(app_row.id)
    listing = {c.id: app_row.id for c in (alive, stopped, removed)}
    stopped.stop(timeout=0)
    removed.remove(force=True)
    assert set(containers.raw_stats(list(listing))) == {alive.id}

    monkeypatch.setattr(containers, "running_app_containers", lambda: listing)
    metrics.sample()
    (row,) = _rows(scope="app", application_id=app_row.id)
    assert row.containers == 1


def test_the_sample_job_runs_in_the_worker_context(app, engine, monkeypatch):
    monkeypatch.setattr(metrics, "HOST_CPU_INTERVAL", 0.1)
    jobs.bind(app)
    assert jobs.sample_metrics() >= 1
    assert _rows(scope="host")


def _cpu_doc(usage, pre_usage, system, pre_system, online=2):
    return {
        "read": "2026-11-23T12:00:00Z",
        "cpu_stats": {
            "cpu_usage": {"total_usage": usage},
            "system_cpu_usage": system,
            "online_cpus": online,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": pre_usage}, "system_cpu_usage": pre_system},
        "memory_stats": {"usage": 100, "limit": 1000, "stats": {"total_inactive_file": 30}},
        "networks": {
            "eth0": {"rx_bytes": 5, "tx_bytes": 7},
            "eth1": {"rx_bytes": 1, "tx_bytes": 1},
        },
    }


def test_container_figures_follow_docker_stats_arithmetic():
    figures = metrics.container_figures(_cpu_doc(150, 100, 2000, 1000))
    assert figures.cpu_percent == pytest.approx(50 / 1000 * 2 * 100)
    assert figures.mem_bytes == 70  # usage minus inactive file cache
    assert figures.mem_limit_bytes == 1000
    assert (figures.net_rx_bytes, figures.net_tx_bytes) == (6, 8)
    # cgroup v2 names the cache inactive_file
    doc = _cpu_doc(1, 0, 2, 1)
    doc["memory_stats"]["stats"] = {"inactive_file": 40}
    assert metrics.container_figures(doc).mem_bytes == 60
    # no previous reading yet: 0 %, not a division by zero
    assert metrics.container_figures(_cpu_doc(150, 0, 2000, 0)).cpu_percent == 0
    assert metrics.container_figures({"cpu_stats": {}, "precpu_stats": {}}) is None
    # the host's memory as the limit means no limit
    assert metrics.container_figures(_cpu_doc(1, 0, 2, 1), host_memory=1000).mem_limit_bytes is None
    assert metrics.container_figures(_cpu_doc(1, 0, 2, 1), host_memory=4000).mem_limit_bytes == 1000


def _raw(app_id, ts, cpu, rx, mem=100):
    row = MetricSample(
        scope="app", application_id=app_id, ts=ts, resolution=15, containers=1,
        cpu_percent=cpu, mem_bytes=mem, mem_limit_bytes=1000, net_rx_bytes=rx, net_tx_bytes=rx,
    )  # fmt: skip
    db.session.add(row)
    return row


def test_downsampling_averages_gauges_and_keeps_the_last_counter(app):
    app_row = make_app(make_project(make_team()))
    for i in range(8):  # 12:00:00 … 12:01:45, one every 15 s
        _raw(app_row.id, T0 + timedelta(seconds=15 * i), cpu=i, rx=1000 * i, mem=100 + i)
    db.session.commit()

    # at 12:01:50 the first minute is complete (and one raw interval old), the second is not
    assert metrics.downsample(T0 + timedelta(seconds=110)) == 1
    (minute,) = _rows(resolution=60)
    assert minute.ts.replace(tzinfo=UTC) == T0
    assert minute.cpu_percent == pytest.approx(1.5)  # mean of 0..3
    assert minute.mem_bytes == 102  # mean of 100..103, rounded
    assert minute.net_rx_bytes == 3000  # last reading of the minute

    # running again folds nothing twice; later the second minute follows
    assert metrics.downsample(T0 + timedelta(seconds=110)) == 0
    assert metrics.downsample(T0 + timedelta(seconds=180)) == 1
    assert [r.net_rx_bytes for r in _rows(resolution=60)] == [3000, 7000]


def test_quarter_hours_are_folded_from_minutes(app):
    app_row = make_app(make_project(make_team()))
    for i in range(4 * 16):  # 16 minutes of raw samples
        _raw(app_row.id, T0 + timedelta(seconds=15 * i), cpu=10, rx=i)
    db.session.commit()
    metrics.downsample(T0 + timedelta(minutes=16, seconds=30))
    assert len(_rows(resolution=60)) == 16
    (quarter,) = _rows(resolution=900)
    assert quarter.ts.replace(tzinfo=UTC) == T0
    assert quarter.cpu_percent == pytest.approx(10)
    assert quarter.net_rx_bytes == 4 * 15 - 1  # the last raw reading of minute 15


def test_prune_keeps_each_resolution_for_its_retention(app):
    now = T0
    for resolution, keep in metrics.RETENTION.items():
        for age in (keep - timedelta(seconds=1), keep + timedelta(seconds=1)):
            db.session.add(
                MetricSample(scope="host", ts=now - age, resolution=resolution, containers=0)
            )
    db.session.commit()
    assert metrics.prune(now) == 3
    kept = {r.resolution for r in _rows()}
    assert kept == {15, 60, 900} and len(_rows()) == 3


def test_a_simulated_week_stays_within_the_bound(app):
    """Sampling every 15 s for 7.5 days, with maintenance every 30 simulated minutes,
    leaves at most ``rows_bound`` rows per series."""
    start = T0 - timedelta(days=7, hours=12)
    step = 30
    for chunk in range(0, int(7.5 * 24 * 60), step):
        batch = [
            {"scope": "host", "ts": start + timedelta(seconds=15 * i), "resolution": 15,
             "containers": 1, "cpu_percent": 2.0, "net_rx_bytes": i}
            for i in range(chunk * 4, (chunk + step) * 4)
        ]  # fmt: skip
        db.session.execute(insert(MetricSample), batch)
        db.session.commit()
        metrics.maintain(start + timedelta(minutes=chunk + step))
    per_resolution = dict(
        db.session.execute(
            select(MetricSample.resolution, func.count()).group_by(MetricSample.resolution)
        ).all()
    )
    assert sum(per_resolution.values()) <= metrics.rows_bound(1)
    assert per_resolution[15] <= 481 and per_resolution[60] <= 1561
    assert 600 < per_resolution[900] <= 673


def test_series_rates_handle_counter_resets_and_gaps(app):
    app_row = make_app(make_project(make_team()))
    points = [(0, 0), (15, 1500), (30, 3000), (45, 600), (60, 2100), (150, 2200), (165, 3700)]
    for seconds, rx in points:
        _raw(app_row.id, T0 + timedelta(seconds=seconds), cpu=5, rx=rx)
    db.session.commit()
    chart = metrics.series(app_row.id, "hour", now=T0 + timedelta(seconds=170))
    assert chart["resolution"] == 15
    assert chart["t"][0] == int(T0.timestamp())
    # first point: no rate; a drop (new container) counts from zero; a gap: no rate
    assert chart["net_rx_bps"] == [None, 100, 100, 40, 100, None, 100]
    assert chart["cpu_percent"] == [5] * 7
    assert metrics.series(app_row.id, "day", now=T0)["t"] == []
    assert metrics.series(None, "hour", now=T0)["t"] == []


def test_a_sample_job_that_waited_past_its_slot_does_nothing(app, monkeypatch):
    class Waited:
        enqueued_at = utcnow() - timedelta(seconds=40)

    jobs.bind(app)
    monkeypatch.setattr(jobs, "get_current_job", lambda: Waited())
    assert jobs.sample_metrics() == 0
    assert _rows() == []


def test_deleting_an_app_deletes_its_samples(app):
    app_row = make_app(make_project(make_team()))
    _raw(app_row.id, T0, cpu=1, rx=1)
    db.session.add(MetricSample(scope="host", ts=T0, resolution=15, containers=0))
    db.session.commit()
    db.session.delete(app_row)
    db.session.commit()
    assert [r.scope for r in _rows()] == ["host"]


def test_a_round_samples_each_database_container_apart_from_apps_and_the_host(app, monkeypatch):
    from app.runtime.volumes import LABEL_DATABASE

    monkeypatch.setattr(metrics, "HOST_CPU_INTERVAL", 0.1)
    make_user()
    lab.ensure_base_image()
    client = docker.from_env()
    database_id = random.randrange(10**6, 10**9)
    labels = {LABEL_DATABASE: str(database_id), TEST_LABEL: "metrics"} | installation.labels()
    container = client.containers.run(lab.BASE_IMAGE, ["/bin/busybox", "sleep", "300"],
                                      detach=True, labels=labels, mem_limit="48m")  # fmt: skip
    try:
        assert containers.running_database_containers()[container.id] == database_id
        metrics.sample()
    finally:
        container.remove(force=True)
        client.close()
    (row,) = _rows(scope="database", database_id=database_id)
    assert row.application_id is None and row.containers == 1 and row.resolution == 15
    assert row.mem_limit_bytes == 48 * 2**20 and row.mem_bytes > 0
    assert not _rows(scope="app", database_id=database_id)
    (host,) = _rows(scope="host")
    assert host.database_id is None


def test_a_database_series_is_folded_on_its_own(app):
    for i in range(8):
        ts = T0 + timedelta(seconds=15 * i)
        db.session.add_all([
            MetricSample(scope="database", database_id=7, ts=ts, resolution=15, containers=1,
                         cpu_percent=10.0, mem_bytes=100, net_rx_bytes=i, net_tx_bytes=i),
            MetricSample(scope="host", ts=ts, resolution=15, containers=0, cpu_percent=50.0,
                         mem_bytes=900, net_rx_bytes=i, net_tx_bytes=i),
        ])  # fmt: skip
    db.session.commit()
    assert metrics.downsample(T0 + timedelta(seconds=180)) == 4  # 2 minutes × 2 series
    minutes = _rows(resolution=60, scope="database")
    assert [(m.database_id, m.cpu_percent, m.mem_bytes) for m in minutes] == [(7, 10.0, 100)] * 2
    assert [m.cpu_percent for m in _rows(resolution=60, scope="host")] == [50.0, 50.0]
    chart = metrics.series(None, "hour", T0 + timedelta(minutes=5), database_id=7)
    assert chart["cpu_percent"] == [10.0] * 8 and chart["mem_bytes"] == [100] * 8
    host = metrics.series(None, "hour", T0 + timedelta(minutes=5))
    assert host["cpu_percent"] == [50.0] * 8
