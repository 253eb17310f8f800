"""Editing notification channels, and the signature on a generic webhook's body, checked by
a real HTTP receiver on loopback the way the README tells receivers to check it."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from app import crypto, notify
from app.extensions import db
from app.models import AuditEvent, NotificationChannel, NotificationEvent, Role
from tests.backups.conftest import work_notifications
from tests.conftest import Auth, csrf_token
from tests.factories import make_user, team_of

URL_CANARY = "https://hooks.example.com/services/url-canary-77"


class Receiver:
    """Keeps the raw body and headers of every POST; answers 204."""

    def __init__(self):
        self.posts: list[tuple[dict, bytes]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/slipway"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def admin(app, client):
    user = make_user(role=Role.admin)
    assert Auth(client).login(user).status_code == 303
    return user


def verify(secret: str, headers: dict, body: bytes, tolerance: int = 300) -> bool:
    """What the README tells a receiver to do, written from the README."""
    timestamp = headers["x-slipway-timestamp"]
    scheme, _, given = headers["x-slipway-signature"].partition("=")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return (
        scheme == "sha256"
        and hmac.compare_digest(expected.hexdigest(), given)
        and abs(time.time() - int(timestamp)) <= tolerance
    )


def _row(channel_id: int) -> tuple:
    db.session.expire_all()
    c = db.session.get(NotificationChannel, channel_id)
    return (c.name, c.kind, list(c.events), dict(c.settings), c.secret, c.signing_secret)


def _add_webhook(client, url: str, name: str = "ops") -> tuple[NotificationChannel, str]:
    token = csrf_token(client, "/notifications/")
    shown = client.post("/notifications/", data={
        "csrf_token": token, "name": name, "kind": "webhook", "events": ["deploy.failed"],
        "url": url})  # fmt: skip
    assert shown.status_code == 200, shown.get_data(as_text=True)
    secret = re.search(r'<pre class="secret"><code>([0-9a-f]+)</code>', shown.get_data(True))[1]
    channel = db.session.scalars(select(NotificationChannel).filter_by(name=name)).one()
    return channel, secret


def test_a_generic_webhook_signs_what_it_delivers(app, client, admin, receiver):
    channel, secret = _add_webhook(client, receiver.url)
    assert len(secret) == 64 and secret not in channel.signing_secret
    assert crypto.decrypt(channel.signing_secret, context=notify.SIGNING_CONTEXT) == secret
    page = client.get("/notifications/").get_data(as_text=True)
    assert secret not in page and "signed" in page
    assert secret not in client.get(f"/notifications/{channel.id}/edit").get_data(as_text=True)

    # A delivery job as the notify worker runs it, and the Send test button.
    assert notify.event(channel.team_id, NotificationEvent.deploy_failed, 12345) == 1
    assert [j.return_value() for j in work_notifications()] == ["sent"]
    token = csrf_token(client, "/notifications/")
    client.post(f"/notifications/{channel.id}/test", data={"csrf_token": token})
    assert len(receiver.posts) == 2
    for headers, body in receiver.posts:
        assert verify(secret, headers, body), headers
        assert headers["x-slipway-event"] == json.loads(body)["event"]
        assert not verify("0" * 64, headers, body)
        assert not verify(secret, headers, body + b" ")
        assert secret not in body.decode() and secret not in json.dumps(headers)
    assert json.loads(receiver.posts[0][1])["event"] == "deploy.failed"
    # A body replayed later fails the timestamp check a receiver makes.
    old_headers, old_body = receiver.posts[0]
    assert not verify(secret, old_headers, old_body, tolerance=-1)

    # A new secret is shown once; the old one no longer verifies what is sent.
    shown = client.post(f"/notifications/{channel.id}/signing-secret", data={"csrf_token": token})
    new = re.search(r'<pre class="secret"><code>([0-9a-f]+)</code>', shown.get_data(True))[1]
    assert new != secret
    client.post(f"/notifications/{channel.id}/test", data={"csrf_token": token})
    headers, body = receiver.posts[-1]
    assert verify(new, headers, body) and not verify(secret, headers, body)
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert "notification_channel.signing_secret_rotated" in actions


def test_editing_a_webhook_channel_keeps_its_url_and_kind(app, client, admin, receiver):
    channel, _ = _add_webhook(client, URL_CANARY)
    before = _row(channel.id)
    form = client.get(f"/notifications/{channel.id}/edit")
    assert form.status_code == 200
    assert "url-canary-77" not in form.get_data(as_text=True)
    token = csrf_token(client, "/notifications/")
    response = client.post(f"/notifications/{channel.id}/edit", data={
        "csrf_token": token, "name": "ops-renamed", "kind": "email",
        "events": ["backup.failed", "drill.failed"], "url": ""})  # fmt: skip
    assert response.status_code == 303
    name, kind, events, settings, secret, signing = _row(channel.id)
    assert (name, kind, events) == ("ops-renamed", "webhook", ["backup.failed", "drill.failed"])
    assert (settings, secret, signing) == before[3:]  # URL and signing secret kept
    # A new URL replaces the stored one (a loopback receiver: allow-listed here).
    client.post(f"/notifications/{channel.id}/edit", data={
        "csrf_token": token, "name": "ops-renamed", "events": ["backup.failed"],
        "url": receiver.url})  # fmt: skip
    db.session.expire_all()
    stored = db.session.get(NotificationChannel, channel.id)
    assert crypto.decrypt(stored.secret, context=notify.SECRET_CONTEXT) == receiver.url
    edits = db.session.scalars(select(AuditEvent).filter_by(
        action="notification_channel.saved")).all()  # fmt: skip
    assert len(edits) == 3 and edits[-1].details.get("edited") is True


@pytest.mark.parametrize(
    "changes,field,message",
    [
        ({"url": "http://hooks.example.com/x"}, "url", "https://"),
        ({"url": "https://169.254.169.254/latest"}, "url", "internal address"),
        ({"name": "Bad Name!"}, "name", "lowercase"),
        ({"name": "taken"}, "name", "already has a channel"),
        ({"events": ["no.such-event"]}, "events", "valid choice"),
        ({"name": "n" * 64}, "name", "63"),
    ],
)
def test_a_bad_edit_changes_nothing(app, client, admin, changes, field, message):
    app.config["OUTBOUND_ALLOWED_HOSTS"] = app.config["BACKUP_ALLOWED_HOSTS"] = ()
    channel, _ = _add_webhook(client, URL_CANARY)
    db.session.add(NotificationChannel(team_id=channel.team_id, name="taken", kind="slack",
                                       events=[], settings={}))  # fmt: skip
    db.session.commit()
    before, audits = _row(channel.id), db.session.query(AuditEvent).count()
    token = csrf_token(client, "/notifications/")
    data = {"csrf_token": token, "name": "ops", "events": ["backup.failed"]} | changes
    response = client.post(f"/notifications/{channel.id}/edit", data=data)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message in body[body.index(f'id="field-{field}"') :][:1500]
    assert _row(channel.id) == before and db.session.query(AuditEvent).count() == audits


def test_editing_an_email_channel_keeps_the_password_when_left_empty(app, client, admin):
    token = csrf_token(client, "/notifications/")
    form = {"csrf_token": token, "name": "mail", "kind": "email", "events": ["backup.failed"],
            "smtp_host": "mail.example.com", "smtp_port": "587", "smtp_username": "ops",
            "smtp_password": "smtp-canary-pw", "sender": "slipway@example.com",
            "to": "ops@example.com"}  # fmt: skip
    assert client.post("/notifications/", data=form).status_code == 303
    channel = db.session.scalars(select(NotificationChannel)).one()
    assert channel.signing_secret is None
    page = client.get(f"/notifications/{channel.id}/edit").get_data(as_text=True)
    assert "mail.example.com" in page and "ops@example.com" in page
    assert "smtp-canary-pw" not in page
    edited = form | {"smtp_password": "", "to": "oncall@example.com", "smtp_port": "2525"}
    assert client.post(f"/notifications/{channel.id}/edit", data=edited).status_code == 303
    db.session.expire_all()
    channel = db.session.get(NotificationChannel, channel.id)
    assert channel.settings["to"] == "oncall@example.com" and channel.settings["port"] == 2525
    assert crypto.decrypt(channel.secret, context=notify.SECRET_CONTEXT) == "smtp-canary-pw"
    assert client.post(f"/notifications/{channel.id}/signing-secret",
                       data={"csrf_token": token}).status_code == 404  # fmt: skip


def test_members_below_admin_cannot_edit(app, client):
    owner = make_user(role=Role.owner)
    channel = NotificationChannel(team_id=team_of(owner).id, name="ops", kind="slack",
                                  events=["backup.failed"], settings={})  # fmt: skip
    db.session.add(channel)
    db.session.commit()
    before = _row(channel.id)
    developer = make_user(team=team_of(owner), role=Role.developer)
    assert Auth(client).login(developer).status_code == 303
    token = csrf_token(client, "/notifications/")
    assert client.get(f"/notifications/{channel.id}/edit").status_code == 403
    response = client.post(f"/notifications/{channel.id}/edit", data={
        "csrf_token": token, "name": "mine", "events": ["backup.failed"]})  # fmt: skip
    assert response.status_code == 403 and _row(channel.id) == before
