"""SECURITY.md 13, issue 17 "Outbound requests": no redirect takes git, S3 or a
notification to a host the SSRF check never saw, an S3 endpoint that redirects forever
fails fast and plainly, and an IPv6 spelling of an internal IPv4 address is internal.

The servers are real, on loopback: the allow-listed host is ``127.0.0.1``; the
redirects point at a listener on ``127.0.0.2``, which is not allow-listed and counts
every connection made to it.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app import crypto, names, notify, outbound
from app.backups import checks, storage
from app.extensions import db
from app.models import Backup, BackupDestination, NotificationChannel, Role
from app.sources import gitsrc
from tests import lab
from tests.backups.conftest import work
from tests.conftest import Auth, csrf_token
from tests.factories import make_destination, make_policy, make_user, team_of

ALLOWED = ("127.0.0.1",)


class Listener:
    """A TCP listener on 127.0.0.2 that accepts, counts and closes every connection."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.2", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def seen(self) -> int:
        """Connections so far, after a moment for the accepting thread to count the last."""
        time.sleep(0.3)
        return self.connections

    def close(self):
        self.sock.close()


class Redirector:
    """An HTTP server on 127.0.0.1 answering every request ``status`` to ``location(path)``."""

    def __init__(self, status: int, location, headers: dict | None = None):
        self.requests: list[str] = []
        me = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                me.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(status)
                self.send_header("Location", location(self.path))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    found = Listener()
    yield found
    found.close()


@pytest.fixture
def redirector(listener):
    """A callable starting a :class:`Redirector`; stopped after the test."""
    made = []

    def start(status=302, location=None, headers=None):
        server = Redirector(
            status, location or (lambda path: f"http://127.0.0.2:{listener.port}{path}"), headers
        )
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()


def test_the_listener_counts_connections(listener):
    """The proof below is "no connection": here the listener shows it sees one."""
    socket.create_connection(("127.0.0.2", listener.port), timeout=2).close()
    assert listener.seen() == 1


# ---- item 5: git -------------------------------------------------------------


def test_git_does_not_follow_a_redirect_to_a_host_that_is_not_allowed(
    app, tmp_path, listener, redirector
):
    """The allow-listed git host answers 302 to 127.0.0.2: git must not go there."""
    server = redirector(302)
    url = f"{server.url}/team/repo.git"
    assert gitsrc.check_url(url, ALLOWED)  # the host at use is allowed
    with pytest.raises(gitsrc.GitError) as refused:
        gitsrc.clone(url, "main", tmp_path / "checkout", allowed_hosts=ALLOWED, timeout=30)
    assert server.requests, "git never asked the allow-listed server"
    assert listener.seen() == 0
    assert "answered with a redirect, which Slipway does not follow" in str(refused.value)
    assert not (tmp_path / "checkout").exists()


class RedirectingAfterTheClone(lab.GitServer):
    """A real smart-HTTP git server that serves the clone, then redirects the fetch."""

    def __init__(self, root, target: str):
        self.target, self.ref_requests = target, 0
        super().__init__(root)

    def _wsgi(self, environ, start_response):
        if environ.get("PATH_INFO", "").endswith("/info/refs"):
            self.ref_requests += 1
            if self.ref_requests > 1:  # the clone asked once; this is the fetch
                query = environ.get("QUERY_STRING", "")
                start_response("302 Found", [("Location", f"{self.target}?{query}"),
                                             ("Content-Length", "0")])  # fmt: skip
                return [b""]
        return super()._wsgi(environ, start_response)


def test_the_fetch_after_the_clone_does_not_follow_a_redirect_either(app, tmp_path, listener):
    """Deploying a commit below the branch head deepens the clone with a fetch."""
    (tmp_path / "srv").mkdir()
    server = RedirectingAfterTheClone(
        tmp_path / "srv", f"http://127.0.0.2:{listener.port}/team/repo.git/info/refs"
    )
    try:
        repo = lab.Repo(server, "repo", tmp_path / "work")
        older = repo.commit({"a.txt": "one"}, "one")
        repo.commit({"a.txt": "two"}, "two")
        with pytest.raises(gitsrc.GitError) as refused:
            gitsrc.clone(repo.url, "main", tmp_path / "checkout", allowed_hosts=ALLOWED,
                         timeout=30, commit=older)  # fmt: skip
    finally:
        server.stop()
    assert server.ref_requests == 2  # the clone got through; the fetch was redirected
    assert listener.seen() == 0
    assert "answered with a redirect, which Slipway does not follow" in str(refused.value)


# ---- item 5: notifications ---------------------------------------------------


def test_a_webhook_that_redirects_is_a_failed_delivery_that_says_so(app_with, listener, redirector):
    flask_app = app_with(OUTBOUND_ALLOWED_HOSTS=ALLOWED)
    server = redirector(302)
    user = make_user(role=Role.owner)
    channel = NotificationChannel(
        team_id=team_of(user).id, name="hook", kind="webhook", events=["backup.failed"],
        settings={"host": "127.0.0.1"},
        secret=crypto.encrypt(f"{server.url}/hook", context=notify.SECRET_CONTEXT),
    )  # fmt: skip
    db.session.add(channel)
    db.session.commit()
    with flask_app.app_context():
        channel = db.session.get(NotificationChannel, channel.id)
        with pytest.raises(notify.DeliveryError, match="answered 302, a redirect, which"):
            notify.send(channel, "backup.failed", "subject", "text")
    assert server.requests == ["POST /hook"]
    assert listener.seen() == 0


# ---- item 6: S3 ----------------------------------------------------------------


@pytest.fixture
def s3_app(app_with, tmp_path):
    return app_with(
        OUTBOUND_ALLOWED_HOSTS=ALLOWED, BACKUPS_DIR=str(tmp_path / "backups"), S3_RETRIES=2,
        S3_RETRY_BASE_SECONDS=0.01, S3_TIMEOUT_SECONDS=5,
    )  # fmt: skip


def _looping(redirector, **headers):
    """An S3 endpoint answering every request 307 to itself (the same URL)."""
    holder = {}
    server = redirector(307, lambda path: f"{holder['url']}{path}", headers or None)
    holder["url"] = server.url
    return server


def test_test_connection_to_an_endpoint_that_always_redirects_fails_fast_and_plainly(
    s3_app, redirector
):
    """Before: ~80 requests (HEAD on the bucket, recursively) and a RecursionError."""
    server = _looping(redirector)
    user = make_user(role=Role.owner)
    dest = make_destination(team_of(user), server.url, "loop-bucket")
    client = s3_app.test_client()
    assert Auth(client).login(user).status_code == 303
    token = csrf_token(client, "/backups/")
    page = client.post(f"/backups/destinations/{dest.id}/test", data={"csrf_token": token})
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "the S3 endpoint redirected the request (HTTP 307)" in text, text
    assert "check the endpoint URL and the region" in text
    assert "RecursionError" not in text and "recursion" not in text
    assert len(server.requests) == 1, server.requests


def test_a_region_redirect_is_followed_once_and_no_more(s3_app, redirector):
    """An answer naming the bucket's region is re-signed and sent once more, same host."""
    server = _looping(redirector, **{"x-amz-bucket-region": "eu-west-1"})
    target = storage.S3Target(server.url, "us-east-1", "loop-bucket", "", "k", "s", True, 5)
    steps = checks.probe(target)
    assert steps == [("write", False, steps[0][2])]
    assert "again after one region redirect" in steps[0][2]
    assert len(server.requests) == 2, server.requests


def test_a_backup_to_an_endpoint_that_always_redirects_fails_fast_and_plainly(s3_app, redirector):
    server = _looping(redirector)
    user = make_user(role=Role.owner)
    team = team_of(user)
    policy = make_policy(team, make_destination(team, server.url, "loop-bucket"), None)
    from app.backups import runs

    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    backup = db.session.get(Backup, backup.id)
    assert backup.status == "failed"
    assert "the S3 endpoint redirected the request (HTTP 307)" in backup.error, backup.error
    # At most one request per S3 call the backup makes (it stops at the first).
    assert 1 <= len(server.requests) <= 2, server.requests


def test_every_s3_request_checks_its_host_again(app_with, listener):
    """A client is taken once per use (a multipart upload can last hours): each request
    checks where its host resolves now, so a name that turns internal gets nothing."""
    flask_app = app_with(OUTBOUND_ALLOWED_HOSTS=ALLOWED)
    real, answers = socket.getaddrinfo, []

    def resolve(host, *args, **kwargs):  # no DNS here: the resolver answers for one name
        if host == "s3.example.com":  # public when the client is made, internal after
            answers.append(host)
            address = ("93.184.216.34", 0) if len(answers) == 1 else ("127.0.0.2", listener.port)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", address)]
        return real(host, *args, **kwargs)

    with flask_app.app_context(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", resolve)
        target = storage.S3Target("http://s3.example.com", "us-east-1", "loop-bucket", "",
                                  "k", "s", True, 5)  # fmt: skip
        steps = checks.probe(target)
    assert len(answers) >= 2  # the client was made, then a request was about to go out
    assert steps[0][0] == "write" and not steps[0][1]
    assert listener.seen() == 0
    assert "s3.example.com resolves to an internal address" in steps[0][2], steps


# ---- item 7: IPv6 spellings of internal IPv4 addresses --------------------------

SPELLINGS = [
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:127.0.0.1",  # IPv4-mapped
    "64:ff9b::7f00:1",  # NAT64, well-known prefix
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
    "64:ff9b:1:7f00:0:100::",  # NAT64, local-use /48 prefix
    "2002:7f00:1::",  # 6to4
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "::ffff:7f00:1",  # IPv4-mapped, written in hex
]
PUBLIC = ["2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::"]


@pytest.mark.parametrize("ip", SPELLINGS)
def test_an_ipv6_spelling_of_an_internal_address_is_refused_on_save(ip):
    assert names.is_internal_address(f"[{ip}]")
    with pytest.raises(names.InvalidValue, match="internal address"):
        names.git_url(f"https://[{ip}]/team/repo.git")
    with pytest.raises(names.InvalidValue, match="internal address"):
        names.public_url(f"https://[{ip}]:9000", what="S3 endpoint")
    with pytest.raises(names.InvalidValue, match="internal address"):
        names.database_url(f"postgresql://app:pw@[{ip}]:5432/app")


@pytest.mark.parametrize("ip", PUBLIC)
def test_an_ipv6_address_embedding_a_public_address_passes(ip):
    assert not names.is_internal_address(ip)
    assert names.git_url(f"https://[{ip}]/team/repo.git")


def test_the_destination_form_refuses_an_ipv6_spelling_of_loopback(app, client, counts):
    user = make_user(role=Role.owner)
    assert Auth(client).login(user).status_code == 303
    token = csrf_token(client, "/backups/")
    before = counts()
    for ip in ("::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::"):
        page = client.post("/backups/destinations/new", data={
            "csrf_token": token, "name": "dd", "endpoint_url": f"https://[{ip}]:9000",
            "region": "us-east-1", "bucket": "bucket", "prefix": "", "access_key_id": "k",
            "secret_access_key": "s", "path_style": "y"})  # fmt: skip
        assert page.status_code == 422, ip
        body = page.get_data(as_text=True)
        assert "is an internal address; an admin must allow-list it" in body, ip
        assert f"add {ip} to SLIPWAY_OUTBOUND_ALLOWED_HOSTS" in body, ip
    assert counts() == before
    assert db.session.query(BackupDestination).count() == 0


@pytest.mark.parametrize("ip", SPELLINGS)
def test_a_name_resolving_to_an_ipv6_spelling_of_an_internal_address_is_refused_at_use(
    app, monkeypatch, ip
):
    """The AAAA answer is checked like the literal (no DNS here: the resolver answers)."""
    host = "six.example.com"
    real = socket.getaddrinfo

    def resolve(name, *args, **kwargs):
        if name == host:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, 0, 0, 0))]
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    app.config["OUTBOUND_ALLOWED_HOSTS"] = ()
    assert not names.is_internal_address(host)  # it passes the save check
    with pytest.raises(outbound.HostRefused, match="resolves to an internal address"):
        outbound.check_host(host)
    with pytest.raises(outbound.HostRefused):
        outbound.check_host(f"[{ip}]")
    with pytest.raises(gitsrc.GitError, match="internal address"):
        gitsrc.check_url(f"https://{host}/team/repo.git", ())
