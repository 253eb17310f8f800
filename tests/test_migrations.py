"""Alembic: one head, and the migrated schema is exactly what the models declare."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import Migrate
from sqlalchemy import inspect

from app.extensions import db


def _script(app) -> ScriptDirectory:
    migrate: Migrate = app.extensions["migrate"].migrate
    return ScriptDirectory.from_config(migrate.get_config())


def test_there_is_exactly_one_head(app):
    assert len(_script(app).get_heads()) == 1


def test_database_upgraded_from_empty_is_at_head(app):
    """The session fixture built this database from empty with ``upgrade``."""
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    assert set(current) == set(_script(app).get_heads())


def test_migrations_match_the_models(app):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_every_model_table_exists(app):
    tables = set(inspect(db.engine).get_table_names())
    for name in (
        "users",
        "teams",
        "memberships",
        "projects",
        "environments",
        "applications",
        "env_vars",
        "app_domains",
        "certificates",
        "acme_accounts",
        "deployments",
        "deployment_log_lines",
        "audit_events",
        "installation",
        "backup_destinations",
        "backup_policies",
        "backups",
        "restores",
        "notification_channels",
    ):
        assert name in tables


def test_migrating_leaves_the_apps_loggers_on(app):
    """Alembic's env.py configures logging; it must not disable Slipway's loggers
    (the session's migration has run by now), or log canary checks could not fail."""
    import logging

    names = [n for n in logging.root.manager.loggerDict if n.startswith("slipway")]
    assert names  # the app's modules are imported and have their loggers
    disabled = [n for n in names if getattr(logging.getLogger(n), "disabled", False)]
    assert disabled == []


def test_step_backfill_fills_in_where_old_final_rows_stopped(app):
    """0006: a failed or cancelled row without a step gets the last step mark the
    pipeline logged (stream ``slipway``); build output that looks like a mark, an
    active row and a row with a step already are left as they are."""
    from flask_migrate import downgrade, upgrade

    from app.models import Deployment, DeploymentLogLine
    from tests.factories import make_app, make_project, make_team

    application = make_app(make_project(make_team()))
    rows = {
        "cancelled": Deployment(application_id=application.id, status="cancelled"),
        "failed_fake": Deployment(application_id=application.id, status="failed"),
        "building": Deployment(application_id=application.id, status="building"),
        "kept": Deployment(application_id=application.id, status="failed", step="health"),
    }
    db.session.add_all(rows.values())
    db.session.flush()
    marks = [
        ("cancelled", "slipway", "── clone"), ("cancelled", "slipway", "── build"),
        ("cancelled", "stdout", "── switch"),
        ("failed_fake", "stdout", "── health"), ("failed_fake", "container", "── start"),
        ("building", "slipway", "── clone"), ("kept", "slipway", "── clone"),
    ]  # fmt: skip
    for seq, (name, stream, text) in enumerate(marks):
        db.session.add(DeploymentLogLine(deployment_id=rows[name].id, seq=seq, stream=stream,
                                         text=text))  # fmt: skip
    db.session.commit()
    ids = {name: row.id for name, row in rows.items()}
    db.session.remove()
    downgrade(revision="0005")
    upgrade()
    steps = {name: db.session.get(Deployment, i).step for name, i in ids.items()}
    assert steps == {"cancelled": "build", "failed_fake": None, "building": None, "kept": "health"}


def _insert(session, table: str, **values) -> None:
    """A row with ``values`` and a filler for every other NOT NULL column without default."""
    from sqlalchemy import text

    for _cid, name, typ, notnull, default, _pk in session.execute(
        text(f"PRAGMA table_info({table})")
    ):
        if name in values or not notnull or default is not None:
            continue
        kind = typ.upper()
        numeric = any(k in kind for k in ("INT", "BOOL", "FLOAT", "NUM"))
        dated = "DATE" in kind or "TIME" in kind
        values[name] = 1 if numeric else "2026-01-01 00:00:00" if dated else "x"
    columns = ", ".join(values)
    session.execute(
        text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + k for k in values)})"),
        values,
    )


def test_upgrading_a_sqlite_file_keeps_the_rows_of_rebuilt_tables(tmp_path):
    """0003 rebuilds ``applications`` (SQLite batch mode: copy, DROP, rename). With
    foreign keys on, the DROP used to cascade: every deployment and env var of an
    upgraded installation was deleted. Migrations now run with them off, checked after."""
    from flask_migrate import upgrade
    from sqlalchemy import func, select, text

    from app import create_app
    from app.models import Deployment, EnvVar

    url = f"sqlite:///{tmp_path}/old.db"
    old = create_app({"DATA_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with old.app_context():
        upgrade(revision="0002")
        session = db.session
        _insert(session, "teams", id=1)
        _insert(session, "projects", id=1, team_id=1)
        _insert(session, "environments", id=1, project_id=1)
        _insert(session, "applications", id=1, project_id=1, environment_id=1, name="web")
        _insert(session, "deployments", id=1, application_id=1, status="running")
        _insert(session, "env_vars", id=1, application_id=1, key="K", value="v")
        session.commit()
        session.remove()
        upgrade()
        assert db.session.scalar(select(func.count(Deployment.id))) == 1
        assert db.session.scalar(select(func.count(EnvVar.id))) == 1
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        db.session.remove()


def test_0007_gives_duplicate_addresses_from_before_distinct_ones(tmp_path):
    """Two teams' ``web`` in ``shop`` shared web.shop.<base> before 0007: the older app
    keeps it, the newer gets web-a<id>.shop, and the index then holds them apart."""
    from flask_migrate import upgrade
    from sqlalchemy import select

    from app import create_app
    from app.models import Application

    url = f"sqlite:///{tmp_path}/old.db"
    old = create_app({"DATA_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with old.app_context():
        upgrade(revision="0006")
        session = db.session
        for n in (1, 2):
            _insert(session, "teams", id=n)
            _insert(session, "projects", id=n, team_id=n, name="shop")
            _insert(session, "environments", id=n, project_id=n)
        _insert(session, "applications", id=3, project_id=1, environment_id=1, name="web")
        _insert(session, "applications", id=7, project_id=2, environment_id=2, name="web")
        _insert(session, "applications", id=9, project_id=2, environment_id=2, name="api")
        session.commit()
        session.remove()
        upgrade()
        found = dict(db.session.execute(select(Application.id, Application.address)).all())
        assert found == {3: "web.shop", 7: "web-a7.shop", 9: "api.shop"}
        db.session.remove()


def test_0009_keeps_delivery_rows_and_lets_their_null_digests_coexist(tmp_path):
    """0009 rebuilds ``webhook_deliveries`` on SQLite to add ``body_sha256`` (unique per
    app): the rows from before stay, linked to their deployments, all with NULL digests;
    a digest is unique per app from then on."""
    import pytest
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import exc, select, text

    from app import create_app
    from app.models import WebhookDelivery

    url = f"sqlite:///{tmp_path}/old.db"
    old = create_app({"DATA_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with old.app_context():
        upgrade(revision="0008")
        session = db.session
        _insert(session, "teams", id=1)
        _insert(session, "projects", id=1, team_id=1)
        _insert(session, "environments", id=1, project_id=1)
        _insert(session, "applications", id=1, project_id=1, environment_id=1, name="web")
        _insert(session, "deployments", id=1, application_id=1, status="running")
        for n in (1, 2):
            _insert(session, "webhook_deliveries", id=n, application_id=1, provider="github",
                    delivery_id=f"d{n}", outcome="deployed", deployment_id=1)  # fmt: skip
        session.commit()
        session.remove()
        upgrade()
        rows = db.session.execute(
            select(WebhookDelivery.delivery_id, WebhookDelivery.body_sha256,
                   WebhookDelivery.deployment_id).order_by(WebhookDelivery.id)
        ).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [("d1", None, 1), ("d2", None, 1)]
        fields = {"application_id": 1, "provider": "github", "event": "push",
                  "outcome": "ignored", "reason": "", "body_sha256": "ab" * 32}  # fmt: skip
        db.session.add(WebhookDelivery(delivery_id="d3", **fields))
        db.session.commit()
        db.session.add(WebhookDelivery(delivery_id="d4", **fields))
        with pytest.raises(exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
        db.session.remove()
        downgrade(revision="0008")
        assert db.session.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar() == 3
        db.session.remove()


def _schema(conn) -> dict:
    """What a rebuild must keep, table by table (the primary key's name aside: a column
    declared ``PRIMARY KEY AUTOINCREMENT`` has none)."""
    from sqlalchemy import inspect as reflect

    inspector = reflect(conn)
    schema = {}
    for table in inspector.get_table_names():
        columns = [
            (c["name"], str(c["type"]), c["nullable"], c["default"])
            for c in inspector.get_columns(table)
        ]
        schema[table] = {
            "columns": columns,
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(map(repr, inspector.get_foreign_keys(table))),
            "indexes": sorted(map(repr, inspector.get_indexes(table))),
            "unique": sorted(map(repr, inspector.get_unique_constraints(table))),
            "checks": sorted(map(repr, inspector.get_check_constraints(table))),
        }
    return schema


def _rows(session) -> dict:
    from sqlalchemy import text

    tables = session.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
    return {
        name: session.execute(text(f"SELECT * FROM {name} ORDER BY 1")).all()
        for (name,) in tables
        if name not in ("alembic_version", "sqlite_sequence")
    }


def test_0011_gives_sqlite_files_autoincrement_back_and_keeps_everything(tmp_path):
    """0003's rebuild of ``applications`` lost AUTOINCREMENT (and 0001 only declared it for
    deployments): SQLite gave a deleted app's id to the next app. The upgrade rebuilds
    every table with an id with it, keeps every row, column, index, constraint and
    foreign key, and the next id passes every id still in sight, deleted rows included
    where the audit trail or other rows name them."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app import create_app
    from app.models import Application, Project
    from tests.factories import make_app, make_project

    url = f"sqlite:///{tmp_path}/old.db"
    old = create_app({"DATA_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with old.app_context():
        upgrade(revision="0010")
        session = db.session
        _insert(session, "users", id=1, email="a@example.com")
        _insert(session, "installation", id=1, owner_id=1)
        _insert(session, "teams", id=1)
        _insert(session, "memberships", id=1, team_id=1, user_id=1)
        for n in (1, 2, 4):  # project 4 is deleted below; only the audit trail remembers it
            _insert(session, "projects", id=n, team_id=1, name=f"p{n}")
            _insert(session, "environments", id=n, project_id=n)
        for n in (1, 2, 3):  # app 3 is deleted below
            _insert(session, "applications", id=n, project_id=1, environment_id=1,
                    name=f"a{n}", address=f"a{n}.p1")  # fmt: skip
            _insert(session, "audit_events", id=n, team_id=1, user_id=1, action="app.created",
                    target_type="application", target_id=n)  # fmt: skip
        _insert(session, "audit_events", id=4, action="project.created", target_type="project",
                target_id=4)  # fmt: skip
        _insert(session, "deployments", id=1, application_id=2, status="running")
        _insert(session, "deployment_log_lines", id=1, deployment_id=1, seq=0, text="hi")
        _insert(session, "env_vars", id=1, application_id=2, key="K", value="v")
        _insert(session, "domains", id=1, application_id=2, host="a2.example.com")
        _insert(session, "webhook_deliveries", id=1, application_id=2, deployment_id=1,
                provider="github", delivery_id="d1")  # fmt: skip
        _insert(session, "metric_samples", id=1, application_id=2, scope="app")
        _insert(session, "backup_destinations", id=1, team_id=1, name="s3")
        _insert(session, "backup_policies", id=1, team_id=1, destination_id=1, name="nightly")
        _insert(session, "backups", id=1, team_id=1, policy_id=1, slot="s1")
        _insert(session, "restores", id=1, team_id=1, backup_id=1, user_id=1)
        _insert(session, "notification_channels", id=1, team_id=1, name="ops")
        session.execute(text("DELETE FROM applications WHERE id = 3"))
        session.execute(text("DELETE FROM projects WHERE id = 4"))
        session.commit()
        before_schema = _schema(session.connection())
        before_rows = _rows(session)
        session.remove()

        upgrade(revision="0011")

        session = db.session
        assert _schema(session.connection()) == before_schema
        assert _rows(session) == before_rows
        session.remove()
        upgrade()  # later revisions may add tables; the checks below cover those too
        session = db.session
        creates = dict(session.execute(text("SELECT name, sql FROM sqlite_master "
                                            "WHERE type = 'table'")).all())  # fmt: skip
        lacking = [t.name for t in db.metadata.sorted_tables
                   if t.dialect_options["sqlite"]["autoincrement"]
                   and "AUTOINCREMENT" not in creates[t.name]]  # fmt: skip
        assert lacking == []
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        session.remove()
        upgrade()  # the models are the head's
        session = db.session
        project = session.get(Project, 1)
        assert make_app(project, "next").id == 4  # not 3, the deleted app's
        assert make_project(project.team, "next").id == 5  # not 3 or 4
        assert session.get(Application, 2).name == "a2"
        session.remove()


def test_domains_move_to_app_domains_with_their_team_and_https_mode(tmp_path):
    """0018: every row of ``domains`` is in ``app_domains`` with the id it had, its app's
    team, and ``https_mode`` from the old flag (which was stored but never routed)."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app import create_app

    url = f"sqlite:///{tmp_path}/old.db"
    old = create_app({"DATA_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with old.app_context():
        upgrade(revision="0017")
        session = db.session
        _insert(session, "users", id=1, email="a@example.com")
        _insert(session, "teams", id=7)
        _insert(session, "projects", id=1, team_id=7, name="p")
        _insert(session, "environments", id=1, project_id=1)
        _insert(session, "applications", id=2, project_id=1, environment_id=1, name="a",
                address="a.p")  # fmt: skip
        _insert(session, "domains", id=5, application_id=2, host="shop.example.com",
                path_prefix="/", https=True)  # fmt: skip
        _insert(session, "domains", id=6, application_id=2, host="old.example.com",
                path_prefix="/v2", https=False)  # fmt: skip
        session.commit()
        upgrade()
        rows = session.execute(text(
            "SELECT id, application_id, team_id, host, path_prefix, https_mode, www, "
            "strip_prefix FROM app_domains ORDER BY id"
        )).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [
            (5, 2, 7, "shop.example.com", "/", "redirect", "none", False),
            (6, 2, 7, "old.example.com", "/v2", "off", "none", False),
        ]
        session.execute(text(
            "INSERT INTO app_domains (application_id, team_id, host, path_prefix, https_mode, "
            "www, strip_prefix, created_at) VALUES (2, 7, 'n.example.com', '/', 'redirect', "
            "'none', false, '2026-01-01 00:00:00')"
        ))  # fmt: skip
        assert session.execute(text("SELECT max(id) FROM app_domains")).scalar() == 7
        session.remove()
