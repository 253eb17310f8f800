"""Deleting a project never drops data silently: its databases must be deleted first
(each with its final backup), and its volumes outlive it for the grace period."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import AuditEvent, Project
from app.models.databases import Volume, VolumeState
from app.projects import catalog, volumes
from tests.conftest import csrf_token
from tests.factories import make_app, make_database, make_project, make_team, team_of


def test_a_project_with_a_live_database_is_not_deleted(app):
    project = make_project(make_team(), "shop")
    make_database(project, "shop-db")
    with pytest.raises(catalog.ProjectNotEmpty, match="shop-db"):
        catalog.delete_project(project)
    assert db.session.get(Project, project.id) is not None


def test_a_deleted_projects_volumes_are_detached_and_kept(app):
    project = make_project(make_team(), "shop")
    web = make_app(project, "web")
    volume = volumes.add(web, label="data", mount_path="/data")
    gone = make_database(project, "old-db")
    gone.status = "deleted"
    db.session.commit()
    volume_id, team_id = volume.id, project.team_id
    catalog.delete_project(project)
    db.session.expire_all()
    kept = db.session.get(Volume, volume_id)
    assert kept is not None and kept.state == VolumeState.detached.value
    assert kept.project_id is None and kept.purge_after is not None
    assert kept.owner_label == "app web of project shop"
    event = db.session.query(AuditEvent).filter_by(action="project.deleted").one()
    assert event.team_id == team_id and event.details["volumes_detached"] == [volume_id]


def test_the_page_says_why_a_project_with_a_database_stays(logged_in):
    client, user = logged_in
    project = make_project(team_of(user), "shop")
    make_database(project, "shop-db")
    answer = client.post(
        f"/projects/{project.id}/delete", data={"csrf_token": csrf_token(client, "/")}
    )
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/projects/{project.id}")
    assert db.session.get(Project, project.id) is not None
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Delete the project&#39;s databases first (shop-db)" in page
