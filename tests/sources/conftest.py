"""Webhook fixtures: an app with a webhook secret, and a signed-delivery poster."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.sources import webhooks
from tests.factories import make_app, make_project, make_team
from tests.sources import payloads

REPO = "https://git.example.com/acme/site.git"
SHA = "1" * 40


@pytest.fixture
def hooked(app):
    """A git app with auto-deploy on and a fresh webhook secret: (app row, secret)."""
    project = make_project(make_team())
    row = make_app(project, git_url=REPO, git_branch="main", auto_deploy=True)
    secret = webhooks.rotate_secret(row)
    db.session.commit()
    return row, secret


class Poster:
    def __init__(self, client, app_row, secret):
        self.client, self.app_row, self.secret = client, app_row, secret

    def push(self, provider="github", *, ref="refs/heads/main", sha=SHA, repo=REPO,
             delivery=None, event=None, **kwargs):  # fmt: skip
        payload = payloads.BUILDERS[provider](repo, ref, sha, **kwargs)
        return self.send(provider, payload, delivery=delivery, event=event)

    def send(self, provider, payload, *, delivery=None, event=None, secret=None):
        body, headers = payloads.signed_request(
            provider, secret or self.secret, payload, delivery=delivery, event=event
        )
        return self.raw(provider, body, headers)

    def raw(self, provider, body, headers, token=None):
        url = f"/webhooks/{provider}/{token or self.app_row.webhook_token}"
        return self.client.post(url, data=body, headers=headers)


@pytest.fixture
def poster(client, hooked):
    return Poster(client, *hooked)
