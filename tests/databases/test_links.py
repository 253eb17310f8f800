"""Links give an app its database's variables, computed from the credentials of now:
nothing is copied into the app's env vars, secrets are masked on pages."""

from __future__ import annotations

import pytest

from app import crypto
from app.databases import engines, links
from app.extensions import db
from app.models import Database, DatabaseStatus, EnvVar
from tests.factories import make_app, make_project, make_team

_n = iter(range(1, 10_000))


def _database(project, engine="postgres", password="s3cret/+:@pw", name=None) -> Database:
    row = Database(
        project_id=project.id, name=name or f"db{next(_n)}", engine=engine,
        version=engines.spec(engine).version, image="img", username="app",
        database_name="0" if engine == "redis" else "app",
        password=crypto.encrypt(password, context=links.PASSWORD_CONTEXT),
        status=DatabaseStatus.running.value,
    )  # fmt: skip
    db.session.add(row)
    db.session.flush()
    return row


@pytest.fixture
def project(app):
    return make_project(make_team(), f"links{next(_n)}")


def test_postgres_variables_carry_the_current_password_url_encoded(app, project):
    web = make_app(project, "web")
    database = _database(project, name="shop-db")
    links.link(web, database)
    env = links.variables_for(web)
    assert env["DATABASE_URL"] == "postgresql://app:s3cret%2F%2B%3A%40pw@shop-db:5432/app"
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == (
        "shop-db", "5432", "app", "app",
    )  # fmt: skip
    assert env["PGPASSWORD"] == "s3cret/+:@pw"
    # A rotation is seen at the next deploy: nothing was copied.
    database.password = crypto.encrypt("new-one", context=links.PASSWORD_CONTEXT)
    assert links.variables_for(web)["PGPASSWORD"] == "new-one"
    assert db.session.query(EnvVar).filter_by(application_id=web.id).count() == 0


def test_mariadb_and_redis_give_their_usual_variables_under_a_prefix(app, project):
    web = make_app(project, "web")
    links.link(web, _database(project, "mariadb", name="maria"), "main")
    links.link(web, _database(project, "redis", name="cache"), "CACHE")
    env = links.variables_for(web)
    assert env["MAIN_DATABASE_URL"].startswith("mysql://app:")
    assert env["MAIN_MYSQL_HOST"] == "maria" and env["MAIN_MYSQL_PORT"] == "3306"
    assert env["CACHE_REDIS_URL"] == "redis://:s3cret%2F%2B%3A%40pw@cache:6379/0"
    assert "DATABASE_URL" not in env


def test_pages_see_names_and_plain_values_never_the_password(app, project):
    web = make_app(project, "web")
    links.link(web, _database(project, name="shop-db"))
    shown = {v.key: v for v in links.shown(web)}
    assert shown["PGHOST"].value == "shop-db" and not shown["PGHOST"].secret
    for key in ("DATABASE_URL", "PGPASSWORD"):
        assert shown[key].secret and shown[key].value == ""
    assert all(v.database == "shop-db" for v in shown.values())
    assert "s3cret" not in repr(links.shown(web))


@pytest.mark.parametrize("prefix", ["1X", "A-B", "A B", "X" * 40, "$(id)", "A\nB"])
def test_hostile_prefixes_are_refused(app, project, prefix):
    with pytest.raises(links.LinkError):
        links.link(make_app(project, "web"), _database(project), prefix)


def test_only_a_database_of_the_apps_project_links_once_per_prefix(app, project):
    web = make_app(project, "web")
    other = make_project(project.team, f"other{next(_n)}")
    with pytest.raises(links.LinkError, match="own project"):
        links.link(web, _database(other))
    first = _database(project)
    links.link(web, first)
    with pytest.raises(links.LinkError, match="already linked"):
        links.link(web, first, "B")
    with pytest.raises(links.LinkError, match="prefix"):
        links.link(web, _database(project))
    gone = _database(project)
    gone.status = DatabaseStatus.deleting.value
    with pytest.raises(links.LinkError, match="being deleted"):
        links.link(web, gone, "C")


def test_secret_keys_are_recognised_under_any_prefix():
    for key in ("DATABASE_URL", "X_PGPASSWORD", "A_B_REDIS_URL", "MYSQL_PASSWORD"):
        assert engines.is_secret(key)
    for key in ("PGHOST", "X_MYSQL_PORT", "REDIS_HOST", "DATABASE_URLX"):
        assert not engines.is_secret(key)


def test_images_come_from_the_settings(app):
    assert engines.image_for("postgres", app.config) == app.config["IMAGE_POSTGRES"]
    assert {s.engine.value for s in engines.SPECS.values()} == {"postgres", "mariadb", "redis"}
