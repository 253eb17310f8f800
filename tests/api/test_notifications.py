"""/api/v1 notification channels: webhooks, Slack-style webhooks, email (issue 15)."""

from __future__ import annotations

from app import crypto, notify
from app.extensions import db
from app.models import AuditEvent, NotificationChannel, Role
from tests.api.conftest import error_of
from tests.api.shapes import shaped
from tests.factories import team_of

URL = "https://hooks.example.com/services/T000/url-token-canary-55"
SMTP_PASSWORD = "smtp-password-canary-66"
EMAIL = {"name": "ops-mail", "kind": "email", "events": ["deploy.failed", "app.down"],
         "smtp_host": "smtp.example.com", "smtp_port": 465, "smtp_username": "ops",
         "smtp_password": SMTP_PASSWORD, "sender": "slipway@example.com",
         "to": "ops@example.com"}  # fmt: skip


def _hidden(response, *secrets):
    text = response.get_data(as_text=True)
    assert not any(secret in text for secret in secrets), text


def test_a_webhook_channel_hides_its_url_and_shows_its_signing_secret_once(api, owner):
    response = api.post("/api/v1/notification-channels", json={
        "name": "hooks", "kind": "webhook", "url": URL, "events": ["backup.failed"]})  # fmt: skip
    assert response.status_code == 201, response.get_json()
    body = shaped("NotificationChannelCreated", response.get_json())
    assert body["url_host"] == "hooks.example.com" and body["has_secret"] and body["signed"]
    assert body["smtp_host"] is None and body["events"] == ["backup.failed"]
    _hidden(response, URL, "url-token-canary")
    channel = db.session.get(NotificationChannel, body["id"])
    assert channel.team_id == team_of(owner).id
    assert crypto.decrypt(channel.secret, context=notify.SECRET_CONTEXT) == URL
    signing = crypto.decrypt(channel.signing_secret, context=notify.SIGNING_CONTEXT)
    assert body["signing_secret"] == signing
    for path in ("/api/v1/notification-channels", f"/api/v1/notification-channels/{body['id']}"):
        again = api.get(path)
        assert again.status_code == 200
        _hidden(again, URL, "url-token-canary", signing)
    one = shaped("NotificationChannel", api.get(f"/api/v1/notification-channels/{body['id']}")
                 .get_json())  # fmt: skip
    assert one == {k: v for k, v in body.items() if k != "signing_secret"}
    assert db.session.query(AuditEvent).filter_by(action="notification_channel.saved").count() == 1


def test_an_email_channel_keeps_the_smtp_password_write_only(api):
    response = api.post("/api/v1/notification-channels", json=EMAIL)
    assert response.status_code == 201, response.get_json()
    body = shaped("NotificationChannelCreated", response.get_json())
    assert body["smtp_host"] == "smtp.example.com" and body["smtp_port"] == 465
    assert body["to"] == "ops@example.com" and body["url_host"] is None
    assert body["signing_secret"] is None and body["signed"] is False and body["has_secret"]
    _hidden(response, SMTP_PASSWORD)
    channel = db.session.get(NotificationChannel, body["id"])
    assert crypto.decrypt(channel.secret, context=notify.SECRET_CONTEXT) == SMTP_PASSWORD


def test_internal_hosts_and_bad_values_are_refused(api):
    cases = [
        ({"name": "a", "kind": "webhook", "url": "https://10.1.2.3/hook"}, "url"),
        ({"name": "a", "kind": "webhook", "url": "http://hooks.example.com/x"}, "url"),
        ({"name": "a", "kind": "slack", "url": "https://localhost/hook"}, "url"),
        ({"name": "a", "kind": "webhook"}, "url"),
        (EMAIL | {"smtp_host": "127.0.0.1"}, "smtp_host"),
        (EMAIL | {"to": "a@example.com, b@example.com"}, "to"),
        (EMAIL | {"name": "Has Spaces"}, "name"),
        (EMAIL | {"events": ["backup.failed", "nope"]}, "events.1"),
        (EMAIL | {"kind": "pager"}, "kind"),
        (EMAIL | {"smtp_port": 70000}, "smtp_port"),
        (EMAIL | {"smtp_username": "ops\x00"}, "smtp_username"),
    ]
    for body, field in cases:
        response = api.post("/api/v1/notification-channels", json=body)
        assert response.status_code == 422, (body, response.get_json())
        assert field in error_of(response)["details"]["fields"], (field, response.get_json())
    assert db.session.query(NotificationChannel).count() == 0


def test_an_allow_listed_internal_webhook_is_accepted(api, app):
    app.config["OUTBOUND_ALLOWED_HOSTS"] = ("127.0.0.1",)
    response = api.post("/api/v1/notification-channels", json={
        "name": "local", "kind": "webhook", "url": "http://127.0.0.1:8080/hook"})  # fmt: skip
    assert response.status_code == 201, response.get_json()


def test_a_taken_name_is_422(api):
    assert api.post("/api/v1/notification-channels", json=EMAIL).status_code == 201
    response = api.post("/api/v1/notification-channels", json=EMAIL)
    assert response.status_code == 422
    assert "already" in error_of(response)["details"]["fields"]["name"]


def test_patch_keeps_the_kind_and_stored_secrets_and_checks_etag(api):
    created = api.post("/api/v1/notification-channels", json={
        "name": "hooks", "kind": "webhook", "url": URL}).get_json()  # fmt: skip
    path = f"/api/v1/notification-channels/{created['id']}"
    stored = db.session.get(NotificationChannel, created["id"])
    secret, signing = stored.secret, stored.signing_secret
    etag = api.get(path).headers["ETag"]
    response = api.patch(path, json={"events": ["app.down", "app.recovered"]},
                         headers={"If-Match": etag})  # fmt: skip
    assert response.status_code == 200, response.get_json()
    body = shaped("NotificationChannel", response.get_json())
    assert body["events"] == ["app.down", "app.recovered"] and body["kind"] == "webhook"
    db.session.expire_all()
    channel = db.session.get(NotificationChannel, created["id"])
    assert (channel.secret, channel.signing_secret) == (secret, signing)
    assert api.patch(path, json={"name": "other"}, headers={"If-Match": etag}).status_code == 412
    for change, field in (({"kind": "email"}, "kind"), ({"smtp_host": "smtp.example.com"},
                          "smtp_host"), ({"url": "https://192.168.0.9/x"}, "url")):  # fmt: skip
        bad = api.patch(path, json=change)
        assert bad.status_code == 422, change
        assert field in error_of(bad)["details"]["fields"], change
    new_url = "https://hooks.example.org/new"
    moved = api.patch(path, json={"url": new_url})
    assert moved.status_code == 200 and moved.get_json()["url_host"] == "hooks.example.org"
    _hidden(moved, new_url)
    db.session.expire_all()
    channel = db.session.get(NotificationChannel, created["id"])
    assert crypto.decrypt(channel.secret, context=notify.SECRET_CONTEXT) == new_url
    assert channel.name == "hooks" and channel.events == ["app.down", "app.recovered"]


def test_patch_an_email_channel_keeps_its_settings_and_password(api):
    created = api.post("/api/v1/notification-channels", json=EMAIL).get_json()
    path = f"/api/v1/notification-channels/{created['id']}"
    secret = db.session.get(NotificationChannel, created["id"]).secret
    response = api.patch(path, json={"to": "oncall@example.com"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["to"] == "oncall@example.com" and body["smtp_port"] == 465
    assert body["smtp_username"] == "ops" and body["sender"] == "slipway@example.com"
    db.session.expire_all()
    assert db.session.get(NotificationChannel, created["id"]).secret == secret
    assert api.patch(path, json={"url": URL}).status_code == 422


def test_delete_a_channel(api):
    created = api.post("/api/v1/notification-channels", json=EMAIL).get_json()
    path = f"/api/v1/notification-channels/{created['id']}"
    assert api.delete(path, headers={"If-Match": '"stale"'}).status_code == 412
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404
    assert db.session.query(NotificationChannel).count() == 0


def test_another_team_s_channel_is_404_and_unchanged(api, api_for):
    stranger = api_for()
    theirs = stranger.post("/api/v1/notification-channels", json=EMAIL).get_json()
    path = f"/api/v1/notification-channels/{theirs['id']}"
    assert api.get(path).status_code == 404
    assert api.patch(path, json={"to": "me@example.com"}).status_code == 404
    assert api.delete(path).status_code == 404
    assert api.get("/api/v1/notification-channels").get_json()["data"] == []
    db.session.expire_all()
    assert db.session.get(NotificationChannel, theirs["id"]).settings["to"] == "ops@example.com"


def test_read_keys_and_developers_may_look_not_manage(api, api_for, owner):
    team = team_of(owner)
    created = api.post("/api/v1/notification-channels", json=EMAIL).get_json()
    path = f"/api/v1/notification-channels/{created['id']}"
    for client in (api_for(team=team, scopes=("read",)), api_for(team=team, role=Role.developer)):
        assert client.get(path).status_code == 200
        assert client.post("/api/v1/notification-channels", json={}).status_code == 403
        assert client.patch(path, json={}).status_code == 403
        assert client.delete(path).status_code == 403
    assert db.session.query(NotificationChannel).count() == 1


def test_channels_page_by_cursor(api):
    made = [api.post("/api/v1/notification-channels", json=EMAIL | {"name": f"c{i}"})
            .get_json()["id"] for i in range(3)]  # fmt: skip
    first = api.get("/api/v1/notification-channels?limit=2").get_json()
    shaped("NotificationChannelPage", first)
    assert [c["id"] for c in first["data"]] == made[:2] and first["next_cursor"]
    rest = api.get(f"/api/v1/notification-channels?limit=2&cursor={first['next_cursor']}")
    assert [c["id"] for c in rest.get_json()["data"]] == made[2:]
    assert rest.get_json()["next_cursor"] is None
