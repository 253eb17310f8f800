"""Every main page is valid on one point browsers and assistive tools rely on: no element
id appears twice (a label's ``for``, ``aria-describedby`` and ``#anchors`` find the first
one only)."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser

import pytest

from app import crypto, notify
from app.extensions import db
from app.models import DatabaseLink, Deployment, NotificationChannel
from tests.factories import (
    make_app,
    make_database,
    make_destination,
    make_policy,
    make_project,
    team_of,
)


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: Counter[str] = Counter()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids[value] += 1

    handle_startendtag = handle_starttag


def duplicate_ids(html: str) -> list[str]:
    parser = _Ids()
    parser.feed(html)
    return sorted(i for i, n in parser.ids.items() if n > 1)


@pytest.fixture
def world(app, logged_in):
    client, owner = logged_in
    app.config["BACKUP_ALLOWED_HOSTS"] = ("127.0.0.1",)
    team = team_of(owner)
    project = make_project(team, "shop")
    git_app = make_app(project, "web", watch_paths="src/**")
    deployment = Deployment(application_id=git_app.id, status="failed", trigger="manual",
                            error="boom")  # fmt: skip
    db.session.add(deployment)
    dest = make_destination(team, "http://127.0.0.1:9", "backups")
    policy = make_policy(team, dest, None)
    channel = NotificationChannel(
        team_id=team.id, name="ops", kind="webhook", events=["backup.failed"],
        settings={"host": "hooks.example.com"},
        secret=crypto.encrypt("https://hooks.example.com/x", context=notify.SECRET_CONTEXT),
    )  # fmt: skip
    db.session.add(channel)
    database = make_database(project, "shop-db")
    db.session.add(DatabaseLink(application_id=git_app.id, database_id=database.id))
    db.session.commit()
    ids = {"p": project.id, "a": git_app.id, "d": deployment.id, "dest": dest.id,
           "pol": policy.id, "ch": channel.id, "db": database.id}  # fmt: skip
    db.session.close()
    return client, ids


PAGES = [
    "/", "/projects/new", "/projects/{p}", "/projects/{p}/edit", "/projects/{p}/apps/new",
    "/apps/{a}", "/apps/{a}/edit", "/apps/{a}/delete", "/apps/{a}/deployments",
    "/deployments/{d}", "/apps/{a}/logs", "/apps/{a}/git", "/apps/{a}/webhooks/deliveries",
    "/apps/{a}/metrics", "/backups/", "/backups/destinations/new",
    "/backups/destinations/{dest}/edit", "/backups/policies/new", "/backups/policies/{pol}/edit",
    "/notifications/", "/notifications/{ch}/edit", "/account/", "/server", "/server/admins",
    "/workers", "/account/two-factor", "/reauth?next=/", "/projects/{p}/databases/new",
    "/databases/{db}", "/databases/{db}/logs", "/databases/{db}/metrics", "/databases/{db}/delete",
]  # fmt: skip


@pytest.mark.parametrize("page", PAGES)
def test_no_element_id_appears_twice(world, page):
    client, ids = world
    response = client.get(page.format(**ids))
    assert response.status_code == 200, page
    assert duplicate_ids(response.get_data(as_text=True)) == []


def test_the_git_page_keeps_its_ids_unique_with_a_token_and_a_deploy_key(world):
    """Everything the Git page can show at once: secret, deploy key, token, host keys."""
    client, ids = world
    from app.models import Application

    row = db.session.get(Application, ids["a"])
    row.webhook_secret = crypto.encrypt("s" * 40, context="webhook_secret")
    row.webhook_token = "t" * 32
    row.deploy_key_public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB slipway"
    row.deploy_key_private = crypto.encrypt("private", context="deploy_key")
    row.git_known_hosts = "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC"
    row.git_token = crypto.encrypt("token", context="git_token")
    row.git_token_user = "oauth2"
    row.deploy_tags = "v*"
    db.session.commit()
    db.session.close()
    response = client.get(f"/apps/{ids['a']}/git")
    assert response.status_code == 200
    assert duplicate_ids(response.get_data(as_text=True)) == []
