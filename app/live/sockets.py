"""Rules every websocket obeys: same-origin, a per-user cap, access re-checked.

The handshake itself passes the request guard (a session is needed) and the
``access`` lookups (another team's object is a 404) before a websocket exists.
Here: the ``Origin`` check (a cross-site page cannot open a socket with the
user's cookie), the count of open sockets per user (kept in Redis so that all
web workers share it; each socket's entry expires unless renewed, so a killed
worker leaks nothing for long), and :class:`AccessWatch`, which a streaming loop
calls so that a socket closes soon after its user logs out everywhere, changes
password or leaves the team.
"""

from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import urlsplit

from flask import current_app, request
from sqlalchemy import select

from app import urls
from app.extensions import db, redis
from app.models import Membership, User

SLOTS_KEY = "slipway:ws-open:{}"
# close codes (4000–4999 are the application's own)
CLOSE_TOO_MANY = 4429
CLOSE_BUSY = 4503  # this web worker's live views are all taken; its other threads serve pages
CLOSE_ACCESS_LOST = 4403
CLOSE_DONE = 1000
CLOSE_UNAVAILABLE = 1011  # the client retries later


def _origin_of(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    host = parts.netloc.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    if default and host.endswith(default):
        host = host[: -len(default)]
    return scheme, host


def origin_allowed() -> bool:
    """The ``Origin`` header names this site (the request's host or ``PUBLIC_URL``).

    A browser always sends ``Origin`` on a websocket handshake, so a missing one
    means a client that is not a browser; such a client must still present the
    session cookie, which no other site can make it send, so it is allowed.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    theirs = _origin_of(origin)
    if theirs is None:
        return False  # "null" (sandboxed frames, file://) and garbage
    return theirs in {_origin_of(base) for base in urls.dashboard_bases()}


class WorkerSeats:
    """Live views this web process holds open, capped below its thread count.

    Under gunicorn's ``gthread`` worker an open websocket holds one pool thread for
    as long as it is open, and a page waits in the pool's queue behind them: if
    live views took every thread, no page would answer. So a process admits at
    most ``LIVE_VIEWS_PER_WORKER`` (``WEB_THREADS`` - ``WEB_PAGE_THREADS``); the
    threads left are only ever busy with pages, fragments and handshakes. The
    count is per process on purpose: the thread pool it protects is.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0

    def take(self, cap: int) -> bool:
        with self._lock:
            if self.open >= cap:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.open -= 1


seats = WorkerSeats()


class Slot:
    """One open socket of a user, counted against ``WS_MAX_PER_USER``."""

    def __init__(self, user_id: int):
        self.key = SLOTS_KEY.format(user_id)
        self.token = secrets.token_hex(8)
        self.ttl = max(30, 6 * current_app.config["WS_RECHECK_SECONDS"])
        self.client = redis.client

    def take(self, cap: int) -> bool:
        """Count this socket; False (and nothing counted) when the user is at the cap."""
        now = time.time()
        pipe = self.client.pipeline()
        pipe.zremrangebyscore(self.key, "-inf", now)
        pipe.zadd(self.key, {self.token: now + self.ttl})
        pipe.zrank(self.key, self.token)
        pipe.expire(self.key, self.ttl)
        rank = pipe.execute()[2]
        # Ranked by expiry: a newer socket ranks after the open ones.
        if rank is None or rank >= cap:
            self.client.zrem(self.key, self.token)
            return False
        return True

    def renew(self) -> None:
        self.client.zadd(self.key, {self.token: time.time() + self.ttl}, xx=True)
        self.client.expire(self.key, self.ttl)

    def release(self) -> None:
        self.client.zrem(self.key, self.token)


class AccessWatch:
    """Re-checks, every few seconds, that the socket's user still may see its team.

    Uses a short database session of its own each time: a long-lived stream must
    not hold a connection (or a transaction) while it waits.
    """

    def __init__(self, user_id: int, session_version: int, team_ids: set[int], slot: Slot):
        self.user_id = user_id
        self.session_version = session_version
        self.team_ids = set(team_ids)
        self.slot = slot
        self.every = current_app.config["WS_RECHECK_SECONDS"]
        self.next_check = time.monotonic() + self.every

    def still_allowed(self) -> bool:
        """True until the user is gone, its sessions were ended, or it left the team."""
        if time.monotonic() < self.next_check:
            return True
        self.next_check = time.monotonic() + self.every
        try:
            user = db.session.get(User, self.user_id)
            if user is None or user.session_version != self.session_version:
                return False
            teams = set(
                db.session.scalars(
                    select(Membership.team_id).where(Membership.user_id == self.user_id)
                )
            )
            if not self.team_ids <= teams:
                return False
        finally:
            db.session.remove()
        self.slot.renew()
        return True
