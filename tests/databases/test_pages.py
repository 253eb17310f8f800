"""The database pages and an app's linked databases (app.web.databases), with
SECURITY.md cases 7, 9, 17, 18 and 19 for them.

The lifecycle's functions are the seam the views call; where a test checks that a button
asks for the right thing, it records the call (``called``) instead of running a job.
"""

# The security suite's fixtures are imported below; tests take them as arguments.
# ruff: noqa: F811
from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from app.databases import lifecycle
from app.extensions import db, queue
from app.models import AuditEvent, Database, DatabaseLink, Role
from app.projects import envvars
from app.runtime import installation
from tests.conftest import csrf_token
from tests.factories import make_app, make_database, make_project
from tests.security.conftest import (  # noqa: F401 - the security suite's fixtures
    build_team,
    db_state,
    member,
    routes,
    team_a,
    team_b,
)
from tests.security.test_xss import PAYLOADS, assert_inert

CANARY = "canary-db-5e1f0a77-never-shown"


@pytest.fixture
def world(team_a):
    return team_a


@pytest.fixture
def called(monkeypatch):
    """Record the lifecycle calls the buttons make (name, database id, keyword args)."""
    calls: list[tuple[str, int, dict]] = []
    for name in ("start", "stop", "restart", "rotate_password", "delete"):

        def record(database, _name=name, **kwargs):
            calls.append((_name, database.id, {k: v for k, v in kwargs.items() if k != "by"}))

        monkeypatch.setattr(lifecycle, name, record)
    return calls


def _body(response) -> str:
    return response.get_data(as_text=True)


def _around(body: str, field: str) -> str:
    """The HTML of one form field's block (its label, input and errors)."""
    start = body.index(f'id="field-{field}"')
    end = body.find('id="field-', start + 10)
    return body[start : end if end > 0 else len(body)]


# ---- the project page and the New database form ---------------------------------


def test_the_project_page_lists_its_databases_with_a_new_database_button(
    app, client, member, world
):
    member(Role.developer)
    body = _body(client.get(f"/projects/{world.project.id}"))
    assert 'id="databases"' in body and "alpha-db" in body
    assert f"/databases/{world.database.id}" in body
    assert f"/projects/{world.project.id}/databases/new" in body
    assert "New database" in body


def test_new_database_creates_it_and_redirects_to_its_page(app, client, member, world):
    member(Role.developer)
    token = csrf_token(client, "/")
    form = client.get(f"/projects/{world.project.id}/databases/new")
    assert form.status_code == 200
    for label in ("PostgreSQL 16", "MariaDB 11", "Redis 7"):
        assert label in _body(form)
    response = client.post(
        f"/projects/{world.project.id}/databases/new",
        data={"csrf_token": token, "name": "shop-db", "engine": "postgres",
              "memory_limit_mb": "256", "cpu_limit": "0.5"},
    )  # fmt: skip
    assert response.status_code == 303
    created = db.session.scalar(select(Database).where(Database.name == "shop-db"))
    assert created.project_id == world.project.id and created.engine == "postgres"
    assert created.memory_limit_mb == 256 and created.cpu_limit == 0.5
    assert response.location == f"/databases/{created.id}"
    page = client.get(response.location)
    body = _body(page)
    assert page.status_code == 200
    assert "creating" in body
    # While creating, the status partial polls itself.
    status = body[body.index('id="database-status"') :][:400]
    assert f'hx-get="/databases/{created.id}"' in status and "every 2s" in status
    assert "<code>shop-db</code>" in body  # the internal host name
    assert "<code>5432</code>" in body
    assert "postgresql://app:••••••••@shop-db:5432/" in body


@pytest.mark.parametrize(
    "data,field,message",
    [
        ({"name": "Bad Name", "engine": "postgres"}, "name", "lowercase letters"),
        ({"name": "alpha-web", "engine": "postgres"}, "name", "alpha-web"),  # the app's name
        ({"name": "alpha-db", "engine": "redis"}, "name", "alpha-db"),  # taken
        ({"name": "ok-db", "engine": "oracle"}, "engine", "Not a valid choice"),
        ({"name": "ok-db", "engine": "redis", "memory_limit_mb": "1"}, "memory_limit_mb", "16"),
    ],
    ids=["slug", "app-name", "taken", "engine", "memory"],
)
def test_a_refused_database_re_renders_the_form_422_with_the_error_by_its_field(
    app, client, member, world, db_state, data, field, message
):
    member(Role.developer)
    token = csrf_token(client, "/")
    before = db_state()
    response = client.post(
        f"/projects/{world.project.id}/databases/new", data={"csrf_token": token, **data}
    )
    assert response.status_code == 422
    errors = " ".join(re.findall(r'<span class="error">([^<]*)</span>', _around(
        _body(response), field)))  # fmt: skip
    assert message.lower() in errors.lower(), errors
    assert db_state() == before


def test_a_domain_refusal_lands_beside_the_field_it_names(app, client, member, world, monkeypatch):
    def refuse(project, **kwargs):
        raise lifecycle.DatabaseError("That engine is switched off here.", "engine")

    monkeypatch.setattr(lifecycle, "create", refuse)
    member(Role.developer)
    token = csrf_token(client, "/")
    data = {"csrf_token": token, "name": "fine-db", "engine": "redis"}
    response = client.post(f"/projects/{world.project.id}/databases/new", data=data)
    assert response.status_code == 422
    assert "That engine is switched off here." in _around(_body(response), "engine")


# ---- the database page ----------------------------------------------------------


def test_the_status_partial_is_a_fragment_and_stops_polling_once_final(app, client, member, world):
    member(Role.viewer)
    url = f"/databases/{world.database.id}"
    fragment = client.get(url, headers={"HX-Request": "true"})
    body = _body(fragment)
    assert fragment.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="database-status"')
    assert "HX-Request" in fragment.headers.get("Vary", "")
    assert "hx-get" not in body  # running: final, no polling
    world.database.status = "creating"
    world.database.progress = "pulling postgres:16: 41 of 120 MB"
    db.session.commit()
    body = _body(client.get(url, headers={"HX-Request": "true"}))
    assert "hx-get" in body and "pulling postgres:16: 41 of 120 MB" in body


def test_the_page_shows_the_linked_apps_and_no_password(app, client, member, world):
    member(Role.owner)
    body = _body(client.get(f"/databases/{world.database.id}"))
    assert f"/apps/{world.application.id}" in body and "alpha-web" in body
    assert "alpha-database-password" not in body
    assert "••••••••" in body


@pytest.mark.parametrize(
    "verb,function", [("start", "start"), ("stop", "stop"), ("restart", "restart"),
                      ("rotate", "rotate_password")],
)  # fmt: skip
def test_each_button_asks_the_lifecycle_and_redirects_303(
    app, client, member, world, called, verb, function
):
    member(Role.admin)
    token = csrf_token(client, "/")
    response = client.post(f"/databases/{world.database.id}/{verb}", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.location == f"/databases/{world.database.id}"
    assert called == [(function, world.database.id, {})]


def test_the_buttons_follow_the_role(app, client, member, world):
    member(Role.developer)
    body = _body(client.get(f"/databases/{world.database.id}"))
    d = world.database.id
    assert f"/databases/{d}/stop" in body and f"/databases/{d}/restart" in body
    assert f"/databases/{d}/rotate" not in body and f"/databases/{d}/delete" not in body


def test_delete_goes_through_the_confirm_page_with_a_final_backup_ticked(
    app, client, member, world, called
):
    member(Role.admin)
    d = world.database.id
    page = client.get(f"/databases/{d}/delete")
    body = _body(page)
    assert page.status_code == 200
    assert "Delete database alpha-db?" in body and "7 days" in body
    assert re.search(r'<input type="checkbox" name="final_backup" value="y" checked>', body)
    assert "Take a final backup first" in body
    token = csrf_token(client, "/")
    ticked = client.post(f"/databases/{d}/delete", data={"csrf_token": token, "final_backup": "y"})
    unticked = client.post(f"/databases/{d}/delete", data={"csrf_token": token})
    assert ticked.status_code == unticked.status_code == 303
    assert called == [("delete", d, {"final_backup": True}), ("delete", d, {"final_backup": False})]


# ---- an app's linked databases ----------------------------------------------------


def test_the_app_page_shows_linked_variables_masked_and_from_which_database(
    app, client, member, world
):
    envvars.set_var(world.application, "PGHOST", "own-host", secret=False)
    db.session.commit()
    member(Role.developer)
    body = _body(client.get(f"/apps/{world.application.id}"))
    section = body[body.index('id="linked-databases"') :]
    assert "from database alpha-db" in section
    for key in ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
        assert f"<code>{key}</code>" in section, key
    assert "<code>5432</code>" in section  # a plain value is shown
    assert "alpha-database-password" not in body
    assert "overridden" in section  # the app's own PGHOST wins, and the page says so
    assert "wins over a linked one" in section
    assert "Link database" in section and "Unlink" in section


def test_linking_a_database_with_a_prefix_then_unlinking_it(app, client, member, world):
    second = make_database(world.project, "analytics", engine="redis")
    member(Role.developer)
    token = csrf_token(client, "/")
    a = world.application.id
    response = client.post(f"/apps/{a}/databases/link", data={
        "csrf_token": token, "database_id": str(second.id), "prefix": "analytics"})  # fmt: skip
    assert response.status_code == 303
    assert response.location == f"/apps/{a}#linked-databases"
    row = db.session.scalar(select(DatabaseLink).where(DatabaseLink.database_id == second.id))
    assert row.application_id == a and row.prefix == "ANALYTICS"
    body = _body(client.get(f"/apps/{a}"))
    assert "<code>ANALYTICS_REDIS_URL</code>" in body and "from database analytics" in body
    events = [e.action for e in db.session.scalars(select(AuditEvent))]
    assert "database.linked" in events
    row_id = row.id
    response = client.post(f"/apps/{a}/databases/{row_id}/unlink", data={"csrf_token": token})
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.scalar(select(DatabaseLink).where(DatabaseLink.id == row_id)) is None
    assert "ANALYTICS_REDIS_URL" not in _body(client.get(f"/apps/{a}"))


@pytest.mark.parametrize("case", ["bad-prefix", "same-prefix", "other-project", "other-team",
                                  "deleted"])  # fmt: skip
def test_a_refused_link_is_422_and_links_nothing(
    app, client, member, world, team_b, db_state, case
):
    other = make_project(world.team, "alpha-other")
    choices = {
        "bad-prefix": lambda: (make_database(world.project, "spare").id, "1; rm"),
        "same-prefix": lambda: (make_database(world.project, "spare").id, ""),  # alpha-db's
        "other-project": lambda: (make_database(other, "elsewhere").id, "X"),
        "other-team": lambda: (team_b.database.id, "X"),
        "deleted": lambda: (make_database(world.project, "gone", status="deleted").id, "X"),
    }
    database_id, prefix = choices[case]()
    member(Role.owner)
    token = csrf_token(client, "/")
    before = db_state()
    response = client.post(f"/apps/{world.application.id}/databases/link",
                           data={"csrf_token": token, "database_id": str(database_id),
                                 "prefix": prefix})  # fmt: skip
    assert response.status_code == 422
    body = _body(response)
    assert "bravo" not in body
    errors = re.findall(r'<span class="error">([^<]*)</span>', body)
    assert errors, "the refusal is said beside the form"
    assert db_state() == before


def test_an_app_of_another_team_cannot_unlink_through_ones_own_app(
    app, client, member, world, team_b, db_state
):
    member(Role.owner)
    token = csrf_token(client, "/")
    before = db_state()
    url = f"/apps/{world.application.id}/databases/{team_b.link.id}/unlink"
    assert client.post(url, data={"csrf_token": token}).status_code == 404
    assert db_state() == before


# ---- SECURITY.md cases -----------------------------------------------------------


def _database_routes(world, token):
    d, a, p = world.database.id, world.application.id, world.project.id
    gets = [f"/databases/{d}", f"/databases/{d}/logs", f"/databases/{d}/metrics",
            f"/databases/{d}/delete", f"/projects/{p}/databases/new"]  # fmt: skip
    posts = [
        (f"/projects/{p}/databases/new", {"name": "taken-db", "engine": "redis"}),
        *((f"/databases/{d}/{verb}", {}) for verb in ("start", "stop", "restart", "rotate")),
        (f"/databases/{d}/delete", {"final_backup": "y"}),
        (f"/apps/{a}/databases/link", {"database_id": str(d), "prefix": "TAKEN"}),
        (f"/apps/{a}/databases/{world.link.id}/unlink", {}),
        (f"/databases/{d}/public", {"public_port": "15432"}),
        (f"/databases/{d}/public", {"close": "1"}),
    ]
    return gets, [(url, {"csrf_token": token, **data}) for url, data in posts]


def test_case_7_another_teams_database_is_404_and_nothing_changes(
    app, client, member, world, team_b, db_state, called
):
    member(Role.owner)
    token = csrf_token(client, "/")
    gets, posts = _database_routes(team_b, token)
    before = db_state()
    for headers in ({}, {"HX-Request": "true"}):
        for url in gets:
            response = client.get(url, headers=headers)
            assert response.status_code == 404, url
            assert "bravo" not in _body(response), url
        for url, data in posts:
            assert client.post(url, data=data, headers=headers).status_code == 404, url
    assert db_state() == before and called == []


def test_case_9_a_viewer_cannot_act_and_never_sees_the_password(
    app, client, member, world, db_state, called
):
    member(Role.viewer)
    token = csrf_token(client, "/")
    gets, posts = _database_routes(world, token)
    before = db_state()
    for url, data in posts:
        assert client.post(url, data=data).status_code == 403, url
    assert db_state() == before and called == []
    for url in gets[:3]:  # the pages a viewer may open
        response = client.get(url)
        assert response.status_code == 200, url
        assert "alpha-database-password" not in _body(response), url
    for url in gets[3:]:  # the forms they may not
        assert client.get(url).status_code == 403, url


@pytest.mark.parametrize("payload", PAYLOADS)
def test_case_17_a_hostile_database_name_renders_as_text(app, client, member, world, payload):
    """A name that bypassed validation, written straight into the database."""
    hostile = make_database(world.project, payload, status="creating", progress=payload,
                            error=payload)  # fmt: skip
    db.session.add(DatabaseLink(application_id=world.application.id, database_id=hostile.id,
                                prefix="HOSTILE"))  # fmt: skip
    db.session.commit()
    member(Role.owner)
    d = hostile.id
    pages = {
        "project page": f"/projects/{world.project.id}",
        "database page": f"/databases/{d}",
        "logs tab": f"/databases/{d}/logs",
        "metrics tab": f"/databases/{d}/metrics",
        "delete confirm": f"/databases/{d}/delete",
        "app page": f"/apps/{world.application.id}",
    }
    for where, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, where
        assert_inert(_body(response), payload, where)
    fragment = client.get(f"/databases/{d}", headers={"HX-Request": "true"})
    assert_inert(_body(fragment), payload, "status fragment")
    token = csrf_token(client, "/")
    response = client.post(f"/databases/{d}/delete", data={"csrf_token": token})
    assert_inert(_body(client.get(response.location)), payload, "flash after delete")


@pytest.mark.once
def test_case_17_a_hostile_log_line_renders_as_text(app, client, member, world):
    """A real container printing the payload (and colours around it): the Logs tab
    escapes it before the colours become markup."""
    import docker

    from tests.lab import ensure_base_image

    engine = docker.from_env()
    line = "\x1b[31m<img src=x onerror=alert(1)>\x1b[0m"
    # Labelled as this installation's: the runtime reads no other container's logs.
    labels = {"slipway.database": str(world.database.id), "slipway.test": "1"}
    labels |= installation.labels()
    container = engine.containers.run(
        ensure_base_image(), ["echo", line], detach=True, labels=labels
    )
    try:
        container.wait(timeout=30)
        world.database.container_id = container.id
        db.session.commit()
        member(Role.viewer)
        body = _body(client.get(f"/databases/{world.database.id}/logs"))
        assert_inert(body, "<img src=x onerror=alert(1)>", "logs tab")
        assert '<span class="ansi-fg-31">&lt;img src=x onerror=alert(1)&gt;</span>' in body
        assert "\x1b" not in body
    finally:
        container.remove(force=True)
        engine.close()


@pytest.mark.once
def test_the_metrics_tab_shows_the_containers_figures(app, client, member, world):
    import docker

    from tests.lab import ensure_base_image

    engine = docker.from_env()
    container = engine.containers.run(ensure_base_image(), ["sleep", "60"], detach=True,
                                      mem_limit="64m")  # fmt: skip
    try:
        world.database.container_id = container.id
        db.session.commit()
        member(Role.viewer)
        body = _body(client.get(f"/databases/{world.database.id}/metrics"))
        section = body[body.index("<h2>Now</h2>") :]
        assert "<dt>CPU</dt>" in section and "<dt>Memory</dt>" in section
        assert "64.0 MiB" in section  # the container's limit
    finally:
        container.remove(force=True)
        engine.close()


def test_case_18_a_cross_site_post_is_refused_and_changes_nothing(
    app, client, member, world, db_state, called
):
    member(Role.owner)
    _gets, posts = _database_routes(world, "")
    before = db_state()
    for url, data in posts:
        data = {k: v for k, v in data.items() if k != "csrf_token"}
        response = client.post(url, data=data, headers={"Origin": "https://evil.example"})
        assert response.status_code == 400, url
    assert db_state() == before and called == []


def test_case_19_a_canary_password_never_leaves_the_server(
    app, client, member, world, routes, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    project = make_project(world.team, "canary")
    web = make_app(project, "canary-web")
    databases = [make_database(project, f"canary-{engine}", engine=engine, password=CANARY)
                 for engine in ("postgres", "mariadb", "redis")]  # fmt: skip
    links = []
    for number, database in enumerate(databases):
        row = DatabaseLink(application_id=web.id, database_id=database.id,
                           prefix="" if number == 0 else f"DB{number}")  # fmt: skip
        db.session.add(row)
        links.append(row)
    db.session.commit()
    member(Role.owner)
    seen = []
    for database, row in zip(databases, links, strict=True):
        ids = {**world.ids(), "project_id": project.id, "app_id": web.id,
               "application_id": web.id, "database_id": database.id, "link_id": row.id}  # fmt: skip
        for endpoint, _method, url in routes(app, SimpleNamespace(ids=ids.copy),
                                             methods=("GET",)):  # fmt: skip
            if not endpoint.startswith(("databases.", "apps.", "projects.")):
                continue
            for headers in ({}, {"HX-Request": "true"}, {"Accept": "application/json"}):
                seen.append((url, client.get(url, headers=headers)))
    token = csrf_token(client, "/")
    refused = {"csrf_token": token, "prefix": "bad prefix"}
    seen.append(("link 422", client.post(f"/apps/{web.id}/databases/link", data=refused)))
    for url, response in seen:
        assert CANARY not in _body(response) + str(response.headers), url
    assert len(seen) > 30
    app_page = _body(client.get(f"/apps/{web.id}"))
    assert "PGPASSWORD" in app_page and "MYSQL_PASSWORD" in app_page  # the keys, masked
    assert CANARY not in caplog.text
    out, err = capfd.readouterr()
    assert CANARY not in out and CANARY not in err
    stored = db.session.scalars(select(Database.password).where(Database.project_id == project.id))
    assert all(CANARY not in value for value in stored)


def test_an_action_the_state_refuses_says_why_and_changes_nothing(app, client, member, world):
    """Start on a running database, delete one already being deleted: a message, a 303,
    nothing queued (never a 500)."""
    member(Role.owner)
    token = csrf_token(client, f"/databases/{world.database.id}")
    answer = client.post(f"/databases/{world.database.id}/start", data={"csrf_token": token})
    assert answer.status_code == 303
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "A running database cannot be started." in page
    world.database.status = "deleting"
    db.session.commit()
    answer = client.post(
        f"/databases/{world.database.id}/delete", data={"csrf_token": token, "final_backup": "y"}
    )
    assert answer.status_code == 303
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "is already being deleted" in page
    assert not queue("default").job_ids


# ---- the public port ------------------------------------------------------------------


@pytest.fixture
def ports(app):
    app.config["DATABASE_PUBLIC_PORTS"] = (15432, 15433, 15434)
    return app.config["DATABASE_PUBLIC_PORTS"]


def _public(client, database_id, **data):
    token = csrf_token(client, "/")
    return client.post(f"/databases/{database_id}/public", data={"csrf_token": token, **data})


def _port_of(database_id):
    db.session.expire_all()
    return db.session.get(Database, database_id).public_port


def test_the_public_port_is_off_by_default_and_says_how_to_allow_one(app, client, member, world):
    member(Role.admin)
    body = _body(client.get(f"/databases/{world.database.id}"))
    card = body[body.index('id="public"') :]
    assert "Off: no port of this server reaches the database" in card
    assert "SLIPWAY_DATABASE_PUBLIC_PORTS" in card and "Open the public port" not in card
    response = _public(client, world.database.id, public_port="15432")
    assert response.status_code == 422
    assert "an administrator sets SLIPWAY_DATABASE_PUBLIC_PORTS" in _around(
        _body(response), "public_port"
    )
    assert _port_of(world.database.id) is None


def test_an_admin_opens_and_closes_a_public_port(app, client, member, world, ports):
    member(Role.admin)
    d = world.database.id
    page = _body(client.get(f"/databases/{d}"))
    assert "An admin may open one of 15432-15434" in page
    assert re.search(r'<option value="15432">15432</option>', page)
    opened = _public(client, d, public_port="15433")
    assert opened.status_code == 303 and opened.location == f"/databases/{d}#public"
    assert _port_of(d) == 15433
    body = _body(client.get(f"/databases/{d}"))
    assert "Open on port <strong>15433</strong>" in body
    user, name = world.database.username, world.database.database_name
    line = f"psql &#34;host=localhost port=15433 user={user} dbname={name} sslmode=require&#34;"
    assert line in body
    assert "alpha-database-password" not in body
    closed = _public(client, d, close="1")
    assert closed.status_code == 303 and _port_of(d) is None
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.target_id == d).order_by(AuditEvent.id)
    )
    assert [a for a in actions if "port" in a] == ["database.port_opened", "database.port_closed"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("15435", "Port 15435 is not one of the ports that may be published (15432-15434)."),
        ("22", "Port 22 is not one of the ports that may be published"),
        ("0", "is not one of the ports"),
        ("-1", "is not one of the ports"),
        ("99999999999999999999", "is not one of the ports"),
        ("abc", "Invalid Choice"),
        ("15432 OR 1=1", "Invalid Choice"),
        ("", "Invalid Choice"),
    ],
)
def test_a_port_that_may_not_be_published_is_422_beside_the_field(
    app, client, member, world, ports, db_state, value, message
):
    member(Role.admin)
    before = db_state()
    response = _public(client, world.database.id, public_port=value)
    assert response.status_code == 422
    assert message in _around(_body(response), "public_port")
    assert db_state() == before


def test_a_port_another_database_holds_is_refused(app, client, member, world, ports, db_state):
    other = make_database(world.project, name="other-db")
    other.public_port = 15432
    db.session.commit()
    member(Role.admin)
    page = _body(client.get(f"/databases/{world.database.id}"))
    assert '<option value="15432">' not in page and '<option value="15433">' in page
    before = db_state()
    response = _public(client, world.database.id, public_port="15432")
    assert response.status_code == 422
    assert "the public port of another database" in _around(_body(response), "public_port")
    assert "other-db" not in _around(_body(response), "public_port")
    assert db_state() == before


@pytest.mark.parametrize("role", [Role.viewer, Role.developer])
def test_only_an_admin_opens_a_public_port(app, client, member, world, ports, db_state, role):
    member(role)
    page = _body(client.get(f"/databases/{world.database.id}"))
    assert "Open the public port" not in page
    before = db_state()
    assert _public(client, world.database.id, public_port="15432").status_code == 403
    assert _public(client, world.database.id, close="1").status_code == 403
    assert db_state() == before


def test_opening_asks_for_the_password_again_when_the_last_check_is_old(
    app, client, member, world, ports, db_state
):
    member(Role.admin)
    with client.session_transaction() as session:
        session["auth_checked_at"] = 0
    before = db_state()
    response = _public(client, world.database.id, public_port="15432")
    assert response.status_code == 303 and "/reauth" in response.location
    assert db_state() == before


@pytest.mark.parametrize(
    ("engine", "host", "expected"),
    [
        ("redis", "db.example.com", ["redis-cli --tls --sni db.example.com -h db.example.com "
                                     "-p 15432 --askpass"]),
        ("redis", "203.0.113.7", ["redis-cli --tls --insecure -h 203.0.113.7 -p 15432 --askpass"]),
        ("mariadb", "db.example.com", [
            "socat TCP-LISTEN:3306,bind=127.0.0.1,reuseaddr,fork "
            "OPENSSL:db.example.com:15432,snihost=db.example.com",
            "mariadb -h 127.0.0.1 -P 3306 -u app -p shop",
        ]),
        ("mariadb", "::1", [
            "socat TCP-LISTEN:3306,bind=127.0.0.1,reuseaddr,fork OPENSSL:[::1]:15432,verify=0",
            "mariadb -h 127.0.0.1 -P 3306 -u app -p shop",
        ]),
    ],
)  # fmt: skip
def test_the_client_lines_verify_a_name_and_not_an_address(engine, host, expected):
    from app.databases import public

    database = SimpleNamespace(engine=engine, public_port=15432)
    assert public.client_lines(database, host, "app", "shop") == expected


def test_the_metrics_tab_charts_the_databases_samples_and_its_json(app, client, member, world):
    from datetime import timedelta

    from app.models import MetricSample
    from app.models.base import utcnow

    start = utcnow() - timedelta(minutes=5)
    for i in range(6):
        db.session.add(MetricSample(
            scope="database", database_id=world.database.id, resolution=15,
            ts=start + timedelta(seconds=15 * i), containers=1, cpu_percent=3.5,
            mem_bytes=40 * 2**20, mem_limit_bytes=2**28, net_rx_bytes=100 * i, net_tx_bytes=0,
        ))  # fmt: skip
    db.session.commit()
    member(Role.viewer)
    d = world.database.id
    body = _body(client.get(f"/databases/{d}/metrics"))
    assert f'data-series="/databases/{d}/metrics.json?range=hour"' in body
    assert "3.5 %" in body and "40.0 MiB" in body  # the summary table, without JavaScript
    series = client.get(f"/databases/{d}/metrics.json?range=hour").json
    assert series["cpu_percent"] == [3.5] * 6 and series["resolution"] == 15
    bad = client.get(f"/databases/{d}/metrics.json?range=year")
    assert bad.status_code == 400 and bad.json["error"]["code"] == "bad_range"
    assert client.get(f"/databases/{d}/metrics?range=<b>x</b>").status_code == 400
