"""/api/v1 databases: what the database pages do, by key (issue 16 on issue 15's API).
No engine here: the jobs land in the real Redis queue and are read back; the lifecycle's
jobs themselves are tested in tests/databases/."""

from __future__ import annotations

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from app.extensions import db, queue, redis
from app.models import AuditEvent, Database, DatabaseLink, Role
from tests.api.conftest import error_of
from tests.api.shapes import shaped
from tests.factories import make_app, make_database, make_project, team_of

PASSWORD = "api-canary-password-never-shown"


@pytest.fixture
def shop(owner):
    return make_project(team_of(owner), "shop")


def _jobs() -> list[list]:
    found = []
    for job_id in queue("default").job_ids:
        job = Job.fetch(job_id, connection=redis.client, serializer=JSONSerializer)
        found.append([job.func_name, *job.args])
    return found


def _fresh(database_id: int) -> Database:
    db.session.expire_all()
    return db.session.get(Database, database_id)


def test_create_answers_202_with_the_database_and_queues_its_job(api, shop):
    wanted = {"name": "shop-db", "engine": "postgres", "memory_limit_mb": 256}
    response = api.post(f"/api/v1/projects/{shop.id}/databases", json=wanted)
    assert response.status_code == 202, response.get_json()
    body = shaped("Database", response.get_json())
    assert response.headers["Location"] == f"/api/v1/databases/{body['id']}"
    assert (body["name"], body["engine"], body["status"]) == ("shop-db", "postgres", "creating")
    assert (body["host"], body["port"], body["public_port"]) == ("shop-db", 5432, None)
    assert "••••••••" in body["url"] and body["memory_limit_mb"] == 256
    assert ["app.jobs.database_create", body["id"]] in _jobs()
    listed = api.get(f"/api/v1/projects/{shop.id}/databases").get_json()
    assert [d["id"] for d in shaped("DatabasePage", listed)["data"]] == [body["id"]]
    assert shaped("Database", api.get(f"/api/v1/databases/{body['id']}").get_json()) == body


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "Bad Name", "engine": "redis"}, "name"),
        ({"name": "x" * 64, "engine": "redis"}, "name"),
        ({"name": "ok-db", "engine": "mongodb"}, "engine"),
        ({"name": "ok-db", "engine": "redis", "memory_limit_mb": 1}, "memory_limit_mb"),
        ({"name": "ok-db", "engine": "redis", "cpu_limit": "NaN"}, "cpu_limit"),
        ({"name": "ok-db", "engine": "redis", "password": "mine"}, "password"),
    ],
)
def test_a_refused_create_is_422_by_its_field_and_creates_nothing(api, shop, payload, field):
    response = api.post(f"/api/v1/projects/{shop.id}/databases", json=payload)
    assert response.status_code == 422, response.get_json()
    assert field in error_of(response)["details"]["fields"]
    assert db.session.scalar(select(func.count(Database.id))) == 0 and _jobs() == []


def test_a_name_taken_in_the_project_is_422(api, shop):
    make_database(shop, name="shop-db")
    response = api.post(f"/api/v1/projects/{shop.id}/databases",
                        json={"name": "shop-db", "engine": "redis"})  # fmt: skip
    assert response.status_code == 422
    assert "shop-db" in error_of(response)["details"]["fields"]["name"]


def test_actions_queue_jobs_and_a_state_that_refuses_is_409(api, shop):
    database = make_database(shop, name="shop-db", status="running", password=PASSWORD)
    response = api.post(f"/api/v1/databases/{database.id}/restart")
    assert response.status_code == 202 and response.get_json()["progress"] == "restarting"
    assert ["app.jobs.database_action", database.id, "restart"] in _jobs()
    refused = api.post(f"/api/v1/databases/{database.id}/start")
    assert refused.status_code == 409 and error_of(refused)["code"] == "conflict"
    rotated = api.post(f"/api/v1/databases/{database.id}/rotate-password")
    assert rotated.status_code == 202
    assert ["app.jobs.database_rotate", database.id] in _jobs()
    for answer in (response, refused, rotated):
        assert PASSWORD not in answer.get_data(as_text=True)


def test_delete_takes_a_final_backup_unless_told_not_to(api, shop):
    one = make_database(shop, name="one", status="running")
    two = make_database(shop, name="two", status="running")
    assert api.delete(f"/api/v1/databases/{one.id}").status_code == 202
    assert api.delete(f"/api/v1/databases/{two.id}?final_backup=false").status_code == 202
    assert ["app.jobs.database_delete", one.id, True] in _jobs()
    assert ["app.jobs.database_delete", two.id, False] in _jobs()
    assert _fresh(one.id).status == "deleting"
    bad = api.delete(f"/api/v1/databases/{one.id}?final_backup=maybe")
    assert bad.status_code == 422
    again = api.delete(f"/api/v1/databases/{one.id}")
    assert again.status_code == 409


def test_the_public_port_opens_within_the_setting_and_closes(app, api, shop):
    app.config["DATABASE_PUBLIC_PORTS"] = (15432, 15433)
    database = make_database(shop, name="shop-db", status="running")
    outside = api.put(f"/api/v1/databases/{database.id}/public-port", json={"port": 5432})
    assert outside.status_code == 422
    assert "not one of the ports" in error_of(outside)["details"]["fields"]["port"]
    assert api.put(f"/api/v1/databases/{database.id}/public-port",
                   json={"port": "abc"}).status_code == 422  # fmt: skip
    opened = api.put(f"/api/v1/databases/{database.id}/public-port", json={"port": 15433})
    assert opened.status_code == 200 and opened.get_json()["public_port"] == 15433
    closed = api.put(f"/api/v1/databases/{database.id}/public-port", json={"port": None})
    assert closed.status_code == 200 and closed.get_json()["public_port"] is None
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"database.port_opened", "database.port_closed"} <= actions


def test_a_developer_key_manages_but_cannot_expose_rotate_or_delete(api_for, shop, app):
    app.config["DATABASE_PUBLIC_PORTS"] = (15432,)
    database = make_database(shop, name="shop-db", status="running")
    api = api_for(Role.developer, team=shop.team)
    assert api.post(f"/api/v1/databases/{database.id}/stop").status_code == 202
    for method, path, body in (
        ("put", "public-port", {"port": 15432}), ("post", "rotate-password", None),
    ):  # fmt: skip
        call = getattr(api, method)
        response = call(f"/api/v1/databases/{database.id}/{path}", json=body)
        assert response.status_code == 403, path
    assert api.delete(f"/api/v1/databases/{database.id}").status_code == 403
    assert _fresh(database.id).public_port is None


def test_links_add_list_and_remove(api, shop):
    web = make_app(shop, "web")
    database = make_database(shop, name="shop-db", engine="redis")
    created = api.post(f"/api/v1/apps/{web.id}/database-links",
                       json={"database_id": database.id, "prefix": "CACHE"})  # fmt: skip
    assert created.status_code == 201, created.get_json()
    link = shaped("Link", created.get_json())
    assert (link["database_name"], link["prefix"]) == ("shop-db", "CACHE")
    assert "CACHE_REDIS_URL" in link["variables"]
    listed = shaped("LinkList", api.get(f"/api/v1/apps/{web.id}/database-links").get_json())
    assert [row["id"] for row in listed["data"]] == [link["id"]]
    twice = api.post(f"/api/v1/apps/{web.id}/database-links",
                     json={"database_id": database.id})  # fmt: skip
    assert twice.status_code == 422
    gone = api.delete(f"/api/v1/apps/{web.id}/database-links/{link['id']}")
    assert gone.status_code == 204
    assert db.session.scalar(select(func.count(DatabaseLink.id))) == 0


def test_a_database_of_another_project_cannot_be_linked(api, shop):
    web = make_app(shop, "web")
    other = make_database(make_project(shop.team, "other"), name="other-db")
    response = api.post(f"/api/v1/apps/{web.id}/database-links",
                        json={"database_id": other.id})  # fmt: skip
    assert response.status_code == 422
    assert "own project" in error_of(response)["details"]["fields"]["database_id"]
    assert db.session.scalar(select(func.count(DatabaseLink.id))) == 0
