"""Deploy benchmark (issue 3): push-to-live against the raw pipeline, and zero-downtime redeploys.

    .venv/bin/python bench/deploy.py

Everything runs on loopback, on real services: a smart-HTTP git server
(``tests.lab.GitServer``), a fresh PostgreSQL database ``slipway_bench_deploy``
(created if missing, its ``public`` schema wiped, dropped at the end), Redis DB 12
on 127.0.0.1:6379 (``--redis-url``; flushed at start, and at the end if the bench's
sentinel key shows nobody else flushed it meanwhile: a foreign flush stops the run),
the real migrations, Traefik on the static config ``app.proxy.traefik.write_static_config()``
writes, a real gunicorn serving ``wsgi:app`` and a real ``worker.py`` subprocess, all
on the same ``SLIPWAY_*`` environment.

1. **Push to live.** Rounds alternate between the raw pipeline — ``git clone
   --depth 1`` of the app's URL, ``docker build`` (CLI, legacy builder like
   Slipway's engine API call), ``docker run`` on a network, HTTP poll of the
   container until it answers 200 with the new body — and Slipway: a real
   ``POST /apps/<id>/deploy`` (logged in through the login form, CSRF token
   from ``<meta name="csrf-token">``), then polling Traefik with the app's Host
   header until the body is the new version. Every round pushes a fresh commit
   (the changed file is COPYed after a cached RUN step), so neither side gets a
   fully cached build. Measured with a short health settle
   (``SLIPWAY_HEALTH_SETTLE_SECONDS``, ``--settle``, 1 s by default) and again with
   the default settle (10 s). Each Slipway deploy is broken down per step from the
   deployment row, its RQ job and the ``── clone``/``── build``/… log lines.
   ``--build-work N`` adds N seconds of uncached build work on both sides.
2. **Redeploys under load.** Threads with keep-alive sessions send a steady
   stream of requests through Traefik during consecutive redeploys (each a new
   commit, through the web POST and the worker); every non-200 answer and every
   connection error counts as failed.

Progress goes to stderr; the last stdout line is one JSON object with at least
``push_to_live_ratio``, ``push_to_live_ratio_default_settle`` and
``failed_requests_during_redeploys``. Processes, containers, images, the network
and the temporary directory are removed at the end, also on failure, Ctrl-C or
SIGTERM. Only Docker objects this bench made are touched: the app gets a fixed,
high id (``APP_ID``) so its containers and images never collide with the test
suite's, and cleanup filters on ``slipway.app=<APP_ID>``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(sys.executable).parent

from tests import lab  # noqa: E402 - needs ROOT on sys.path

PASSWORD = "bench horse battery staple"
EMAIL = "owner@bench.example.com"
APP_ID = 918_273  # far above any id the test suite reaches; names its containers and images
PROJECT = "bench"
APP_NAME = "web"
PORT = 8000
RAW_REPO = "slipway-bench-raw"  # image repository and container-name prefix of the raw pipeline
RAW_LABEL = "slipway-bench=raw"
RAW_NETWORK = "slipway-bench-raw"
LOCK_KEY = "slipway:deploy-lock:{}"  # app.deploys.pipeline.LOCK_KEY
SENTINEL_KEY = "slipway-bench-deploy:sentinel"  # gone = someone else flushed our Redis DB
# A cached RUN step before the COPY of the changing file, as in a real app
# (dependencies installed, then the source copied).
WARM_RUN = "/bin/busybox sh -c 'echo dependencies > /etc/deps'"

START_TIMEOUT = 30
MIGRATE_TIMEOUT = 180
REQUEST_TIMEOUT = 15
LIVE_TIMEOUT = 180
JOB_TIMEOUT = 120
STOP_TIMEOUT = 15
DOCKER_TIMEOUT = 120
POLL = 0.02  # both pipelines poll at this interval


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def median(values: list[float]) -> float:
    return statistics.median(values)


def r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---- processes ------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stop(proc: subprocess.Popen | None, name: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group we started (and children in their own sessions)."""
    if proc is None or proc.poll() is not None:
        return
    log(f"stopping {name} (pid {proc.pid})")
    children = _children(proc.pid)  # an RQ work horse runs in its own session
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def run(argv: list[str], timeout: float = DOCKER_TIMEOUT, env: dict | None = None, cwd=None):
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"{' '.join(argv[:3])} … failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def docker(*args: str, timeout: float = DOCKER_TIMEOUT) -> str:
    # The legacy builder, like the engine API call Slipway makes (no buildx here).
    return run(["docker", *args], timeout=timeout, env=os.environ | {"DOCKER_BUILDKIT": "0"})


def gunicorn_control_socket(tmp: Path) -> list[str]:
    import importlib.metadata

    try:
        major = int(importlib.metadata.version("gunicorn").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return []
    return ["--control-socket", str(tmp / "gunicorn.ctl")] if major >= 27 else []


def start_gunicorn(env: dict, tmp: Path, port: int) -> subprocess.Popen:
    import requests

    out = open(tmp / "gunicorn.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"), "-k", "gthread", "--workers", "2", "--threads", "8",
            "-b", f"127.0.0.1:{port}", *gunicorn_control_socket(tmp), "wsgi:app",
        ],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    out.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gunicorn exited ({proc.returncode}):\n{tail(tmp / 'gunicorn.log')}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.1)
    stop(proc, "gunicorn")
    raise BenchError(f"gunicorn not healthy in {START_TIMEOUT}s:\n{tail(tmp / 'gunicorn.log')}")


def start_worker(env: dict, tmp: Path, name: str) -> subprocess.Popen:
    out = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    out.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:  # RQ logs this once it listens on its queues
        if proc.poll() is not None:
            raise BenchError(f"worker exited ({proc.returncode}):\n{tail(tmp / f'{name}.log')}")
        if "Listening on" in (tmp / f"{name}.log").read_text(errors="replace"):
            return proc
        time.sleep(0.1)
    stop(proc, "worker")
    raise BenchError(f"the worker did not start in {START_TIMEOUT}s:\n{tail(tmp / f'{name}.log')}")


# ---- database and seed ----------------------------------------------------------


def pg_params(url: str) -> tuple[str, dict]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.database or "bench" not in parsed.database:
        raise BenchError("the bench wipes its database: use a name containing 'bench'")
    return parsed.database, {
        "host": parsed.host or "127.0.0.1", "port": parsed.port or 5432,
        "user": parsed.username, "password": parsed.password, "connect_timeout": 10,
        "autocommit": True,
    }  # fmt: skip


def prepare_postgres(url: str) -> None:
    import psycopg

    name, params = pg_params(url)
    with psycopg.connect(dbname="postgres", **params) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            log(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(dbname=name, **params) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def drop_postgres(url: str) -> None:
    import psycopg

    name, params = pg_params(url)
    with psycopg.connect(dbname="postgres", **params) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(env: dict) -> None:
    log("migrating (flask --app app migrate)")
    result = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "app", "migrate"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=MIGRATE_TIMEOUT, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BenchError(f"migration failed:\n{result.stdout}\n{result.stderr}")


def seed(git_url: str) -> None:
    """One owner, team, project and git app, through the models."""
    from app import create_app
    from app.extensions import db
    from app.models import (
        Application,
        Environment,
        Installation,
        Membership,
        Project,
        Role,
        Team,
        User,
    )

    flask_app = create_app()
    with flask_app.app_context():
        user = User(email=EMAIL, name="Bench Owner")
        user.set_password(PASSWORD)
        team = Team(name="Bench Team")
        db.session.add_all([user, team])
        db.session.flush()
        db.session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner.value))
        db.session.add(Installation(id=1, owner_id=user.id))
        project = Project(team_id=team.id, name=PROJECT, description="deploy bench")
        project.environments.append(Environment(name="production"))
        db.session.add(project)
        db.session.flush()
        db.session.add(
            Application(
                id=APP_ID, project_id=project.id, environment_id=project.environments[0].id,
                name=APP_NAME, source_type="git", git_url=git_url, git_branch="main",
                container_port=PORT, health_check_path="/", replicas=1,
            )
        )  # fmt: skip
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def write_traefik_config() -> Path:
    from app import create_app
    from app.extensions import db
    from app.proxy import traefik

    flask_app = create_app()
    with flask_app.app_context():
        path = traefik.write_static_config()
        db.engine.dispose()
    return path


class Db:
    """The bench's own read-only look at deployments (psycopg, autocommit)."""

    def __init__(self, url: str):
        import psycopg

        name, params = pg_params(url)
        self.conn = psycopg.connect(dbname=name, **params)

    def deployment(self, dep_id: int) -> dict:
        row = self.conn.execute(
            "SELECT status, error, created_at, started_at, finished_at FROM deployments "
            "WHERE id = %s",
            (dep_id,),
        ).fetchone()
        if row is None:
            raise BenchError(f"deployment {dep_id} is not in the database")
        keys = ("status", "error", "created_at", "started_at", "finished_at")
        return dict(zip(keys, row, strict=True))

    def log_lines(self, dep_id: int) -> list[tuple[datetime, str, str]]:
        return self.conn.execute(
            "SELECT ts, stream, text FROM deployment_log_lines WHERE deployment_id = %s "
            "ORDER BY seq",
            (dep_id,),
        ).fetchall()

    def close(self) -> None:
        self.conn.close()


# ---- HTTP -----------------------------------------------------------------------

CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def csrf(http, url: str) -> str:
    page = http.get(url, timeout=REQUEST_TIMEOUT, allow_redirects=False)
    found = CSRF_RE.search(page.text)
    if page.status_code != 200 or not found:
        raise BenchError(f"GET {url}: {page.status_code}, csrf token found: {bool(found)}")
    return found.group(1)


def login(http, base: str) -> None:
    token = csrf(http, f"{base}/login")
    answer = http.post(
        f"{base}/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token},
        timeout=REQUEST_TIMEOUT, allow_redirects=False,
    )  # fmt: skip
    if answer.status_code != 303:
        raise BenchError(f"login failed: {answer.status_code}\n{answer.text[:500]}")


def wait_body(url: str, body: str, timeout: float, host: str | None = None, check=None) -> None:
    """Poll ``url`` every POLL seconds until it answers 200 with ``body``."""
    import requests

    headers = {"Host": host} if host else {}
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 0.5
    while True:
        try:
            response = requests.get(url, headers=headers, timeout=2)
            if response.status_code == 200 and response.text == body:
                return
        except requests.RequestException:
            pass
        now = time.monotonic()
        if check is not None and now >= next_check:
            check()
            next_check = now + 0.5
        if now > deadline:
            raise BenchError(f"{url} did not answer {body!r} within {timeout:.0f}s")
        time.sleep(POLL)


# ---- the two pipelines -----------------------------------------------------------


BUILD_WORK = {"seconds": 0.0}  # --build-work: an uncached RUN step after the COPY


def site_files(version: str) -> dict[str, str]:
    """A busybox httpd site: cached RUN, then the changing file, then (optionally) work."""
    files = lab.web_files(version, port=PORT, extra_run=WARM_RUN)
    if BUILD_WORK["seconds"]:
        copy = "COPY www /www\n"
        work = f"RUN /bin/busybox sleep {BUILD_WORK['seconds']:g}\n"
        files["Dockerfile"] = files["Dockerfile"].replace(copy, copy + work)
    return files


def body_of(version: str) -> str:
    return f"hello from {version}\n"


class Raw:
    """clone + docker build + docker run + poll, the way one would by hand."""

    def __init__(self, repo: lab.Repo, tmp: Path):
        self.repo, self.tmp = repo, tmp
        self.n = 0
        inspect = ["docker", "network", "inspect", RAW_NETWORK]
        if subprocess.run(inspect, capture_output=True, timeout=30, check=False).returncode:
            docker("network", "create", "--label", RAW_LABEL, RAW_NETWORK)

    def round(self, keep: bool = False) -> dict:
        self.n += 1
        version = f"raw-{self.n}-{uuid.uuid4().hex[:8]}"
        self.repo.commit(site_files(version), f"raw round {self.n}")
        work = self.tmp / f"raw-{self.n}"
        image = f"{RAW_REPO}:r{self.n}"
        name = f"{RAW_REPO}-{os.getpid()}-{self.n}"
        t0 = time.monotonic()
        run(["git", "clone", "-q", "--depth", "1", self.repo.url, str(work)], timeout=60)
        t_clone = time.monotonic()
        docker("build", "-q", "-t", image, "--label", RAW_LABEL, str(work))
        t_build = time.monotonic()
        docker("run", "-d", "--name", name, "--label", RAW_LABEL, "--network", RAW_NETWORK, image)
        t_run = time.monotonic()
        ip = docker(
            "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{RAW_NETWORK}").IPAddress}}}}',
            name,
        ).strip()  # fmt: skip
        wait_body(f"http://{ip}:{PORT}/", body_of(version), timeout=60)
        t_live = time.monotonic()
        docker("rm", "-f", name)
        if not keep:
            docker("rmi", image)
        shutil.rmtree(work, ignore_errors=True)
        return {
            "total_s": r3(t_live - t0),
            "steps_s": {
                "clone": r3(t_clone - t0), "build": r3(t_build - t_clone),
                "run": r3(t_run - t_build), "poll_until_200": r3(t_live - t_run),
            },
        }  # fmt: skip

    def cleanup(self) -> None:
        containers = subprocess_out(["docker", "ps", "-aq", "--filter", f"label={RAW_LABEL}"])
        for cid in _lines(containers):
            subprocess_out(["docker", "rm", "-f", cid])
        for image in _lines(
            subprocess_out(["docker", "images", "-q", "--filter", f"label={RAW_LABEL}"])
        ):
            subprocess_out(["docker", "rmi", "-f", image])
        subprocess_out(["docker", "network", "rm", RAW_NETWORK])


def subprocess_out(argv: list[str]) -> str:
    """Best effort, for cleanup: never raises."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=DOCKER_TIMEOUT, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _lines(text: str) -> list[str]:
    return sorted({line.strip() for line in text.splitlines() if line.strip()})


class Slipway:
    """Press Deploy (a real POST through gunicorn), then watch Traefik for the new body."""

    def __init__(self, repo: lab.Repo, base: str, http_port: int, database: Db, redis_url: str):
        import redis
        import requests

        self.repo, self.base, self.db = repo, base, database
        self.traefik = f"http://127.0.0.1:{http_port}/"
        self.host = f"{APP_NAME}.{PROJECT}.localhost"
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.http = requests.Session()
        login(self.http, base)
        log("logged in through the login form")
        self.n = 0
        self.worker: subprocess.Popen | None = None
        self.missing_jobs: list[int] = []
        self.job_marks: dict[int, dict] = {}

    def check_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is not None:
            raise BenchError(f"the worker exited ({self.worker.returncode})")
        if not self.redis.exists(SENTINEL_KEY):
            raise BenchError(
                "another process flushed the bench's Redis database (its sentinel key is "
                "gone); pick an unused database with --redis-url"
            )

    def press_deploy(self) -> tuple[int, float]:
        """POST /apps/<id>/deploy; returns the deployment id and the wall time of the press."""
        token = csrf(self.http, f"{self.base}/apps/{APP_ID}")  # the page with the button
        wall = time.time()
        response = self.http.post(
            f"{self.base}/apps/{APP_ID}/deploy", data={"csrf_token": token},
            timeout=REQUEST_TIMEOUT, allow_redirects=False,
        )  # fmt: skip
        found = re.fullmatch(r".*/deployments/(\d+)", response.headers.get("Location", ""))
        if response.status_code != 303 or not found:
            raise BenchError(f"POST deploy: {response.status_code}\n{response.text[:500]}")
        return int(found.group(1)), wall

    def _failed(self, dep_id: int):
        def check() -> None:
            self.check_worker()
            row = self.db.deployment(dep_id)
            if row["status"] in ("failed", "cancelled", "superseded"):
                lines = "\n".join(text for _, _, text in self.db.log_lines(dep_id)[-25:])
                raise BenchError(f"deployment {dep_id} {row['status']}: {row['error']}\n{lines}")

        return check

    def round(self, label: str) -> dict:
        self.n += 1
        version = f"{label}-{self.n}-{uuid.uuid4().hex[:8]}"
        self.repo.commit(site_files(version), f"slipway round {self.n}")
        t0 = time.monotonic()
        dep_id, wall0 = self.press_deploy()
        t_posted = time.monotonic()
        wait_body(self.traefik, body_of(version), LIVE_TIMEOUT, self.host, self._failed(dep_id))
        t_live = time.monotonic()
        self.wait_job_done(dep_id)
        return {
            "deployment_id": dep_id,
            "version": version,
            "total_s": r3(t_live - t0),
            "post_s": r3(t_posted - t0),
            "wall0": wall0,
            "live_wall": wall0 + (t_live - t0),
        }

    def wait_job_done(self, dep_id: int) -> None:
        """Until the job is over: drain, stop of the old version, image prune, lock released.

        The pipeline holds ``slipway:deploy-lock:<app id>`` from before the clone until
        after the prune, so its release is the end of the work; the RQ job's status
        is checked too (a missing job hash is counted, not fatal).
        """
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus
        from rq.serializers import JSONSerializer

        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            self.check_worker()
            if self.redis.exists(LOCK_KEY.format(APP_ID)):
                time.sleep(0.1)
                continue
            self.check_worker()  # the lock is gone: not because the database was flushed
            try:
                job = Job.fetch(
                    f"deploy-{dep_id}", connection=self.redis, serializer=JSONSerializer
                )
                status = job.get_status(refresh=True)
                marks = {"rq_enqueued": job.enqueued_at, "rq_started": job.started_at}
                self.job_marks[dep_id] = marks
            except NoSuchJobError:
                self.missing_jobs.append(dep_id)
                log(f"warning: the RQ job of deployment {dep_id} is gone from Redis")
                status = JobStatus.FINISHED
            if status == JobStatus.FINISHED:
                row = self.db.deployment(dep_id)
                if row["status"] != "running":
                    raise BenchError(f"deployment {dep_id} ended {row['status']}: {row['error']}")
                return
            if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                raise BenchError(f"job deploy-{dep_id} {status}")
            time.sleep(0.1)
        raise BenchError(f"job deploy-{dep_id} did not finish within {JOB_TIMEOUT}s")

    def breakdown(self, result: dict) -> dict:
        """Where the time went, from the deployment row and its log-line timestamps."""
        dep_id, wall0 = result["deployment_id"], result["wall0"]
        row = self.db.deployment(dep_id)
        marks = {"created": row["created_at"], "started": row["started_at"]}
        marks |= self.job_marks.get(dep_id, {})
        for ts, stream, text in self.db.log_lines(dep_id):
            if stream != "slipway":
                continue
            if text.startswith("── "):
                marks.setdefault(text[3:].strip(), ts)
            elif re.search(r" answered \d+ on ", text):
                marks.setdefault("healthy", ts)
            elif text.startswith("waiting ") and text.endswith("to settle"):
                marks.setdefault("settle", ts)
            elif text.startswith("routing "):
                marks.setdefault("routed", ts)
            elif text == "running":
                marks.setdefault("running", ts)
        at = {k: v.timestamp() - wall0 for k, v in marks.items() if v is not None}
        at["live"] = result["live_wall"] - wall0
        order = [
            ("post_until_row", None, "created"),
            ("commit_and_enqueue", "created", "rq_enqueued"),
            ("dequeue_and_fork_horse", "rq_enqueued", "rq_started"),
            ("job_setup", "rq_started", "started"),
            ("prepare", "started", "clone"),
            ("clone", "clone", "build"),
            ("build", "build", "start"),
            ("start_container", "start", "health"),
            ("health_until_2xx", "health", "healthy"),
            ("settle", "healthy", "switch"),
            ("switch_until_live", "switch", "live"),
        ]
        steps = {}
        for name, start, end in order:
            begin = 0.0 if start is None else at.get(start)
            if begin is not None and at.get(end) is not None:
                steps[name] = r3(at[end] - begin)
        return {"marks_s": {k: r3(v) for k, v in sorted(at.items(), key=lambda kv: kv[1])},
                "steps_s": steps}  # fmt: skip


# ---- load during redeploys -------------------------------------------------------


class Load:
    """Threads, each with a keep-alive session, GET through Traefik until stopped."""

    def __init__(self, url: str, host: str, threads: int, interval: float):
        self.url, self.host, self.interval = url, host, interval
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.failures: list[str] = []
        self.bodies: Counter = Counter()
        self.latencies: list[float] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)

    def _run(self) -> None:
        import requests

        with requests.Session() as http:
            while not self.stopped.is_set():
                started = time.perf_counter()
                problem = None
                body = None
                try:
                    response = http.get(self.url, headers={"Host": self.host}, timeout=10)
                    body = response.text
                    if response.status_code != 200:
                        problem = f"HTTP {response.status_code}: {body[:80]!r}"
                except requests.RequestException as exc:
                    problem = f"{type(exc).__name__}: {str(exc)[:160]}"
                elapsed = time.perf_counter() - started
                with self.lock:
                    self.sent += 1
                    self.latencies.append(elapsed)
                    if problem:
                        self.failed += 1
                        if len(self.failures) < 20:
                            self.failures.append(f"{time.strftime('%H:%M:%S')} {problem}")
                    else:
                        self.bodies[body] += 1
                self.stopped.wait(self.interval)


# ---- main -----------------------------------------------------------------------


def machine() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kb / 1024**2, 1),
        "python": sys.version.split()[0],
    }  # fmt: skip


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def settle_phase(raw: Raw, slipway: Slipway, rounds: int, label: str) -> dict:
    raws, slips = [], []
    for i in range(1, rounds + 1):
        result = raw.round()
        raws.append(result)
        log(f"[{label}] round {i}: raw {result['total_s']:.2f}s {result['steps_s']}")
        time.sleep(0.5)
        result = slipway.round(label)
        result |= slipway.breakdown(result)
        result.pop("wall0")
        result.pop("live_wall")
        slips.append(result)
        log(f"[{label}] round {i}: slipway {result['total_s']:.2f}s {result['steps_s']}")
        time.sleep(0.5)
    raw_med = median([r["total_s"] for r in raws])
    slip_med = median([r["total_s"] for r in slips])
    step_names = list(slips[0]["steps_s"])
    return {
        "raw_s": [r["total_s"] for r in raws],
        "slipway_s": [r["total_s"] for r in slips],
        "raw_median_s": r3(raw_med),
        "slipway_median_s": r3(slip_med),
        "ratio": r3(slip_med / raw_med),
        "raw_step_medians_s": {
            k: r3(median([r["steps_s"][k] for r in raws])) for k in raws[0]["steps_s"]
        },
        "slipway_step_medians_s": {
            k: r3(median([r["steps_s"][k] for r in slips if k in r["steps_s"]])) for k in step_names
        },
        "slipway_rounds": [
            {k: r[k] for k in ("deployment_id", "total_s", "post_s", "steps_s", "marks_s")}
            for r in slips
        ],
    }


def redeploys_under_load(slipway: Slipway, count: int, threads: int, interval: float) -> dict:
    load = Load(slipway.traefik, slipway.host, threads, interval)
    load.start()
    times = []
    try:
        time.sleep(1.0)  # the stream is steady before the first press
        for i in range(1, count + 1):
            result = slipway.round("load")
            times.append(result["total_s"])
            with load.lock:
                sent, failed = load.sent, load.failed
            log(f"[load] redeploy {i}/{count} live in {result['total_s']:.2f}s; "
                f"{sent} requests so far, {failed} failed")  # fmt: skip
        time.sleep(1.0)
    finally:
        load.stop()
    lat = sorted(load.latencies)
    return {
        "redeploys": count,
        "requests": load.sent,
        "failed": load.failed,
        "failures": load.failures,
        "versions_seen": len(load.bodies),
        "versions_expected": count + 1,
        "threads": threads,
        "interval_s": interval,
        "latency_p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
        "latency_p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
        "latency_max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "push_to_live_s": times,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--rounds", type=int, default=3, help="rounds per side and per settle setting")
    add("--redeploys", type=int, default=10, help="redeploys under load; 0 skips the phase")
    add("--settle", type=float, default=1.0, help="the short health settle, seconds")
    add("--skip-default-settle", action="store_true", help="skip the default-settle rounds")
    add(
        "--build-work",
        type=float,
        default=0.0,
        help="seconds of uncached build work (a RUN sleep after the COPY); 0 by default",
    )
    add("--load-threads", type=int, default=4)
    add("--load-interval", type=float, default=0.01, help="pause per thread, seconds")
    add(
        "--database-url", default="postgresql://slipway:slipway@127.0.0.1:5432/slipway_bench_deploy"
    )
    add("--redis-url", default="redis://127.0.0.1:6379/12")
    add("--keep", action="store_true", help="keep the temporary directory (debugging)")
    return parser.parse_args()  # fmt: skip


class Bench:
    """Owns every process and Docker object of one run, and removes them."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-deploy-"))
        self.procs: dict[str, subprocess.Popen | None] = {"gunicorn": None, "worker": None}
        self.git = self.traefik = self.raw = self.database = self.slipway = None
        self.env: dict[str, str] = {}

    def setup(self) -> None:
        import redis

        args, tmp = self.args, self.tmp
        log(f"temporary directory {tmp}")
        lab.ensure_base_image()
        (tmp / "git").mkdir()
        self.git = lab.GitServer(tmp / "git")
        repo = lab.Repo(self.git, "site", tmp / "work")
        repo.commit(site_files("warm-up"), "first version")

        bench_redis = redis.Redis.from_url(args.redis_url, socket_timeout=5)
        if bench_redis.dbsize():
            log(f"warning: {args.redis_url} holds {bench_redis.dbsize()} keys; flushing it")
        bench_redis.flushdb()
        bench_redis.set(SENTINEL_KEY, "1")
        prepare_postgres(args.database_url)
        http_port, api_port, web_port = lab.free_port(), lab.free_port(), lab.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env |= {
            "SLIPWAY_DATA_DIR": str(tmp / "data"),
            "SLIPWAY_DATABASE_URL": args.database_url,
            "SLIPWAY_REDIS_URL": args.redis_url,
            "SLIPWAY_SECRET_KEY": secrets.token_hex(32),
            "SLIPWAY_ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "SLIPWAY_PROXY_DIR": str(tmp / "traefik"),
            "SLIPWAY_BUILDS_DIR": str(tmp / "builds"),
            "SLIPWAY_HTTP_PORT": str(http_port),
            "SLIPWAY_PROXY_API_PORT": str(api_port),
            "SLIPWAY_GIT_ALLOWED_HOSTS": "127.0.0.1",
            "SLIPWAY_BASE_DOMAIN": "localhost",
        }
        self.env = env
        os.environ.clear()
        os.environ.update(env)  # the bench's own create_app() reads the same settings
        migrate(env)
        seed(repo.url)
        self.traefik = lab.Traefik(write_traefik_config(), tmp / "traefik.log")
        self.traefik.wait_ready(api_port)
        log(f"Traefik on :{http_port} (API :{api_port})")
        self.procs["gunicorn"] = start_gunicorn(env, tmp, web_port)
        log(f"gunicorn on :{web_port}")
        self.database = Db(args.database_url)
        self.slipway = Slipway(
            repo, f"http://127.0.0.1:{web_port}", http_port, self.database, args.redis_url
        )
        self.raw = Raw(repo, tmp)

    def start_worker(self, env: dict, name: str) -> None:
        stop(self.procs["worker"], "worker", timeout=60)
        self.procs["worker"] = self.slipway.worker = start_worker(env, self.tmp, name)

    def measure(self) -> dict:
        args, raw, slipway = self.args, self.raw, self.slipway
        self.start_worker(self.env | {"SLIPWAY_HEALTH_SETTLE_SECONDS": f"{args.settle:g}"},
                          "worker-short")  # fmt: skip
        log(f"worker started (SLIPWAY_HEALTH_SETTLE_SECONDS={args.settle:g})")
        log("warm-up: one raw round and a first Slipway deploy (untimed)")
        raw.round(keep=True)  # kept to the end: the RUN layer stays cached for both sides
        first = slipway.round("warm")
        log(f"warm-up deploy #{first['deployment_id']} live in {first['total_s']:.2f}s")

        short = settle_phase(raw, slipway, args.rounds, f"settle {args.settle:g}s")
        log(f"short settle: raw median {short['raw_median_s']}s, slipway median "
            f"{short['slipway_median_s']}s, ratio {short['ratio']}")  # fmt: skip

        load = {"requests": None, "failed": None}
        if args.redeploys:
            load = redeploys_under_load(
                slipway, args.redeploys, args.load_threads, args.load_interval
            )
            log(f"load: {load['requests']} requests, {load['failed']} failed")

        default, default_settle = None, None
        if not args.skip_default_settle:
            from app import config as app_config

            default_settle = app_config.load()["HEALTH_SETTLE_SECONDS"]
            self.start_worker(self.env, "worker-default")
            log(f"worker restarted with the default settle ({default_settle:g} s: "
                "SLIPWAY_HEALTH_SETTLE_SECONDS unset)")  # fmt: skip
            default = settle_phase(raw, slipway, args.rounds, "settle default")
            log(f"default settle: raw median {default['raw_median_s']}s, slipway median "
                f"{default['slipway_median_s']}s, ratio {default['ratio']}")  # fmt: skip

        return {
            "push_to_live_ratio": short["ratio"],
            "push_to_live_ratio_default_settle": default["ratio"] if default else None,
            "push_to_live_ratio_without_settle": r3(
                (short["slipway_median_s"] - args.settle) / short["raw_median_s"]
            ),
            "failed_requests_during_redeploys": load["failed"],
            "requests_during_redeploys": load["requests"],
            "target_ratio": 1.3,
            "ratio_target_met": short["ratio"] <= 1.3,
            "failed_requests_target_met": load["failed"] == 0 if args.redeploys else None,
            "settle_short_s": args.settle,
            "settle_default_s": default_settle,
            "rq_jobs_missing": slipway.missing_jobs,
            "short_settle": short,
            "default_settle": default,
            "load": load,
            "rounds": args.rounds,
            "build_work_s": args.build_work,
            "database": "postgresql",
        }

    def report_failure(self) -> None:
        for name in ("worker-short", "worker-default", "gunicorn", "traefik"):
            if (self.tmp / f"{name}.log").exists():
                log(f"--- {name}.log (tail)\n{tail(self.tmp / f'{name}.log', 15)}")

    def cleanup(self) -> None:
        import redis

        log("cleaning up")
        stop(self.procs["worker"], "worker")
        stop(self.procs["gunicorn"], "gunicorn")
        if self.traefik is not None:
            self.traefik.stop()
        if self.git is not None:
            self.git.stop()
        if self.database is not None:
            self.database.close()
        mine = f"label=slipway.app={APP_ID}"  # never another app's containers or images
        for cid in _lines(subprocess_out(["docker", "ps", "-aq", "--filter", mine])):
            subprocess_out(["docker", "rm", "-f", cid])
        for image in _lines(subprocess_out(["docker", "images", "-q", "--filter", mine])):
            subprocess_out(["docker", "rmi", "-f", image])
        if self.raw is not None:
            self.raw.cleanup()
        try:
            drop_postgres(self.args.database_url)
            bench_redis = redis.Redis.from_url(self.args.redis_url, socket_timeout=5)
            if bench_redis.exists(SENTINEL_KEY):  # still ours: nobody else flushed it
                bench_redis.flushdb()
        except Exception as exc:  # noqa: BLE001 - cleanup goes on
            log(f"could not drop the database or flush Redis: {exc}")
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> int:
    args = parse_args()
    BUILD_WORK["seconds"] = args.build_work

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    load_before = loadavg()
    bench = Bench(args)
    try:
        bench.setup()
        result = bench.measure()
        result |= {
            "machine": machine(),
            "loadavg_1m_before": load_before,
            "loadavg_1m_after": loadavg(),
        }
        print(json.dumps(result))
        return 0
    except (BenchError, KeyboardInterrupt) as exc:
        log(f"FAILED: {exc}")
        bench.report_failure()
        return 1
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
