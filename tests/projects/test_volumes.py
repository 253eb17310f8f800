"""Volumes of an app (app/projects/volumes.py) and its Volumes tab (app/web/volumes.py):
adding with checked mount paths, modes, the two-step delete, and the page's refusals."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app import access
from app.extensions import db
from app.models import AuditEvent, Role
from app.models.base import utcnow
from app.models.databases import Volume
from app.projects import catalog, volumes
from app.runtime import volumes as runtime_volumes
from tests.conftest import Auth, csrf_token
from tests.factories import make_app, make_project, make_team, make_user, team_of

HOSTILE = ["/", "/proc", "/proc/self", "/data/../etc", "..", "data", "/var/run/docker.sock",
           "/run/docker.sock", "/sys/fs", "/etc", "/dev/sda", "/x;rm -rf /", "/$(id)",
           "/var/lib/docker/volumes", "//", "/usr/bin"]  # fmt: skip


@pytest.fixture
def shop(app):
    return make_app(make_project(make_team(), "shop"), "web")


def test_add_names_the_volume_after_its_row_and_owner(shop):
    volume = volumes.add(shop, label="data", mount_path="/data/")
    assert volume.mount_path == "/data" and volume.mode == "exclusive"
    assert volume.state == "active" and volume.project_id == shop.project_id
    assert volume.docker_name == runtime_volumes.volume_name(volume.id)
    assert volume.owner_label == "app web of project shop"
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "volume.added"))


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_mount_paths_are_refused_and_nothing_is_stored(shop, path):
    with pytest.raises(volumes.VolumeError) as refused:
        volumes.add(shop, label="data", mount_path=path)
    assert refused.value.field == "mount_path" and str(refused.value)
    assert db.session.scalar(select(Volume)) is None


def test_a_mount_path_is_unique_per_app_and_a_label_is_a_slug(shop):
    volumes.add(shop, label="data", mount_path="/data")
    with pytest.raises(volumes.VolumeError, match="already mounted"):
        volumes.add(shop, label="other", mount_path="/data/")
    with pytest.raises(volumes.VolumeError) as bad:
        volumes.add(shop, label="Bad Label;", mount_path="/srv")
    assert bad.value.field == "label"
    with pytest.raises(volumes.VolumeError) as mode:
        volumes.add(shop, label="srv", mount_path="/srv", mode="both")
    assert mode.value.field == "mode"


def test_detach_keeps_it_for_the_grace_period_then_reattach(shop):
    volume = volumes.add(shop, label="data", mount_path="/data")
    volumes.detach(volume)
    grace = db.session.get(type(volume), volume.id)
    assert grace.state == "detached" and grace.detached_at is not None
    days = (grace.purge_after - grace.detached_at).days
    assert days == 7
    assert volumes.active_of(shop.id) == [] and not volumes.is_exclusive(shop.id)
    with pytest.raises(volumes.VolumeError, match="detached volume"):
        volumes.add(shop, label="again", mount_path="/data")
    volumes.reattach(volume)
    assert volume.state == "active" and volume.purge_after is None
    assert volumes.is_exclusive(shop.id)
    volumes.set_mode(volume, "shared")
    assert not volumes.is_exclusive(shop.id)


def test_deleting_the_app_detaches_its_volumes_and_keeps_the_rows(shop):
    volume = volumes.add(shop, label="data", mount_path="/data")
    volume_id = volume.id
    catalog.delete_app(shop)
    db.session.expire_all()
    kept = db.session.get(Volume, volume_id)
    assert kept is not None and kept.state == "detached" and kept.application_id is None
    assert kept.owner_label == "app web of project shop" and kept.purge_after > utcnow()


def test_purge_due_takes_only_volumes_past_their_grace(shop):
    """The engine has neither volume (never mounted): remove() counts that as removed."""
    due = volumes.add(shop, label="old", mount_path="/old")
    kept = volumes.add(shop, label="new", mount_path="/new")
    volumes.detach(due)
    volumes.detach(kept)
    due.purge_after = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert volumes.purge_due() == [due.id]
    assert due.state == "purged" and kept.state == "detached"
    with pytest.raises(volumes.VolumeError):
        volumes.purge_now(db.session.get(Volume, due.id))


# -- the Volumes tab ----------------------------------------------------------------


@pytest.fixture
def web(logged_in):
    client, user = logged_in
    app_row = make_app(make_project(team_of(user), "shop"), "web")
    return client, app_row


def _error(body: str, field: str) -> str:
    found = re.search(rf'id="{field}-error"[^>]*>(.*?)</div>', body, re.S)
    assert found, f"no error block for {field}"
    return found.group(1)


def test_the_tab_adds_lists_switches_and_detaches(web):
    client, app_row = web
    token = csrf_token(client, f"/apps/{app_row.id}/volumes")
    added = client.post(f"/apps/{app_row.id}/volumes",
                        data={"csrf_token": token, "label": "data", "mount_path": "/data",
                              "mode": "exclusive"})  # fmt: skip
    assert added.status_code == 303
    page = client.get(f"/apps/{app_row.id}/volumes").get_data(as_text=True)
    assert "/data" in page and "exclusive" in page and "Detach" in page
    volume = db.session.scalar(select(Volume))
    switched = client.post(f"/apps/{app_row.id}/volumes/{volume.id}/mode",
                           data={"csrf_token": token, "mode": "shared"})  # fmt: skip
    assert switched.status_code == 303
    db.session.refresh(volume)
    assert volume.mode == "shared"
    confirm = client.get(f"/apps/{app_row.id}/volumes/{volume.id}/detach")
    assert confirm.status_code == 200 and "Detach volume" in confirm.get_data(as_text=True)
    assert db.session.get(Volume, volume.id).state == "active"  # a GET changes nothing
    client.post(f"/apps/{app_row.id}/volumes/{volume.id}/detach", data={"csrf_token": token})
    db.session.refresh(volume)
    assert volume.state == "detached"
    page = client.get(f"/apps/{app_row.id}/volumes").get_data(as_text=True)
    assert "kept until" in page and "Re-attach" in page and "Purge now" in page
    client.post(f"/apps/{app_row.id}/volumes/{volume.id}/reattach", data={"csrf_token": token})
    db.session.refresh(volume)
    assert volume.state == "active"


@pytest.mark.parametrize("path", ["/", "/proc", "/data/../etc", "/var/run/docker.sock", "rel"])
def test_the_form_refuses_hostile_paths_with_422_next_to_the_field(web, path):
    client, app_row = web
    token = csrf_token(client, f"/apps/{app_row.id}/volumes")
    refused = client.post(f"/apps/{app_row.id}/volumes",
                          data={"csrf_token": token, "label": "data", "mount_path": path,
                                "mode": "exclusive"})  # fmt: skip
    assert refused.status_code == 422
    assert _error(refused.get_data(as_text=True), "mount_path").strip()
    assert db.session.scalar(select(Volume)) is None


def test_a_developer_manages_but_only_an_admin_purges(app, client):
    team = make_team()
    app_row = make_app(make_project(team, "shop"), "web")
    volume = volumes.add(app_row, label="data", mount_path="/data")
    volumes.detach(volume)
    developer = make_user(team, Role.developer)
    assert Auth(client).login(developer).status_code == 303
    token = csrf_token(client, f"/apps/{app_row.id}/volumes")
    page = client.get(f"/apps/{app_row.id}/volumes").get_data(as_text=True)
    assert "Re-attach" in page and "Purge now" not in page
    assert client.get(f"/apps/{app_row.id}/volumes/{volume.id}/purge").status_code == 403
    posted = client.post(f"/apps/{app_row.id}/volumes/{volume.id}/purge",
                         data={"csrf_token": token})  # fmt: skip
    assert posted.status_code == 403
    assert access.TABLE[access.Action.VOLUME_PURGE].role == Role.admin
    db.session.refresh(volume)
    assert volume.state == "detached"


def test_another_apps_volume_is_a_404(web):
    client, app_row = web
    other = make_app(app_row.project, "other")
    theirs = volumes.add(other, label="data", mount_path="/data")
    token = csrf_token(client, f"/apps/{app_row.id}/volumes")
    url = f"/apps/{app_row.id}/volumes/{theirs.id}"
    assert client.get(f"{url}/detach").status_code == 404
    assert client.post(f"{url}/detach", data={"csrf_token": token}).status_code == 404
    db.session.refresh(theirs)
    assert theirs.state == "active"
