"""Submodules and Git LFS objects of a git app, fetched under the main clone's rules,
against the real git server (smart HTTP and the LFS batch API on loopback)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import lab
from tests.deploys.conftest import _deploy, _log, _names, _through_traefik, _web_app

BIG = "".join(f"line {n} of a file kept in Git LFS\n" for n in range(200))


def _sub(infra, files: dict[str, str]) -> lab.Repo:
    sub = lab.Repo(infra["git"], f"lib{next(_names)}", infra["root"] / "work")
    sub.commit(files, "library")
    return sub


def test_submodule_on_the_same_server_is_in_the_image(app, infra, repo):
    inner = _sub(infra, {"inner.html": "from the nested submodule\n"})
    sub = lab.Repo(infra["git"], f"lib{next(_names)}", infra["root"] / "work")
    sub.track_lfs("*.dat")  # a submodule's LFS objects come from the submodule's host
    sub.commit({"index.html": "from the submodule\n", "blob.dat": BIG}, "library")
    sub.add_submodule(inner, "deeper", "nested", url=f"../{inner.bare.name}")
    repo.commit(lab.web_files("v1"), "v1")
    # Relative, as most .gitmodules are: resolved against the app's URL.
    repo.add_submodule(sub, "www/lib", "add the library", url=f"../{sub.bare.name}")
    deployment = _deploy(_web_app(repo))
    assert deployment.status == "running", deployment.error
    assert _through_traefik(infra, deployment.application, "/lib/index.html").text == (
        "from the submodule\n"
    )
    nested = _through_traefik(infra, deployment.application, "/lib/deeper/inner.html")
    assert nested.text == "from the nested submodule\n"
    assert _through_traefik(infra, deployment.application, "/lib/blob.dat").text == BIG
    assert f"submodule www/lib: {sub.url} at www/lib" in _log(deployment.id)


@pytest.mark.parametrize("kind", ["file", "internal host", "ext"])
def test_refused_submodule_url_fails_the_deploy_and_connects_nowhere(app, infra, repo, kind):
    sub = _sub(infra, {"index.html": "must not be fetched\n"})
    url = {
        "file": f"file://{sub.bare}",
        # The same server under a name the allow-list does not hold.
        "internal host": f"http://localhost:{infra['git'].port}/{sub.bare.name}",
        "ext": "ext::sh -c touch% /tmp/pwned",
    }[kind]
    repo.commit(lab.web_files("v1"), "v1")
    repo.add_submodule(sub, "www/lib", "add the library", url=url)
    infra["git"].requests.clear()
    deployment = _deploy(_web_app(repo))
    assert deployment.status == "failed"
    assert f"submodule www/lib ({url}) is refused" in deployment.error
    assert not [path for path in infra["git"].requests if sub.bare.name in path]
    assert not (
        Path(infra["config"]["BUILDS_DIR"]).exists()
        and list(Path(infra["config"]["BUILDS_DIR"]).rglob("www/lib/index.html"))
    )


def test_with_submodules_turned_off_the_build_log_says_so(app, infra, repo):
    sub = _sub(infra, {"index.html": "not cloned\n"})
    repo.commit(lab.web_files("v1"), "v1")
    # A URL that would be refused: nothing of .gitmodules is looked at.
    repo.add_submodule(sub, "www/lib", "add the library", url=f"file://{sub.bare}")
    deployment = _deploy(_web_app(repo, git_submodules=False))
    assert deployment.status == "running", deployment.error
    log = _log(deployment.id)
    assert "submodules are turned off for this app: .gitmodules was not followed" in log
    assert _through_traefik(infra, deployment.application, "/lib/index.html").status_code == 404


def _lfs_repo(repo, extra: dict[str, str] | None = None) -> None:
    repo.track_lfs("*.dat")
    repo.commit(lab.web_files("v1") | {"www/big.dat": BIG} | (extra or {}), "v1 with LFS")
    pointer = (repo.bare / "lfs" / "objects").rglob("*")
    assert any(p.is_file() for p in pointer), "the push did not store the LFS object"


def test_lfs_object_content_is_in_the_image(app, infra, repo):
    # A .lfsconfig naming another endpoint is not followed: the app's host is asked.
    other = f"http://localhost:{infra['git'].port}/elsewhere.git/info/lfs"
    _lfs_repo(repo, {".lfsconfig": f"[lfs]\n\turl = {other}\n"})
    infra["git"].requests.clear()
    deployment = _deploy(_web_app(repo))
    assert deployment.status == "running", deployment.error
    served = _through_traefik(infra, deployment.application, "/big.dat")
    assert served.text == BIG
    assert (
        "fetching 1 Git LFS object (filter=lfs in .gitattributes) from "
        f"{repo.url}/info/lfs" in _log(deployment.id)
    )
    assert not [path for path in infra["git"].requests if "elsewhere" in path]


@pytest.fixture
def hostile_lfs(infra):
    yield infra["git"]
    infra["git"].lfs_href_base = infra["git"].lfs_redirect = None


@pytest.mark.parametrize("answer", ["internal href", "plain http href", "redirect"])
def test_lfs_hrefs_and_redirects_pass_the_outbound_rules(app, infra, repo, hostile_lfs, answer):
    port = infra["git"].port
    if answer == "internal href":  # the same server, under a name that is not allow-listed
        hostile_lfs.lfs_href_base = f"https://localhost:{port}"
    elif answer == "plain http href":
        hostile_lfs.lfs_href_base = f"http://localhost:{port}"
    else:
        hostile_lfs.lfs_redirect = f"http://localhost:{port}/elsewhere.git/info/lfs/objects/x"
    _lfs_repo(repo)
    hostile_lfs.requests.clear()
    deployment = _deploy(_web_app(repo))
    assert deployment.status == "failed"
    message = {
        "internal href": "LFS: localhost resolves to an internal address",
        "plain http href": "LFS URL refused: only https:// is accepted for localhost",
        "redirect": "answered an LFS request with a redirect, which Slipway does not follow",
    }[answer]
    assert message in deployment.error
    downloads = [p for p in hostile_lfs.requests if "/info/lfs/objects/" in p and "batch" not in p]
    assert len(downloads) == (1 if answer == "redirect" else 0)  # and the redirect not followed
    assert not [path for path in hostile_lfs.requests if "elsewhere" in path]


def test_without_git_lfs_the_build_log_warns_and_pointers_are_deployed(
    app, infra, repo, tmp_path, monkeypatch
):
    _lfs_repo(repo)
    hidden = tmp_path / "bin"  # git, but no git-lfs, on PATH
    hidden.mkdir()
    (hidden / "git").symlink_to(shutil.which("git"))
    monkeypatch.setenv("PATH", str(hidden))
    assert shutil.which("git-lfs", path=os.environ["PATH"]) is None
    deployment = _deploy(_web_app(repo))
    assert deployment.status == "running", deployment.error
    log = _log(deployment.id)
    assert (
        "this repository uses Git LFS (filter=lfs in .gitattributes), but git-lfs is not "
        "installed: the files are deployed as pointer files" in log
    )
    served = _through_traefik(infra, deployment.application, "/big.dat")
    assert served.text.startswith("version https://git-lfs.github.com/spec/v1\n")
