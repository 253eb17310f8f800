"""Extensions, created unbound and bound to an app by ``init_app`` in the factory."""

from __future__ import annotations

import redis as redis_lib
from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from rq import Queue
from rq.serializers import JSONSerializer

from app.models.base import Base


def client_address() -> str:
    """The peer address; ProxyFix rewrites it only when proxies are trusted."""
    return request.remote_addr or "unknown"


db = SQLAlchemy(model_class=Base)
login = LoginManager()
sock = Sock()
limiter = Limiter(key_func=client_address, default_limits=[], key_prefix="slipway-rl")


def __getattr__(name: str):
    """``csrf`` is made on first use: only the web process has forms to protect, and
    Flask-WTF brings WTForms (about 3 MiB) the worker would keep for nothing."""
    if name == "csrf":
        from flask_wtf import CSRFProtect

        made = globals().setdefault("csrf", CSRFProtect())
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RedisExtension:
    """One Redis connection pool per app; connecting happens on first use."""

    def init_app(self, app: Flask) -> None:
        app.extensions["slipway_redis"] = redis_lib.Redis.from_url(
            app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2
        )

    @property
    def client(self) -> redis_lib.Redis:
        return current_app.extensions["slipway_redis"]


redis = RedisExtension()

QUEUE_TIMEOUTS = {"deploy": 3600, "backup": 6 * 3600, "notify": 60, "default": 600}


def queue(name: str = "default") -> Queue:
    """An RQ queue using the JSON serializer: job arguments are ids, never pickles."""
    return Queue(
        name,
        connection=redis.client,
        serializer=JSONSerializer,
        default_timeout=QUEUE_TIMEOUTS.get(name, 600),
    )
