"""Fixtures for backups: real S3 servers on loopback (moto_server, and s3rver, an
independent implementation from npm), a proxy in front of moto that makes it answer
as other servers do, real PostgreSQL databases to back up, real pg_dump/pg_restore,
an app that allows the loopback hosts, factories for destinations and policies.

Tests take ``s3`` (moto unless parametrized with :data:`BOTH_SERVERS`) and ``bucket``
(a new bucket on that server).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from app import crypto
from app.backups import runs, storage
from app.config import ROOT
from app.extensions import queue, redis
from app.models import BackupDestination
from tests.conftest import RequestScopedClient, running_app
from tests.factories import S3_KEY

PG_ADMIN_URL = os.environ.get(
    "SLIPWAY_TEST_PG_ADMIN_URL", "postgresql://slipway:slipway@127.0.0.1:5432/postgres"
)
_n = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``moto_server`` in a child process; can be stopped and started again (fault tests)."""

    name, lists_uploads = "moto", True

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / "moto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = Path(sys.executable).with_name("moto_server")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60  # a loaded machine starts it slowly
        while time.monotonic() < deadline:
            try:
                requests.get(self.url, timeout=5)
                return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not start; see {self.log}")

    def requests_for(self, bucket: str) -> int:
        """How many requests for ``bucket`` reached the server (its access log)."""
        time.sleep(0.3)  # the log line is written just after the response
        pattern = re.compile(rf"/{re.escape(bucket)}[/? ]")
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if pattern.search(line))  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


# Where scripts/provision-test.sh installs s3rver (npm, a pinned version).
S3RVER = Path(os.environ.get("SLIPWAY_TEST_S3RVER")
              or ROOT / ".cache" / "s3rver" / "node_modules" / ".bin" / "s3rver")  # fmt: skip


class S3rver:
    """``s3rver`` (Node.js) in a child process, its data in a temporary directory.

    It reports the MD5 of the whole object as a multipart object's ETag, does not list
    or abort multipart uploads, and knows one key pair (``S3RVER``).
    """

    name, lists_uploads = "s3rver", False

    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if not S3RVER.exists():
            pytest.fail(f"{S3RVER} is not installed: make test installs it (npm, s3rver)")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(S3RVER), "-d", str(self.data_dir), "-a", "127.0.0.1", "-p", str(self.port),
                 "--no-vhost-buckets"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(self.url, timeout=5)
                return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"s3rver did not start; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3rver(tmp_path_factory):
    server = S3rver(tmp_path_factory.mktemp("s3rver-data"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(request):
    """The S3 server of a test: moto_server, or each of :data:`BOTH_SERVERS`."""
    return request.getfixturevalue(getattr(request, "param", "moto"))


BOTH_SERVERS = pytest.mark.parametrize("s3", ["moto", "s3rver"], indirect=True)


HOP_HEADERS = ("connection", "transfer-encoding", "content-length")  # the proxy sets its own


class S3Proxy:
    """A reverse proxy in front of an S3 server, answering as another server would.

    ``etag``: every ETag becomes 32 hex digits that are not an MD5 of the object (as
    SSE-KMS ETags are). ``sha256``: that, and HEAD carries the object's full-object
    SHA-256 checksum (``wrong-sha256``: a wrong one). ``truncate``: an uploaded last part
    loses its last byte (a server that stores less than it was sent). ``no-multipart``:
    multipart uploads are refused (501), single PUTs work.
    """

    def __init__(self, upstream: str, mode: str):
        self.upstream, self.mode = urlsplit(upstream), mode
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                proxy.forward(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _upstream(self, method: str, path: str, body: bytes | None, headers: dict):
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response, data

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        self.requests.append((method, path))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "connection"}
        query = parse_qs(urlsplit(path).query, keep_blank_values=True)
        if self.mode == "no-multipart" and method == "POST" and "uploads" in query:
            error = b"<Error><Code>NotImplemented</Code><Message>no multipart</Message></Error>"
            return self._answer(handler, 501, {"Content-Type": "application/xml"}, error)
        last_part = body and len(body) < 5 << 20  # only a last part may be under 5 MiB
        if self.mode == "truncate" and method == "PUT" and "partNumber" in query and last_part:
            body = body[:-1]
            headers = {k: v for k, v in headers.items() if k.lower() != "content-md5"}
            headers["Content-Length"] = str(len(body))
        response, data = self._upstream(method, path, body, headers)
        out = {k: v for k, v in response.getheaders() if k.lower() not in HOP_HEADERS}
        # Objects' ETags (HEAD, GET); parts keep theirs, as completing the upload needs them.
        if self.mode in ("etag", "sha256", "wrong-sha256") and method in ("HEAD", "GET"):
            for name in [k for k in out if k.lower() == "etag"]:
                out[name] = f'"{hashlib.sha1(out[name].encode()).hexdigest()[:32]}"'
        if self.mode in ("sha256", "wrong-sha256") and method == "HEAD" and response.status == 200:
            obj = self._upstream("GET", path, None, headers)[1]
            digest = hashlib.sha256(obj + (b"x" if self.mode == "wrong-sha256" else b""))
            out["x-amz-checksum-sha256"] = base64.b64encode(digest.digest()).decode()
            out["x-amz-checksum-type"] = "FULL_OBJECT"
        length = response.getheader("Content-Length") if method == "HEAD" else None
        self._answer(handler, response.status, out, data, length)

    @staticmethod
    def _answer(handler, status: int, headers: dict, data: bytes, length=None) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(length if length is not None else len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def gets_of(self, key: str) -> int:
        """How many whole-object GETs of ``key`` the proxy passed on."""
        return sum(1 for m, p in self.requests if m == "GET" and urlsplit(p).path.endswith(key))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def s3_proxy(moto):
    """A callable: ``s3_proxy(mode)`` starts an :class:`S3Proxy` in front of moto."""
    made: list[S3Proxy] = []

    def start(mode: str) -> S3Proxy:
        made.append(S3Proxy(moto.url, mode))
        return made[-1]

    yield start
    for proxy in made:
        proxy.close()


@pytest.fixture
def bconfig(base_config, tmp_path, moto) -> dict:
    return {
        **base_config,
        "BACKUPS_DIR": str(tmp_path / "backups"),
        "BACKUP_ALLOWED_HOSTS": ("127.0.0.1",),
        "BACKUP_PART_MB": 5,
        "S3_RETRIES": 2,
        "S3_RETRY_BASE_SECONDS": 0.05,
        "S3_TIMEOUT_SECONDS": 5,
        "NOTIFY_RETRIES": 2,
        "NOTIFY_RETRY_BASE_SECONDS": 0.05,
        "BACKUP_ALIVE_TTL": 2,
    }


@pytest.fixture
def app(bconfig):
    """Replaces the plain ``app`` for this folder: same database and Redis, loopback allowed."""
    with running_app(bconfig) as flask_app:
        flask_app.test_client_class = RequestScopedClient
        yield flask_app


@pytest.fixture
def logs(caplog, monkeypatch):
    """Every log record of Slipway's loggers, at DEBUG.

    Loggers are turned on explicitly as well: Alembic's env.py once disabled
    every logger that existed when it ran (``slipway.*`` included), and a canary
    check on the logs must not depend on that staying fixed.
    """
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.startswith("slipway"):
            monkeypatch.setattr(logger, "disabled", False)
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def bucket(app, s3) -> str:
    """A new bucket on the test's S3 server."""
    name = f"bk-{os.getpid()}-{next(_n)}-{int(time.time() * 1000) % 100000}"
    storage.client(_target(s3.url, name)).create_bucket(Bucket=name)
    return name


def _target(endpoint: str, bucket: str, prefix: str = "") -> storage.S3Target:
    return storage.S3Target(endpoint, "us-east-1", bucket, prefix, S3_KEY, S3_KEY, True, 5)


def open_uploads(target: storage.S3Target) -> list[tuple[str, str]]:
    """(key, upload id) of the multipart uploads still open under the prefix."""
    s3 = storage.client(target)
    found = s3.list_multipart_uploads(Bucket=target.bucket, Prefix=target.prefix)
    return [(u["Key"], u["UploadId"]) for u in found.get("Uploads", [])]


class SourceDb:
    """A real PostgreSQL database with a few tables of known row counts."""

    def __init__(self, name: str):
        self.name = name
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def execute(self, statement: str, params=None) -> list:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []


def admin(statement: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture
def source_db():
    """Databases named slipway_bk_*, dropped afterwards (with any restored copies)."""
    made: list[str] = []

    def make(rows: int = 1000, payload: int = 100) -> SourceDb:
        name = f"slipway_bk_src_{os.getpid()}_{next(_n)}"
        admin(f"DROP DATABASE IF EXISTS {name}")
        admin(f"CREATE DATABASE {name}")
        made.append(name)
        src = SourceDb(name)
        src.execute("CREATE TABLE items (id serial PRIMARY KEY, body text NOT NULL)")
        src.execute(
            # Random hex: it compresses about 2:1, so the dump's size is predictable.
            "INSERT INTO items (body) SELECT array_to_string(ARRAY(SELECT md5(random()::text "
            "|| g) FROM generate_series(1, %s)), '') FROM generate_series(1, %s) g",
            (max(payload // 32, 1), rows),
        )  # fmt: skip
        src.execute("CREATE TABLE notes (id int PRIMARY KEY, note text)")
        src.execute("INSERT INTO notes VALUES (1, 'first'), (2, 'second')")
        return src

    yield make
    for name in made:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            like = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{name}%",)
            ).fetchall()
            for (db_name,) in like:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def work(*names: str) -> None:
    """Run every queued job of these queues in this process (RQ's JSON serializer)."""
    from flask import current_app

    from app import jobs

    jobs.bind(current_app._get_current_object())
    queues = [queue(n) for n in names or ("backup", "default")]
    SimpleWorker(queues, connection=redis.client, serializer=JSONSerializer).work(burst=True)


def work_notifications(within: float = 10) -> list:
    """Run the ``notify`` queue as its worker does (RQ scheduler on) until no attempt is
    queued or scheduled any more; returns the finished and failed delivery jobs."""
    import time

    from flask import current_app
    from rq.job import Job

    from app import jobs, notify

    jobs.bind(current_app._get_current_object())
    q = queue(notify.QUEUE)
    deadline = time.monotonic() + within
    while q.count or q.scheduled_job_registry.count:
        assert time.monotonic() < deadline, "notifications still pending"
        worker = SimpleWorker([q], connection=redis.client, serializer=JSONSerializer)
        worker.work(burst=True, with_scheduler=True)
        time.sleep(0.02)
    ids = q.finished_job_registry.get_job_ids() + q.failed_job_registry.get_job_ids()
    return [Job.fetch(i, connection=redis.client, serializer=JSONSerializer) for i in ids]


def encrypted_with_a_retired_key(plaintext: str, context: str) -> str:
    """A ciphertext made with a key that is no longer configured (rotated away)."""
    from flask import current_app

    keys = current_app.config["ENCRYPTION_KEYS"]
    current_app.config["ENCRYPTION_KEYS"] = {"k0": b"\x02" * 32}
    try:
        return crypto.encrypt(plaintext, context=context)
    finally:
        current_app.config["ENCRYPTION_KEYS"] = keys


def target_of(dest: BackupDestination) -> storage.S3Target:
    return runs.s3_target(dest)
