"""A push to a real git server, a signed webhook, and the new version answering
through Traefik: the commit pushed is the commit deployed."""

from __future__ import annotations

import time

from sqlalchemy import select

from app import jobs
from app.extensions import db
from app.models import Deployment, WebhookDelivery
from app.sources import credentials, webhooks
from tests import lab
from tests.conftest import RequestScopedClient
from tests.deploys.conftest import _through_traefik
from tests.factories import make_app, make_project, make_team
from tests.sources import payloads, servers

_n = iter(range(1, 10_000))


def _hooked_app(url: str, **fields):
    project = make_project(make_team(), f"hook{next(_n)}")
    row = make_app(project, "web", git_url=url, git_branch="main", container_port=8000,
                   health_check_path="/", auto_deploy=True, **fields)  # fmt: skip
    secret = webhooks.rotate_secret(row)
    db.session.commit()
    return row, secret


def _post(flask_app, row, secret, provider, payload, delivery=None):
    flask_app.test_client_class = RequestScopedClient
    body, headers = payloads.signed_request(provider, secret, payload, delivery=delivery)
    return flask_app.test_client().post(
        f"/webhooks/{provider}/{row.webhook_token}", data=body, headers=headers
    )


def _run_queued(row) -> Deployment:
    db.session.expire_all()
    dep = db.session.scalars(
        select(Deployment).where(Deployment.application_id == row.id).order_by(Deployment.id.desc())
    ).first()
    jobs.run_deployment(dep.id)
    db.session.expire_all()
    return db.session.get(Deployment, dep.id)


def test_signed_push_deploys_the_pushed_commit_through_traefik(app, infra, repo):
    sha1 = repo.commit(lab.web_files("v1"), "First version")
    row, secret = _hooked_app(repo.url)
    push = payloads.github_push(repo.url, "refs/heads/main", sha1, "First version")
    started = time.monotonic()
    first = _post(app, row, secret, "github", push)
    # The forge gets its answer before any clone or build: the deployment is only queued.
    # GitHub gives a delivery 10 s; on a loaded 2-core CI machine the answer took up to 2 s.
    assert first.status_code == 202 and time.monotonic() - started < 10.0
    assert db.session.get(Deployment, first.json["deployment"]).status == "queued"
    dep1 = _run_queued(row)
    assert dep1.status == "running", dep1.error
    assert _through_traefik(infra, row).text == "hello from v1\n"

    sha2 = repo.commit(lab.web_files("v2"), "Second version")
    push = payloads.gitea_push(repo.url, "refs/heads/main", sha2, "Second version")
    second = _post(app, row, secret, "gitea", push)
    assert second.status_code == 202
    queued = db.session.get(Deployment, second.json["deployment"])
    assert (queued.commit_sha, queued.commit_author) == (sha2, "Ada Lovelace")  # from the payload
    dep2 = _run_queued(row)
    assert dep2.status == "running", dep2.error
    assert (dep2.trigger, dep2.commit_sha, dep2.commit_message) == (
        "webhook",
        sha2,
        "Second version",
    )
    # The payload's author is kept after the clone (git would say "Test Author").
    assert dep2.commit_author == "Ada Lovelace"
    assert _through_traefik(infra, row).text == "hello from v2\n"
    # The same delivery again: acknowledged, nothing queued.
    push = payloads.gitea_push(repo.url, "refs/heads/main", sha2)
    replay = _post(app, row, secret, "gitea", push, delivery="once")
    again = _post(app, row, secret, "gitea", push, delivery="once")
    assert replay.status_code == 202 and again.json["status"] == "duplicate"
    db.session.expire_all()
    deliveries = db.session.scalars(select(WebhookDelivery.outcome)).all()
    assert deliveries.count("deployed") == 3


def test_a_delayed_webhook_deploys_its_own_commit_not_the_branch_head(app, infra, repo):
    repo.commit(lab.web_files("v1"), "one")
    sha2 = repo.commit(lab.web_files("v2"), "two")
    repo.commit(lab.web_files("v3"), "three")  # the branch moved on before the delivery
    row, secret = _hooked_app(repo.url)
    response = _post(app, row, secret, "gitlab",
                     payloads.gitlab_push(repo.url, "refs/heads/main", sha2, "two"))  # fmt: skip
    assert response.status_code == 202
    dep = _run_queued(row)
    assert dep.status == "running", dep.error
    assert dep.commit_sha == sha2
    assert _through_traefik(infra, row).text == "hello from v2\n"


def test_private_repository_over_ssh_deploys_with_the_apps_deploy_key(app, infra, tmp_path):
    row, secret = _hooked_app("ssh://root@127.0.0.1:22/placeholder.git")
    public = credentials.generate_deploy_key(row)
    bare, work = servers.bare_repo(tmp_path / "repos", "private-site")
    sha = servers.commit(work, lab.web_files("private"), "Private site")
    sshd = servers.Sshd(tmp_path / "sshd", bare, public)
    try:
        row.git_url = sshd.url(bare)
        db.session.commit()
        response = _post(app, row, secret, "github",
                         payloads.github_push(row.git_url, "refs/heads/main", sha))  # fmt: skip
        assert response.status_code == 202
        dep = _run_queued(row)
        assert dep.status == "running", dep.error
        assert _through_traefik(infra, row).text == "hello from private\n"
        db.session.expire_all()
        assert credentials.host_keys(row)[0].fingerprint == sshd.fingerprint()
    finally:
        sshd.stop()
