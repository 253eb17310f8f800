"""Slipway: a self-hosted platform-as-a-service for small teams."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, has_request_context
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from app import config as config_module


def create_app(
    config: dict[str, Any] | None = None, *, migrations: bool = True, web: bool = True
) -> Flask:
    """Build the app; ``config`` overrides settings (tests).

    ``migrations=False`` (the web and worker processes, which never migrate) leaves
    Flask-Migrate out: it imports Alembic, 25 MiB a long-lived process would keep for
    nothing. ``flask --app app migrate`` and the tests have it. ``web=False`` (the
    worker, which answers no request, renders no page and builds no URL) leaves the
    blueprints, their forms and the API out."""
    settings = config_module.load(config)
    app = Flask(__name__, instance_path=settings["DATA_DIR"])
    app.config.update(settings)
    if app.config["TRUSTED_PROXIES"]:
        # Only behind a proxy we run (Traefik) may X-Forwarded-For name the client.
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)

    from app import cli
    from app.extensions import db, limiter, login, redis, sock

    db.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():  # the engine exists now; it has not connected yet
            event.listen(db.engine, "connect", _sqlite_pragmas)
    if migrations:
        from flask_migrate import Migrate

        Migrate(app, db, directory=str(config_module.ROOT / "migrations"))
    login.init_app(app)
    sock.init_app(app)
    redis.init_app(app)
    limiter.init_app(app)
    if web:
        from app.extensions import csrf
        from app.web import register

        csrf.init_app(app)
        register(app)
    cli.register(app)
    _log_request_ids()
    return app


def _log_request_ids() -> None:
    """Give every log record a ``request_id`` (the request's ``X-Request-Id``, "-" outside
    a request), so a log format can show which request a line belongs to."""
    current = logging.getLogRecordFactory()
    if getattr(current, "slipway", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        record.request_id = "-"
        if has_request_context():
            from app.web import request_id

            record.request_id = request_id()
        return record

    factory.slipway = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL, foreign keys and a busy timeout on every connection of the app's own SQLite
    engine (bound in :func:`create_app`; other engines in the process are left alone)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
