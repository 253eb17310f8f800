"""Databases benchmark (issue 16): New database against ``docker run``, the exclusive
volume's gap, and the Redis backup.

    .venv/bin/python bench/databases.py [--rounds 3] [--skip-backup] [--skip-volumes]
        [--backup-gb 1] [--backup-rounds 2]

Real services on loopback, like ``bench/deploy.py``: a fresh PostgreSQL database
``slipway_bench_databases`` (created if missing, its ``public`` schema wiped, dropped at
the end), Redis DB 13 on 127.0.0.1:6379 (``--redis-url``; flushed at the start and the
end), the real migrations, and ONE real ``worker.py`` (no arguments: every queue) on a
fresh data directory and new keys. The images are the test images
(``slipway-test/postgres:16``, ``mariadb:11``, ``redis:7``), present locally.

1. **Create to ready** (``create_to_ready_ratio``). For each engine, rounds alternate:
   - Slipway: ``app.databases.lifecycle.create`` as the New database POST calls it
     (in this process, in an app context), its ``database_create`` job picked from
     Redis and run by the worker process;
   - raw: ``docker run -d`` (CLI) of the same image, with the same environment
     (``--env-file``, mode 0600) and command, a fresh named volume at the same data
     directory, on a network of the bench's own.
   Both clocks start at the first call and stop at the first accepted, authenticated
   connection, probed THE SAME WAY from the host every ``POLL`` s to the container's
   address on its network: the container is looked up by name (until it has an
   address), then PostgreSQL gets a psycopg connection, MariaDB a protocol handshake
   with ``mysql_native_password`` answered OK, Redis ``AUTH`` + ``PING`` answered
   ``+PONG``. Medians per engine; the figure is the worst engine's ratio of medians.
   After each Slipway round the bench waits for the row to be ``running`` (the job
   done), records that too (``row_running_s``), then removes the container and volume.
2. **Exclusive volume** (``exclusive_gap_ms``, ``failed_requests_exclusive``): needs
   ``tests.volumekit`` and ``app.projects.volumes`` (issue 16's volumes piece); an app
   with an exclusive volume is redeployed 10 times (in this process, as the test suite
   does) under the kit's request loop through Traefik; p95 of the recorded gaps.
3. **Redis backup** (``redis_backup_ratio``): ``bench/databases_backup.py`` run as a
   subprocess after the rest is cleaned up (``--backup-gb``, ``--backup-rounds``); its
   last JSON line is taken as it is (under ``backup``).

``--rounds`` is the number of rounds per engine in 1. The machine's load average is
recorded at the start and the end, and its peak every 5 s (``machine``).

Progress goes to stderr; the last stdout line is one JSON object. Containers, volumes
and networks this bench made (by name, and by this fresh installation's label) are
removed at the end, also on failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.deploy import (  # noqa: E402 - needs ROOT on sys.path
    BenchError,
    drop_postgres,
    log,
    migrate,
    prepare_postgres,
    slipway_env,
    start_worker,
    stop,
)

ENGINES = ("postgres", "mariadb", "redis")
IMAGES = {
    "postgres": "slipway-test/postgres:16",
    "mariadb": "slipway-test/mariadb:11",
    "redis": "slipway-test/redis:7",
}
DATABASE_URL = "postgresql://slipway:slipway@127.0.0.1:5432/slipway_bench_databases"
POLL = 0.05
READY_TIMEOUT = 120
APP_ID = 918_290  # far above any id the test suite reaches
REDEPLOYS = 10
RUN = uuid.uuid4().hex[:8]
RAW_NETWORK = f"slipway-bench-db-{RUN}"
RAW_PREFIX = f"slipway-bench-db-{RUN}-"


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True,
                            timeout=timeout, check=False)  # fmt: skip
    if check and result.returncode != 0:
        raise BenchError(f"docker {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


# ---- the probe: the same for both sides ------------------------------------------


def address(container: str, network: str) -> str | None:
    """The container's address on ``network`` (None while it does not exist or has none)."""
    import docker as sdk

    client = sdk.from_env(timeout=10)
    try:
        found = client.containers.get(container)
        ip = found.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress")
        return ip or None
    except sdk.errors.NotFound:
        return None
    finally:
        client.close()


def _recv_packet(sock: socket.socket) -> bytes:
    head = _recv_exact(sock, 4)
    return _recv_exact(sock, int.from_bytes(head[:3], "little"))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def mariadb_ok(ip: str, user: str, password: str, database: str) -> bool:
    """A MariaDB handshake (protocol 10, mysql_native_password) answered OK."""
    with socket.create_connection((ip, 3306), timeout=1) as sock:
        greeting = _recv_packet(sock)
        if greeting[0] != 10:
            return False  # an error packet (e.g. too many connections)
        rest = greeting[greeting.index(b"\0", 1) + 1 :]
        salt = rest[4:12]
        tail = rest[12 + 1 + 2 + 1 + 2 + 2 + 1 + 10 :]
        salt += tail[:12]
        one = hashlib.sha1(password.encode()).digest()
        two = hashlib.sha1(salt + hashlib.sha1(one).digest()).digest()
        token = bytes(a ^ b for a, b in zip(one, two, strict=True))
        caps = 0x1 | 0x8 | 0x200 | 0x8000 | 0x80000  # long pw, db, 4.1, secure, plugin
        body = (struct.pack("<IIB", caps, 1 << 24, 33) + b"\0" * 23 + user.encode() + b"\0"
                + bytes([len(token)]) + token + database.encode() + b"\0"
                + b"mysql_native_password\0")  # fmt: skip
        sock.sendall(len(body).to_bytes(3, "little") + b"\1" + body)
        return _recv_packet(sock)[0] == 0


def redis_ok(ip: str, password: str) -> bool:
    with socket.create_connection((ip, 6379), timeout=1) as sock:
        pw = password.encode()
        sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(pw), pw))
        data = b""
        while data.count(b"\r\n") < 2:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            data += chunk
        return data.split(b"\r\n")[:2] == [b"+OK", b"+PONG"]


def postgres_ok(ip: str, user: str, password: str, database: str) -> bool:
    import psycopg

    with psycopg.connect(host=ip, port=5432, user=user, password=password, dbname=database,
                         connect_timeout=1):  # fmt: skip
        return True


def accepts(engine: str, ip: str, creds: dict) -> bool:
    try:
        if engine == "postgres":
            return postgres_ok(ip, creds["user"], creds["password"], creds["database"])
        if engine == "mariadb":
            return mariadb_ok(ip, creds["user"], creds["password"], creds["database"])
        return redis_ok(ip, creds["password"])
    except Exception:  # noqa: BLE001 - not yet: refused, reset, still initialising
        return False


def until_accepted(engine: str, container: str, network: str, creds: dict, began: float):
    """Seconds from ``began`` to the first accepted connection."""
    ip = None
    while time.monotonic() - began < READY_TIMEOUT:
        if ip is None:
            ip = address(container, network)
        if ip is not None and accepts(engine, ip, creds):
            return time.monotonic() - began
        time.sleep(POLL)
    raise BenchError(f"{container} accepted no connection in {READY_TIMEOUT} s")


# ---- the world ----------------------------------------------------------------------


class World:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-db-"))
        self.worker = None
        self.flask_app = self.project = None
        self.raw_containers: list[str] = []
        self.raw_volumes: list[str] = []
        self.network_made = False
        self.installation = None
        self.traefik = self.git = None

    def start(self) -> None:
        import redis

        redis.Redis.from_url(self.args.redis_url).flushdb()
        prepare_postgres(DATABASE_URL)
        env = slipway_env(self.tmp, DATABASE_URL, self.args.redis_url)
        env |= {f"SLIPWAY_IMAGE_{e.upper()}": IMAGES[e] for e in ENGINES}
        from tests import lab

        self.ports = {"http": lab.free_port(), "api": lab.free_port()}
        env |= {
            "SLIPWAY_PROXY_DIR": str(self.tmp / "traefik"),
            "SLIPWAY_BUILDS_DIR": str(self.tmp / "builds"),
            "SLIPWAY_HTTP_PORT": str(self.ports["http"]),
            "SLIPWAY_HTTPS_PORT": str(lab.free_port()),
            "SLIPWAY_PROXY_API_PORT": str(self.ports["api"]),
            "SLIPWAY_GIT_ALLOWED_HOSTS": "127.0.0.1",
            "SLIPWAY_BASE_DOMAIN": "localhost",
            # The exclusive phase waits for each deployment's end: a 1 s watch window
            # instead of 30 s (the gap is measured before the window; nothing else changes).
            "SLIPWAY_WATCH_SECONDS": "1",
        }
        os.environ.update(env)
        migrate(env)
        from app import create_app
        from app.extensions import db
        from app.runtime import installation

        self.flask_app = create_app()
        self.ctx = self.flask_app.app_context()
        self.ctx.push()
        self.project = lab.seed_owner_project("owner@bench.example.com", "bench horse battery",
                                              "bench", "databases bench")  # fmt: skip
        db.session.commit()
        self.installation = installation.current_id()
        self.worker = start_worker(env, self.tmp, "worker")
        docker("network", "create", "--label", "slipway-bench=databases", RAW_NETWORK)
        self.network_made = True
        for engine in ENGINES:
            docker("image", "inspect", IMAGES[engine])

    def cleanup(self) -> None:
        stop(self.worker, "worker")
        for proc in (self.traefik, self.git):
            if proc is not None:
                try:
                    proc.stop()
                except Exception as exc:  # noqa: BLE001
                    log(f"cleanup: {exc}")
        ids = docker("ps", "-aq", "--filter", f"label=slipway.app={APP_ID}", check=False).split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        images = docker("images", "-q", "--filter", f"label=slipway.app={APP_ID}",
                        check=False).split()  # fmt: skip
        if images:
            docker("rmi", "-f", *set(images), check=False)
        for name in self.raw_containers:
            docker("rm", "-f", "-v", name, check=False)
        if self.installation:
            label = f"slipway.installation={self.installation}"
            ids = docker("ps", "-aq", "--filter", f"label={label}", check=False).split()
            if ids:
                docker("rm", "-f", *ids, check=False)
            vols = docker("volume", "ls", "-q", "--filter", f"label={label}",
                          check=False).split()  # fmt: skip
            for name in vols + self.raw_volumes:
                docker("volume", "rm", "-f", name, check=False)
            nets = docker("network", "ls", "-q", "--filter", f"label={label}",
                          check=False).split()  # fmt: skip
            for net in nets:
                docker("network", "rm", net, check=False)
        else:
            for name in self.raw_volumes:
                docker("volume", "rm", "-f", name, check=False)
        if self.network_made:
            docker("network", "rm", RAW_NETWORK, check=False)
        if self.flask_app is not None:
            from app.extensions import db

            db.session.remove()
            db.engine.dispose()
            self.ctx.pop()
        try:
            import redis

            redis.Redis.from_url(self.args.redis_url).flushdb()
            drop_postgres(DATABASE_URL)
        except Exception as exc:  # noqa: BLE001
            log(f"cleanup: {exc}")
        subprocess.run(["rm", "-rf", str(self.tmp)], check=False)

    # ---- create to ready --------------------------------------------------------

    def slipway_round(self, engine: str, n: int) -> dict:
        from app.databases import engines, lifecycle, links
        from app.extensions import db
        from app.models import Database
        from app.runtime import databases as runtime
        from app.runtime.versions import project_network

        name = f"{engine}-{n}"
        began = time.monotonic()
        database = lifecycle.create(self.project, name=name, engine=engine)
        creds = {"user": database.username, "password": links.password_of(database),
                 "database": database.database_name}  # fmt: skip
        seconds = until_accepted(engine, runtime.container_name(database.id),
                                 project_network(self.project.id), creds, began)  # fmt: skip
        while True:
            db.session.expire_all()
            row = db.session.get(Database, database.id)
            if row.status != "creating":
                break
            if time.monotonic() - began > READY_TIMEOUT:
                raise BenchError(f"{name}: the create job did not end")
            time.sleep(POLL)
        if row.status != "running":
            raise BenchError(f"{name} ended {row.status}: {row.error}")
        running = time.monotonic() - began
        env = engines.container_env(row, creds["password"])
        command = engines.container_command(row, creds["password"]) or []
        container = runtime.container_of(row.id)
        docker("rm", "-f", container)
        docker("volume", "rm", row.volume.docker_name)
        return {"seconds": seconds, "row_running_s": running, "env": env, "command": command,
                "data_dir": engines.spec(engine).data_dir, "creds": creds}  # fmt: skip

    def raw_round(self, engine: str, n: int, like: dict) -> float:
        name = f"{RAW_PREFIX}{engine}-{n}"
        volume = f"{name}-data"
        env_file = self.tmp / f"{name}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in like["env"].items()))
        env_file.chmod(0o600)
        self.raw_containers.append(name)
        self.raw_volumes.append(volume)
        began = time.monotonic()
        docker("run", "-d", "--name", name, "--network", RAW_NETWORK, "--env-file",
               str(env_file), "--label", "slipway-bench=databases",
               "--mount", f"type=volume,source={volume},target={like['data_dir']}",
               IMAGES[engine], *like["command"])  # fmt: skip
        seconds = until_accepted(engine, name, RAW_NETWORK, like["creds"], began)
        docker("rm", "-f", "-v", name)
        docker("volume", "rm", volume)
        return seconds

    def create_to_ready(self, rounds: int) -> dict:
        figures = {}
        for engine in ENGINES:
            mine, raw, running, got = [], [], [], None
            for n in range(rounds):
                # Alternate which side goes first (the raw side takes the environment of
                # the last Slipway round: same variables, same command, its password).
                if n % 2 == 0:
                    got = self.slipway_round(engine, n)
                    raw.append(self.raw_round(engine, n, got))
                else:
                    raw.append(self.raw_round(engine, n, got))
                    got = self.slipway_round(engine, n)
                mine.append(got["seconds"])
                running.append(got["row_running_s"])
                log(f"{engine} round {n}: slipway {mine[-1]:.2f} s (row running at "
                    f"{running[-1]:.2f} s), docker run {raw[-1]:.2f} s")  # fmt: skip
            m, r = statistics.median(mine), statistics.median(raw)
            figures[engine] = {
                "create_to_ready_s": round(m, 3), "docker_run_to_ready_s": round(r, 3),
                "ratio": round(m / r, 3), "row_running_s": round(statistics.median(running), 3),
                "slipway_rounds_s": [round(x, 3) for x in mine],
                "docker_run_rounds_s": [round(x, 3) for x in raw],
            }  # fmt: skip
        return figures


def exclusive_figures(world: World) -> dict:
    """10 redeploys of an app with an exclusive volume, run by the worker, under the
    volume kit's sampler and request loop through Traefik."""
    try:
        from app.projects import volumes
        from tests import volumekit
    except ImportError as exc:
        why = f"not measured: {exc} (the volumes piece is not on this branch)"
        return {"exclusive_gap_ms": None, "failed_requests_exclusive": None, "exclusive": why}
    from app.deploys import control
    from app.extensions import db
    from app.models import Application, Deployment
    from app.proxy import traefik
    from tests import lab
    from tests.deploys.test_volumes import note_files

    lab.ensure_base_image()
    (world.tmp / "git").mkdir()
    world.git = lab.GitServer(world.tmp / "git")
    world.traefik = lab.Traefik(traefik.write_static_config(), world.tmp / "traefik.log")
    world.traefik.wait_ready(world.ports["api"])
    repo = lab.Repo(world.git, "notes", world.tmp / "work")
    repo.commit(note_files("v1"), "v1")
    app_row = Application(
        id=APP_ID, project_id=world.project.id,
        environment_id=world.project.environments[0].id, name="web", source_type="git",
        git_url=repo.url, git_branch="main", container_port=8000, health_check_path="/",
        replicas=1, address=f"web.{world.project.name}",
    )  # fmt: skip
    db.session.add(app_row)
    db.session.commit()
    volume = volumes.add(app_row, label="data", mount_path="/data", mode="exclusive")

    def deploy() -> Deployment:
        deployment = control.start_deploy(app_row, trigger="manual")
        began = time.monotonic()
        while time.monotonic() - began < 300:
            db.session.expire_all()
            row = db.session.get(Deployment, deployment.id)
            if row.status not in ("queued", "building", "deploying"):
                return row
            time.sleep(0.1)
        raise BenchError(f"deployment {deployment.id} did not end in 300 s")

    first = deploy()
    if first.status != "running":
        raise BenchError(f"the first deployment ended {first.status}: {first.error}")

    def redeploy(n: int) -> Deployment:
        repo.commit(note_files(f"v{n + 2}"), f"v{n + 2}")
        done = deploy()
        log(f"redeploy {n}: {done.status}, gap {done.volume_gap_ms} ms")
        return done

    url = f"http://127.0.0.1:{world.ports['http']}/"
    host = f"web.{world.project.name}.localhost"
    run = volumekit.exclusive_redeploys(volume.docker_name, url, host, redeploy, REDEPLOYS)
    return {
        "exclusive_gap_ms": run.p95_ms, "failed_requests_exclusive": len(run.failed),
        "exclusive": {"gaps_ms": run.gaps_ms, "ok_requests": run.ok,
                      "failed": run.failed, "most_containers_on_volume": run.most_on_volume,
                      "samples": run.samples, "redeploys": REDEPLOYS},
    }  # fmt: skip


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class LoadWatch(threading.Thread):
    """The highest 1-minute load average seen (every 5 s) while the bench runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = 0.0, threading.Event()

    def run(self):
        while not self.done.wait(5):
            self.peak = max(self.peak, loadavg()[0])


def backup_figures(args) -> dict:
    argv = [sys.executable, str(ROOT / "bench" / "databases_backup.py")]
    if not (ROOT / "bench" / "databases_backup.py").exists():
        return {"redis_backup_ratio": None, "backup": "bench/databases_backup.py is missing"}
    argv += ["--gb", str(args.backup_gb), "--rounds", str(args.backup_rounds)]
    log("running bench/databases_backup.py")
    result = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    lines = [x for x in result.stdout.splitlines() if x.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"redis_backup_ratio": None, "backup": f"failed (exit {result.returncode})"}
    found = json.loads(lines[-1])
    return {"redis_backup_ratio": found.get("redis_backup_ratio"), "backup": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--skip-backup", action="store_true")
    parser.add_argument("--skip-volumes", action="store_true")
    parser.add_argument("--backup-gb", type=float, default=1.0)
    parser.add_argument("--backup-rounds", type=int, default=2)
    args = parser.parse_args()

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    world = World(args)
    out = {"machine": {"cpus": os.cpu_count(), "load_at_start": loadavg()},
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    watch = LoadWatch()
    watch.start()
    try:
        world.start()
        per_engine = world.create_to_ready(args.rounds)
        out["create_to_ready_ratio"] = max(f["ratio"] for f in per_engine.values())
        out["create_to_ready"] = per_engine
        if args.skip_volumes:
            out["exclusive_gap_ms"] = out["failed_requests_exclusive"] = None
        else:
            out |= exclusive_figures(world)
    finally:
        world.cleanup()
    if not args.skip_backup:
        out |= backup_figures(args)
    watch.done.set()
    out["machine"]["load_at_end"] = loadavg()
    out["machine"]["load_1m_peak"] = max(watch.peak, loadavg()[0])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
