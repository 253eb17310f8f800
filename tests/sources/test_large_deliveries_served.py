"""A GitHub-sized delivery through gunicorn as production runs it (gthread): no limit of
the web server's own refuses what the webhook route accepts."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from sqlalchemy import select

from app.extensions import db
from app.models import WebhookDelivery
from tests.browser.conftest import server  # noqa: F401  (the real gunicorn, run once)
from tests.sources.test_forge_examples import _app_for, _headers, _vendored_push


def _post(url: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_signed_20_mb_github_push_deploys_through_gunicorn(app, server):  # noqa: F811
    row, secret = _app_for("github", watch_paths="vendor/**")
    body = _vendored_push(20 * 1000 * 1000)
    status, answer = _post(server.url, f"/webhooks/github/{row.webhook_token}", body,
                           _headers("github", secret, body))  # fmt: skip
    assert status == 202, answer
    db.session.expire_all()
    [delivery] = db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.application_id == row.id)
    ).all()
    assert delivery.outcome == "deployed" and delivery.deployment_id == answer["deployment"]
