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
