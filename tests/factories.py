"""Test factories: rows made the shortest way, committed, for any test to build on.

``make_user()`` also creates the installation row on first use (as setup would),
so every factory-built world is an installed Slipway.
"""

from __future__ import annotations

import itertools

from app import crypto
from app.backups import runs, targets
from app.extensions import db
from app.models import (
    Application,
    BackupDestination,
    BackupPolicy,
    Environment,
    Installation,
    Membership,
    Project,
    Role,
    Team,
    User,
)

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


def make_team(name: str | None = None) -> Team:
    team = Team(name=name or f"team-{next(_counter)}")
    db.session.add(team)
    db.session.flush()
    return team


def make_user(
    team: Team | None = None,
    role: Role | str = Role.owner,
    email: str | None = None,
    password: str = PASSWORD,
) -> User:
    user = User(email=email or f"user{next(_counter)}@example.com", name="Test User")
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    team = team or make_team()
    db.session.add(Membership(team_id=team.id, user_id=user.id, role=str(Role(role))))
    if db.session.get(Installation, 1) is None:
        db.session.add(Installation(id=1, owner_id=user.id))
    db.session.commit()
    return user


def make_project(team: Team, name: str | None = None) -> Project:
    project = Project(team_id=team.id, name=name or f"proj{next(_counter)}")
    project.environments.append(Environment(name="production"))
    db.session.add(project)
    db.session.commit()
    return project


def make_app(project: Project, name: str | None = None, **fields) -> Application:
    values = {
        "name": name or f"app{next(_counter)}",
        "source_type": "git",
        "git_url": "https://git.example.com/acme/web.git",
        "git_branch": "main",
        "container_port": 8000,
    } | fields
    values.setdefault("address", f"{values['name']}.{project.name}")
    app = Application(project_id=project.id, environment_id=project.environments[0].id, **values)
    db.session.add(app)
    db.session.commit()
    return app


def team_of(user: User) -> Team:
    return user.memberships[0].team


# The one key pair s3rver knows (key id and secret); moto_server takes any.
S3_KEY = "S3RVER"


def make_destination(team: Team, endpoint: str, bucket: str, **fields) -> BackupDestination:
    values = {
        "name": f"dest{next(_counter)}", "endpoint_url": endpoint, "region": "us-east-1",
        "bucket": bucket, "prefix": "slipway", "access_key_id": S3_KEY,
        "secret_access_key": crypto.encrypt(S3_KEY, context=targets.S3_SECRET),
        "path_style": True,
    } | fields  # fmt: skip
    dest = BackupDestination(team_id=team.id, **values)
    db.session.add(dest)
    db.session.commit()
    return dest


def make_policy(team: Team, dest: BackupDestination, url: str | None, **fields) -> BackupPolicy:
    """A policy for a PostgreSQL URL (password split off and encrypted), or Slipway's own db."""
    values = {"name": f"pol{next(_counter)}", "target_type": "slipway"}
    if url:
        from app import names

        stored, password = names.database_url(url, ("127.0.0.1",))
        values |= {
            "target_type": "postgres",
            "database_url": stored,
            "database_password": crypto.encrypt(password, context=runs.DB_PASSWORD)
            if password else None,
        }  # fmt: skip
    policy = BackupPolicy(team_id=team.id, destination_id=dest.id, **(values | fields))
    db.session.add(policy)
    db.session.commit()
    return policy


def make_database(
    project: Project,
    name: str | None = None,
    *,
    engine: str = "postgres",
    password: str = "factory-db-password",
    **fields,
):
    """A database row (no container): its password sealed as the lifecycle seals it."""
    from app.databases import engines, links
    from app.models import Database

    spec = engines.spec(engine)
    values = {
        "name": name or f"db{next(_counter)}", "engine": engine, "version": spec.version,
        "image": f"{engine}:{spec.version}", "username": spec.default_user,
        "database_name": "app" if spec.has_database else "0",
        "password": crypto.encrypt(password, context=links.PASSWORD_CONTEXT),
        "status": "running",
    } | fields  # fmt: skip
    database = Database(project_id=project.id, **values)
    db.session.add(database)
    db.session.commit()
    return database
