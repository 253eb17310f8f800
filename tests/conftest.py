"""Fixtures: a real database (PostgreSQL or SQLite), a real Redis, a logged-in client.

``SLIPWAY_TEST_DATABASE_URL`` picks the database (``make test`` runs the suite
once with PostgreSQL and once with SQLite); ``SLIPWAY_TEST_REDIS_URL`` the
Redis server. The schema is built by the Alembic migrations, once per session;
each test starts from empty tables and an empty Redis database.

Tests of the engine, Traefik, the browser and whole processes (the fixtures in
``ONCE_FIXTURES``) run in one of the two database runs only: with
``SLIPWAY_TEST_ONCE=skip`` they are deselected (``make test`` sets it for the
PostgreSQL run; they run in the SQLite run, the default ``make run`` uses, with
``SLIPWAY_TEST_ONCE=sqlite``), except those of ``ONCE_IN_POSTGRESQL_RUN``, which run
in the PostgreSQL run instead to even out the two.
"""

from __future__ import annotations

import base64
import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from app import create_app
from app.extensions import db
from app.models import (
    Role,
)
from tests.factories import PASSWORD, make_user

# Fixtures of the tests that run once per ``make test``, not once per database.
ONCE_FIXTURES = frozenset(
    {"infra", "browser", "server", "fresh_server", "open_page", "db_registry"}
)


# Directories whose run-once tests go in the PostgreSQL run instead, so that the two
# runs of ``make test`` (side by side) take about as long as each other.
ONCE_IN_POSTGRESQL_RUN = ("tests/databases/",)


def _runs_once(item) -> bool:
    return bool(
        ONCE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("once")
    )


def _once_in_postgresql_run(item) -> bool:
    path = str(Path(str(item.path)).relative_to(Path(__file__).parent.parent))
    return path.startswith(ONCE_IN_POSTGRESQL_RUN)


def pytest_collection_modifyitems(config, items):
    """``SLIPWAY_TEST_ONCE=skip`` (the PostgreSQL run of make test) deselects the run-once
    tests but those of ``ONCE_IN_POSTGRESQL_RUN``; ``=sqlite`` (the SQLite run) deselects
    those. Unset, everything runs."""
    run = os.environ.get("SLIPWAY_TEST_ONCE")
    if run not in ("skip", "sqlite"):
        return
    keep, dropped = [], []
    for item in items:
        # A run-once test belongs to the PostgreSQL run ("skip") if its directory says so.
        wanted = not _runs_once(item) or _once_in_postgresql_run(item) == (run == "skip")
        (keep if wanted else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


TEST_KEY = "k1:" + base64.b64encode(b"\x01" * 32).decode()


def database_url(tmp_root: Path) -> str:
    url = os.environ.get("SLIPWAY_TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_root}/test.db"


def redis_url() -> str:
    return os.environ.get("SLIPWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reset_schema(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Fail fast rather than wait forever behind another run on the same database.
            conn.execute(text("SET lock_timeout = '30s'"))
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing():
    """Argon2's production cost is the point in production and a waste in tests."""
    from argon2 import PasswordHasher, profiles

    from app.models import accounts

    saved = accounts._hasher
    accounts._hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
    yield
    accounts._hasher = saved


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slipway-data")


@pytest.fixture(scope="session")
def base_config(data_dir) -> dict:
    url = database_url(data_dir)
    _reset_schema(url)
    config = {
        "TESTING": True,
        "ADOPT_UNLABELLED": False,
        "DATA_DIR": str(data_dir),
        "SECRET_KEY": "test-secret-key",
        "ENCRYPTION_KEYS_TEXT": TEST_KEY,
        "SQLALCHEMY_DATABASE_URI": url,
        "REDIS_URL": redis_url(),
    }
    app = create_app(config)
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    return config


@contextmanager
def running_app(config: dict):
    """An app on the test database and Redis; empties both afterwards."""
    app = create_app(config)
    redis_lib.Redis.from_url(config["REDIS_URL"]).flushdb()
    with app.app_context():
        yield app
        db.session.remove()
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
        db.engine.dispose()  # each test's app has its own pool; don't leak connections
    redis_lib.Redis.from_url(config["REDIS_URL"]).flushdb()


@pytest.fixture
def app(base_config):
    with running_app(base_config) as app:
        yield app


class RequestScopedClient(FlaskClient):
    """Each request gets its own app context, as under a real server.

    The ``app`` fixture keeps an app context open for the test body; Flask would
    reuse it for every request, sharing ``g`` (the CSRF token cache) and the
    database session between requests and the test. That would hide bugs.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def client(app):
    app.test_client_class = RequestScopedClient
    return app.test_client()


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token of the client's session, as a page embeds it."""
    page = client.get(path)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True))
    assert found, f"no CSRF token on {path} ({page.status_code})"
    return found.group(1)


class Auth:
    """Log the test client in and out through the real login form."""

    def __init__(self, client):
        self.client = client

    def login(self, user_or_email, password: str = PASSWORD):
        email = getattr(user_or_email, "email", user_or_email)
        token = csrf_token(self.client, "/login")
        return self.client.post(
            "/login", data={"csrf_token": token, "email": email, "password": password}
        )

    def logout(self):
        token = csrf_token(self.client, "/")
        return self.client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client):
    return Auth(client)


@pytest.fixture
def owner(app):
    return make_user(role=Role.owner)


@pytest.fixture
def logged_in(client, auth, owner):
    """A client logged in as a team owner; returns (client, user)."""
    response = auth.login(owner)
    assert response.status_code == 303, response.get_data(as_text=True)
    return client, owner
