"""API benchmark (issue 15): listing apps, accepting deploys, and the CLI's overhead.

    .venv/bin/python bench/api.py

Real services on loopback: the PostgreSQL database ``slipway_bench_api`` (created if
missing, its ``public`` schema wiped, dropped at the end), Redis DB 13 on 127.0.0.1:6379
(``--redis-url``; flushed at the start and the end, unless someone else flushed it
meanwhile), the real migrations, and a real gunicorn serving ``wsgi:app``.

1. **list_apps_p95_ms.** 5 projects x 100 apps of one team, seeded in bulk (4
   deployments each, so the newest gives every app a status), served by gunicorn in the
   layout ``make run`` serves with (``scripts/run.py``: gthread, 1 worker x 256
   threads). A read-scoped key made by ``app.accounts.apikeys.create``; one keep-alive
   session GETs ``/api/v1/apps?limit=100`` (warm-up, then ``--requests`` timed). Every
   answer must be a 200 with 100 items and a ``next_cursor``; the pages are walked once
   to check that the cursors give the 500 apps, each once.
2. **deploy_accept_p95_ms.** 20 client threads, each with its own deploy-scoped key, its
   own app and two keep-alive sessions, POST ``/api/v1/apps/<id>/deployments`` with a
   fresh ``Idempotency-Key``, every request sent twice: the retry (same key) right after
   the first answer, or at the same moment from the second session (alternately). Each
   POST's latency until its 202/200. Paced: an exponential pause of ``--think`` seconds
   on average between a client's pairs (the figure); saturated: no pause (reported
   beside it). No worker runs, so deployments stay queued: a new one supersedes its
   app's queued one, and the row stays. ``duplicate_deployments`` = deployments rows
   created - distinct keys sent (target 0); both answers of a pair must name the same
   deployment, exactly one of them not ``Idempotent-Replayed``.
3. **cli_deploy_overhead_s.** ``bench/deploy.py``'s set-up (its ``Bench``: a smart-HTTP
   git server, Traefik, gunicorn, a busybox ``httpd`` git app, the database wiped again)
   and ONE ``worker.py`` with no arguments. Rounds alternate ``python -m slipway_cli
   deploy bench/web --wait`` (a subprocess with ``SLIPWAY_URL``/``SLIPWAY_TOKEN``;
   clock from its start to its exit, exit code 0 required) and the dashboard's Deploy
   button (a real ``POST /apps/<id>/deploy`` with the page's CSRF token, fetched before
   the clock starts; until the row is ``running``, polled every 50 ms). Each round pushes
   a fresh commit. For the CLI rounds the same 50 ms poll also notes when the row was
   ``running``. Difference of the medians (target < 0.5 s). The app keeps the
   installation's watch window unless ``--watch-seconds`` (an app setting) says
   otherwise: the row is ``running`` only once the window ends, on both sides.

Progress goes to stderr; the last stdout line is one JSON object with
``list_apps_p95_ms``, ``deploy_accept_p95_ms``, ``duplicate_deployments``,
``cli_deploy_overhead_s`` and the details, the machine and its load. Processes, the
temporary directories, the bench's containers, images and network, the database and
the Redis DB are removed at the end, also on failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import deploy  # noqa: E402 - needs ROOT on sys.path
from bench.deploy import BenchError, log, median, r3  # noqa: E402
from bench.pages import server_cpu_seconds, summarize  # noqa: E402
from scripts.run import DEFAULT_WEB_THREADS, web_layout  # noqa: E402
from tests import lab  # noqa: E402

PROJECTS = 5
APPS_PER_PROJECT = 100
DEPLOYS_PER_APP = 4
PAGE = 100
WARMUP = 30
CLIENTS = 20
WARMUP_PAIRS = 2
SENTINEL_KEY = "slipway-bench-api:sentinel"  # gone = someone else flushed our Redis DB
RATE_BUDGET = 550  # the default key rate limit is 600 a minute
REQUEST_TIMEOUT = 15
POLL = 0.05  # the button side's poll of the row, and the CLI rounds' note of it
FINAL = ("running", "failed", "cancelled", "superseded", "replaced")


# ---- 1 and 2: the API on a seeded database --------------------------------------


def seed(clients: int) -> dict:
    """One owner and team, PROJECTS x APPS_PER_PROJECT apps with their deployments, a
    read key and one deploy key per client (``apikeys.create``)."""
    from sqlalchemy import insert, select, text

    from app import create_app
    from app.accounts import apikeys
    from app.extensions import db
    from app.models import Application, Deployment, Environment, Project, Team, User

    rng = random.Random(15)
    flask_app = create_app()
    with flask_app.app_context():
        first = lab.seed_owner_project(deploy.EMAIL, deploy.PASSWORD, "bench-0", "API bench")
        for n in range(1, PROJECTS):
            project = Project(team_id=first.team_id, name=f"bench-{n}", description="")
            project.environments.append(Environment(name="production"))
            db.session.add(project)
        db.session.flush()
        projects = db.session.scalars(
            select(Project).where(Project.team_id == first.team_id).order_by(Project.id)
        ).all()
        rows = []
        for project in projects:
            for j in range(APPS_PER_PROJECT):
                image = j % 4 == 3
                rows.append({
                    "project_id": project.id, "environment_id": project.environments[0].id,
                    "name": f"app-{j:03d}", "source_type": "image" if image else "git",
                    "image": f"registry.example.com/{project.name}/app-{j}:1.{j}" if image
                    else None,
                    "git_url": None if image else f"https://git.example.com/{project.name}/{j}.git",
                    "git_branch": None if image else "main", "container_port": 8000,
                    "replicas": rng.choice([1, 1, 2]), "health_check_path": "/healthz",
                })  # fmt: skip
        db.session.execute(insert(Application), rows)
        app_ids = list(db.session.scalars(select(Application.id).order_by(Application.id)))
        db.session.execute(insert(Deployment), list(_deployments(app_ids, rng)))
        db.session.execute(text(
            "UPDATE applications SET health = 'up' WHERE id IN (SELECT application_id "
            "FROM deployments WHERE status = 'running')"
        ))  # fmt: skip
        db.session.commit()
        user = db.session.scalar(select(User).where(User.email == deploy.EMAIL))
        team = db.session.get(Team, first.team_id)
        _, read_token = apikeys.create(user, team, "bench list", ["read"])
        tokens = [apikeys.create(user, team, f"bench ci {n}", ["deploy"])[1]
                  for n in range(clients)]  # fmt: skip
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
        db.session.remove()
        db.engine.dispose()
    step = len(app_ids) // clients
    return {"apps": app_ids, "read_token": read_token,
            "clients": list(zip(app_ids[::step][:clients], tokens, strict=True))}  # fmt: skip


def _deployments(app_ids: list[int], rng: random.Random):
    """DEPLOYS_PER_APP rows per app, ids growing with time; the newest gives the status."""
    from datetime import timedelta

    from app.models.base import utcnow

    start = utcnow() - timedelta(days=30)
    newest = ["running"] * 14 + ["failed"] * 3 + ["queued", "building", "cancelled"]
    for n in range(DEPLOYS_PER_APP):
        for app_id in app_ids:
            last = n == DEPLOYS_PER_APP - 1
            status = rng.choice(newest) if last else rng.choice(["replaced", "superseded"])
            when = start + timedelta(days=n * 7, minutes=app_id % 600)
            active = status in ("queued", "building")
            yield {
                "application_id": app_id, "status": status, "trigger": "push",
                "commit_sha": f"{rng.getrandbits(160):040x}", "commit_message": "Bump deps",
                "error": "build failed: exit code 2" if status == "failed" else None,
                "rq_job_id": f"seed-{app_id}-{n}",
                "started_at": None if status == "queued" else when,
                "finished_at": None if active else when + timedelta(seconds=40),
                "created_at": when,
            }  # fmt: skip


def bearer(token: str):
    import requests

    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def get_page(http, base: str, cursor: str | None = None) -> tuple[float, dict]:
    params = {"limit": PAGE} | ({"cursor": cursor} if cursor else {})
    started = time.perf_counter()
    response = http.get(f"{base}/api/v1/apps", params=params, timeout=REQUEST_TIMEOUT)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise BenchError(f"GET /api/v1/apps: {response.status_code}\n{response.text[:500]}")
    return elapsed, response.json()


def list_phase(base: str, seeded: dict, requests_n: int, master_pid: int) -> dict:
    if WARMUP + requests_n + len(seeded["apps"]) // PAGE > RATE_BUDGET:
        raise BenchError(f"--requests {requests_n} would pass the key's rate limit (600/min)")
    with bearer(seeded["read_token"]) as http:
        seen, cursor, pages = [], None, 0
        while True:  # the cursors give every app, once
            _, body = get_page(http, base, cursor)
            seen += [item["id"] for item in body["data"]]
            pages, cursor = pages + 1, body["next_cursor"]
            if not cursor:
                break
        if sorted(seen) != sorted(seeded["apps"]):
            raise BenchError(f"the pages gave {len(seen)} ids ({len(set(seen))} distinct), "
                             f"not the {len(seeded['apps'])} apps")  # fmt: skip
        for _ in range(WARMUP):
            get_page(http, base)
        samples, statuses = [], set()
        cpu_before = server_cpu_seconds(master_pid)
        for _ in range(requests_n):
            elapsed, body = get_page(http, base)
            if len(body["data"]) != PAGE or not body["next_cursor"]:
                raise BenchError(f"{len(body['data'])} items, next_cursor "
                                 f"{body['next_cursor']!r}: not a full first page")  # fmt: skip
            samples.append(elapsed)
            statuses |= {item["status"] for item in body["data"]}
        cpu_after = server_cpu_seconds(master_pid)
    stats = summarize(samples)
    if cpu_before is not None and cpu_after is not None:
        stats["server_cpu_ms_per_request"] = round((cpu_after - cpu_before) * 1000 / requests_n, 2)
    stats |= {"pages_walked": pages, "statuses_seen": sorted(map(str, statuses)),
              "item_keys": sorted(body["data"][0])}  # fmt: skip
    if statuses <= {None}:
        raise BenchError("every app's status is null: the seeded deployments are not read")
    return stats


class Accept:
    """The deploy clients: latencies of every POST, the keys sent, the pairs' answers."""

    def __init__(self, base: str, clients: list[tuple[int, str]], master_pid: int):
        self.base, self.clients, self.master_pid = base, clients, master_pid
        self.lock = threading.Lock()
        self.keys: set[str] = set()
        self.problems: list[str] = []
        self.reconnects = 0

    def post(self, http, app_id: int, key: str) -> tuple[float, int, bool]:
        """One POST until its answer. A keep-alive connection gunicorn closes (idle past
        its 2 s keep-alive) just as the request goes out is sent again on a new one with
        the same key, as a client would; the time counts from the first attempt."""
        import requests

        url = f"{self.base}/api/v1/apps/{app_id}/deployments"
        started = time.perf_counter()
        try:
            response = http.post(url, json={}, headers={"Idempotency-Key": key},
                                 timeout=REQUEST_TIMEOUT)  # fmt: skip
        except requests.ConnectionError:
            with self.lock:
                self.reconnects += 1
            response = http.post(url, json={}, headers={"Idempotency-Key": key},
                                 timeout=REQUEST_TIMEOUT)  # fmt: skip
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code not in (200, 202):
            raise BenchError(f"POST {url}: {response.status_code}\n{response.text[:300]}")
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        return elapsed, response.json()["id"], replayed

    def pair(self, sessions, app_id: int, concurrent: bool) -> list[float]:
        key = f"bench-{uuid.uuid4()}"
        with self.lock:
            self.keys.add(key)
        if concurrent:
            answers: list = []

            def again() -> None:
                try:
                    answers.append(self.post(sessions[1], app_id, key))
                except Exception as exc:  # noqa: BLE001 - raised below
                    answers.append(exc)

            retry = threading.Thread(target=again)
            retry.start()
            first = self.post(sessions[0], app_id, key)
            retry.join()
            second = answers[0]
            if isinstance(second, Exception):
                raise second
        else:
            first = self.post(sessions[0], app_id, key)
            second = self.post(sessions[1], app_id, key)
        if first[1] != second[1] or first[2] == second[2]:
            with self.lock:
                self.problems.append(f"key {key}: answers {first[1:]} and {second[1:]}")
        return [first[0], second[0]]

    def run(self, pairs: int, think: float, seed: int) -> dict:
        """Every client sends ``pairs`` pairs at once (a barrier starts them)."""
        barrier = threading.Barrier(len(self.clients))
        firsts, retries, errors = [], {True: [], False: []}, []

        def client(n: int, app_id: int, token: str) -> None:
            rng = random.Random(seed * 1000 + n)
            sessions = [bearer(token), bearer(token)]
            try:
                barrier.wait(timeout=30)
                for i in range(pairs):
                    concurrent = bool((i + n) % 2)
                    times = self.pair(sessions, app_id, concurrent)
                    with self.lock:
                        firsts.append(times[0])
                        retries[concurrent].append(times[1])
                    if think:
                        time.sleep(rng.expovariate(1 / think))
            except Exception as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
            finally:
                for http in sessions:
                    http.close()

        threads = [threading.Thread(target=client, args=(n, app_id, token), daemon=True)
                   for n, (app_id, token) in enumerate(self.clients)]  # fmt: skip
        started, cpu_before = time.monotonic(), server_cpu_seconds(self.master_pid)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise BenchError(f"{len(errors)} client(s) failed: {errors[0]}")
        wall, cpu_after = time.monotonic() - started, server_cpu_seconds(self.master_pid)
        every = firsts + retries[True] + retries[False]
        cpu = None
        if cpu_before is not None and cpu_after is not None:
            cpu = round((cpu_after - cpu_before) * 1000 / len(every), 2)
        return summarize(every) | {
            "first": summarize(firsts), "retry_after_answer": summarize(retries[False]),
            "retry_concurrent": summarize(retries[True]),
            "posts_per_s": round(len(every) / wall, 1), "server_cpu_ms_per_post": cpu,
        }  # fmt: skip


def accept_phase(base: str, seeded: dict, database_url: str, args, master_pid: int) -> dict:
    import psycopg

    name, params = deploy.pg_params(database_url)
    with psycopg.connect(dbname=name, **params) as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) FROM deployments").fetchone()[0]
        accept = Accept(base, seeded["clients"], master_pid)
        accept.run(WARMUP_PAIRS, 0.0, seed=0)
        log(f"deploy warm-up done ({WARMUP_PAIRS} pairs per client)")
        paced = accept.run(args.pairs, args.think, seed=1)
        log(f"paced (think {args.think:g} s): p50 {paced['p50']} ms, p95 {paced['p95']} ms, "
            f"p99 {paced['p99']} ms, {paced['posts_per_s']} POSTs/s, worker CPU "
            f"{paced['server_cpu_ms_per_post']} ms/POST")  # fmt: skip
        saturated = accept.run(args.pairs, 0.0, seed=2)
        log(f"saturated: p50 {saturated['p50']} ms, p95 {saturated['p95']} ms, "
            f"{saturated['posts_per_s']} POSTs/s")  # fmt: skip
        created = conn.execute("SELECT count(*) FROM deployments WHERE id > %s",
                               (before,)).fetchone()[0]  # fmt: skip
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM deployments WHERE id > %s GROUP BY status", (before,)
        ).fetchall())  # fmt: skip
    if accept.problems:
        log(f"{len(accept.problems)} pair(s) answered inconsistently, e.g. {accept.problems[0]}")
    return {
        "paced": paced, "saturated": saturated, "think_s": args.think,
        "clients": len(seeded["clients"]), "pairs_per_client": args.pairs,
        "deployments_created": created, "keys_sent": len(accept.keys),
        "duplicate_deployments": created - len(accept.keys),
        "created_statuses": statuses, "inconsistent_pairs": accept.problems[:5],
        "inconsistent_pair_count": len(accept.problems), "reconnects": accept.reconnects,
    }  # fmt: skip


def flush_redis(url: str, sentinel: bool) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    if sentinel:
        if client.dbsize():
            log(f"warning: {url} holds {client.dbsize()} keys; flushing it")
        client.flushdb()
        client.set(SENTINEL_KEY, "1")
    elif client.exists(SENTINEL_KEY):  # still ours: nobody else flushed it
        client.flushdb()


def api_phases(args) -> dict:
    """Stage one: the seeded database behind gunicorn as ``make run`` lays it out."""
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-api-"))
    gunicorn = None
    try:
        flush_redis(args.redis_url, sentinel=True)
        deploy.prepare_postgres(args.database_url)
        env = deploy.slipway_env(tmp, args.database_url, args.redis_url)
        env |= {
            "SLIPWAY_BASE_DOMAIN": "localhost",
            "SLIPWAY_WEB_THREADS": str(DEFAULT_WEB_THREADS),
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.clear()
        os.environ.update(env)  # the in-process seeding reads the same settings
        deploy.migrate(env)
        started = time.monotonic()
        seeded = seed(args.clients)
        log(f"seeded {len(seeded['apps'])} apps x {DEPLOYS_PER_APP} deployments, "
            f"{args.clients + 1} keys in {time.monotonic() - started:.1f}s")  # fmt: skip
        port = lab.free_port()
        layout = web_layout(DEFAULT_WEB_THREADS)
        gunicorn = deploy.start_gunicorn(env, tmp, port, layout)
        base = f"http://127.0.0.1:{port}"
        log(f"gunicorn {' '.join(layout)} on :{port}")
        load = [deploy.loadavg()]
        listing = accepting = None
        if "list" in args.only:
            listing = list_phase(base, seeded, args.requests, gunicorn.pid)
            log(f"GET /api/v1/apps?limit={PAGE}: p50 {listing['p50']} ms, p95 "
                f"{listing['p95']} ms, p99 {listing['p99']} ms, worker CPU "
                f"{listing.get('server_cpu_ms_per_request')} ms/request")  # fmt: skip
        load.append(deploy.loadavg())
        if "accept" in args.only:
            accepting = accept_phase(base, seeded, args.database_url, args, gunicorn.pid)
        load.append(deploy.loadavg())
        return {"list": listing, "accept": accepting, "gunicorn": " ".join(layout),
                "loadavg_1m": load}  # fmt: skip
    except BenchError:
        if (tmp / "gunicorn.log").exists():
            log(f"--- gunicorn.log (tail)\n{deploy.tail(tmp / 'gunicorn.log', 20)}")
        raise
    finally:
        deploy.stop(gunicorn, "gunicorn")
        flush_redis(args.redis_url, sentinel=False)
        shutil.rmtree(tmp, ignore_errors=True)


# ---- 3: the CLI against the Deploy button ---------------------------------------


def cli_key() -> str:
    """A deploy-scoped key of the deploy bench's owner (its settings are in os.environ)."""
    from sqlalchemy import select

    from app import create_app
    from app.accounts import apikeys
    from app.extensions import db
    from app.models import Membership, Team, User

    flask_app = create_app()
    with flask_app.app_context():
        user = db.session.scalar(select(User).where(User.email == deploy.EMAIL))
        team_id = db.session.scalar(select(Membership.team_id).where(Membership.user_id == user.id))
        _, token = apikeys.create(user, db.session.get(Team, team_id), "bench cli", ["deploy"])
        db.session.remove()
        db.engine.dispose()
    return token


class RowWatch:
    """Polls the newest deployment of an app every POLL seconds, on its own connection,
    and notes the moment it is first ``running``."""

    def __init__(self, database_url: str, app_id: int, after_id: int):
        self.db = deploy.Db(database_url)
        self.app_id, self.after_id = app_id, after_id
        self.dep_id: int | None = None
        self.status: str | None = None
        self.running_at: float | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            row = self.db.conn.execute(
                "SELECT id, status FROM deployments WHERE application_id = %s AND id > %s "
                "ORDER BY id DESC LIMIT 1", (self.app_id, self.after_id),
            ).fetchone()  # fmt: skip
            now = time.monotonic()
            if row is not None:
                self.dep_id, self.status = row
                if self.status == "running" and self.running_at is None:
                    self.running_at = now
                if self.status in FINAL:
                    return
            self.stopped.wait(POLL)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.db.close()


def newest_id(database, app_id: int) -> int:
    row = database.conn.execute(
        "SELECT coalesce(max(id), 0) FROM deployments WHERE application_id = %s", (app_id,)
    ).fetchone()
    return row[0]


def row_marks(database, dep_id: int, wall0: float) -> dict:
    """When the row was created, its job started and it ended, from the round's start."""
    row = database.deployment(dep_id)
    keys = ("created_at", "started_at", "finished_at")
    return {k[:-3]: r3(row[k].timestamp() - wall0) if row[k] else None for k in keys}


def button_round(bench, target) -> dict:
    slipway = bench.slipway
    target.push("button")
    token = slipway.button_page(target)  # the page is open before the press
    dep_id, wall0, t0 = slipway.press_deploy(target, token)
    deadline = t0 + deploy.LIVE_TIMEOUT
    while True:
        slipway.check_worker()
        row = bench.database.deployment(dep_id)
        if row["status"] == "running":
            elapsed = time.monotonic() - t0
            break
        if row["status"] in FINAL or time.monotonic() > deadline:
            raise BenchError(f"button deployment {dep_id} {row['status']}: {row['error']}")
        time.sleep(POLL)
    slipway.wait_ready(dep_id)
    return {"deployment_id": dep_id, "total_s": r3(elapsed),
            "row_s": row_marks(bench.database, dep_id, wall0)}  # fmt: skip


def cli_round(bench, target, cli_env: dict, timeout: float) -> dict:
    target.push("cli")
    watch = RowWatch(
        bench.args.database_url, target.app_id, newest_id(bench.database, target.app_id)
    )
    argv = [sys.executable, "-m", "slipway_cli", "deploy", f"{deploy.PROJECT}/{target.name}",
            "--wait"]  # fmt: skip
    try:
        wall0, t0 = time.time(), time.monotonic()
        try:
            done = subprocess.run(argv, cwd=ROOT, env=cli_env, capture_output=True, text=True,
                                  timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise BenchError(
                f"`slipway deploy --wait` still running after {timeout:.0f}s; deployment "
                f"{watch.dep_id} {watch.status}\nstdout: {_text(exc.stdout)[-1500:]}\n"
                f"stderr: {_text(exc.stderr)[-1500:]}"
            ) from None
        elapsed = time.monotonic() - t0
        time.sleep(2 * POLL)  # the poll notes a row that became running just before the exit
    finally:
        watch.close()
    if done.returncode != 0 or watch.status != "running":
        raise BenchError(f"`slipway deploy --wait` exited {done.returncode}, deployment "
                         f"{watch.dep_id} {watch.status}:\n{done.stderr[-1500:]}")  # fmt: skip
    bench.slipway.wait_ready(watch.dep_id)
    return {
        "deployment_id": watch.dep_id, "total_s": r3(elapsed),
        "row_running_s": r3(watch.running_at - t0) if watch.running_at else None,
        "row_s": row_marks(bench.database, watch.dep_id, wall0),
        "log_lines": len(done.stdout.splitlines()),
    }  # fmt: skip


def _text(output) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def cli_start_s(cli_env: dict) -> float:
    """How long ``python -m slipway_cli --help`` takes: the CLI's own start-up."""
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "slipway_cli", "--help"], cwd=ROOT, env=cli_env,
                       capture_output=True, timeout=60, check=True)  # fmt: skip
        times.append(time.monotonic() - t0)
    return r3(median(times))


def _median_of(values) -> float | None:
    found = [v for v in values if v is not None]
    return r3(median(found)) if found else None


def cli_phase(args, saved_env: dict) -> dict:
    """Stage two: bench/deploy.py's services, one worker, CLI and button rounds."""
    options = argparse.Namespace(database_url=args.database_url, redis_url=args.redis_url,
                                 keep=False)  # fmt: skip
    bench = deploy.Bench(options)
    try:
        bench.setup()
        target = bench.targets[0]
        if args.watch_seconds is not None:
            bench.database.conn.execute("UPDATE applications SET watch_seconds = %s WHERE id = %s",
                                        (args.watch_seconds, target.app_id))  # fmt: skip
        bench.procs["worker"] = bench.slipway.worker = deploy.start_worker(
            bench.env, bench.tmp, "worker"
        )
        log("worker.py started with no arguments")
        cli_env = {k: v for k, v in saved_env.items() if not k.startswith("SLIPWAY_")}
        cli_env |= {"SLIPWAY_URL": bench.slipway.base, "SLIPWAY_TOKEN": cli_key(),
                    "XDG_CONFIG_HOME": str(bench.tmp / "cli-config")}  # fmt: skip
        timeout = args.cli_timeout + (30 if args.watch_seconds is None else args.watch_seconds)
        warm = bench.slipway.round(target, "warm")
        log(f"warm-up: first deploy #{warm['deployment_id']} live in {warm['total_s']:.2f}s")
        warm_cli = cli_round(bench, target, cli_env, timeout)
        log(f"warm-up: CLI deploy #{warm_cli['deployment_id']} in {warm_cli['total_s']:.2f}s")
        cli, button = [], []
        for i in range(args.rounds):
            for side in ("cli", "button") if i % 2 == 0 else ("button", "cli"):
                if side == "cli":
                    cli.append(cli_round(bench, target, cli_env, timeout))
                else:
                    button.append(button_round(bench, target))
                got = (cli if side == "cli" else button)[-1]
                log(
                    f"[cli] round {i + 1}: {side} #{got['deployment_id']} {got['total_s']:.2f}s"
                    + (f" (row running at {got['row_running_s']}s)" if side == "cli" else "")
                )
        cli_med = median([r["total_s"] for r in cli])
        button_med = median([r["total_s"] for r in button])
        rows = [r["row_running_s"] for r in cli if r["row_running_s"] is not None]
        return {
            "cli_median_s": r3(cli_med), "button_median_s": r3(button_med),
            "overhead_s": r3(cli_med - button_med),
            "cli_row_running_median_s": r3(median(rows)) if rows else None,
            "cli_exit_after_running_median_s": r3(median(
                [r["total_s"] - r["row_running_s"] for r in cli if r["row_running_s"]]
            )) if rows else None,
            "cli_help_s": cli_start_s(cli_env),
            "row_medians_s": {side: {mark: _median_of(r["row_s"][mark] for r in rounds)
                                     for mark in ("created", "started", "finished")}
                              for side, rounds in (("cli", cli), ("button", button))},
            "cli_rounds": cli, "button_rounds": button, "rounds": args.rounds,
            "watch_seconds": args.watch_seconds, "worker": "one worker.py, no arguments",
            "gunicorn": "bench/deploy.py's (gthread, 2 workers x 8 threads)",
        }  # fmt: skip
    except BenchError:
        bench.report_failure()
        raise
    finally:
        bench.cleanup()


# ---- main -----------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--requests", type=int, default=300, help="timed GETs of the apps list")
    add("--clients", type=int, default=CLIENTS, help="concurrent deploy clients")
    add("--pairs", type=int, default=15, help="deploy pairs per client, per accept run")
    add("--think", type=float, default=1.0, help="mean pause between a client's pairs, s")
    add("--rounds", type=int, default=5, help="CLI rounds and button rounds (each)")
    add(
        "--watch-seconds",
        type=int,
        default=None,
        help="the deployed app's watch window (default: the installation's)",
    )
    add("--cli-timeout", type=float, default=deploy.LIVE_TIMEOUT,
        help="seconds a CLI deploy may take, beyond the watch window")  # fmt: skip
    add(
        "--only",
        type=lambda v: set(v.split(",")),
        default={"list", "accept", "cli"},
        help="some of list,accept,cli (default: all three)",
    )
    add("--database-url", default="postgresql://slipway:slipway@127.0.0.1:5432/slipway_bench_api")
    add("--redis-url", default="redis://127.0.0.1:6379/13")
    return parser.parse_args()  # fmt: skip


def main() -> int:
    args = parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    saved_env = dict(os.environ)
    load_before = deploy.loadavg()
    try:
        api = {"list": None, "accept": None, "gunicorn": None, "loadavg_1m": None}
        if args.only & {"list", "accept"}:
            api = api_phases(args)
        cli = cli_phase(args, saved_env) if "cli" in args.only else None
    except (BenchError, KeyboardInterrupt) as exc:
        log(f"FAILED: {exc!r}")
        return 1
    finally:
        try:
            deploy.drop_postgres(args.database_url)
        except Exception as exc:  # noqa: BLE001 - cleanup goes on
            log(f"could not drop the database: {exc}")
    listing, accepting = api["list"] or {}, api["accept"] or {}
    figures = {
        "list_apps_p95_ms": listing.get("p95"),
        "list_apps_p50_ms": listing.get("p50"),
        "list_apps_p99_ms": listing.get("p99"),
        "deploy_accept_p95_ms": accepting.get("paced", {}).get("p95"),
        "deploy_accept_saturated_p95_ms": accepting.get("saturated", {}).get("p95"),
        "duplicate_deployments": accepting.get("duplicate_deployments"),
        "cli_deploy_overhead_s": cli["overhead_s"] if cli else None,
    }
    targets = {"list_apps_p95_ms": 30, "deploy_accept_p95_ms": 50, "duplicate_deployments": 1,
               "cli_deploy_overhead_s": 0.5}  # fmt: skip
    met = {k: None if figures[k] is None else figures[k] < bound for k, bound in targets.items()}
    print(json.dumps(figures | {
        "targets": {"list_apps_p95_ms": "< 30", "deploy_accept_p95_ms": "< 50",
                    "duplicate_deployments": "0", "cli_deploy_overhead_s": "< 0.5"},
        "targets_met": met, "list": api["list"], "accept": api["accept"], "cli": cli,
        "gunicorn": api["gunicorn"], "database": "postgresql",
        "machine": deploy.machine(), "loadavg_1m_before": load_before,
        "loadavg_1m_api_phases": api["loadavg_1m"], "loadavg_1m_after": deploy.loadavg(),
    }, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
