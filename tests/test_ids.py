"""Ids are never handed out twice, on PostgreSQL and on SQLite.

Container, image, network and route names, Docker labels, audit targets, delivery
logs and object keys carry ids: a deleted row's id given to a new row would give the
new row the old one's history and Docker objects.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, Numeric, Table

from app.extensions import db
from app.models import Application
from tests.factories import make_app, make_project, make_team


def _tables_with_ids() -> list[Table]:
    return [
        t
        for t in db.metadata.sorted_tables
        if list(t.primary_key.columns.keys()) == ["id"] and t.c.id.autoincrement is not False
    ]


def test_every_table_with_an_integer_id_declares_sqlite_autoincrement():
    """New tables included: without it SQLite hands out max(id) + 1."""
    tables = _tables_with_ids()
    assert {"applications", "projects", "deployments", "users", "teams", "backups",
            "backup_policies", "backup_destinations", "notification_channels",
            "webhook_deliveries", "audit_events"} <= {t.name for t in tables}  # fmt: skip
    assert [t.name for t in tables if not t.dialect_options["sqlite"]["autoincrement"]] == []


_counter = itertools.count(1)


def _filler(column):
    """A value for a NOT NULL column without a default, distinct per call (unique columns)."""
    n = next(_counter)
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer | Numeric | Float):
        return n
    if isinstance(kind, DateTime) or getattr(kind, "impl", None).__class__ is DateTime:
        return datetime(2026, 1, 1, tzinfo=UTC)
    if isinstance(kind, JSON):
        return {}
    return f"v{n}"


def _insert(conn, table: Table) -> int:
    """A row of ``table`` and, for every foreign key it cannot do without, a new parent row
    (so no unique constraint over a parent's id can refuse the next one)."""
    values = {}
    for column in table.columns:
        if column.primary_key or column.nullable:
            continue
        fks = list(column.foreign_keys)
        if fks:
            values[column.name] = _insert(conn, fks[0].column.table)
        elif column.default is None and column.server_default is None:
            values[column.name] = _filler(column)
    return conn.execute(table.insert().values(values)).inserted_primary_key[0]


def test_deleting_the_newest_row_of_any_table_never_frees_its_id(app):
    """Every table with an id: delete its newest row and insert another: the new row's
    id is new (SQLite without AUTOINCREMENT hands out the deleted one again)."""
    reused = []
    with db.engine.begin() as conn:
        for table in _tables_with_ids():
            _insert(conn, table)
            newest = _insert(conn, table)
            conn.execute(table.delete().where(table.c.id == newest))
            again = _insert(conn, table)
            if again <= newest:
                reused.append((table.name, newest, again))
    assert reused == []


def test_an_app_created_after_the_newest_was_deleted_gets_a_new_id(app):
    project = make_project(make_team())
    make_app(project, "old")
    newest = make_app(project, "newest")
    gone = newest.id
    db.session.delete(newest)
    db.session.commit()
    assert db.session.get(Application, gone) is None
    assert make_app(project, "next").id > gone
