"""/api/v1/apps: list with state, create, read, change settings, delete (issue 15)."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from app.extensions import db
from app.models import Application, AuditEvent, Deployment, Environment, EnvVar, Role
from app.projects import envvars
from tests.api.conftest import error_of
from tests.api.shapes import shaped
from tests.factories import make_app, make_project, make_team, team_of

CANARY = "canary-51d0-secret-value"
GIT = {
    "name": "web",
    "source_type": "git",
    "git_url": "https://github.com/acme/web.git",
    "git_branch": "main",
}


@pytest.fixture
def shop(owner):
    return make_project(team_of(owner), "shop")


def _apps() -> int:
    return db.session.scalar(select(func.count(Application.id)))


def _fresh(app_id: int) -> Application:
    db.session.expire_all()
    return db.session.get(Application, app_id)


def test_create_a_git_app_with_every_form_setting(api, shop):
    payload = GIT | {
        "description": "The storefront", "environment": "production", "build_context": "src",
        "dockerfile_path": "docker/Dockerfile", "container_port": 3000, "replicas": 2,
        "health_check_path": "/healthz", "cpu_limit": 0.5, "memory_limit_mb": 256,
        "watch_seconds": 30, "auto_deploy": True, "env": {"LOG_LEVEL": "info"},
        "secret_env": {"API_TOKEN": CANARY},
    }  # fmt: skip
    response = api.post(f"/api/v1/projects/{shop.id}/apps", json=payload)
    assert response.status_code == 201, response.get_json()
    body = shaped("App", response.get_json())
    assert response.headers["Location"] == f"/api/v1/apps/{body['id']}"
    assert response.headers["ETag"]
    for field in payload.keys() - {"env", "secret_env"}:
        assert body[field] == payload[field], field
    assert body["project"] == "shop" and body["project_id"] == shop.id
    assert body["status"] is None and body["health"] is None
    assert body["url"].startswith("http://web.shop.") and body["image"] is None
    assert CANARY not in response.get_data(as_text=True)
    app_row = db.session.get(Application, body["id"])
    assert app_row.address == "web.shop"
    variables = {v.key: v for v in app_row.env_vars}
    assert variables["LOG_LEVEL"].value == "info" and not variables["LOG_LEVEL"].is_secret
    assert variables["API_TOKEN"].is_secret and variables["API_TOKEN"].value is None
    assert envvars.decrypted_one(variables["API_TOKEN"]) == CANARY
    assert db.session.scalar(select(AuditEvent.id).where(AuditEvent.action == "app.created"))


def test_create_an_image_app_takes_the_form_defaults_and_drops_the_git_fields(api, shop):
    payload = {"name": "cache", "source_type": "image", "image": "redis:7", "git_url": "junk"}
    response = api.post(f"/api/v1/projects/{shop.id}/apps", json=payload)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["image"], body["git_url"], body["git_branch"]) == ("redis:7", None, None)
    assert (body["container_port"], body["replicas"], body["health_check_path"]) == (8000, 1, "/")
    assert body["environment"] == "production" and body["auto_deploy"] is False


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Web App"}, "name"),
        ({"name": "w"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"git_url": "file:///etc/passwd"}, "git_url"),
        ({"git_url": "https://user:pw@github.com/acme/web.git"}, "git_url"),
        ({"git_url": "https://127.0.0.1/acme/web.git"}, "git_url"),
        ({"git_url": ""}, "git_url"),
        ({"git_branch": "-x"}, "git_branch"),
        ({"git_branch": "a..b"}, "git_branch"),
        ({"build_context": "../up"}, "build_context"),
        ({"dockerfile_path": "/etc/Dockerfile"}, "dockerfile_path"),
        ({"source_type": "image", "image": "slipway/x/app-1"}, "image"),
        ({"source_type": "image", "image": ""}, "image"),
        ({"source_type": "svn"}, "source_type"),
        ({"container_port": 0}, "container_port"),
        ({"container_port": 70000}, "container_port"),
        ({"replicas": 11}, "replicas"),
        ({"replicas": "two"}, "replicas"),
        ({"health_check_path": "healthz"}, "health_check_path"),
        ({"health_check_path": "/../x"}, "health_check_path"),
        ({"cpu_limit": 0.01}, "cpu_limit"),
        ({"memory_limit_mb": 8}, "memory_limit_mb"),
        ({"watch_seconds": 3601}, "watch_seconds"),
        ({"description": "a\x00b"}, "description"),
        ({"environment": "staging"}, "environment"),
        ({"env": {"1BAD": "x"}}, "env.1BAD"),
        ({"env": {"OK": "a\x00"}}, "env.OK"),
        ({"secret_env": {"BAD KEY": "x"}}, "secret_env.BAD KEY"),
        ({"webhook_secret": "x"}, "webhook_secret"),
    ],
)
def test_create_refuses_what_the_form_refuses(api, shop, changes, field):
    response = api.post(f"/api/v1/projects/{shop.id}/apps", json=GIT | changes)
    assert response.status_code == 422, response.get_json()
    fields = error_of(response)["details"]["fields"]
    assert any(where.startswith(field) for where in fields), fields
    assert _apps() == 0


def test_create_refuses_a_taken_name_or_address_on_the_name_field(api, shop):
    make_app(shop, "web")
    response = api.post(f"/api/v1/projects/{shop.id}/apps", json=GIT)
    assert "already has an app" in error_of(response)["details"]["fields"]["name"]
    theirs = make_project(make_team(), "blog")
    make_app(theirs, "api")
    blog = make_project(shop.team, "blog")
    response = api.post(f"/api/v1/projects/{blog.id}/apps", json=GIT | {"name": "api"})
    assert response.status_code == 422
    assert "api.blog" in error_of(response)["details"]["fields"]["name"]
    assert _apps() == 2


def test_create_in_another_team_s_project_is_404_and_with_a_read_key_403(api, api_for, shop):
    theirs = make_project(make_team(), "theirs")
    assert api.post(f"/api/v1/projects/{theirs.id}/apps", json=GIT).status_code == 404
    reader = api_for(team=shop.team, scopes=["read"])
    assert reader.post(f"/api/v1/projects/{shop.id}/apps", json=GIT).status_code == 403
    assert reader.post(f"/api/v1/projects/{shop.id}/apps", json={}).status_code == 403
    viewer = api_for(team=shop.team, role=Role.viewer)
    assert viewer.post(f"/api/v1/projects/{shop.id}/apps", json={}).status_code == 403
    assert _apps() == 0


def test_create_in_a_second_environment_by_name(api, shop):
    shop.environments.append(Environment(name="staging"))
    db.session.commit()
    payload = GIT | {"environment": "staging"}
    response = api.post(f"/api/v1/projects/{shop.id}/apps", json=payload)
    assert response.status_code == 201
    assert response.get_json()["environment"] == "staging"


def test_get_answers_the_app_with_its_newest_status_and_health(api, shop):
    app_row = make_app(shop, "web", health="up")
    db.session.add(Deployment(application_id=app_row.id, status="failed"))
    db.session.add(Deployment(application_id=app_row.id, status="running"))
    db.session.commit()
    response = api.get(f"/api/v1/apps/{app_row.id}")
    assert response.status_code == 200 and response.headers["ETag"]
    body = response.get_json()
    assert (body["status"], body["health"], body["name"]) == ("running", "up", "web")
    theirs = make_app(make_project(make_team(), "theirs"), "web")
    assert api.get(f"/api/v1/apps/{theirs.id}").status_code == 404
    assert api.get("/api/v1/apps/999999").status_code == 404


def test_list_answers_every_visible_app_with_its_state_and_filters(api_for, owner):
    team = team_of(owner)
    shop, blog = make_project(team, "shop"), make_project(team, "blog")
    web, worker, site = make_app(shop, "web"), make_app(shop, "worker"), make_app(blog, "web")
    make_app(make_project(make_team(), "shop"), "web", address="web-a9.shop")  # another team's
    db.session.add(Deployment(application_id=web.id, status="running"))
    db.session.commit()
    key = api_for(team=team, scopes=["read"])
    everything = shaped("AppPage", key.get("/api/v1/apps").get_json())
    for item in everything["data"]:
        shaped("App", item)
    assert [a["id"] for a in everything["data"]] == [site.id, worker.id, web.id]
    assert everything["next_cursor"] is None
    statuses = {a["id"]: a["status"] for a in everything["data"]}
    assert statuses == {web.id: "running", worker.id: None, site.id: None}
    found = key.get("/api/v1/apps?project=shop&name=web").get_json()["data"]
    assert [a["id"] for a in found] == [web.id]
    assert [a["id"] for a in key.get(f"/api/v1/apps?project_id={blog.id}").get_json()["data"]] == [
        site.id
    ]
    assert [a["id"] for a in key.get("/api/v1/apps?name=web").get_json()["data"]] == [
        site.id, web.id
    ]  # fmt: skip
    limited = api_for(team=team, projects=[blog.id])
    assert [a["id"] for a in limited.get("/api/v1/apps").get_json()["data"]] == [site.id]
    assert limited.get(f"/api/v1/apps?project_id={shop.id}").get_json()["data"] == []
    assert limited.get(f"/api/v1/apps/{web.id}").status_code == 404


def test_list_pages_and_refuses_bad_filters(api, shop):
    made = [make_app(shop, f"app{i:02d}") for i in range(7)]
    seen, cursor = [], None
    for _ in range(4):
        response = api.get("/api/v1/apps?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        page = response.get_json()
        seen += [a["id"] for a in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [a.id for a in reversed(made)]
    bad = ("project_id=0", "project_id=x", "limit=500", "name=" + "n" * 64, "zone=1",
           "name=a%00b", "project=%00")  # fmt: skip
    for query in bad:
        assert api.get(f"/api/v1/apps?{query}").status_code == 422, query


def test_a_page_of_apps_takes_the_same_queries_however_many_apps_it_holds(api, shop):
    """No N+1: the page's apps, their projects, environments and statuses in batch."""
    projects = [shop] + [make_project(shop.team, f"more{i}") for i in range(9)]
    for i in range(30):
        app_row = make_app(projects[i % 10], f"a{i:02d}")
        db.session.add(Deployment(application_id=app_row.id, status="running"))
    db.session.commit()

    def queries(limit: int) -> int:
        seen = []
        listener = lambda *args: seen.append(1)  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            response = api.get(f"/api/v1/apps?limit={limit}")
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        assert len(response.get_json()["data"]) == limit
        return len(seen)

    api.get("/api/v1/me")  # the key's last use is written now, not during the count
    assert queries(30) == queries(2)


def test_patch_changes_only_the_fields_sent_and_answers_the_new_etag(api, shop):
    app_row = make_app(shop, "web", replicas=1, health_check_path="/")
    envvars.set_var(app_row, "KEEP", "me", secret=False)
    envvars.set_var(app_row, "TOKEN", CANARY, secret=True)
    db.session.commit()
    response = api.patch(f"/api/v1/apps/{app_row.id}", json={"replicas": 3})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["replicas"] == 3 and body["git_url"] == "https://git.example.com/acme/web.git"
    assert response.headers["ETag"] == api.get(f"/api/v1/apps/{app_row.id}").headers["ETag"]
    fresh = _fresh(app_row.id)
    assert fresh.replicas == 3 and fresh.health_check_path == "/"
    assert {v.key for v in fresh.env_vars} == {"KEEP", "TOKEN"}  # the variables stay
    assert db.session.scalar(select(AuditEvent.id).where(AuditEvent.action == "app.updated"))


def test_patch_switches_the_source_and_checks_the_whole_result(api, shop):
    app_row = make_app(shop, "web")
    response = api.patch(f"/api/v1/apps/{app_row.id}", json={"source_type": "image"})
    assert response.status_code == 422
    assert "image" in error_of(response)["details"]["fields"]
    assert _fresh(app_row.id).source_type == "git"
    response = api.patch(
        f"/api/v1/apps/{app_row.id}", json={"source_type": "image", "image": "nginx:1.27"}
    )
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["image"], response.get_json()["git_url"]) == ("nginx:1.27", None)
    response = api.patch(
        f"/api/v1/apps/{app_row.id}",
        json={"source_type": "git", "git_url": "https://github.com/acme/web.git"},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["git_branch"] == "main"  # the form's default comes back


def test_patch_env_replaces_the_plain_variables_and_secret_env_sets_secrets(api, shop):
    app_row = make_app(shop, "web")
    envvars.set_var(app_row, "OLD", "1", secret=False)
    envvars.set_var(app_row, "TOKEN", "old", secret=True)
    db.session.commit()
    payload = {"env": {"NEW": "2"}, "secret_env": {"TOKEN": CANARY}}
    response = api.patch(f"/api/v1/apps/{app_row.id}", json=payload)
    assert response.status_code == 200
    assert CANARY not in response.get_data(as_text=True)
    variables = {v.key: v for v in _fresh(app_row.id).env_vars}
    assert set(variables) == {"NEW", "TOKEN"}
    assert envvars.decrypted_one(variables["TOKEN"]) == CANARY


def test_patch_renames_and_moves_the_address_unless_it_is_taken(api, shop):
    app_row = make_app(shop, "web")
    make_app(shop, "api")
    response = api.patch(f"/api/v1/apps/{app_row.id}", json={"name": "api"})
    assert "already has an app" in error_of(response)["details"]["fields"]["name"]
    make_app(make_project(make_team(), "shop"), "store", address="store.shop")
    response = api.patch(f"/api/v1/apps/{app_row.id}", json={"name": "store"})
    assert "store.shop" in error_of(response)["details"]["fields"]["name"]
    assert _fresh(app_row.id).name == "web"
    response = api.patch(f"/api/v1/apps/{app_row.id}", json={"name": "front"})
    assert response.status_code == 200
    assert response.get_json()["url"].startswith("http://front.shop.")
    assert _fresh(app_row.id).address == "front.shop"


@pytest.mark.parametrize(
    "payload",
    [{"replicas": None}, {"replicas": 0}, {"name": None}, {"source_type": None},
     {"git_branch": "a..b"}, {"env": None}, {"id": 9}, {"project_id": 2}],
)  # fmt: skip
def test_patch_refuses_bad_values_and_nulls_and_changes_nothing(api, shop, payload):
    app_row = make_app(shop, "web", replicas=2)
    before = api.get(f"/api/v1/apps/{app_row.id}").get_json()
    response = api.patch(f"/api/v1/apps/{app_row.id}", json=payload)
    assert response.status_code == 422, (payload, response.get_json())
    assert error_of(response)["details"]["fields"]
    assert api.get(f"/api/v1/apps/{app_row.id}").get_json() == before


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(api, shop):
    app_row = make_app(shop, "web", replicas=1)
    etag = api.get(f"/api/v1/apps/{app_row.id}").headers["ETag"]
    assert api.patch(f"/api/v1/apps/{app_row.id}", json={"replicas": 2}).status_code == 200
    response = api.patch(
        f"/api/v1/apps/{app_row.id}", json={"replicas": 5}, headers={"If-Match": etag}
    )
    assert response.status_code == 412
    assert _fresh(app_row.id).replicas == 2
    current = api.get(f"/api/v1/apps/{app_row.id}").headers["ETag"]
    response = api.patch(
        f"/api/v1/apps/{app_row.id}", json={"replicas": 5}, headers={"If-Match": current}
    )
    assert response.status_code == 200 and response.get_json()["replicas"] == 5


def test_patch_of_another_team_s_app_is_404_and_needs_a_write_scope(api, api_for, shop):
    theirs = make_app(make_project(make_team(), "theirs"), "web", replicas=1)
    assert api.patch(f"/api/v1/apps/{theirs.id}", json={"replicas": 4}).status_code == 404
    assert _fresh(theirs.id).replicas == 1
    app_row = make_app(shop, "web", replicas=1)
    deployer = api_for(team=shop.team, scopes=["deploy"])
    assert deployer.patch(f"/api/v1/apps/{app_row.id}", json={}).status_code == 403
    writer = api_for(team=shop.team, scopes=["write"], role=Role.developer)
    assert writer.patch(f"/api/v1/apps/{app_row.id}", json={"replicas": 2}).status_code == 200


def test_delete_needs_an_admin_and_queues_the_cleanup(api, api_for, shop):
    app_row = make_app(shop, "web")
    envvars.set_var(app_row, "KEY", "v", secret=False)
    db.session.commit()
    writer = api_for(team=shop.team, scopes=["write"])
    assert writer.delete(f"/api/v1/apps/{app_row.id}").status_code == 403
    theirs = make_app(make_project(make_team(), "theirs"), "web")
    assert api.delete(f"/api/v1/apps/{theirs.id}").status_code == 404
    assert _apps() == 2
    response = api.delete(f"/api/v1/apps/{app_row.id}")
    assert response.status_code == 204
    assert db.session.scalar(select(Application.id).where(Application.id == app_row.id)) is None
    assert db.session.scalar(select(func.count(EnvVar.id))) == 0
    from app.extensions import queue

    assert f"remove-app-{app_row.id}" in queue("default").job_ids


def test_a_retried_create_with_its_idempotency_key_makes_one_app(api, shop):
    headers = {"Idempotency-Key": "create-web-1"}
    first = api.post(f"/api/v1/projects/{shop.id}/apps", json=GIT, headers=headers)
    again = api.post(f"/api/v1/projects/{shop.id}/apps", json=GIT, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json() and _apps() == 1


def test_the_first_gate_question_is_the_declared_action(api, shop, monkeypatch):
    """Projects, apps, env vars, domains: each handler asks its operation's action first,
    before it reads the body (an empty one here)."""
    from app import access
    from app.web.api import spec

    app_row = make_app(shop, "web")
    envvars.set_var(app_row, "KEY", "v", secret=False)
    db.session.commit()
    domain_id = api.post(f"/api/v1/apps/{app_row.id}/domains",
                         json={"host": "shop.example.com"}).get_json()["id"]  # fmt: skip
    other_project = make_project(shop.team, "other").id
    other_app = make_app(shop, "gone").id
    asked, real = [], access.decide

    def spy(user, action, resource):
        asked.append(action)
        return real(user, action, resource)

    monkeypatch.setattr(access, "decide", spy)
    calls = [
        ("get", "/api/v1/projects", "projects_list"),
        ("post", "/api/v1/projects", "projects_create"),
        ("get", f"/api/v1/projects/{shop.id}", "projects_get"),
        ("patch", f"/api/v1/projects/{shop.id}", "projects_update"),
        ("get", "/api/v1/apps", "apps_list"),
        ("post", f"/api/v1/projects/{shop.id}/apps", "apps_create"),
        ("get", f"/api/v1/apps/{app_row.id}", "apps_get"),
        ("patch", f"/api/v1/apps/{app_row.id}", "apps_update"),
        ("get", f"/api/v1/apps/{app_row.id}/env", "env_list"),
        ("put", f"/api/v1/apps/{app_row.id}/env/KEY", "env_put"),
        ("delete", f"/api/v1/apps/{app_row.id}/env/KEY", "env_delete"),
        ("get", f"/api/v1/apps/{app_row.id}/domains", "domains_list"),
        ("post", f"/api/v1/apps/{app_row.id}/domains", "domains_add"),
        ("get", f"/api/v1/domains/{domain_id}", "domains_get"),
        ("patch", f"/api/v1/domains/{domain_id}", "domains_update"),
        ("delete", f"/api/v1/domains/{domain_id}", "domains_delete"),
        ("delete", f"/api/v1/apps/{other_app}", "apps_delete"),
        ("delete", f"/api/v1/projects/{other_project}", "projects_delete"),
    ]
    for method, path, endpoint in calls:
        asked.clear()
        getattr(api, method)(path, **({"json": {}} if method in ("post", "patch", "put") else {}))
        assert asked and asked[0] == spec.OPERATIONS[f"api.{endpoint}"].action, (path, asked)
