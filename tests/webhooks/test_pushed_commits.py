"""What the worker does with a pushed commit, against a real git server and without
Docker: the repositories here have no Dockerfile, so the pipeline stops right after
the clone step, which is the part under test."""

from __future__ import annotations

import pytest

from app import deploys, pipeline, webhooks
from app.extensions import db
from app.models import Deployment
from tests import lab
from tests.conftest import make_app, make_project, make_team
from tests.webhooks import payloads, servers

MESSAGE = "Fix the header\n\nThe logo overflowed on narrow screens; cap its width."


@pytest.fixture
def git_server(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "GIT_ALLOWED_HOSTS", ("127.0.0.1",))
    monkeypatch.setitem(app.config, "BUILDS_DIR", str(tmp_path / "builds"))
    server = lab.GitServer(tmp_path)
    yield server
    server.stop()


def _clone_step(deployment_id: int) -> Deployment:
    """Run the pipeline; it fails for want of a Dockerfile once the clone is done."""
    assert pipeline.run(deployment_id) == "failed"
    db.session.expire_all()
    dep = db.session.get(Deployment, deployment_id)
    assert dep.error == "no Dockerfile at Dockerfile", dep.error
    return dep


def test_a_webhook_deployment_keeps_the_payloads_message_and_author(app, client, git_server):
    """git only knows the subject line and its own author name; the payload's full
    message and author stay on the deployment."""
    _, work = servers.bare_repo(git_server.root, "site")
    sha = servers.commit(work, {"README": "hello\n"}, MESSAGE)  # git's author: "Ada"
    row = make_app(make_project(make_team()), git_url=f"{git_server.url}/site.git",
                   auto_deploy=True)  # fmt: skip
    secret = webhooks.rotate_secret(row)
    db.session.commit()
    push = payloads.gitea_push(row.git_url, "refs/heads/main", sha, MESSAGE)
    body, headers = payloads.signed_request("gitea", secret, push)
    response = client.post(f"/webhooks/gitea/{row.webhook_token}", data=body, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    dep = _clone_step(response.json["deployment"])
    assert dep.commit_sha == sha
    assert dep.commit_message == MESSAGE
    assert dep.commit_author == "Ada Lovelace"


def test_a_manual_deployment_gets_the_commit_details_from_git(app, git_server):
    _, work = servers.bare_repo(git_server.root, "manual")
    sha = servers.commit(work, {"README": "hello\n"}, MESSAGE)
    row = make_app(make_project(make_team()), git_url=f"{git_server.url}/manual.git")
    dep = _clone_step(deploys.start_deploy(row, trigger="manual").id)
    assert (dep.commit_sha, dep.commit_message, dep.commit_author) == (
        sha, "Fix the header", "Ada")  # fmt: skip
