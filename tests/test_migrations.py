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
        "domains",
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
