"""Fixtures for the security suite (SECURITY.md): apps with changed settings,
two teams with data, whole-database snapshots, and a second session's token.

Only fixtures (and the data class one of them returns) live here; the factories
and the ``app`` fixture come from ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from app import create_app
from app.accounts import apikeys
from app.extensions import db
from app.models import (
    Application,
    DatabaseLink,
    Deployment,
    Domain,
    EnvVar,
    Invitation,
    Membership,
    Project,
    Role,
    Team,
    User,
)
from app.models.base import utcnow
from app.models.databases import Volume
from tests.conftest import Auth, RequestScopedClient, csrf_token
from tests.factories import make_app, make_database, make_project, make_team, make_user


@pytest.fixture
def app_with(app, base_config):
    """Build another app on the same database and Redis with some settings changed.

    Its app context is pushed on top of ``app``'s, so the factories write through
    it; the outer ``app`` fixture still empties the tables and Redis afterwards.
    """
    made = []

    def build(**overrides):
        new = create_app({**base_config, **overrides})
        new.test_client_class = RequestScopedClient
        ctx = new.app_context()
        ctx.push()
        made.append(ctx)
        return new

    yield build
    for ctx in reversed(made):
        db.session.remove()
        db.engine.dispose()
        ctx.pop()


@pytest.fixture
def new_client(app):
    """A callable making another browser: its own cookies, its own app context per request."""

    def make(flask_app=None):
        flask_app = flask_app or app
        flask_app.test_client_class = RequestScopedClient
        return flask_app.test_client()

    return make


@pytest.fixture
def real_password_hashing(monkeypatch):
    """Argon2 at production cost (tests/conftest.py makes it cheap for speed).

    Timing tests need the real cost to measure anything, and race tests need the
    real gap between "is setup done?" and the insert.
    """
    from argon2 import PasswordHasher

    from app.models import accounts

    monkeypatch.setattr(accounts, "_hasher", PasswordHasher())
    monkeypatch.setattr(accounts, "_dummy_hash", [])


@pytest.fixture
def db_state(app):
    """A callable returning every row of every table, read on a fresh connection.

    Comparing two calls proves a request changed nothing at all (no row added,
    removed or modified, no audit event written).
    """

    def snapshot() -> dict[str, list[tuple]]:
        db.session.commit()
        state = {}
        with db.engine.connect() as conn:
            for table in db.metadata.sorted_tables:
                order = list(table.primary_key.columns) or list(table.columns)
                rows = conn.execute(select(table).order_by(*order)).all()
                state[table.name] = [tuple(row) for row in rows]
        return state

    return snapshot


@pytest.fixture
def counts(db_state):
    """A callable returning {table: row count}."""

    def count() -> dict[str, int]:
        return {name: len(rows) for name, rows in db_state().items()}

    return count


@dataclass
class TeamWorld:
    """One team with an owner, a project, an app, two env vars (one secret) and a
    finished deployment."""

    team: Team
    user: User
    project: Project
    application: Application
    plain_var: EnvVar
    secret_var: EnvVar
    deployment: Deployment
    backup_objects: dict | None = None  # destination, policy, backup, restore, channel
    domain: Domain | None = None
    membership: Membership | None = None  # the owner's
    invitation: Invitation | None = None  # an open link invitation
    key_id: int | None = None  # an API key of the owner (its token: ``key_token``)
    key_token: str | None = None
    database: object | None = None  # a running PostgreSQL row, linked to the app
    link: object | None = None
    volume: Volume | None = None  # a volume of the app (app.web.volumes)

    def ids(self) -> dict[str, int | str]:
        """Values for the URL rules' arguments, naming this team's objects."""
        backup_ids = {f"{name}_id": obj.id for name, obj in (self.backup_objects or {}).items()}
        return backup_ids | {
            "team_id": self.team.id,
            "project_id": self.project.id,
            "app_id": self.application.id,
            "application_id": self.application.id,
            "var_id": self.plain_var.id,
            "deployment_id": self.deployment.id,
            "domain_id": self.domain.id if self.domain else 1,
            "membership_id": self.membership.id if self.membership else 1,
            "invitation_id": self.invitation.id if self.invitation else 1,
            "key_id": self.key_id or 1,
            "database_id": self.database.id if self.database else 1,
            "link_id": self.link.id if self.link else 1,
            "volume_id": self.volume.id if self.volume else 1,
            "field": "name",
            "filename": "app.css",
        }


def _build_team(label: str) -> TeamWorld:
    from app.projects import envvars

    team = make_team(f"{label}-team")
    user = make_user(team, Role.owner, email=f"{label}-owner@example.com")
    project = make_project(team, name=f"{label}-proj")
    application = make_app(project, name=f"{label}-web", description=f"{label} description")
    plain = envvars.set_var(application, "PLAIN_SETTING", f"{label}-plain-value", secret=False)
    secret = envvars.set_var(application, "API_TOKEN", f"{label}-secret-value", secret=True)
    deployment = Deployment(
        application_id=application.id,
        status="failed",
        trigger="manual",
        commit_sha="0" * 40,
        commit_message=f"{label} commit message",
    )
    db.session.add(deployment)
    domain = Domain(
        application_id=application.id, team_id=team.id, host=f"{label}-shop.example.com"
    )
    db.session.add(domain)
    invitation = Invitation(
        team_id=team.id, email=None, token_hash=hashlib.sha256(label.encode()).hexdigest(),
        role=Role.developer.value, invited_by_id=user.id, expires_at=utcnow() + timedelta(hours=1),
    )  # fmt: skip
    db.session.add(invitation)
    db.session.commit()
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    key, token = apikeys.create(user, team, f"{label}-key", ["admin"])
    database = make_database(project, f"{label}-db", password=f"{label}-database-password")
    link = DatabaseLink(application_id=application.id, database_id=database.id, prefix="")
    db.session.add(link)
    db.session.commit()
    from app.projects import volumes

    volume = volumes.add(application, label=f"{label}-data", mount_path="/data")
    return TeamWorld(
        team,
        user,
        project,
        application,
        plain,
        secret,
        deployment,
        _backup_objects(team, label),
        domain,
        membership,
        invitation,
        key.id,
        token,
        database,
        link,
        volume,
    )


def _backup_objects(team: Team, label: str) -> dict:
    """A destination, a policy, a succeeded backup with a local file, a drill, a channel."""
    from pathlib import Path

    from flask import current_app

    from app import crypto, notify
    from app.backups import runs, targets
    from app.models import Backup, BackupDestination, BackupPolicy, NotificationChannel, Restore

    dest = BackupDestination(
        team_id=team.id, name=f"{label}-dest", endpoint_url=f"https://s3.{label}.example.com",
        bucket=f"{label}-bucket", prefix=f"{label}-prefix", access_key_id=f"{label}-key-id",
        secret_access_key=crypto.encrypt(f"{label}-s3-secret", context=targets.S3_SECRET),
    )  # fmt: skip
    db.session.add(dest)
    db.session.flush()
    policy = BackupPolicy(
        team_id=team.id, name=f"{label}-policy", target_type="postgres", destination_id=dest.id,
        database_url=f"postgresql://app@db.{label}.example.com:5432/{label}_db",
        database_password=crypto.encrypt(f"{label}-db-password", context=runs.DB_PASSWORD),
    )  # fmt: skip
    db.session.add(policy)
    db.session.flush()
    folder = Path(current_app.config["BACKUPS_DIR"]) / f"team-{team.id}"
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / f"{label}.dump"
    local.write_bytes(f"{label}-backup-bytes".encode())
    backup = Backup(
        team_id=team.id, policy_id=policy.id, status="succeeded", trigger="manual",
        size_bytes=local.stat().st_size, sha256="0" * 64, local_path=str(local),
        bucket=dest.bucket, object_key=f"{label}-prefix/{label}.dump",
    )  # fmt: skip
    db.session.add(backup)
    db.session.flush()
    restore = Restore(team_id=team.id, backup_id=backup.id, kind="drill", status="succeeded",
                      log=f"{label} drill log")  # fmt: skip
    channel = NotificationChannel(
        team_id=team.id, name=f"{label}-channel", kind="webhook", events=["backup.failed"],
        settings={"host": f"hooks.{label}.example.com"},
        secret=crypto.encrypt(f"https://hooks.{label}.example.com/{label}-hook-token",
                               context=notify.SECRET_CONTEXT),
    )  # fmt: skip
    db.session.add_all([restore, channel])
    db.session.commit()
    return {"destination": dest, "policy": policy, "backup": backup, "restore": restore,
            "channel": channel}  # fmt: skip


@pytest.fixture
def routes():
    """A callable listing (endpoint, method, url) for every URL rule of an app.

    The rules come from ``url_map``, so a route is covered the day it is added;
    path arguments are filled from ``world.ids()`` (1 for an unknown one).
    HEAD and OPTIONS are left out; ``objects_only`` keeps the rules with an id;
    ``websockets`` lists the websocket rules instead of the HTTP ones.
    """

    def listing(
        flask_app,
        world,
        *,
        methods=("GET", "POST", "PUT", "PATCH", "DELETE"),
        objects_only=False,
        websockets=False,
    ):
        values = world.ids()
        adapter = flask_app.url_map.bind("localhost")
        found = []
        for rule in flask_app.url_map.iter_rules():
            if objects_only and not any(a.endswith("_id") for a in rule.arguments):
                continue
            if rule.websocket != websockets:
                continue  # websocket rules answer only handshakes: test_websockets.py
            args = {name: values.get(name, 1) for name in rule.arguments}
            for method in sorted(rule.methods & set(methods)):
                url = adapter.build(rule.endpoint, args, method=method)
                found.append((rule.endpoint, method, url))
        return found

    return listing


@pytest.fixture
def build_team(app):
    """A callable making a fresh :class:`TeamWorld`; ``label`` prefixes its names."""
    return _build_team


@pytest.fixture
def team_a(build_team):
    """The attacker's team: a member of it makes the requests."""
    return build_team("alpha")


@pytest.fixture
def team_b(build_team, team_a):
    """The victim team, whose objects team A must never reach."""
    return build_team("bravo")


@pytest.fixture
def member(app, client, team_a):
    """Log ``client`` in as a member of team A with a chosen role; returns the user."""

    def login(role: Role = Role.owner) -> User:
        user = make_user(team_a.team, role)
        response = Auth(client).login(user)
        assert response.status_code == 303, response.get_data(as_text=True)
        return user

    return login


@pytest.fixture
def foreign_token(app, new_client):
    """A valid CSRF token of another, logged-in session (a different browser)."""
    other = new_client()
    user = make_user(email="someone-else@example.com")
    assert Auth(other).login(user).status_code == 303
    return csrf_token(other, "/")
