"""Image apps pull on every deploy and record the digest they ran, against a local
registry (docker-registry on loopback), the real engine and Traefik."""

from __future__ import annotations

import re

import docker
import pytest

from tests import lab
from tests.deploys.conftest import _deploy, _log, _names, _through_traefik
from tests.factories import make_app, make_project, make_team
from tests.registry import Registry, push

NAME = "shop/web"


@pytest.fixture
def registry(app, tmp_path):
    """A registry for one test, and the engine; what the test built or pulled goes at the
    end (containers first: a replica still runs the image)."""
    client = docker.from_env()
    built: list[str] = []
    with Registry(tmp_path / "registry") as reg:
        yield reg, client, built
    try:
        for image_id in built:
            for container in client.containers.list(all=True, filters={"ancestor": image_id}):
                container.remove(force=True)
        for image_id in built:
            try:
                client.images.remove(image_id, force=True)
            except docker.errors.NotFound:
                pass
    finally:
        client.close()


def _build(client, built: list[str], folder, version: str, tag: str) -> str:
    """Build the busybox site saying ``version`` as ``tag``; return its image id.

    Without the build cache: another run's build of the same site would give its own
    layers, and the cleanup (by ancestor) would then reach that run's containers."""
    for name, text in lab.web_files(version).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    image = client.images.build(path=str(folder), tag=tag, rm=True, nocache=True,
                                labels={"slipway-test": "image-pull"})[0]  # fmt: skip
    built.append(image.id)
    return image.id


def _image_app(ref: str):
    project = make_project(make_team(), f"reg{next(_names)}")
    return make_app(project, "web", source_type="image", image=ref, git_url=None,
                    git_branch=None, container_port=8000, health_check_path="/")  # fmt: skip


def test_a_tag_moved_between_deploys_is_pulled(app, infra, registry, tmp_path):
    reg, client, built = registry
    ref, repository = reg.ref(NAME), f"{reg.host}/{NAME}"
    v1 = _build(client, built, tmp_path / "v1", "v1", ref)
    push(client, ref)
    app_row = _image_app(ref)

    first = _deploy(app_row)
    assert first.status == "running", first.error
    assert _through_traefik(infra, app_row).text == "hello from v1\n"
    assert re.fullmatch(rf"{re.escape(repository)}@sha256:[0-9a-f]{{64}}", first.image_digest)
    assert first.image_digest == f"{repository}@{reg.digest(NAME)}"
    assert (first.image_tag, first.image_id) == (ref, v1)

    # The tag moves in the registry; the engine still has v1 under that name.
    v2 = _build(client, built, tmp_path / "v2", "v2", ref)
    push(client, ref)
    client.api.tag(v1, repository, "latest")
    assert client.images.get(ref).id == v1

    second = _deploy(app_row)
    assert second.status == "running", second.error
    assert _through_traefik(infra, app_row).text == "hello from v2\n"
    assert second.image_id == v2 and client.images.get(ref).id == v2
    assert second.image_digest != first.image_digest
    assert second.image_digest == f"{repository}@{reg.digest(NAME)}"
    log = _log(second.id)
    assert f"pulling {ref}" in log and f"digest {second.image_digest}" in log
    assert "could not pull" not in log


def test_a_registry_that_is_down_deploys_the_image_the_engine_has(app, infra, registry, tmp_path):
    reg, client, built = registry
    ref = reg.ref(NAME)
    v1 = _build(client, built, tmp_path / "v1", "v1", ref)
    push(client, ref)
    app_row = _image_app(ref)
    first = _deploy(app_row)
    assert first.status == "running", first.error
    assert "could not pull" not in _log(first.id)

    reg.stop()
    second = _deploy(app_row)
    assert second.status == "running", second.error
    assert _through_traefik(infra, app_row).text == "hello from v1\n"
    assert second.image_id == v1
    log = _log(second.id)
    line = next(line for line in log.splitlines() if "could not pull" in line)
    assert line.startswith(f"could not pull {ref} (")
    assert line.endswith("); deploying the image the engine has under that name")
    # What ran is the image v1 was pushed as: the engine still knows its digest.
    assert second.image_digest == first.image_digest
