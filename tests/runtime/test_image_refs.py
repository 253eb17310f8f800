"""Image references as the engine lists them: the digest an image app records."""

from __future__ import annotations

import pytest

from app.runtime.images import _repo_digest, _split_ref

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("ref", "listed"),
    [
        ("nginx:1.27", "nginx"),
        ("docker.io/library/nginx:1.27", "nginx"),
        ("index.docker.io/library/nginx", "nginx"),
        ("library/nginx:latest", "nginx"),
        ("docker.io/someone/app:v1", "someone/app"),
        ("someone/app", "someone/app"),
        ("docker.io/library/a/b:v1", "library/a/b"),
        ("ghcr.io/owner/app:v1", "ghcr.io/owner/app"),
        ("127.0.0.1:5000/shop/web:latest", "127.0.0.1:5000/shop/web"),
        ("localhost/library/web", "localhost/library/web"),
    ],
)
def test_the_digest_is_found_under_the_name_the_engine_lists(ref, listed):
    """The engine lists Docker Hub names short (``docker.io/library/nginx`` is ``nginx``)."""
    repo, _ = _split_ref(ref)
    attrs = {"RepoDigests": ["other/app@sha256:" + "b" * 64, f"{listed}@{D}"]}
    assert _repo_digest(attrs, repo) == f"{listed}@{D}"


def test_no_digest_for_another_repository_or_an_unpushed_image():
    assert _repo_digest({"RepoDigests": [f"someone/nginx@{D}"]}, "nginx") is None
    assert _repo_digest({"RepoDigests": [f"nginx@{D}"]}, "ghcr.io/x/nginx") is None
    assert _repo_digest({"RepoDigests": None}, "nginx") is None
