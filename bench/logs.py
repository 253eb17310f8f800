"""Live-log benchmark (issue 4): latency of a log line, and the web process under a flood.

    .venv/bin/python bench/logs.py
    .venv/bin/python bench/logs.py --database-url postgresql://slipway:slipway@127.0.0.1:5432/slipway_bench

One gunicorn web worker (gthread, 16 threads, as ``make run`` runs it but with one
worker so every socket and page lands in the same process) on a fresh data
directory (SQLite, or a wiped PostgreSQL database whose name contains ``bench``),
a private Redis, and the real Docker engine. Containers and images are built and
started through ``app.runtime.containers`` with the busybox base image of ``tests/lab.py``.

1. ``build_lines_lost``: a real ``docker build`` whose RUN step prints 5,000
   numbered lines, fed to ``app.deploys.buildlog.BuildLog`` as the pipeline does, while a
   websocket follows that deployment's log. Lost = printed − stored (and printed −
   received by the socket, ``build_lines_lost_live``).
2. ``line_latency_p95_ms``: a container prints a line every 100 ms; latency = the
   time the websocket client receives it − the timestamp dockerd gave the line.
   ``build_line_latency_p95_ms``: from ``BuildLog.line()`` to arrival (includes
   the log's own 0.25 s batching).
3. ``flood_dashboard_p95_ms``: sequential dashboard GETs while a container prints
   ~20,000 lines/s for 10 s to two open Logs sockets, next to the same GETs with
   the sockets open and idle (``idle_dashboard_p95_ms``).
   ``flood_web_rss_growth_mb``: the worker's peak RSS during the flood minus its
   RSS just before.

Progress on stderr; the last stdout line is one JSON object. Everything the run
started (gunicorn, Redis, containers, images, the temporary directory) is removed
at the end, also on failure or Ctrl-C.
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
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pages import (  # noqa: E402 - needs ROOT on sys.path
    EMAIL,
    PASSWORD,
    BenchError,
    free_port,
    log,
    login,
    migrate,
    prepare_postgres,
    start_redis,
    stop,
    summarize,
    tail,
)
from tests import lab  # noqa: E402

VENV_BIN = Path(sys.executable).parent
BENCH_LABEL = "slipway.bench-logs"
BUILD_LINES = 5000
LATENCY_SECONDS = 10
FLOOD_ROUNDS = 100  # x (2,000 lines, then 0.1 s) ≈ 10 s at ~20,000 lines/s
CHUNK_LINES = 2000
DASHBOARD_GETS = 60
START_TIMEOUT = 30

DOCKERFILE = f"""FROM {lab.BASE_IMAGE}
RUN i=0; while [ $i -lt {BUILD_LINES} ]; do i=$((i+1)); echo "bench-build-line-$i"; done; \\
    echo {{nonce}}
CMD ["/bin/sh", "-c", "if [ \\"$MODE\\" = flood ]; then \\
i=0; while [ $i -lt {CHUNK_LINES} ]; do \\
echo \\"flood $i the quick brown fox jumps over the lazy dog 0123456789\\"; i=$((i+1)); \\
done > /chunk; sleep 2; n=0; while [ $n -lt {FLOOD_ROUNDS} ]; do \\
cat /chunk; sleep 0.1; n=$((n+1)); done; echo flood-done; sleep 3600; \\
else n=0; while :; do n=$((n+1)); echo tick-$n; sleep 0.1; done; fi"]
"""


def start_web(env: dict, tmp: Path, port: int) -> subprocess.Popen:
    import requests

    out = open(tmp / "gunicorn.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "-k", "gthread", "--workers", "1", "--threads", "16",
         "-b", f"127.0.0.1:{port}", "--no-control-socket", "wsgi:app"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    out.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gunicorn exited:\n{tail(tmp / 'gunicorn.log')}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise BenchError(f"gunicorn not healthy:\n{tail(tmp / 'gunicorn.log')}")


def worker_pid(master: int) -> int:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == master:
                return int(entry.name)
    raise BenchError("no gunicorn worker found")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---- data --------------------------------------------------------------------------


def seed(flask_app) -> dict:
    """An owner, 10 projects x 10 apps with deployments, and the bench's two apps."""
    from sqlalchemy import text

    from app.extensions import db
    from app.models import (
        Application,
        Deployment,
        Environment,
        Installation,
        Membership,
        Project,
        Team,
        User,
    )

    with flask_app.app_context():
        base = random.randrange(10**6, 10**9)  # ids no container on this engine carries
        for table in ("applications", "deployments"):
            if db.engine.dialect.name == "postgresql":
                db.session.execute(text(f"ALTER SEQUENCE {table}_id_seq RESTART WITH {base}"))
            else:
                db.session.execute(
                    text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)"),
                    {"t": table, "s": base},
                )
        team = Team(name="bench")
        user = User(email=EMAIL, name="Bench Owner")
        user.set_password(PASSWORD)
        db.session.add_all([team, user])
        db.session.flush()
        db.session.add(Membership(team_id=team.id, user_id=user.id, role="owner"))
        db.session.add(Installation(id=1, owner_id=user.id))
        apps = []
        for p in range(10):
            project = Project(team_id=team.id, name=f"proj{p}")
            project.environments.append(Environment(name="production"))
            db.session.add(project)
            db.session.flush()
            for a in range(10):
                row = Application(
                    project_id=project.id,
                    name=f"app{a}",
                    source_type="image",
                    image="nginx:1",
                    environment_id=project.environments[0].id,
                )
                db.session.add(row)
                apps.append(row)
        db.session.flush()
        for row in apps:
            for status in ("replaced", "failed", "running"):
                db.session.add(Deployment(application_id=row.id, status=status))
        db.session.commit()
        return {"tailed": apps[0].id, "flooded": apps[1].id, "control": apps[2].id}


def new_deployment(flask_app, app_id: int, status: str) -> int:
    from app.extensions import db
    from app.models import Deployment

    with flask_app.app_context():
        dep = Deployment(application_id=app_id, status=status)
        db.session.add(dep)
        db.session.commit()
        return dep.id


def set_status(flask_app, dep_id: int, status: str) -> None:
    from app.deploys import livestatus
    from app.extensions import db
    from app.models import Deployment

    with flask_app.app_context():
        dep = db.session.get(Deployment, dep_id)
        dep.status = status
        db.session.commit()
        livestatus.publish(dep)


# ---- websocket client ----------------------------------------------------------------


class Tail(threading.Thread):
    """A websocket client collecting frames with their arrival time."""

    def __init__(self, base: str, path: str, cookies: str):
        super().__init__(daemon=True)
        from simple_websocket import Client

        class BrowserLike(Client):
            def handshake(self):
                self.host = f"{self.host}:{self.port}"
                super().handshake()

        self.ws = BrowserLike.connect(
            "ws" + base[4:] + path, headers={"Cookie": cookies, "Origin": base}
        )
        self.frames: list[tuple[float, dict]] = []
        self.closed = threading.Event()

    def run(self) -> None:
        from simple_websocket import ConnectionClosed

        try:
            while True:
                data = self.ws.receive(timeout=0.5)
                if data is not None:
                    self.frames.append((time.time(), json.loads(data)))
                elif not self.ws.connected:
                    break
        except ConnectionClosed:
            pass
        self.closed.set()

    def of_type(self, kind: str) -> list[tuple[float, dict]]:
        return [(t, f) for t, f in self.frames if f["type"] == kind]

    def lines(self) -> list[tuple[float, dict]]:
        return [(t, line) for t, f in self.frames if f["type"] == "lines" for line in f["lines"]]

    def stop(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - already closed
            pass


def cookie_header(http) -> str:
    return "; ".join(f"{k}={v}" for k, v in http.cookies.items())


# ---- measurements ------------------------------------------------------------------


def measure_build(flask_app, ids: dict, base: str, cookies: str, tmp: Path) -> dict:
    """A real docker build printing BUILD_LINES lines into BuildLog, followed live."""
    from sqlalchemy import func, select

    from app.deploys.buildlog import BuildLog
    from app.extensions import db
    from app.models import DeploymentLogLine
    from app.runtime import containers

    dep_id = new_deployment(flask_app, ids["tailed"], "building")
    context = tmp / "build"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE.replace("{nonce}", f"nonce-{time.time()}"))
    follower = Tail(base, f"/ws/deployments/{dep_id}/log", cookies)
    follower.start()
    with flask_app.app_context():
        build_log = BuildLog(dep_id)
        tag = containers.image_tag(ids["tailed"], dep_id)
        labels = {containers.LABEL_APP: str(ids["tailed"]), BENCH_LABEL: "1"}
        started = time.monotonic()
        containers.build_image(context, context / "Dockerfile", tag, labels,
                               on_line=build_log.line, should_stop=lambda: False)  # fmt: skip
        build_log.flush()
        seconds = time.monotonic() - started
        stored = db.session.scalar(
            select(func.count(func.distinct(DeploymentLogLine.text))).where(
                DeploymentLogLine.deployment_id == dep_id,
                DeploymentLogLine.text.like("bench-build-line-%"),
            )
        )
        db.session.remove()
    set_status(flask_app, dep_id, "running")
    follower.closed.wait(30)
    follower.stop()
    received = {
        line["html"]
        for _t, line in follower.lines()
        if line["html"].startswith("bench-build-line-")
    }
    log(
        f"build: {BUILD_LINES} printed, {stored} stored, {len(received)} received in {seconds:.1f}s"
    )
    return {"image": tag, "deployment": dep_id, "lost": BUILD_LINES - stored,
            "lost_live": BUILD_LINES - len(received)}  # fmt: skip


def measure_build_latency(flask_app, ids: dict, base: str, cookies: str) -> list[float]:
    from app.deploys.buildlog import BuildLog

    dep_id = new_deployment(flask_app, ids["tailed"], "building")
    follower = Tail(base, f"/ws/deployments/{dep_id}/log", cookies)
    follower.start()
    time.sleep(1)
    sent: dict[str, float] = {}
    with flask_app.app_context():
        build_log = BuildLog(dep_id)
        for i in range(200):  # 20 lines/s for 10 s, like a quiet build
            text = f"latency-{i}"
            sent[text] = time.time()
            build_log.line(text)
            time.sleep(0.05)
        build_log.flush()
    set_status(flask_app, dep_id, "failed")
    follower.closed.wait(15)
    follower.stop()
    return [(t - sent[line["html"]]) * 1000 for t, line in follower.lines() if line["html"] in sent]


def start_app_container(flask_app, app_id: int, image: str, mode: str) -> int:
    from app.runtime import containers

    dep_id = new_deployment(flask_app, app_id, "deploying")
    with flask_app.app_context():
        containers.start_replicas(app_id=app_id, project_id=1, deployment_id=dep_id, image=image,
                                  env={"MODE": mode}, count=1, cpu_limit=None,
                                  memory_limit_mb=None)  # fmt: skip
    set_status(flask_app, dep_id, "running")
    return dep_id


def docker_ts(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


def measure_runtime_latency(flask_app, ids, image, base, cookies) -> list[float]:
    start_app_container(flask_app, ids["tailed"], image, "tick")
    time.sleep(1)
    follower = Tail(base, f"/ws/apps/{ids['tailed']}/logs", cookies)
    follower.start()
    time.sleep(LATENCY_SECONDS)
    follower.stop()
    follower.closed.wait(5)
    first = min((t for t, f in follower.frames if f["type"] == "lines"), default=0)
    # The first frame replays the last lines (old by design): count only live ones.
    return [(t - docker_ts(line["ts"])) * 1000 for t, line in follower.lines() if t > first]


def dashboard_times(http, base: str, count: int, until: float | None = None) -> list[float]:
    times = []
    for _ in range(count):
        if until is not None and time.monotonic() > until:
            break
        t0 = time.perf_counter()
        answer = http.get(base + "/", timeout=15)
        times.append((time.perf_counter() - t0) * 1000)
        if answer.status_code != 200 or "proj9" not in answer.text:
            raise BenchError(f"dashboard answered {answer.status_code}")
    return times


def worker_cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood_window(flask_app, app_id: int, image: str, http, base: str, pid: int) -> dict:
    """Start a flooding container of ``app_id``; time dashboard GETs during its 10 s."""
    rss_before, cpu_before = rss_mb(pid), worker_cpu_seconds(pid)
    dep_id = start_app_container(flask_app, app_id, image, "flood")
    peak = [rss_before]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.25):
            peak.append(rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(2.2)  # the container writes its chunk, then floods for ~10 s
    cpu_start = worker_cpu_seconds(pid)
    times = dashboard_times(http, base, 10_000, until=time.monotonic() + 10)
    cpu_end = worker_cpu_seconds(pid)
    sampling.set()
    sampler.join()
    from app.runtime import containers

    with flask_app.app_context():
        found = containers.containers_of(deployment_id=dep_id)
        printed = len(containers.recent_logs(found[0], tail=10**7).splitlines()) if found else 0
        containers.stop_and_remove(found, timeout=1)
    return {"times": times, "rss_before": rss_before, "rss_peak": max(peak), "printed": printed,
            "cpu_s": round(cpu_end - cpu_start, 2), "cpu_before": cpu_before}  # fmt: skip


def measure_flood(flask_app, ids, image, base, cookies, http, master: int) -> dict:
    pid = worker_pid(master)
    dashboard_times(http, base, 10)  # warm-up
    # Control: the same flood with no tail open (the engine and the machine pay for it too).
    control = flood_window(flask_app, ids["control"], image, http, base, pid)
    tails = [Tail(base, f"/ws/apps/{ids['flooded']}/logs", cookies) for _ in range(2)]
    for t in tails:
        t.start()
    time.sleep(1)
    idle = dashboard_times(http, base, DASHBOARD_GETS)
    flooded = flood_window(flask_app, ids["flooded"], image, http, base, pid)
    for t in tails:
        t.stop()
        t.closed.wait(5)
    received = [len(t.lines()) for t in tails]
    skipped = [sum(f.get("skipped", 0) for _t, f in t.frames) for t in tails]
    attached = [[f["deployment_id"] for _t, f in t.of_type("attached")] for t in tails]
    log(f"flood: printed {flooded['printed']} lines; tails received {received}, skipped {skipped}")
    log(f"tails attached to deployments {attached}")
    return {"idle": idle, "control": control, "flooded": flooded, "received": received,
            "skipped": skipped}  # fmt: skip


# ---- main ------------------------------------------------------------------------------


def cleanup_docker() -> None:
    import docker

    client = docker.from_env()
    for key in (BENCH_LABEL,):
        for container in client.containers.list(all=True, filters={"label": key}):
            container.remove(force=True)
    client.close()


def remove_app_resources(app_ids: list[int]) -> None:
    import docker

    client = docker.from_env()
    for app_id in app_ids:
        for container in client.containers.list(
            all=True, filters={"label": f"slipway.app={app_id}"}
        ):
            container.remove(force=True)
        for image in client.images.list(filters={"label": f"slipway.app={app_id}"}):
            try:
                client.images.remove(image.id, force=True)
            except docker.errors.APIError:
                pass
    client.close()


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main() -> int:  # noqa: C901 - one linear script with its cleanup
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL URL; default SQLite in a temp dir")
    parser.add_argument("--force", action="store_true", help="wipe a non-'bench' database")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)

    import requests

    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-logs-"))
    redis_proc = web = None
    ids: dict = {}
    try:
        lab.ensure_base_image()
        redis_proc, redis_url = start_redis(tmp)
        database_url = args.database_url or f"sqlite:///{tmp}/slipway.db"
        if database_url.startswith(("postgresql://", "postgresql+psycopg://")):
            prepare_postgres(database_url, args.force)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env |= {"SLIPWAY_DATA_DIR": str(tmp), "SLIPWAY_DATABASE_URL": database_url,
                "SLIPWAY_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}  # fmt: skip
        os.environ.clear()
        os.environ.update(env)
        migrate(env)
        from app import create_app

        flask_app = create_app()
        ids = seed(flask_app)
        port = free_port()
        web = start_web(env, tmp, port)
        base = f"http://127.0.0.1:{port}"
        http = requests.Session()
        login(http, base)
        cookies = cookie_header(http)
        log(f"gunicorn (gthread, 1 worker x 16 threads) on {base}; data in {tmp}")
        load_before = os.getloadavg()[0]

        build = measure_build(flask_app, ids, base, cookies, tmp)
        build_latency = measure_build_latency(flask_app, ids, base, cookies)
        latency = measure_runtime_latency(flask_app, ids, build["image"], base, cookies)
        if len(latency) < LATENCY_SECONDS * 5:
            raise BenchError(f"only {len(latency)} latency samples")
        flood = measure_flood(flask_app, ids, build["image"], base, cookies, http, web.pid)
        load_after = os.getloadavg()[0]
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        stop(web, "gunicorn")
        stop(redis_proc, "redis-server")
        try:
            cleanup_docker()
            if ids:
                remove_app_resources([ids["tailed"], ids["flooded"], ids["control"]])
        except Exception as exc:  # noqa: BLE001 - report, keep cleaning
            log(f"docker cleanup: {exc}")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    lat, blat = summarize(latency), summarize(build_latency)
    fl, ctl = flood["flooded"], flood["control"]
    idle, flooded = summarize(flood["idle"]), summarize(fl["times"])
    control = summarize(ctl["times"])
    summary = {
        "line_latency_p95_ms": lat["p95"],
        "flood_dashboard_p95_ms": flooded["p95"],
        "flood_web_rss_growth_mb": round(fl["rss_peak"] - fl["rss_before"], 1),
        "build_lines_lost": build["lost"],
        "build_lines_lost_live": build["lost_live"],
        "build_line_latency_p95_ms": blat["p95"],
        "idle_dashboard_p95_ms": idle["p95"],
        "flood_no_tail_dashboard_p95_ms": control["p95"],
        "flood_over_idle_p95": round(flooded["p95"] / idle["p95"], 2),
        "flood_over_no_tail_p95": round(flooded["p95"] / control["p95"], 2),
        "web_cpu_s_during_flood": fl["cpu_s"],
        "web_cpu_s_during_flood_no_tail": ctl["cpu_s"],
        "flood_lines_per_s": round(fl["printed"] / 10),
        "flood_lines_received_per_tail": flood["received"],
        "flood_lines_skipped_per_tail": flood["skipped"],
        "web_rss_before_mb": round(fl["rss_before"], 1),
        "targets": {"line_latency_p95_ms": 250, "flood_dashboard_p95_ms": 100,
                    "flood_web_rss_growth_mb": 50, "build_lines_lost": 0},  # fmt: skip
        "database": database_url.split(":", 1)[0],
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
        "latency": lat, "build_latency": blat, "dashboard_idle": idle,
        "dashboard_flood": flooded, "dashboard_flood_no_tail": control,
    }  # fmt: skip
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
