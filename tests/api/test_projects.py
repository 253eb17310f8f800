"""/api/v1/projects: list, create, read, change, delete, as the project pages do (issue 15)."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, Project, Role
from tests.api.conftest import error_of
from tests.api.shapes import shaped
from tests.factories import make_app, make_project, make_team, make_user, team_of


def _count() -> int:
    return db.session.scalar(select(func.count(Project.id)))


def test_create_answers_201_with_the_project_its_location_and_an_audit_row(api, owner):
    response = api.post("/api/v1/projects", json={"name": "shop", "description": "Storefront"})
    assert response.status_code == 201, response.get_json()
    body = shaped("Project", response.get_json())
    assert body["name"] == "shop" and body["description"] == "Storefront"
    assert body["environments"] == ["production"]
    assert body["created_at"].endswith("Z")
    assert response.headers["Location"] == f"/api/v1/projects/{body['id']}"
    project = db.session.get(Project, body["id"])
    assert project.team_id == team_of(owner).id
    assert db.session.scalar(select(AuditEvent.id).where(AuditEvent.action == "project.created"))


def test_create_refuses_what_the_form_refuses_with_the_field_and_writes_nothing(api, owner):
    make_project(team_of(owner), "shop")
    cases = [
        ({"name": "Shop!"}, "name"),
        ({"name": "x"}, "name"),
        ({"name": "shop-"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"name": "shop"}, "name"),  # taken in this team
        ({"name": "ok-name", "description": "nul\x00"}, "description"),
        ({"name": "ok-name", "description": "d" * 2001}, "description"),
        ({"name": "ok-name", "colour": "red"}, "colour"),
        ({}, "name"),
    ]
    for payload, field in cases:
        response = api.post("/api/v1/projects", json=payload)
        assert response.status_code == 422, (payload, response.get_json())
        assert field in error_of(response)["details"]["fields"], payload
    assert _count() == 1


def test_the_name_is_trimmed_as_the_form_trims_it(api):
    response = api.post("/api/v1/projects", json={"name": "  shop  "})
    assert response.status_code == 201
    assert response.get_json()["name"] == "shop"


def test_another_team_may_use_the_same_name(api, owner):
    make_project(make_team(), "shop")
    assert api.post("/api/v1/projects", json={"name": "shop"}).status_code == 201


def test_create_needs_a_write_scope_and_an_all_projects_key(api_for, owner):
    team = team_of(owner)
    reader = api_for(role=Role.owner, scopes=["read"], team=team)
    response = reader.post("/api/v1/projects", json={"name": "shop"})
    assert response.status_code == 403
    project = make_project(team, "first")
    limited = api_for(role=Role.owner, scopes=["admin"], team=team, projects=[project.id])
    assert limited.post("/api/v1/projects", json={"name": "shop"}).status_code == 403
    viewer = api_for(role=Role.viewer, scopes=["admin"], team=team)
    assert viewer.post("/api/v1/projects", json={"name": "shop"}).status_code == 403
    writer = api_for(role=Role.developer, scopes=["write"], team=team)
    assert writer.post("/api/v1/projects", json={"name": "shop"}).status_code == 201
    assert _count() == 2


def test_list_pages_through_the_team_s_projects_only(api, owner):
    team = team_of(owner)
    mine = [make_project(team, f"p{i:02d}") for i in range(5)]
    make_project(make_team(), "theirs")
    first = api.get("/api/v1/projects?limit=3")
    assert first.status_code == 200
    page = shaped("ProjectPage", first.get_json())
    assert [p["name"] for p in page["data"]] == ["p04", "p03", "p02"]  # newest first
    assert page["next_cursor"]
    second = api.get(f"/api/v1/projects?limit=3&cursor={page['next_cursor']}").get_json()
    assert [p["name"] for p in second["data"]] == ["p01", "p00"]
    assert second["next_cursor"] is None
    assert {p["id"] for p in page["data"] + second["data"]} == {p.id for p in mine}


def test_list_filters_by_name_and_a_project_limited_key_sees_its_projects(api_for, owner):
    team = team_of(owner)
    shop, _blog = make_project(team, "shop"), make_project(team, "blog")
    full = api_for(team=team)
    found = full.get("/api/v1/projects?name=shop").get_json()["data"]
    assert [p["id"] for p in found] == [shop.id]
    limited = api_for(team=team, projects=[shop.id])
    assert [p["name"] for p in limited.get("/api/v1/projects").get_json()["data"]] == ["shop"]


def test_list_refuses_bad_query_parameters(api):
    for query in ("limit=0", "limit=101", "limit=x", "cursor=nope!", "colour=red", "name=%00"):
        response = api.get(f"/api/v1/projects?{query}")
        assert response.status_code == 422, query


def test_get_answers_the_project_with_an_etag_and_404_for_another_team_s(api, owner):
    project = make_project(team_of(owner), "shop")
    response = api.get(f"/api/v1/projects/{project.id}")
    assert response.status_code == 200
    assert response.get_json()["id"] == project.id and response.headers["ETag"]
    other = make_project(make_team(), "other")
    assert api.get(f"/api/v1/projects/{other.id}").status_code == 404
    assert api.get("/api/v1/projects/999999").status_code == 404


def test_patch_changes_only_the_fields_sent(api, owner):
    project = make_project(team_of(owner), "shop")
    response = api.patch(f"/api/v1/projects/{project.id}", json={"description": "Now described"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["name"] == "shop"
    assert response.get_json()["description"] == "Now described"
    assert response.headers["ETag"] == api.get(f"/api/v1/projects/{project.id}").headers["ETag"]
    response = api.patch(f"/api/v1/projects/{project.id}", json={"name": "store"})
    assert response.get_json()["name"] == "store"
    db.session.expire_all()
    project = db.session.get(Project, project.id)
    assert (project.name, project.description) == ("store", "Now described")


def test_a_rename_moves_the_apps_addresses_and_refuses_a_taken_one(api, owner):
    team = team_of(owner)
    project = make_project(team, "shop")
    app_row = make_app(project, "web")
    other_project = make_project(make_team(), "store")
    make_app(other_project, "web")  # web.store is taken by another team
    response = api.patch(f"/api/v1/projects/{project.id}", json={"name": "store"})
    assert response.status_code == 422
    assert "web.store" in error_of(response)["details"]["fields"]["name"]
    make_project(team, "taken")
    response = api.patch(f"/api/v1/projects/{project.id}", json={"name": "taken"})
    assert response.status_code == 422
    assert "already has a project" in error_of(response)["details"]["fields"]["name"]
    assert api.patch(f"/api/v1/projects/{project.id}", json={"name": "mall"}).status_code == 200
    db.session.expire_all()
    assert db.session.get(type(app_row), app_row.id).address == "web.mall"


def test_patch_refuses_null_and_bad_values_and_changes_nothing(api, owner):
    project = make_project(team_of(owner), "shop")
    for payload in ({"name": None}, {"name": "Bad Name"}, {"description": 5}, {"id": 3}):
        response = api.patch(f"/api/v1/projects/{project.id}", json=payload)
        assert response.status_code == 422, payload
    db.session.expire_all()
    assert db.session.get(Project, project.id).name == "shop"


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(api, owner):
    project = make_project(team_of(owner), "shop")
    etag = api.get(f"/api/v1/projects/{project.id}").headers["ETag"]
    api.patch(f"/api/v1/projects/{project.id}", json={"description": "one"})
    response = api.patch(
        f"/api/v1/projects/{project.id}", json={"description": "two"}, headers={"If-Match": etag}
    )
    assert response.status_code == 412
    assert error_of(response)["code"] == "precondition_failed"
    db.session.expire_all()
    assert db.session.get(Project, project.id).description == "one"
    fresh = api.get(f"/api/v1/projects/{project.id}").headers["ETag"]
    response = api.patch(
        f"/api/v1/projects/{project.id}", json={"description": "two"}, headers={"If-Match": fresh}
    )
    assert response.status_code == 200


def test_patch_of_another_team_s_project_is_404_and_a_read_key_403(api, api_for, owner):
    other = make_project(make_team(), "other")
    assert api.patch(f"/api/v1/projects/{other.id}", json={"name": "mine"}).status_code == 404
    project = make_project(team_of(owner), "shop")
    reader = api_for(team=team_of(owner), scopes=["read"])
    assert reader.patch(f"/api/v1/projects/{project.id}", json={"name": "x1"}).status_code == 403
    db.session.expire_all()
    assert db.session.get(Project, other.id).name == "other"
    assert db.session.get(Project, project.id).name == "shop"


def test_the_gate_answers_before_the_body_is_read(api_for, owner):
    """A refused key gets 403/404 whatever it sends, even an empty or invalid body."""
    project = make_project(team_of(owner), "shop")
    reader = api_for(team=team_of(owner), scopes=["read"])
    assert reader.patch(f"/api/v1/projects/{project.id}", json={}).status_code == 403
    assert reader.post("/api/v1/projects", json={"name": 5}).status_code == 403
    stranger = api_for()
    assert stranger.patch(f"/api/v1/projects/{project.id}", json={}).status_code == 404


def test_delete_needs_admin_and_removes_the_project_with_its_apps(api, api_for, owner):
    team = team_of(owner)
    project = make_project(team, "shop")
    make_app(project, "web")
    writer = api_for(team=team, scopes=["write"])
    assert writer.delete(f"/api/v1/projects/{project.id}").status_code == 403
    developer = api_for(team=team, role=Role.developer)
    assert developer.delete(f"/api/v1/projects/{project.id}").status_code == 403
    other = make_project(make_team(), "other")
    assert api.delete(f"/api/v1/projects/{other.id}").status_code == 404
    assert _count() == 2
    response = api.delete(f"/api/v1/projects/{project.id}")
    assert response.status_code == 204 and response.get_data() == b""
    assert db.session.scalar(select(Project.id).where(Project.id == project.id)) is None
    assert api.get(f"/api/v1/projects/{project.id}").status_code == 404


def test_a_viewer_reads_but_cannot_change(api_for):
    viewer_team = make_team()
    make_user(team=viewer_team, role=Role.owner)
    project = make_project(viewer_team, "shop")
    viewer = api_for(team=viewer_team, role=Role.viewer)
    assert viewer.get(f"/api/v1/projects/{project.id}").status_code == 200
    assert viewer.patch(f"/api/v1/projects/{project.id}", json={"name": "x2"}).status_code == 403


def test_a_name_a_concurrent_request_took_is_a_422_not_a_500(api, owner, monkeypatch):
    """The check passed, then another request wrote the name: the unique index decides."""
    from app.projects import catalog

    team = team_of(owner)
    make_project(team, "shop")
    project = make_project(team, "blog")
    monkeypatch.setattr(catalog, "project_name_error", lambda *args, **kwargs: None)
    response = api.post("/api/v1/projects", json={"name": "shop"})
    assert response.status_code == 422
    assert "already has a project" in error_of(response)["details"]["fields"]["name"]
    response = api.patch(f"/api/v1/projects/{project.id}", json={"name": "shop"})
    assert response.status_code == 422
    assert "already has a project" in error_of(response)["details"]["fields"]["name"]
    assert _count() == 2
    db.session.expire_all()
    assert db.session.get(Project, project.id).name == "blog"
