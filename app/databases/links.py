"""Links: an app gets a database's variables at every deploy, computed then from the
database's current credentials, so a rotated password never leaves a stale copy.

The variables are never written into the app's env vars: a link is a row, and the
deploy pipeline asks :func:`variables_for` for its values. A variable the app sets
itself wins over a linked one of the same name (the app's env tab says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select

from app import audit, crypto, names
from app.databases import engines
from app.extensions import db
from app.models import Application, Database, DatabaseLink

PASSWORD_CONTEXT = "database-password"
PREFIX_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,38}$")


class LinkError(ValueError):
    """The message is written for the person linking."""


@dataclass(frozen=True)
class LinkedVariable:
    key: str
    value: str  # "" on pages for a secret one (see shown())
    secret: bool
    database: str  # the database's name ("from database shop-db")


def password_of(database: Database) -> str:
    """The database's password in clear. Only the worker (and a deploy) calls this."""
    return crypto.decrypt_stored(
        database.password, context=PASSWORD_CONTEXT, what="the database's password",
        remedy=f"rotate the password of database {database.name}",
    )  # fmt: skip


def check_prefix(value: str | None) -> str:
    """``""`` or an env-key-like prefix in capitals (``ANALYTICS``)."""
    prefix = (value or "").strip().upper().rstrip("_")
    if prefix and not PREFIX_RE.fullmatch(prefix):
        raise LinkError(
            "A prefix is up to 39 capital letters, digits and '_', starting with a letter."
        )
    if prefix:
        names.env_key(prefix)
    return prefix


def link(app: Application, database: Database, prefix: str = "", *, by=None) -> DatabaseLink:
    """Link ``database`` to ``app`` (same project only). The caller commits."""
    if database.project_id != app.project_id:
        raise LinkError("Only a database of the app's own project can be linked.")
    if not database.is_live:
        raise LinkError(f"Database {database.name} is being deleted.")
    prefix = check_prefix(prefix)
    for existing in links_of(app):
        if existing.database_id == database.id:
            raise LinkError(f"Database {database.name} is already linked to this app.")
        if existing.prefix == prefix:
            shown = prefix or "no prefix"
            raise LinkError(f"Another database is linked with {shown}; choose a prefix.")
    row = DatabaseLink(application_id=app.id, database_id=database.id, prefix=prefix,
                       created_by_id=getattr(by, "id", None))  # fmt: skip
    db.session.add(row)
    db.session.flush()
    return row


def unlink(row: DatabaseLink) -> None:
    """Remove a link; the app's next deploy runs without the variables. Caller commits."""
    db.session.delete(row)
    db.session.flush()


def add(app: Application, database: Database, prefix: str = "", *, by=None) -> DatabaseLink:
    """Link and record it on the team's audit trail (the page's Link database); commits."""
    row = link(app, database, prefix, by=by)
    audit.record(audit.Action.DATABASE_LINKED, team_id=app.project.team_id, target=app,
                 database=database.name, prefix=row.prefix)  # fmt: skip
    db.session.commit()
    return row


def remove(row: DatabaseLink) -> None:
    """Unlink and record it (the page's Unlink); commits."""
    app = row.application
    audit.record(audit.Action.DATABASE_UNLINKED, team_id=app.project.team_id, target=app,
                 database=row.database.name, prefix=row.prefix)  # fmt: skip
    unlink(row)
    db.session.commit()


def links_of(app: Application) -> list[DatabaseLink]:
    return list(
        db.session.scalars(
            select(DatabaseLink)
            .where(DatabaseLink.application_id == app.id)
            .order_by(DatabaseLink.id)
        )
    )


def linked_apps(database: Database) -> list[Application]:
    return [row.application for row in database.links]


def variables_for(app: Application) -> dict[str, str]:
    """Every linked database's variables, in clear, for a container. Worker only."""
    env: dict[str, str] = {}
    for row in links_of(app):
        if row.database.is_live:
            env |= engines.variables(row.database, password_of(row.database), row.prefix)
    return env


def shown(app: Application) -> list[LinkedVariable]:
    """The linked variables as the env tab shows them: names, plain values, secret ones
    masked (no decryption: the page never holds the password)."""
    out = []
    for row in links_of(app):
        database = row.database
        if not database.is_live:
            continue
        for key, value in engines.variables(database, "•" * 8, row.prefix).items():
            secret = engines.is_secret(key)
            out.append(LinkedVariable(key, "" if secret else value, secret, database.name))
    return out
