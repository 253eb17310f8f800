"""The git settings page: secret shown once, deploy key, token, watch paths, deliveries."""

from __future__ import annotations

import re

from sqlalchemy import select

from app import crypto, urls
from app.extensions import db
from app.models import Application, AuditEvent, Role
from app.sources import webhooks
from tests.conftest import csrf_token
from tests.factories import make_app, make_project, make_user, team_of


def _app(owner, **fields):
    return make_app(make_project(team_of(owner)), **fields)


def _fresh(app_id):
    db.session.expire_all()
    return db.session.get(Application, app_id)


def test_generate_secret_shows_it_once_then_masked(logged_in):
    client, owner = logged_in
    row = _app(owner)
    token = csrf_token(client, f"/apps/{row.id}/git")
    shown = client.post(f"/apps/{row.id}/git/secret", data={"csrf_token": token})
    assert shown.status_code == 200
    body = shown.get_data(as_text=True)
    secret = re.search(r'<pre class="secret"><code id="webhook-secret">([^<]+)</code>', body)[1]
    assert 'data-copy-target="webhook-secret"' in body
    stored = _fresh(row.id)
    assert crypto.decrypt(stored.webhook_secret, context="webhook_secret") == secret
    assert secret not in stored.webhook_secret and stored.webhook_token
    page = client.get(f"/apps/{row.id}/git").get_data(as_text=True)
    assert secret not in page and "••••••••" in page
    assert f"/webhooks/github/{stored.webhook_token}" in page
    assert f"/webhooks/gitlab/{stored.webhook_token}" in page
    rotated = client.post(f"/apps/{row.id}/git/secret", data={"csrf_token": token})
    assert secret not in rotated.get_data(as_text=True)
    assert _fresh(row.id).webhook_token == stored.webhook_token  # the URL stays
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert actions.count("webhook.secret_rotated") == 2


def _with_secret(client, owner):
    row = _app(owner)
    token = csrf_token(client, f"/apps/{row.id}/git")
    client.post(f"/apps/{row.id}/git/secret", data={"csrf_token": token})
    stored = _fresh(row.id)
    return row.id, crypto.decrypt(stored.webhook_secret, context="webhook_secret"), token


def test_an_admin_shows_the_secret_beside_the_webhook_urls_with_copy_buttons(logged_in):
    client, owner = logged_in
    app_id, secret, token = _with_secret(client, owner)
    page = client.get(f"/apps/{app_id}/git").get_data(as_text=True)
    assert secret not in page and "Show secret" in page  # no GET page carries it
    for provider in ("github", "gitlab", "gitea", "generic"):
        assert f'<code class="copy" id="webhook-url-{provider}">' in page
        assert f'data-copy-target="webhook-url-{provider}"' in page
    shown = client.post(f"/apps/{app_id}/git/secret/reveal", data={"csrf_token": token})
    assert shown.status_code == 200
    body = shown.get_data(as_text=True)
    assert f'<code class="copy" id="webhook-secret">{secret}</code>' in body
    assert 'data-copy-target="webhook-secret"' in body and "webhook-url-github" in body
    assert shown.headers["Cache-Control"].startswith("no-store")
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.user_id == owner.id))
    assert "webhook.secret_revealed" in list(actions)


def test_a_developer_cannot_show_the_secret(client, auth, owner):
    row = _app(owner)
    secret = webhooks.rotate_secret(row)
    developer = make_user(team_of(owner), role=Role.developer)
    auth.login(developer)
    token = csrf_token(client, f"/apps/{row.id}/git")
    page = client.get(f"/apps/{row.id}/git").get_data(as_text=True)
    assert "Show secret" not in page and secret not in page
    assert "a team admin can show it" in page
    refused = client.post(f"/apps/{row.id}/git/secret/reveal", data={"csrf_token": token})
    assert refused.status_code == 403 and secret not in refused.get_data(as_text=True)
    viewer = make_user(team_of(owner), role=Role.viewer)
    auth.logout()
    auth.login(viewer)
    token = csrf_token(client, "/")
    refused = client.post(f"/apps/{row.id}/git/secret/reveal", data={"csrf_token": token})
    assert refused.status_code == 403 and secret not in refused.get_data(as_text=True)


def test_webhook_urls_warn_when_forges_cannot_reach_them(app, logged_in):
    """Without SLIPWAY_PUBLIC_URL the addresses use the request's host: loopback,
    private and local-network hosts get a warning naming the setting."""
    client, owner = logged_in
    app_id, _, _ = _with_secret(client, owner)
    app.config["PUBLIC_URL"] = ""
    page = client.get(f"/apps/{app_id}/git").get_data(as_text=True)  # to localhost
    assert "data-unreachable" in page
    assert "Forges cannot reach these addresses: localhost" in page
    assert "SLIPWAY_PUBLIC_URL" in page
    for host, unreachable in [
        ("127.0.0.1:5000", "127.0.0.1"), ("192.168.1.20", "192.168.1.20"),
        ("[::1]:8000", "::1"), ("slipway.lan", "slipway.lan"), ("myserver", "myserver"),
        ("slipway.example.com", None), ("93.184.216.34", None), ("[2606:4700::1111]", None),
    ]:  # fmt: skip
        with app.test_request_context("/", headers={"Host": host}):
            assert urls.unreachable_base() == unreachable, host
    app.config["PUBLIC_URL"] = "https://slipway.example.com"
    page = client.get(f"/apps/{app_id}/git").get_data(as_text=True)
    assert "data-unreachable" not in page
    assert "https://slipway.example.com/webhooks/github/" in page


def test_deploy_key_is_ed25519_public_shown_private_encrypted(logged_in):
    client, owner = logged_in
    row = _app(owner)
    token = csrf_token(client, f"/apps/{row.id}/git")
    assert (
        client.post(f"/apps/{row.id}/git/deploy-key", data={"csrf_token": token}).status_code == 303
    )
    stored = _fresh(row.id)
    assert stored.deploy_key_public.startswith("ssh-ed25519 AAAA")
    private = crypto.decrypt(stored.deploy_key_private, context="deploy_key")
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert "PRIVATE KEY" not in stored.deploy_key_private
    page = client.get(f"/apps/{row.id}/git").get_data(as_text=True)
    assert stored.deploy_key_public in page and "PRIVATE KEY" not in page


def test_token_is_write_only(logged_in):
    client, owner = logged_in
    row = _app(owner)
    token = csrf_token(client, f"/apps/{row.id}/git")
    canary = "glpat-CANARY-token-1234567890"
    form = {"csrf_token": token, "token": canary, "user": "oauth2"}
    response = client.post(f"/apps/{row.id}/git/token", data=form)
    assert response.status_code == 303
    stored = _fresh(row.id)
    assert crypto.decrypt(stored.git_token, context="git_token") == canary
    assert stored.git_token_user == "oauth2"
    assert canary not in client.get(f"/apps/{row.id}/git").get_data(as_text=True)
    bad = client.post(f"/apps/{row.id}/git/token",
                      data={"csrf_token": token, "token": canary, "user": "a b;c"})  # fmt: skip
    assert bad.status_code == 422 and canary not in bad.get_data(as_text=True)
    client.post(f"/apps/{row.id}/git/token/clear", data={"csrf_token": token})
    assert _fresh(row.id).git_token is None


def test_watch_paths_and_tag_pattern_validated(logged_in):
    client, owner = logged_in
    row = _app(owner)
    token = csrf_token(client, f"/apps/{row.id}/git")
    ok = client.post(f"/apps/{row.id}/git/settings",
                     data={"csrf_token": token, "watch_paths": " src/**\n\nDockerfile ",
                           "deploy_tags": "v*"})  # fmt: skip
    assert ok.status_code == 303
    stored = _fresh(row.id)
    assert (stored.watch_paths, stored.deploy_tags) == ("src/**\nDockerfile", "v*")
    for bad in ("../etc/**", "/abs", "-x", "a;b", "$(id)"):
        response = client.post(f"/apps/{row.id}/git/settings",
                               data={"csrf_token": token, "watch_paths": bad})  # fmt: skip
        assert response.status_code == 422, bad
        assert 'class="field has-error" id="field-watch_paths"' in response.get_data(as_text=True)
    bad_tag = client.post(f"/apps/{row.id}/git/settings",
                          data={"csrf_token": token, "deploy_tags": "v* x"})  # fmt: skip
    assert bad_tag.status_code == 422
    assert _fresh(row.id).watch_paths == "src/**\nDockerfile"


def test_viewer_sees_deliveries_but_not_settings(client, auth, owner):
    row = _app(owner)
    viewer = make_user(team_of(owner), Role.viewer)
    auth.login(viewer)
    assert client.get(f"/apps/{row.id}/webhooks/deliveries").status_code == 200
    assert client.get(f"/apps/{row.id}/git").status_code == 403
    token = csrf_token(client, f"/apps/{row.id}")
    assert client.post(f"/apps/{row.id}/git/secret", data={"csrf_token": token}).status_code == 403
    assert _fresh(row.id).webhook_secret is None


def test_other_team_gets_404(client, auth, owner):
    row = _app(owner)
    auth.login(make_user())
    token = csrf_token(client, "/")
    assert client.get(f"/apps/{row.id}/webhooks/deliveries").status_code == 404
    assert client.get(f"/apps/{row.id}/git").status_code == 404
    for path in ("secret", "deploy-key", "token/clear", "host-key/forget", "settings"):
        assert client.post(f"/apps/{row.id}/git/{path}",
                           data={"csrf_token": token}).status_code == 404  # fmt: skip
    stored = _fresh(row.id)
    assert stored.webhook_secret is None and stored.deploy_key_public is None


def test_deliveries_list_says_why_and_escapes_what_the_sender_wrote(logged_in):
    from app.sources import webhooks
    from tests.sources import payloads

    client, owner = logged_in
    row = _app(owner, git_url="https://git.example.com/acme/site.git", auto_deploy=True)
    secret = webhooks.rotate_secret(row)
    db.session.commit()
    hostile = "refs/heads/<img src=x onerror=alert(1)>"
    for ref, delivery in ((hostile, "d-1"), ("refs/heads/main", "d-2")):
        payload = payloads.github_push(row.git_url, ref, "3" * 40)
        body, headers = payloads.signed_request("github", secret, payload, delivery=delivery)
        client.post(f"/webhooks/github/{row.webhook_token}", data=body, headers=headers)
    page = client.get(f"/apps/{row.id}/webhooks/deliveries").get_data(as_text=True)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "is not the tracked branch main" in page
    assert "deployment #" in page and "deployed" in page


def test_deliveries_list_says_when_a_deploy_could_not_be_queued(logged_in, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError
    from rq import Queue

    from app.sources import webhooks
    from tests.sources import payloads

    def refuse(self, *args, **kwargs):
        raise RedisConnectionError("Connection refused.")

    client, owner = logged_in
    row = _app(owner, git_url="https://git.example.com/acme/site.git", auto_deploy=True)
    secret = webhooks.rotate_secret(row)
    db.session.commit()
    monkeypatch.setattr(Queue, "enqueue", refuse)
    payload = payloads.github_push(row.git_url, "refs/heads/main", "4" * 40)
    body, headers = payloads.signed_request("github", secret, payload)
    response = client.post(f"/webhooks/github/{row.webhook_token}", data=body, headers=headers)
    assert response.status_code == 503
    page = client.get(f"/apps/{row.id}/webhooks/deliveries").get_data(as_text=True)
    assert "not queued" in page and "the deploy could not be queued" in page
    assert "deployment #" in page  # the failed deployment says why too


def test_submodules_checkbox_turns_cloning_them_off_and_on(logged_in):
    client, owner = logged_in
    row = _app(owner)
    page = client.get(f"/apps/{row.id}/git").get_data(as_text=True)
    assert re.search(r'<input checked id="submodules" name="submodules" type="checkbox"', page)
    token = csrf_token(client, f"/apps/{row.id}/git")
    off = client.post(f"/apps/{row.id}/git/settings", data={"csrf_token": token})
    assert off.status_code == 303
    assert _fresh(row.id).git_submodules is False
    page = client.get(f"/apps/{row.id}/git").get_data(as_text=True)
    assert '<input id="submodules" name="submodules" type="checkbox"' in page
    on = client.post(f"/apps/{row.id}/git/settings",
                     data={"csrf_token": token, "submodules": "y"})  # fmt: skip
    assert on.status_code == 303
    assert _fresh(row.id).git_submodules is True
    events = db.session.scalars(select(AuditEvent.action).where(AuditEvent.target_id == row.id))
    assert list(events).count("app.git_settings_updated") == 2
