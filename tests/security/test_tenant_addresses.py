"""Issue 17, items 2 and 3, without the engine: team B cannot take team A's address by
choosing the same project and app names, no route is written for a host another app
owns, and an image app cannot name the images Slipway builds."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import names
from app.deploys import routing
from app.extensions import db
from app.models import Application, Domain, Role
from app.projects import catalog
from tests.conftest import csrf_token
from tests.factories import make_app, make_project, make_team, make_user, team_of

FORM = {
    "name": "web",
    "description": "",
    "source_type": "git",
    "git_url": "https://git.example.com/b/web.git",
    "git_branch": "main",
    "build_context": ".",
    "dockerfile_path": "Dockerfile",
    "container_port": "8000",
    "replicas": "1",
    "health_check_path": "/",
}


@pytest.fixture
def victim(app):
    """Team A's app ``web`` in project ``shop``: web.shop.<base>."""
    return make_app(make_project(make_team("alpha"), "shop"), "web")


@pytest.fixture
def team_b(client, auth, app):
    user = make_user(role=Role.owner)
    assert auth.login(user).status_code == 303
    return client, team_of(user)


def _create(client, project, **changes):
    form = FORM | {"csrf_token": csrf_token(client, "/"), "environment_id": str(
        project.environments[0].id)} | changes  # fmt: skip
    return client.post(f"/projects/{project.id}/apps/new", data=form)


def test_the_same_names_in_another_team_do_not_get_the_same_address(victim, team_b):
    client, team = team_b
    shop = make_project(team, "shop")  # project names are per team: allowed
    response = _create(client, shop)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "web.shop.localhost is already used by another app" in body
    assert db.session.scalar(select(func.count(Application.id))) == 1
    # Another name in the same project is fine.
    assert _create(client, shop, name="site").status_code == 303


def test_renaming_into_another_teams_address_is_refused(victim, team_b):
    client, team = team_b
    mine = make_project(team, "mine")
    assert _create(client, mine).status_code == 303  # web.mine: free
    response = client.post(
        f"/projects/{mine.id}/edit",
        data={"csrf_token": csrf_token(client, "/"), "name": "shop", "description": ""},
    )
    assert response.status_code == 422
    assert "web.shop.localhost is already used" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(type(mine), mine.id).name == "mine"
    ours = db.session.scalar(select(Application).where(Application.project_id == mine.id))
    assert ours.address == "web.mine"
    # An app renamed onto the address: refused the same way.
    blog = make_project(team, "shop2")
    make_app(blog, "web")
    with pytest.raises(catalog.AddressTaken):
        catalog.update_project(blog, "shop", "")


def test_the_domain_function_refuses_a_taken_address_whatever_the_view(victim, app):
    other = make_project(make_team("bravo"), "shop")
    with pytest.raises(catalog.AddressTaken):
        catalog.create_app(
            other, {**{f: None for f in catalog.APP_FIELDS}, **_values(other), "name": "web"}
        )
    assert db.session.scalar(select(func.count(Application.id))) == 1


def _values(project) -> dict:
    return {
        "name": "web", "description": "", "environment_id": project.environments[0].id,
        "source_type": "git", "git_url": "https://git.example.com/b/web.git",
        "git_branch": "main", "build_context": ".", "dockerfile_path": "Dockerfile",
        "image": None, "container_port": 8000, "replicas": 1, "health_check_path": "/",
        "cpu_limit": None, "memory_limit_mb": None, "auto_deploy": False,
        "watch_seconds": None,
    }  # fmt: skip


def test_the_database_refuses_a_second_app_on_one_address(victim, app):
    """A race both checks lose still cannot give two apps one address."""
    other = make_project(make_team("bravo"), "shop")
    with pytest.raises(IntegrityError):
        make_app(other, "web")
    db.session.rollback()


def test_no_route_is_written_for_a_host_another_app_owns(victim, app):
    thief = make_app(make_project(make_team("bravo"), "store"), "web")
    db.session.add(
        Domain(application_id=thief.id, team_id=thief.project.team_id, host="web.shop.localhost")
    )
    db.session.add(
        Domain(application_id=thief.id, team_id=thief.project.team_id, host="shop.example.com")
    )
    db.session.commit()
    assert routing.hosts(thief) == ["web.store.localhost", "shop.example.com"]
    assert routing.hosts(victim) == ["web.shop.localhost"]


def test_an_app_keeps_the_distinct_address_the_migration_gave_it(victim, app):
    """A duplicate from before got ``web-a<id>.shop``: editing it without a new name does
    not try to take ``web.shop`` back."""
    legacy = make_app(make_project(make_team("bravo"), "shop"), "web", address="web-a999.shop")
    assert catalog.default_address(legacy, "localhost") == "web-a999.shop.localhost"
    assert catalog.taken_address_for("web", legacy.project, legacy.id) is None
    catalog.update_app(legacy, _values(legacy.project) | {"description": "edited"})
    assert legacy.address == "web-a999.shop"
    catalog.update_app(legacy, _values(legacy.project) | {"name": "www"})  # a new name: moves
    assert legacy.address == "www.shop"
    with pytest.raises(catalog.AddressTaken):  # and back onto team A's: refused
        catalog.update_app(legacy, _values(legacy.project) | {"name": "web"})
    db.session.expire_all()
    assert db.session.get(Application, legacy.id).address == "www.shop"


@pytest.mark.parametrize(
    "image",
    [
        "slipway/app-1:d1",
        "slipway/0123456789ab/app-7:d42",
        "docker.io/slipway/app-1:d1",
        "index.docker.io/slipway/0123456789ab/app-7:d42",
        "0123456789ab",
        "sha256:" + "a" * 64,
        "a" * 64,
    ],
)
def test_an_image_app_cannot_name_slipways_builds_or_an_image_id(image, team_b):
    client, team = team_b
    with pytest.raises(names.InvalidValue):
        names.image(image)
    project = make_project(team, "imgs")
    response = _create(client, project, source_type="image", image=image, git_url="")
    assert response.status_code == 422
    assert db.session.scalar(select(func.count(Application.id))) == 0


@pytest.mark.parametrize("image", ["nginx:1.27", "ghcr.io/slipway/tool:1", "library/redis"])
def test_other_images_stay_allowed(image):
    assert names.image(image) == image
