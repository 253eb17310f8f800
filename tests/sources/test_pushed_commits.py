"""What the worker does with a pushed commit, against a real git server and without
Docker: the repositories here have no Dockerfile, so the pipeline stops right after
the clone step, which is the part under test."""

from __future__ import annotations

import subprocess

import pytest

from app.deploys import control, pipeline
from app.extensions import db
from app.models import Deployment
from app.sources import gitsrc, webhooks
from tests import lab
from tests.factories import make_app, make_project, make_team
from tests.sources import payloads, servers

MESSAGE = "Fix the header\n\nThe logo overflowed on narrow screens; cap its width."


@pytest.fixture
def git_server(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "OUTBOUND_ALLOWED_HOSTS", ("127.0.0.1",))
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
    dep = _clone_step(control.start_deploy(row, trigger="manual").id)
    assert (dep.commit_sha, dep.commit_message, dep.commit_author) == (
        sha, "Fix the header", "Ada")  # fmt: skip


def _git(work, *argv: str) -> str:
    who = ["-c", "user.name=Ada", "-c", "user.email=a@example.com"]
    done = subprocess.run(["git", *who, *argv], cwd=work, check=True, capture_output=True,
                          text=True)  # fmt: skip
    return done.stdout.strip()


def _tagged_repo(server, name: str, annotated: bool) -> tuple[str, str, str]:
    """A repository whose tag v1.0 marks an older commit: (url, tag's id, commit's sha)."""
    _, work = servers.bare_repo(server.root, name)
    tagged = servers.commit(work, {"v": "1"}, "one")
    if annotated:
        _git(work, "tag", "-a", "v1.0", "-m", "Release 1.0", tagged)
    else:
        _git(work, "tag", "v1.0", tagged)
    servers.commit(work, {"v": "2"}, "two")  # the branch moved on
    _git(work, "push", "-q", "origin", "v1.0")
    return f"{server.url}/{name}.git", _git(work, "rev-parse", "v1.0"), tagged


@pytest.mark.parametrize("annotated", [True, False], ids=["annotated", "lightweight"])
def test_a_pushed_tag_id_is_peeled_to_its_commit(app, git_server, tmp_path, monkeypatch, annotated):
    """For an annotated tag the payload's ``after`` is the tag object's id, not a commit:
    the clone of the tag is that tag's commit, found without a deepen fetch."""
    url, tag_id, tagged = _tagged_repo(git_server, f"tags-{annotated}", annotated)
    assert (tag_id != tagged) is annotated
    argvs = []
    real_popen = subprocess.Popen

    def spy(argv, *args, **kwargs):
        argvs.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(gitsrc.subprocess, "Popen", spy)
    dest = tmp_path / "out"
    commit = gitsrc.clone(url, "v1.0", dest, allowed_hosts=("127.0.0.1",), commit=tag_id)
    assert commit.sha == tagged and (dest / "v").read_text() == "1"
    network = [a for a in argvs if "clone" in a or "fetch" in a]
    assert len(network) == 1 and "clone" in network[0]  # no fetch of 200 more commits


def test_a_github_push_of_an_annotated_tag_deploys_the_tagged_commit(app, client, git_server):
    url, tag_id, tagged = _tagged_repo(git_server, "release", annotated=True)
    row = make_app(make_project(make_team()), git_url=url, auto_deploy=True, deploy_tags="v*")
    secret = webhooks.rotate_secret(row)
    db.session.commit()
    push = payloads.github_push(url, "refs/tags/v1.0", tag_id, "Release 1.0")
    body, headers = payloads.signed_request("github", secret, push)
    response = client.post(f"/webhooks/github/{row.webhook_token}", data=body, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    dep = _clone_step(response.json["deployment"])
    assert (dep.git_ref, dep.commit_sha) == ("v1.0", tagged)  # the commit, not the tag object
