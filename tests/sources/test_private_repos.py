"""Private repositories: a deploy key against a real sshd on loopback, an HTTPS token
against a smart-HTTP server that wants it, the pushed commit checked out."""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, Role
from app.sources import credentials, gitsrc
from tests.conftest import csrf_token
from tests.factories import make_app, make_project, make_team, make_user
from tests.sources import servers

LOOPBACK = ("127.0.0.1",)


@pytest.fixture
def ssh_lab(app, tmp_path):
    """An app with a deploy key, and an sshd that serves its repository to that key only."""
    row = make_app(make_project(make_team()))
    public = credentials.generate_deploy_key(row)
    db.session.commit()
    bare, work = servers.bare_repo(tmp_path / "repos", "private")
    head = servers.commit(work, {"README": "secret sauce\n"}, "First")
    sshd = servers.Sshd(tmp_path / "sshd", bare, public)
    row.git_url, row.git_branch = sshd.url(bare), "main"
    db.session.commit()
    yield {"app": row, "sshd": sshd, "bare": bare, "work": work, "head": head}
    sshd.stop()


def test_deploy_key_clones_and_pins_the_host_key(ssh_lab, tmp_path):
    row, sshd = ssh_lab["app"], ssh_lab["sshd"]
    commit = credentials.clone_for(row, "main", None, tmp_path / "out", allowed_hosts=LOOPBACK)
    assert commit.sha == ssh_lab["head"]
    assert (tmp_path / "out" / "README").read_text() == "secret sauce\n"
    [key] = credentials.host_keys(row)
    assert key.host == f"[127.0.0.1]:{sshd.port}" and key.key_type == "ssh-ed25519"
    assert key.fingerprint == sshd.fingerprint()
    assert db.session.scalar(select(AuditEvent.action).where(
        AuditEvent.action == "git_host_key.pinned")) is not None  # fmt: skip
    again = credentials.clone_for(row, "main", None, tmp_path / "again", allowed_hosts=LOOPBACK)
    assert again.sha == commit.sha


def test_the_git_settings_page_shows_the_fingerprint_pinned_by_the_first_clone(
    ssh_lab, tmp_path, client, auth
):
    """The SHA256 fingerprint ssh-keygen prints for the sshd's host key, on the page."""
    row, sshd = ssh_lab["app"], ssh_lab["sshd"]
    auth.login(make_user(row.project.team, Role.developer))
    before = client.get(f"/apps/{row.id}/git").get_data(as_text=True)
    assert "None pinned yet" in before and "SHA256:" not in before
    credentials.clone_for(row, "main", None, tmp_path / "out", allowed_hosts=LOOPBACK)
    page = client.get(f"/apps/{row.id}/git")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    fingerprint = sshd.fingerprint()
    assert fingerprint.startswith("SHA256:")
    assert (f"<li><code>[127.0.0.1]:{sshd.port}</code> ssh-ed25519 <code>{fingerprint}</code>"
            "</li>") in html  # fmt: skip
    assert "Forget pinned host key" in html and "None pinned yet" not in html
    token = csrf_token(client, f"/apps/{row.id}/git")
    forget = client.post(f"/apps/{row.id}/git/host-key/forget", data={"csrf_token": token})
    assert forget.status_code == 303
    assert fingerprint not in client.get(f"/apps/{row.id}/git").get_data(as_text=True)


def test_only_the_apps_deploy_key_can_read(ssh_lab, tmp_path):
    row = ssh_lab["app"]
    with pytest.raises(gitsrc.GitError):
        gitsrc.clone(row.git_url, "main", tmp_path / "nokey", allowed_hosts=LOOPBACK)
    other = make_app(make_project(make_team()), git_url=row.git_url)
    credentials.generate_deploy_key(other)
    db.session.commit()
    with pytest.raises(gitsrc.GitError):
        credentials.clone_for(other, "main", None, tmp_path / "otherkey", allowed_hosts=LOOPBACK)


def test_a_changed_host_key_fails_with_a_clear_error(ssh_lab, tmp_path):
    row, sshd = ssh_lab["app"], ssh_lab["sshd"]
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    key_type, blob = impostor.with_suffix(".pub").read_text().split()[:2]
    row.git_known_hosts = f"[127.0.0.1]:{sshd.port} {key_type} {blob}\n"
    db.session.commit()
    with pytest.raises(gitsrc.GitError, match="does not match the pinned"):
        credentials.clone_for(row, "main", None, tmp_path / "out", allowed_hosts=LOOPBACK)
    assert row.git_known_hosts.split()[2] == blob  # still pinned to what it was


def test_the_private_key_is_never_in_argv_or_output(ssh_lab, tmp_path, monkeypatch):
    row = ssh_lab["app"]
    private = credentials.git_credentials(row).ssh_private_key
    seen_argv, lines = [], []
    real_popen = subprocess.Popen

    def spy(argv, *args, **kwargs):
        seen_argv.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(gitsrc.subprocess, "Popen", spy)
    credentials.clone_for(row, "main", None, tmp_path / "out", allowed_hosts=LOOPBACK,
                    on_line=lines.append)  # fmt: skip
    body = private.splitlines()[1]
    assert seen_argv and all(body not in " ".join(a) for a in seen_argv)
    assert all(body not in line for line in lines)


@pytest.fixture
def token_server(tmp_path):
    server = servers.TokenGitServer(tmp_path / "srv", "oauth2", "glpat-CANARY-abc123")
    (tmp_path / "srv").mkdir(exist_ok=True)
    yield server
    server.stop()


def test_https_token_reaches_the_server_and_nothing_else(app, token_server, tmp_path, monkeypatch):
    token = "glpat-CANARY-abc123"
    bare, work = servers.bare_repo(token_server.root, "tokenrepo")
    head = servers.commit(work, {"a.txt": "1"}, "one")
    url = f"{token_server.url}/tokenrepo.git"
    with pytest.raises(gitsrc.GitError) as refused:
        gitsrc.clone(url, "main", tmp_path / "anon", allowed_hosts=LOOPBACK)
    assert token not in str(refused.value)

    row = make_app(make_project(make_team()), git_url=url)
    credentials.set_token(row, token, "oauth2")
    db.session.commit()
    seen, lines = [], []
    real_popen = subprocess.Popen

    def spy(argv, *args, **kwargs):
        seen.append((list(argv), dict(kwargs.get("env") or {})))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(gitsrc.subprocess, "Popen", spy)
    commit = credentials.clone_for(row, "main", None, tmp_path / "out", allowed_hosts=LOOPBACK,
                             on_line=lines.append)  # fmt: skip
    assert commit.sha == head
    assert any(a.startswith("Basic ") and a == token_server.expected
               for a in token_server.seen_authorization)  # fmt: skip
    for argv, env in seen:
        assert token not in " ".join(argv)
        assert token not in env.get("GIT_ASKPASS", "") and token not in url
    assert all(token not in line for line in lines)

    credentials.set_token(row, "wrong-token", "oauth2")
    db.session.commit()
    with pytest.raises(gitsrc.GitError) as wrong:
        credentials.clone_for(row, "main", None, tmp_path / "wrong", allowed_hosts=LOOPBACK)
    assert "wrong-token" not in str(wrong.value)


def test_a_token_in_git_output_is_redacted():
    creds = gitsrc.Credentials(token="s3cr3t-token")
    assert creds.redact("fatal: could not read s3cr3t-token") == "fatal: could not read ••••"


def test_webhook_commit_is_checked_out_only_if_on_the_branch(app, tmp_path):
    from tests import lab

    server = lab.GitServer(tmp_path)
    try:
        bare, work = servers.bare_repo(tmp_path, "shas")
        first = servers.commit(work, {"v": "1"}, "one")
        servers.commit(work, {"v": "2"}, "two")
        url = f"{server.url}/shas.git"
        older = gitsrc.clone(url, "main", tmp_path / "a", allowed_hosts=LOOPBACK, commit=first)
        assert older.sha == first and (tmp_path / "a" / "v").read_text() == "1"
        side = servers.commit(work, {"v": "side"}, "side", branch="feature")
        with pytest.raises(gitsrc.GitError, match="is not on main"):
            gitsrc.clone(url, "main", tmp_path / "b", allowed_hosts=LOOPBACK, commit=side)
        with pytest.raises(gitsrc.GitError):
            gitsrc.clone(
                url, "main", tmp_path / "c", allowed_hosts=LOOPBACK, commit="--upload-pack=x"
            )
    finally:
        server.stop()


def test_the_token_reaches_submodules_and_lfs_on_the_apps_host_only(app, token_server, tmp_path):
    """Same host: the submodule and the LFS object are fetched with the app's token.
    Another host (the same server under another name): the token is never offered, and
    the deploy fails naming the submodule."""
    token, port = "glpat-CANARY-abc123", token_server.port
    sub_bare, sub_work = servers.bare_repo(token_server.root, "library")
    servers.commit(sub_work, {"lib.txt": "from the library\n"}, "library")
    bare, work = servers.bare_repo(token_server.root, "tokenrepo")
    subprocess.run(["git", "lfs", "install", "--local"], cwd=work, check=True)
    subprocess.run(["git", "config", "lfs.url", f"file://{bare}"], cwd=work, check=True)
    subprocess.run(["git", "lfs", "track", "*.dat"], cwd=work, check=True, capture_output=True)
    subprocess.run(["git", "-c", "protocol.file.allow=always", "submodule", "add", "-q", "--",
                    str(sub_bare), "lib"], cwd=work, check=True)  # fmt: skip
    subprocess.run(["git", "config", "-f", ".gitmodules", "submodule.lib.url", "../library.git"],
                   cwd=work, check=True)  # fmt: skip
    servers.commit(work, {"big.dat": "large content\n" * 50}, "with a submodule and LFS")
    row = make_app(make_project(make_team()), git_url=f"{token_server.url}/tokenrepo.git")
    credentials.set_token(row, token, "oauth2")
    db.session.commit()
    both = ("127.0.0.1", "localhost")

    credentials.clone_for(row, "main", None, tmp_path / "out", allowed_hosts=both)
    assert (tmp_path / "out" / "lib" / "lib.txt").read_text() == "from the library\n"
    assert (tmp_path / "out" / "big.dat").read_text() == "large content\n" * 50
    authorized = {path for _, path, auth in token_server.seen if auth == token_server.expected}
    assert any(path.startswith("/library.git/") for path in authorized)
    assert any("/info/lfs/objects/" in path and "batch" not in path for path in authorized)

    subprocess.run(["git", "config", "-f", ".gitmodules", "submodule.lib.url",
                    f"http://localhost:{port}/library.git"], cwd=work, check=True)  # fmt: skip
    servers.commit(work, {}, "the submodule on another host")
    token_server.seen.clear()
    with pytest.raises(gitsrc.GitError) as failed:
        credentials.clone_for(row, "main", None, tmp_path / "other", allowed_hosts=both)
    assert f"submodule lib (http://localhost:{port}/library.git) could not be fetched" in str(
        failed.value
    )
    assert any(host.startswith("localhost:") for host, _, _ in token_server.seen)
    assert all(auth == "" for host, _, auth in token_server.seen if host.startswith("localhost:"))
