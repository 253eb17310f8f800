"""Notifications: a real local HTTP server for webhooks, a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from app import crypto, notify
from app.backups import runs
from app.extensions import db, queue, redis
from app.models import Backup, NotificationChannel, NotificationEvent
from tests.backups.conftest import free_port, work, work_notifications
from tests.conftest import Auth, csrf_token
from tests.factories import make_destination, make_policy, make_team, make_user, team_of


class Hooks:
    """A webhook receiver; answers 500 to the first ``fail_first`` posts."""

    def __init__(self):
        self.received: list[dict] = []
        self.fail_first = 0
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.received.append(json.loads(body))
                failing = len(hooks.received) <= hooks.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hooks():
    server = Hooks()
    yield server
    server.server.shutdown()


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def _channel(team, kind, events=("backup.failed",), url=None, name=None, **settings):
    secret = crypto.encrypt(url, context=notify.SECRET_CONTEXT) if url else None
    channel = NotificationChannel(
        team_id=team.id, name=name or f"{kind}-ch", kind=kind, events=list(events),
        settings=settings, secret=secret,
    )  # fmt: skip
    db.session.add(channel)
    db.session.commit()
    return channel


def _failed_backup(moto, bucket, team):
    url = "postgresql://nobody@127.0.0.1:5432/slipway_bk_does_not_exist"
    policy = make_policy(team, make_destination(team, moto.url, bucket), url)
    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    backup = db.session.get(Backup, backup.id)
    assert backup.status == "failed"
    return backup


def test_a_failed_backup_tells_every_subscribed_channel(app, moto, bucket, hooks, smtp):
    controller, inbox = smtp
    team = make_team("ops-team")
    _channel(team, "webhook", url=hooks.url)
    _channel(team, "slack", url=hooks.url)
    _channel(team, "email", host="127.0.0.1", port=controller.port,
             sender="slipway@example.com", to="ops@example.com")  # fmt: skip
    _channel(team, "webhook", events=("drill.failed",), url=hooks.url, name="drills-only")
    backup = _failed_backup(moto, bucket, team)
    work_notifications()
    generic = [m for m in hooks.received if "event" in m]
    slack = [m for m in hooks.received if "content" in m]
    assert len(hooks.received) == 2 and len(generic) == 1 and len(slack) == 1
    assert generic[0]["event"] == "backup.failed" and generic[0]["team"] == "ops-team"
    assert f"Backup #{backup.id}" in generic[0]["text"]
    assert slack[0]["text"] == slack[0]["content"]
    (mail,) = inbox.messages
    assert mail.rcpt_tos == ["ops@example.com"]
    assert b"failed" in mail.content


def test_a_backup_whose_worker_was_lost_tells_the_team_too(app, moto, bucket, hooks):
    """The reaper marks it failed ("worker lost") and sends the same event as any failure."""
    from datetime import timedelta

    from app.models.base import utcnow

    team = make_team("ops-team")
    _channel(team, "webhook", url=hooks.url)
    policy = make_policy(team, make_destination(team, moto.url, bucket), None)
    lost = Backup(team_id=team.id, policy_id=policy.id, trigger="manual", status="running",
                  started_at=utcnow() - timedelta(minutes=5))  # fmt: skip
    db.session.add(lost)
    db.session.commit()
    assert runs.reap_lost() == 1
    work_notifications()
    (sent,) = hooks.received
    assert sent["event"] == "backup.failed" and f"Backup #{lost.id}" in sent["text"]
    assert "worker lost" in sent["text"]


def test_sends_are_retried_with_backoff(app, moto, bucket, hooks):
    """Each retry is a job of its own, scheduled for later on the notify queue."""
    team = make_team()
    _channel(team, "webhook", url=hooks.url)
    hooks.fail_first = 2
    _failed_backup(moto, bucket, team)  # enqueues the first attempt
    done = work_notifications()
    assert len(hooks.received) == 3  # two failures, then success
    assert sorted(j.return_value() for j in done) == ["retrying", "retrying", "sent"]
    assert sorted(j.args[3] for j in done) == [0, 1, 2]  # the attempt numbers


def test_a_send_that_keeps_failing_gives_up_without_raising(app, moto, bucket, hooks):
    team = make_team()
    channel = _channel(team, "webhook", url=hooks.url)
    hooks.fail_first = 100
    backup = _failed_backup(moto, bucket, team)
    hooks.received.clear()
    queue(notify.QUEUE).empty()
    assert notify.deliver(channel.id, "backup.failed", backup.id) == "retrying"
    done = work_notifications()
    assert len(hooks.received) == 3  # NOTIFY_RETRIES=2 in the tests
    assert sorted(j.return_value() for j in done) == ["failed", "retrying"]


def test_an_internal_url_is_refused_at_use_unless_allow_listed(app, moto, bucket, hooks):
    team = make_team()
    channel = _channel(team, "webhook", url=hooks.url)
    backup = _failed_backup(moto, bucket, team)
    hooks.received.clear()
    app.config["OUTBOUND_ALLOWED_HOSTS"] = app.config["BACKUP_ALLOWED_HOSTS"] = ()
    assert notify.deliver(channel.id, "backup.failed", backup.id) == "retrying"
    work_notifications()
    assert hooks.received == []


def test_enqueueing_never_raises_and_carries_ids_only(app, monkeypatch):
    team = make_team()
    _channel(team, "webhook", url="https://hooks.example.com/secret-token-123")
    assert notify.event(team.id, NotificationEvent.backup_failed, 42) == 1
    (job,) = queue(notify.QUEUE).get_jobs()
    assert queue("default").count == 0
    assert "secret-token-123" not in json.dumps(job.args)
    monkeypatch.setattr(notify, "queue", lambda name: 1 / 0)
    assert notify.event(team.id, NotificationEvent.backup_failed, 43) == 0


def test_a_failed_deployment_uses_the_same_channels(app, hooks, monkeypatch):
    """Deployments notify through the channels too (event ``deploy.failed``)."""
    from app import jobs
    from app.models import Deployment
    from tests.factories import make_app, make_project

    team = make_team()
    _channel(team, "webhook", events=("deploy.failed",), url=hooks.url)
    app_row = make_app(make_project(team), name="shop")
    deployment = Deployment(application_id=app_row.id, status="failed", error="build broke")
    db.session.add(deployment)
    db.session.commit()
    jobs.bind(app)
    # The pipeline itself is tested in tests/deploys; here only what follows a failure.
    monkeypatch.setattr(jobs.pipeline, "run", lambda deployment_id: "failed")
    assert jobs.run_deployment(deployment.id) == "failed"
    work_notifications()
    (sent,) = hooks.received
    assert sent["event"] == "deploy.failed" and "build broke" in sent["text"]
    assert "shop" in sent["subject"]


SMTP_CANARY = "smtp-canary-3f9a1c"


def test_the_smtp_password_never_leaves_the_server(app, client, moto, bucket, logs):
    """SECURITY.md 19 for an email channel: not in a page, fragment, flash, error, log line
    or job payload; the database holds ciphertext. The server really receives it at AUTH."""
    logins: list[tuple[bytes, bytes]] = []
    accept = [True]

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=accept[0], handled=False)

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(),
                            authenticator=authenticator, auth_require_tls=False)  # fmt: skip
    controller.start()
    try:
        user = make_user()
        assert Auth(client).login(user).status_code == 303
        token = csrf_token(client, "/notifications/")
        form = {"csrf_token": token, "name": "mail", "kind": "email", "events": ["backup.failed"],
                "smtp_host": "127.0.0.1", "smtp_port": str(controller.port), "smtp_username": "ops",
                "smtp_password": SMTP_CANARY, "sender": "slipway@example.com",
                "to": "ops@example.com"}  # fmt: skip
        refused = client.post("/notifications/", data=form | {"to": "not an address"})
        pages = [refused.get_data(as_text=True)]
        assert refused.status_code == 422
        assert client.post("/notifications/", data=form).status_code == 303
        channel = db.session.query(NotificationChannel).one()
        assert channel.secret.startswith("k1:") and SMTP_CANARY not in channel.secret
        assert SMTP_CANARY not in json.dumps(channel.settings)

        client.post(f"/notifications/{channel.id}/test", data={"csrf_token": token})
        pages.append(client.get("/notifications/").get_data(as_text=True))
        assert "Sent a test notification" in pages[-1] and len(inbox.messages) == 1
        accept[0] = False  # now the server refuses the login: an error is shown
        client.post(f"/notifications/{channel.id}/test", data={"csrf_token": token})
        pages.append(client.get("/notifications/").get_data(as_text=True))
        assert "failed" in pages[-1]
        pages.append(client.get("/notifications/", headers={"HX-Request": "true"}).get_data(
            as_text=True))  # fmt: skip

        backup = _failed_backup(moto, bucket, team_of(user))  # enqueues the delivery job
        payloads = [zlib.decompress(redis.client.hget(k, "data")) for k in redis.client.keys(
            "rq:job:*") if redis.client.hget(k, "data")]  # fmt: skip
        assert payloads
        outcome = notify.deliver(channel.id, "backup.failed", backup.id)
        assert outcome == "retrying"  # refused at AUTH: retried, given up, errors logged
        done = work_notifications()
        assert "failed" in [j.return_value() for j in done]
        assert logins and all(password == SMTP_CANARY.encode() for _, password in logins)
        for page in pages:
            assert SMTP_CANARY not in page
        assert all(SMTP_CANARY.encode() not in p for p in payloads)
        assert "535" in logs.text and SMTP_CANARY not in logs.text  # the errors were logged
    finally:
        controller.stop()
