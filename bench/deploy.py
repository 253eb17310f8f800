"""Deploy benchmark (issues 3 and 12): push-to-live against the raw pipeline, parallel
deploys, automatic revert, and zero-downtime redeploys, all with default settings.

    .venv/bin/python bench/deploy.py

Everything runs on loopback, on real services: a smart-HTTP git server
(``tests.lab.GitServer``), a fresh PostgreSQL database ``slipway_bench_deploy``
(created if missing, its ``public`` schema wiped, dropped at the end), Redis DB 12
on 127.0.0.1:6379 (``--redis-url``; flushed at start, and at the end if the bench's
sentinel key shows nobody else flushed it meanwhile: a foreign flush stops the run),
the real migrations, Traefik on the static config ``app.proxy.traefik.write_static_config()``
writes, a real gunicorn serving ``wsgi:app`` and ONE ``worker.py`` started with no
arguments (it serves every queue), all on the same ``SLIPWAY_*`` environment with no
deploy setting overridden: the settle or watch window, drain and stop times are the
defaults. Two git apps (busybox ``httpd`` sites) in one project.

1. **Push to live** (``push_to_live_ratio``). Rounds alternate between the raw pipeline
   — ``git clone --depth 1``, ``docker build`` (CLI, legacy builder like Slipway's
   engine API call), ``docker run`` on a network, HTTP poll of the container until it
   answers 200 with the new body — and Slipway: a real ``POST /apps/<id>/deploy``
   (logged in through the login form, CSRF token from ``<meta name="csrf-token">`` of
   the app's page, fetched before the clock starts: the raw side's clock starts at its
   first command, Slipway's at the press), then polling Traefik with the app's Host
   header until the body is the new version. Both sides poll with one keep-alive
   session, every ``POLL`` seconds.
   Each round pushes a fresh commit (the changed file is COPYed after a cached RUN
   step). Ratio of the medians. Each Slipway deploy is broken down per step from the
   deployment row, its RQ job and the ``── <step>`` log lines.
2. **Parallel deploys** (``parallel_deploys_ratio``): rounds alternate one app deployed
   alone and both apps pressed at once (both pages loaded, then two POSTs back to back;
   the clock starts at the first); push-to-live of the pair is until both answer with
   their new body. Ratio of the medians, pair ÷ alone.
3. **Redeploys under load** (``failed_requests_during_redeploys``): threads with
   keep-alive sessions GET through Traefik during consecutive redeploys; every non-200
   answer and every connection error counts as failed.
4. **Revert** (``revert_seconds_p95``): a good version is deployed, then a version
   that answers its health path and gets the traffic, then exits (code 3) 5 s after it
   started. From the engine's ``die`` event of its container (the event's own time)
   until the good version answers through Traefik again. On a Slipway without a watch
   window nothing reverts: the figure is ``null`` and ``revert`` says what happened.
5. **10 s of build work** (``push_to_live_ratio_build10s``, and
   ``parallel_deploys_ratio_build10s``): the same as 1 and 2 with an uncached
   ``RUN sleep 10`` after the COPY, on both sides.

Between rounds the bench never waits for a watch window to run out: the next round
starts as soon as the previous deployment is in its window (status ``deploying``, step
``watch``; a newer deployment ends the window early) or, on a Slipway without one, as
soon as its RQ job has finished. Each round records how long its deployment waited
before its pipeline started (``queue_wait_s``).

Progress goes to stderr; the last stdout line is one JSON object with
``push_to_live_ratio``, ``push_to_live_ratio_build10s``,
``failed_requests_during_redeploys``, ``revert_seconds_p95`` and
``parallel_deploys_ratio`` (and the details). Processes, containers, images, the
network and the temporary directory are removed at the end, also on failure, Ctrl-C or
SIGTERM. Only Docker objects this bench made are touched: the apps get fixed, high ids
(``APP_IDS``) so their containers and images never collide with the test suite's, and
cleanup filters on ``slipway.app=<id>``.
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
APP_IDS = (918_273, 918_274)  # far above any id the test suite reaches
APP_NAMES = ("web", "api")
PROJECT = "bench"
PORT = 8000
RAW_REPO = "slipway-bench-raw"  # image repository and container-name prefix of the raw pipeline
RAW_LABEL = "slipway-bench=raw"
RAW_NETWORK = "slipway-bench-raw"
SENTINEL_KEY = "slipway-bench-deploy:sentinel"  # gone = someone else flushed our Redis DB
# A cached RUN step before the COPY of the changing file, as in a real app
# (dependencies installed, then the source copied).
WARM_RUN = "/bin/busybox sh -c 'echo dependencies > /etc/deps'"
CRASH_AFTER_S = 5  # the crashing version exits this long after it started
ACTIVE = ("queued", "building", "deploying")

START_TIMEOUT = 30
MIGRATE_TIMEOUT = 180
REQUEST_TIMEOUT = 15
LIVE_TIMEOUT = 180
READY_TIMEOUT = 120
REVERT_TIMEOUT = 45
STOP_TIMEOUT = 15
DOCKER_TIMEOUT = 120
POLL = 0.02  # both pipelines poll at this interval
UNTIL_BODY_REQUEST_TIMEOUT = 0.25  # seconds; see until_body


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


def start_gunicorn(
    env: dict, tmp: Path, port: int, layout: list[str] | None = None
) -> subprocess.Popen:
    """gunicorn serving ``wsgi:app``; ``layout`` replaces the worker options (2 x 8)."""
    import requests

    layout = layout or ["-k", "gthread", "--workers", "2", "--threads", "8"]
    out = open(tmp / "gunicorn.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"), *layout,
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


def slipway_env(tmp: Path, database_url: str, redis_url: str) -> dict[str, str]:
    """This process's environment without its ``SLIPWAY_*`` settings, plus a fresh
    installation's: data directory in ``tmp``, the database, Redis, new keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
    return env | {
        "SLIPWAY_DATA_DIR": str(tmp / "data"),
        "SLIPWAY_DATABASE_URL": database_url,
        "SLIPWAY_REDIS_URL": redis_url,
        "SLIPWAY_SECRET_KEY": secrets.token_hex(32),
        "SLIPWAY_ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }


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


def seed(git_urls: list[str]) -> None:
    """One owner, team and project, and a git app per URL, through the models."""
    from app import create_app
    from app.extensions import db
    from app.models import Application

    flask_app = create_app()
    with flask_app.app_context():
        project = lab.seed_owner_project(EMAIL, PASSWORD, PROJECT, "deploy bench")
        for app_id, name, url in zip(APP_IDS, APP_NAMES, git_urls, strict=True):
            db.session.add(
                Application(
                    id=app_id, project_id=project.id, environment_id=project.environments[0].id,
                    name=name, source_type="git", git_url=url, git_branch="main",
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
            "SELECT status, step, error, created_at, started_at, finished_at FROM deployments "
            "WHERE id = %s",
            (dep_id,),
        ).fetchone()
        if row is None:
            raise BenchError(f"deployment {dep_id} is not in the database")
        keys = ("status", "step", "error", "created_at", "started_at", "finished_at")
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
    """Poll ``url`` every POLL seconds until it answers 200 with ``body``.

    One keep-alive session (Traefik routes each request anew), on both sides: no new
    session and connection to Traefik per poll. Slipway's side still polls for the
    whole deploy, the raw side only after ``docker run``; a 50 Hz poll of a container
    measured beside a build made it ≈0.03 s slower, and a ``docker run`` no slower."""
    import requests

    headers = {"Host": host} if host else {}
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 0.5
    with requests.Session() as http:
        while not _answers(http, url, headers, body):
            now = time.monotonic()
            if check is not None and now >= next_check:
                check()
                next_check = now + 0.5
            if now > deadline:
                raise BenchError(f"{url} did not answer {body!r} within {timeout:.0f}s")
            time.sleep(POLL)


def _answers(http, url: str, headers: dict, body: str) -> bool:
    import requests

    try:
        response = http.get(url, headers=headers, timeout=2)
        return response.status_code == 200 and response.text == body
    except requests.RequestException:
        return False


# ---- the two pipelines -----------------------------------------------------------


BUILD_WORK = {"seconds": 0.0}  # the build10s phase: an uncached RUN step after the COPY


def site_files(version: str) -> dict[str, str]:
    """A busybox httpd site: cached RUN, then the changing file, then (optionally) work."""
    files = lab.web_files(version, port=PORT, extra_run=WARM_RUN)
    if BUILD_WORK["seconds"]:
        copy = "COPY www /www\n"
        work = f"RUN /bin/busybox sleep {BUILD_WORK['seconds']:g}\n"
        files["Dockerfile"] = files["Dockerfile"].replace(copy, copy + work)
    return files


def crashing_files(version: str) -> dict[str, str]:
    """The same site, but its httpd runs in the background and the container's main
    process exits with code 3 ``CRASH_AFTER_S`` seconds after it started."""
    files = site_files(version)
    start = files["Dockerfile"].index("CMD ")
    files["Dockerfile"] = files["Dockerfile"][:start] + (
        'CMD ["/bin/busybox", "sh", "-c", '
        f'"/bin/busybox httpd -p {PORT} -h /www; /bin/busybox sleep {CRASH_AFTER_S}; exit 3"]\n'
    )
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


class Target:
    """One of the bench's apps: its repository, id and host name."""

    def __init__(self, repo: lab.Repo, app_id: int, name: str):
        self.repo, self.app_id, self.name = repo, app_id, name
        self.host = f"{name}.{PROJECT}.localhost"
        self.n = 0
        self.last_body: str | None = None

    def push(self, label: str, files=site_files) -> str:
        self.n += 1
        version = f"{self.name}-{label}-{self.n}-{uuid.uuid4().hex[:8]}"
        self.repo.commit(files(version), f"{label} round {self.n}")
        return version


class Slipway:
    """Press Deploy (a real POST through gunicorn), then watch Traefik for the new body."""

    def __init__(self, base: str, http_port: int, database: Db, redis_url: str):
        import redis
        import requests

        self.base, self.db = base, database
        self.traefik = f"http://127.0.0.1:{http_port}/"
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.http = requests.Session()
        self.http_lock = threading.Lock()
        login(self.http, base)
        log("logged in through the login form")
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

    def button_page(self, target: Target) -> str:
        """Open the app's page (the Deploy button's); returns its CSRF token."""
        with self.http_lock:
            return csrf(self.http, f"{self.base}/apps/{target.app_id}")

    def press_deploy(self, target: Target, token: str | None = None) -> tuple[int, float, float]:
        """POST /apps/<id>/deploy from the app's page (opened first unless ``token``);
        returns the deployment id and the wall and monotonic times of the press."""
        if token is None:
            token = self.button_page(target)
        with self.http_lock:
            wall, pressed = time.time(), time.monotonic()
            response = self.http.post(
                f"{self.base}/apps/{target.app_id}/deploy", data={"csrf_token": token},
                timeout=REQUEST_TIMEOUT, allow_redirects=False,
            )  # fmt: skip
        found = re.fullmatch(r".*/deployments/(\d+)", response.headers.get("Location", ""))
        if response.status_code != 303 or not found:
            raise BenchError(f"POST deploy: {response.status_code}\n{response.text[:500]}")
        return int(found.group(1)), wall, pressed

    def failure(self, dep_id: int) -> str | None:
        row = self.db.deployment(dep_id)
        if row["status"] in ("failed", "cancelled", "superseded"):
            lines = "\n".join(text for _, _, text in self.db.log_lines(dep_id)[-25:])
            return f"deployment {dep_id} {row['status']}: {row['error']}\n{lines}"
        return None

    def _failed(self, dep_id: int):
        def check() -> None:
            self.check_worker()
            problem = self.failure(dep_id)
            if problem:
                raise BenchError(problem)

        return check

    def round(self, target: Target, label: str, files=site_files, ready: bool = True) -> dict:
        """Push a commit, press Deploy, wait until Traefik serves it (and, with ``ready``,
        until the next round may start)."""
        version = target.push(label, files)
        dep_id, wall0, t0 = self.press_deploy(target)
        t_posted = time.monotonic()
        result = {"deployment_id": dep_id, "version": version, "post_s": r3(t_posted - t0),
                  "wall0": wall0, "t0": t0}  # fmt: skip
        self.wait_live(target, result)
        if ready:
            self.wait_ready(dep_id)
        return result

    def wait_live(self, target: Target, result: dict) -> None:
        body = body_of(result["version"])
        wait_body(
            self.traefik, body, LIVE_TIMEOUT, target.host, self._failed(result["deployment_id"])
        )
        t_live = time.monotonic()
        target.last_body = body
        result["total_s"] = r3(t_live - result["t0"])
        result["live_wall"] = result["wall0"] + (t_live - result["t0"])

    def pair(self, targets: list[Target], label: str) -> dict:
        """Both apps pressed at once; done when both serve their new version."""
        pushed = [(target, target.push(label), self.button_page(target)) for target in targets]
        results, errors = [], []
        t0 = None
        for target, version, token in pushed:
            dep_id, wall0, pressed = self.press_deploy(target, token)
            t0 = pressed if t0 is None else t0  # the clock starts at the first press
            results.append({"deployment_id": dep_id, "version": version, "wall0": wall0,
                            "t0": t0})  # fmt: skip

        def follow(target: Target, result: dict) -> None:
            try:
                self.wait_live(target, result)
            except BenchError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=follow, args=(t, r))
                   for t, r in zip(targets, results, strict=True)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        total = max(r["total_s"] for r in results)
        for result in results:
            self.wait_ready(result["deployment_id"])
        return {"total_s": total, "each_s": [r["total_s"] for r in results],
                "deployment_ids": [r["deployment_id"] for r in results]}  # fmt: skip

    def wait_ready(self, dep_id: int) -> None:
        """Until the next round may start: the deployment is in its watch window (a newer
        deployment ends it early), or it ended ``running`` and its RQ job finished (a
        Slipway without a watch window: the job drains and stops the old version)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            self.check_worker()
            row = self.db.deployment(dep_id)
            if row["status"] == "deploying" and row["step"] == "watch":
                return
            if row["status"] not in ACTIVE:
                if row["status"] not in ("running", "replaced"):
                    raise BenchError(f"deployment {dep_id} ended {row['status']}: {row['error']}")
                if self.job_done(dep_id):
                    return
            time.sleep(0.05)
        raise BenchError(f"deployment {dep_id} was not ready for the next within {READY_TIMEOUT}s")

    def wait_final(self, dep_id: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_worker()
            row = self.db.deployment(dep_id)
            if row["status"] not in ACTIVE:
                return row
            time.sleep(0.1)
        return self.db.deployment(dep_id)

    def job_done(self, dep_id: int) -> bool:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus
        from rq.serializers import JSONSerializer

        try:
            job = Job.fetch(f"deploy-{dep_id}", connection=self.redis, serializer=JSONSerializer)
            status = job.get_status(refresh=True)
            self.job_marks[dep_id] = {"rq_enqueued": job.enqueued_at, "rq_started": job.started_at}
        except NoSuchJobError:
            if dep_id not in self.missing_jobs:
                self.missing_jobs.append(dep_id)
                log(f"warning: the RQ job of deployment {dep_id} is gone from Redis")
            return True
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            raise BenchError(f"job deploy-{dep_id} {status}")
        return status == JobStatus.FINISHED

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
        at = {k: v.timestamp() - wall0 for k, v in marks.items() if v is not None}
        at["live"] = result["live_wall"] - wall0
        order = [
            ("post_until_row", None, "created"),
            ("commit_and_enqueue", "created", "rq_enqueued"),
            ("dequeue", "rq_enqueued", "rq_started"),
            ("job_setup", "rq_started", "started"),
            ("prepare", "started", "clone"),
            ("clone", "clone", "build"),
            ("build", "build", "start"),
            ("start_container", "start", "health"),
            ("health_until_2xx", "health", "healthy"),
            ("healthy_until_switch", "healthy", "switch"),
            ("switch_until_live", "switch", "live"),
        ]
        steps = {}
        for name, start, end in order:
            begin = 0.0 if start is None else at.get(start)
            if begin is not None and at.get(end) is not None:
                steps[name] = r3(at[end] - begin)
        queue_wait = at["started"] - at["created"] if "started" in at and "created" in at else None
        return {"marks_s": {k: r3(v) for k, v in sorted(at.items(), key=lambda kv: kv[1])},
                "steps_s": steps, "queue_wait_s": r3(queue_wait)}  # fmt: skip


class Deaths:
    """The engine's ``die`` events of the bench's containers, with the event's own time."""

    def __init__(self, app_ids: tuple[int, ...]):
        import docker

        self.client = docker.from_env()
        self.lock = threading.Lock()
        self.seen: dict[int, list[tuple[float, int | None]]] = {}  # deployment → (time, code)
        self.apps = {str(i) for i in app_ids}
        self.stream = self.client.events(decode=True, filters={"type": "container", "event": "die"})
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            for event in self.stream:
                attrs = event.get("Actor", {}).get("Attributes", {})
                dep = attrs.get("slipway.deployment")
                if not dep or attrs.get("slipway.app") not in self.apps:
                    continue
                code = attrs.get("exitCode")
                with self.lock:
                    self.seen.setdefault(int(dep), []).append(
                        (event["timeNano"] / 1e9, int(code) if code is not None else None)
                    )
        except Exception:  # noqa: BLE001 - the stream ends when the bench closes it
            pass

    def first(self, dep_id: int, timeout: float) -> tuple[float, int | None] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.seen.get(dep_id):
                    return self.seen[dep_id][0]
            time.sleep(0.02)
        return None

    def close(self) -> None:
        self.stream.close()
        self.client.close()


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def push_phase(raw: Raw, slipway: Slipway, target: Target, rounds: int, label: str) -> dict:
    raws, slips = [], []
    for i in range(1, rounds + 1):
        result = raw.round()
        raws.append(result)
        log(f"[{label}] round {i}: raw {result['total_s']:.2f}s {result['steps_s']}")
        time.sleep(0.5)
        result = slipway.round(target, label)
        result |= slipway.breakdown(result)
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
            {
                k: r[k]
                for k in (
                    "deployment_id",
                    "total_s",
                    "post_s",
                    "queue_wait_s",
                    "steps_s",
                    "marks_s",
                )
            }
            for r in slips
        ],  # fmt: skip
    }


def parallel_phase(slipway: Slipway, targets: list[Target], rounds: int, label: str) -> dict:
    alone, pairs = [], []
    for i in range(1, rounds + 1):
        solo = slipway.round(targets[0], label)
        alone.append(solo["total_s"])
        time.sleep(0.5)
        both = slipway.pair(targets, label)
        pairs.append(both)
        log(f"[{label}] round {i}: alone {solo['total_s']:.2f}s, both at once "
            f"{both['total_s']:.2f}s {both['each_s']}")  # fmt: skip
        time.sleep(0.5)
    alone_med = median(alone)
    pair_med = median([p["total_s"] for p in pairs])
    return {
        "alone_s": alone,
        "pair_s": [p["total_s"] for p in pairs],
        "pair_each_s": [p["each_s"] for p in pairs],
        "alone_median_s": r3(alone_med),
        "pair_median_s": r3(pair_med),
        "ratio": r3(pair_med / alone_med),
    }


def redeploys_under_load(
    slipway: Slipway, target: Target, count: int, threads: int, interval: float
) -> dict:
    load = Load(slipway.traefik, target.host, threads, interval)
    load.start()
    times = []
    try:
        time.sleep(1.0)  # the stream is steady before the first press
        for i in range(1, count + 1):
            result = slipway.round(target, "load")
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


def until_body(url: str, host: str, body: str, timeout: float) -> tuple[float | None, int]:
    """Poll through Traefik until ``body`` answers: (its wall time or None, failed answers).

    Each request gives up after ``UNTIL_BODY_REQUEST_TIMEOUT``: one sent while Traefik
    still routes to the crashed replica hangs until the kernel gives up on its vanished
    address (seconds), and must not hide the old version answering meanwhile. It is
    counted as failed."""
    import requests

    failed = 0
    deadline = time.monotonic() + timeout
    with requests.Session() as http:
        while time.monotonic() < deadline:
            try:
                response = http.get(url, headers={"Host": host}, timeout=UNTIL_BODY_REQUEST_TIMEOUT)
                if response.status_code == 200 and response.text == body:
                    return time.time(), failed
                if response.status_code != 200:
                    failed += 1
            except requests.RequestException:
                failed += 1
            time.sleep(POLL)
    return None, failed


def revert_round(slipway: Slipway, target: Target, deaths: Deaths, i: int) -> dict:
    good = slipway.round(target, "good")
    good_body = target.last_body
    version = target.push("crash", crashing_files)
    dep_id, wall0, t0 = slipway.press_deploy(target)
    result = {"deployment_id": dep_id, "good_deployment_id": good["deployment_id"],
              "version": version, "wall0": wall0, "t0": t0}  # fmt: skip
    try:
        slipway.wait_live(target, result)
    except BenchError:
        row = slipway.db.deployment(dep_id)
        log(f"[revert] round {i}: the crashing version never got the traffic: {row['error']}")
        return result | {"outcome": "failed before the switch", "status": row["status"],
                         "error": row["error"], "revert_s": None}  # fmt: skip
    died = deaths.first(dep_id, timeout=CRASH_AFTER_S + 30)
    if died is None:
        return result | {"outcome": "its container never died", "revert_s": None}
    die_wall, code = died
    seen_wall, failed = until_body(slipway.traefik, target.host, good_body, REVERT_TIMEOUT)
    row = slipway.wait_final(dep_id, timeout=60)
    out = result | {
        "exit_code": code,
        "switch_to_die_s": r3(die_wall - result["live_wall"]),
        "failed_requests_until_reverted": failed,
        "status": row["status"],
        "error": row["error"],
    }
    if seen_wall is None:
        log(f"[revert] round {i}: the good version did not answer within {REVERT_TIMEOUT}s of "
            f"the crash; deployment {dep_id} ended {row['status']}")  # fmt: skip
        return out | {"outcome": "not reverted", "revert_s": None}
    log(f"[revert] round {i}: good version back {seen_wall - die_wall:.2f}s after the crash; "
        f"deployment {dep_id} {row['status']}: {row['error']}")  # fmt: skip
    return out | {"outcome": "reverted", "revert_s": r3(seen_wall - die_wall)}


def revert_phase(slipway: Slipway, target: Target, deaths: Deaths, rounds: int) -> dict:
    results = [revert_round(slipway, target, deaths, i) for i in range(1, rounds + 1)]
    times = [r["revert_s"] for r in results if r["revert_s"] is not None]
    for r in results:
        for key in ("wall0", "t0", "live_wall"):
            r.pop(key, None)
    return {
        "rounds": results,
        "reverted": len(times),
        "revert_s": times,
        "p95_s": r3(percentile(times, 0.95)) if len(times) == len(results) else None,
        "median_s": r3(median(times)) if times else None,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--rounds", type=int, default=3, help="rounds per side, per phase")
    add("--redeploys", type=int, default=10, help="redeploys under load; 0 skips the phase")
    add("--revert-rounds", type=int, default=5, help="crash-after-switch rounds; 0 skips them")
    add(
        "--build-work",
        type=float,
        default=10.0,
        help="seconds of uncached build work of the build phase; 0 skips the phase",
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
        self.deaths: Deaths | None = None
        self.targets: list[Target] = []
        self.env: dict[str, str] = {}

    def setup(self) -> None:
        import redis

        args, tmp = self.args, self.tmp
        log(f"temporary directory {tmp}")
        lab.ensure_base_image()
        (tmp / "git").mkdir()
        self.git = lab.GitServer(tmp / "git")
        repos = [lab.Repo(self.git, f"site-{name}", tmp / "work") for name in APP_NAMES]
        for repo in repos:
            repo.commit(site_files("first"), "first version")

        bench_redis = redis.Redis.from_url(args.redis_url, socket_timeout=5)
        if bench_redis.dbsize():
            log(f"warning: {args.redis_url} holds {bench_redis.dbsize()} keys; flushing it")
        bench_redis.flushdb()
        bench_redis.set(SENTINEL_KEY, "1")
        prepare_postgres(args.database_url)
        http_port, api_port, web_port = lab.free_port(), lab.free_port(), lab.free_port()
        env = slipway_env(tmp, args.database_url, args.redis_url)
        env |= {
            "SLIPWAY_PROXY_DIR": str(tmp / "traefik"),
            "SLIPWAY_BUILDS_DIR": str(tmp / "builds"),
            "SLIPWAY_HTTP_PORT": str(http_port),
            "SLIPWAY_HTTPS_PORT": str(lab.free_port()),
            "SLIPWAY_PROXY_API_PORT": str(api_port),
            "SLIPWAY_GIT_ALLOWED_HOSTS": "127.0.0.1",
            "SLIPWAY_BASE_DOMAIN": "localhost",
        }
        self.env = env
        os.environ.clear()
        os.environ.update(env)  # the bench's own create_app() reads the same settings
        migrate(env)
        seed([repo.url for repo in repos])
        apps = zip(repos, APP_IDS, APP_NAMES, strict=True)
        self.targets = [Target(repo, app_id, name) for repo, app_id, name in apps]
        self.traefik = lab.Traefik(write_traefik_config(), tmp / "traefik.log")
        self.traefik.wait_ready(api_port)
        log(f"Traefik on :{http_port} (API :{api_port})")
        self.procs["gunicorn"] = start_gunicorn(env, tmp, web_port)
        log(f"gunicorn on :{web_port}")
        self.database = Db(args.database_url)
        self.slipway = Slipway(f"http://127.0.0.1:{web_port}", http_port, self.database,
                               args.redis_url)  # fmt: skip
        self.raw = Raw(repos[0], tmp)
        self.deaths = Deaths(APP_IDS)

    def measure(self) -> dict:
        args, raw, slipway, targets = self.args, self.raw, self.slipway, self.targets
        self.procs["worker"] = slipway.worker = start_worker(self.env, self.tmp, "worker")
        log("worker.py started with no arguments and default settings")
        log("warm-up: one raw round and a first deploy of each app (untimed)")
        raw.round(keep=True)  # kept to the end: the RUN layer stays cached for both sides
        for target in targets:
            first = slipway.round(target, "warm")
            log(f"warm-up deploy #{first['deployment_id']} of {target.name} live in "
                f"{first['total_s']:.2f}s")  # fmt: skip

        tiny = push_phase(raw, slipway, targets[0], args.rounds, "tiny")
        log(f"tiny app: raw median {tiny['raw_median_s']}s, slipway median "
            f"{tiny['slipway_median_s']}s, ratio {tiny['ratio']}")  # fmt: skip
        parallel = parallel_phase(slipway, targets, args.rounds, "parallel")
        log(f"parallel: alone {parallel['alone_median_s']}s, both {parallel['pair_median_s']}s, "
            f"ratio {parallel['ratio']}")  # fmt: skip

        load = {"requests": None, "failed": None}
        if args.redeploys:
            load = redeploys_under_load(
                slipway, targets[0], args.redeploys, args.load_threads, args.load_interval
            )
            log(f"load: {load['requests']} requests, {load['failed']} failed")

        revert = {"p95_s": None}
        if args.revert_rounds:
            revert = revert_phase(slipway, targets[0], self.deaths, args.revert_rounds)
            log(f"revert: {revert['reverted']} of {args.revert_rounds} reverted, "
                f"p95 {revert['p95_s']}s")  # fmt: skip

        build, build_parallel = None, None
        if args.build_work:
            BUILD_WORK["seconds"] = args.build_work
            label = f"build{args.build_work:g}s"
            build = push_phase(raw, slipway, targets[0], args.rounds, label)
            log(f"{label}: raw median {build['raw_median_s']}s, slipway median "
                f"{build['slipway_median_s']}s, ratio {build['ratio']}")  # fmt: skip
            build_parallel = parallel_phase(slipway, targets, args.rounds, f"parallel-{label}")
            log(f"parallel {label}: ratio {build_parallel['ratio']}")

        figures = {
            "push_to_live_ratio": tiny["ratio"],
            "push_to_live_ratio_build10s": build["ratio"] if build else None,
            "failed_requests_during_redeploys": load["failed"],
            "revert_seconds_p95": revert["p95_s"],
            "parallel_deploys_ratio": parallel["ratio"],
        }
        targets_met = {
            "push_to_live_ratio": ("<=", 1.3), "push_to_live_ratio_build10s": ("<=", 1.1),
            "failed_requests_during_redeploys": ("<=", 0), "revert_seconds_p95": ("<=", 2),
            "parallel_deploys_ratio": ("<=", 1.4),
        }  # fmt: skip
        met = {k: (None if figures[k] is None else figures[k] <= bound)
               for k, (_, bound) in targets_met.items()}  # fmt: skip
        return figures | {
            "parallel_deploys_ratio_build10s": build_parallel["ratio"] if build_parallel else None,
            "requests_during_redeploys": load["requests"],
            "targets": {k: f"{op} {bound}" for k, (op, bound) in targets_met.items()},
            "targets_met": met,
            "rq_jobs_missing": slipway.missing_jobs,
            "tiny": tiny,
            "parallel": parallel,
            "load": load,
            "revert": revert,
            "build": build,
            "build_parallel": build_parallel,
            "rounds": args.rounds,
            "build_work_s": args.build_work,
            "settings": "defaults (no SLIPWAY_* deploy setting overridden)",
            "worker": "one worker.py, no arguments",
            "database": "postgresql",
        }

    def report_failure(self) -> None:
        for name in ("worker", "gunicorn", "traefik"):
            if (self.tmp / f"{name}.log").exists():
                log(f"--- {name}.log (tail)\n{tail(self.tmp / f'{name}.log', 15)}")

    def cleanup(self) -> None:
        import redis

        log("cleaning up")
        stop(self.procs["worker"], "worker")
        stop(self.procs["gunicorn"], "gunicorn")
        if self.deaths is not None:
            self.deaths.close()
        if self.traefik is not None:
            self.traefik.stop()
        if self.git is not None:
            self.git.stop()
        if self.database is not None:
            self.database.close()
        for app_id in APP_IDS:  # never another app's containers or images
            mine = f"label=slipway.app={app_id}"
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
        print(json.dumps(result, default=str))
        return 0
    except (BenchError, KeyboardInterrupt) as exc:
        log(f"FAILED: {exc}")
        bench.report_failure()
        return 1
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
