"""Issue 17, items 1, 2 and 4, against the real engine and Traefik: a rollback runs the
image its deployment built, not whatever now carries the tag; an image app cannot run
an image Slipway built for another app; a container of one project cannot reach
another project's containers."""

from __future__ import annotations

import io
import tarfile
import uuid

import docker
from sqlalchemy import select

from app import jobs
from app.deploys import control
from app.extensions import db
from app.models import Deployment, Installation
from app.projects import catalog
from tests import lab
from tests.deploys.conftest import (  # noqa: F401 - fixtures
    _deploy,
    _through_traefik,
    _web_app,
    app,
    infra,
    repo,
)
from tests.factories import make_app, make_project, make_team


def _impostor(tag: str, app_id: int, deployment_id: int, text: str) -> str:
    """Another installation's build of an app with the same ids, tagged ``tag``: what a
    build of a second Slipway on this engine did before tags carried the installation."""
    client = docker.from_env()
    files = lab.web_files(text)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.seek(0)
    labels = {"slipway.app": str(app_id), "slipway.deployment": str(deployment_id),
              "slipway.installation": uuid.uuid4().hex[:12]}  # fmt: skip
    image, _ = client.images.build(fileobj=archive, custom_context=True, tag=tag, labels=labels)
    client.close()
    return image.id


def _run(deployment: Deployment) -> Deployment:
    jobs.run_deployment(deployment.id)
    db.session.expire_all()
    return db.session.get(Deployment, deployment.id)


def _remove_image(image_id: str) -> None:
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"ancestor": image_id}):
        container.remove(force=True)
    try:
        client.images.remove(image_id, force=True)
    except docker.errors.NotFound:
        pass
    client.close()


def test_a_rollback_runs_the_image_its_deployment_built_not_the_tag(app, infra, repo):  # noqa: F811 - the deploy fixtures
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    first = _deploy(app_row)
    assert first.status == "running", first.error
    assert first.image_id and first.image_id.startswith("sha256:")
    repo.commit(lab.web_files("v2"), "v2")
    assert _deploy(app_row).status == "running"
    # Another installation's build takes the tag of the first deployment.
    impostor = _impostor(first.image_tag, app_row.id, first.id, "impostor")
    try:
        rolled = _run(control.rollback(first))
        assert rolled.status == "running", rolled.error
        assert rolled.image_id == first.image_id
        assert _through_traefik(infra, app_row).text == "hello from v1\n"

        # A row from before ids were recorded: the tag's image is checked, and refused.
        first.image_id = None
        db.session.commit()
        again = _run(control.rollback(first))
        assert again.status == "failed"
        assert "not this app's build" in again.error
        assert _through_traefik(infra, app_row).text == "hello from v1\n"
    finally:
        _remove_image(impostor)


def test_an_image_app_cannot_run_another_apps_build(app, infra, repo):  # noqa: F811 - the deploy fixtures
    repo.commit(lab.web_files("private build of team A"), "v1")
    victim = _web_app(repo)
    built = _deploy(victim)
    assert built.status == "running", built.error
    # Team B names A's build under a name of its own (a tag on the shared engine).
    alias = f"innocent-looking/site:{uuid.uuid4().hex[:8]}"
    client = docker.from_env()
    client.images.get(built.image_id).tag(alias)
    client.close()
    try:
        project = make_project(make_team(), f"b{uuid.uuid4().hex[:8]}")
        thief = make_app(project, "web", source_type="image", image=alias, git_url=None,
                         git_branch=None, container_port=8000)  # fmt: skip
        deployment = _deploy(thief)
        assert deployment.status == "failed"
        assert "built by Slipway for another app" in deployment.error
        assert _through_traefik(infra, thief).status_code == 404
    finally:
        docker.from_env().images.remove(alias)


def _address_of(container_name: str, network: str) -> str:
    client = docker.from_env()
    container = client.containers.get(container_name)
    address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    client.close()
    return address


def _can_reach(from_container: str, address: str) -> bool:
    """Whether an HTTP request from inside ``from_container`` gets an answer (busybox nc:
    its wget crashes in the static build)."""
    client = docker.from_env()
    container = client.containers.get(from_container)
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {address} 8000"
    result = container.exec_run(["/bin/busybox", "sh", "-c", request])
    client.close()
    return b"HTTP/1" in result.output


def test_a_container_cannot_reach_another_projects_containers(app, infra, repo):  # noqa: F811 - the deploy fixtures
    repo.commit(lab.web_files("team A's private service"), "v1")
    a_web = _web_app(repo)
    a_api = make_app(a_web.project, "api", git_url=repo.url, git_branch="main",
                     container_port=8000, health_check_path="/")  # fmt: skip
    b_web = _web_app(repo)
    for row in (a_web, a_api, b_web):
        deployment = _deploy(row)
        assert deployment.status == "running", deployment.error
    installation_id = db.session.scalar(select(Installation.installation_id))
    client = docker.from_env()
    names = {}
    for row in (a_web, a_api, b_web):
        found = client.containers.list(
            filters={
                "label": [f"slipway.app={row.id}", f"slipway.installation={installation_id}"]
            }  # fmt: skip
        )
        assert len(found) == 1
        names[row.id] = found[0].name
        assert list(found[0].attrs["NetworkSettings"]["Networks"]) == [
            f"slipway-{installation_id}-p{row.project_id}"
        ]
    client.close()
    a_network = f"slipway-{installation_id}-p{a_web.project_id}"
    a_address = _address_of(names[a_web.id], a_network)

    assert _can_reach(names[a_api.id], a_address)  # the same project: reachable
    assert not _can_reach(names[b_web.id], a_address)  # another project's: not
    # Traefik (on the host) still reaches every project's apps.
    assert _through_traefik(infra, a_web).text == "hello from team A's private service\n"
    assert _through_traefik(infra, b_web).status_code == 200


def test_a_deleted_projects_network_goes_with_its_last_app(app, infra, repo):  # noqa: F811 - the deploy fixtures
    repo.commit(lab.web_files("v1"), "v1")
    row = _web_app(repo)
    assert _deploy(row).status == "running"
    installation_id = db.session.scalar(select(Installation.installation_id))
    network = f"slipway-{installation_id}-p{row.project_id}"
    client = docker.from_env()
    assert client.networks.list(names=[network])
    app_id = row.id
    catalog.delete_project(row.project)
    jobs.remove_app_resources(app_id)
    assert not client.networks.list(names=[network])
    client.close()
