"""Watching the engine: what this installation's containers are doing right now.

:class:`Watcher` follows the engine's event stream (this installation's containers
only: the ``slipway.installation`` label) and, every :data:`RECONCILE_SECONDS`,
lists the installation's containers, for events missed while the stream was down
and at start-up. Whenever a container of an app starts, dies, stops, is killed,
OOM-killed, paused, restarted or removed, the app is checked again
(``app.deploys.health.check``: the route is recomputed from the routed
deployment's live replicas, and the app's health stored). A managed database's
container (``slipway.database``) is checked the same way
(``app.databases.lifecycle.observe``: its row follows what its container does). It
reconnects when the stream breaks. In production it runs in the worker process, under
the scheduler's leader lock, so exactly one watcher acts on an installation.

What a replica is doing now (state, exit, verified address) is
``app.runtime.replicas``.

Restarts: replicas run with ``unless-stopped``. Docker restarts a replica that
exits on its own after a back-off that starts at 100 ms and doubles with every
restart up to one minute, and resets once a run lasts 10 s; ``docker stop`` and
``docker kill`` are manual stops, never restarted. Slipway adds no back-off of its
own; it counts restarts (:meth:`Watcher.restarts`) to tell crash-looping.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from app.runtime import installation
from app.runtime.engine import LABEL_APP, client
from app.runtime.installation import LABEL_INSTALLATION
from app.runtime.replicas import installation_app_ids
from app.runtime.volumes import LABEL_DATABASE

log = logging.getLogger("slipway.watch")
# Container events that can change what an app serves.
EVENTS = ("start", "die", "stop", "kill", "oom", "destroy", "restart", "pause", "unpause")
RECONCILE_SECONDS = 15.0
# Restarts within this many seconds are counted (crash-looping).
RESTART_WINDOW = 60.0
RECONNECT_MAX_SECONDS = 10.0
# ``kill`` events with these signals stop the container (``docker stop`` sends the
# image's stop signal, by default SIGTERM; ``docker kill`` and ``rm -f`` SIGKILL).
STOP_SIGNALS = ("2", "3", "9", "15", "SIGINT", "SIGQUIT", "SIGKILL", "SIGTERM")
# A container still running this long after a stop signal handled it and stays routed.
LEAVING_SECONDS = 30.0


class Watcher:
    """Follows the engine's events and reconciles; calls ``check(app_id, watcher)``.

    ``check`` defaults to ``app.deploys.health.check``. :meth:`start` starts two
    daemon threads (the event reader and the checker, each in its own app
    context); :meth:`stop` ends them.
    """

    def __init__(self, app, check: Callable | None = None,
                 reconcile_seconds: float = RECONCILE_SECONDS,
                 check_database: Callable | None = None):  # fmt: skip
        if check is None:
            from app.deploys import health

            check = health.check
        if check_database is None:
            from app.databases import lifecycle

            check_database = lifecycle.observe
        self.app = app
        self.check = check
        self.check_database = check_database
        self._dirty_databases: set[int] = set()
        self.reconcile_seconds = reconcile_seconds
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._dirty: set[int] = set()
        self._reconcile = True  # at start-up
        self._stream = None
        self._threads: list[threading.Thread] = []
        # Per container: (time, action) of its recent events, for restart counting.
        self._history: dict[str, collections.deque] = {}
        self.connected = threading.Event()  # the event stream is open (tests wait for it)

    # -- life --------------------------------------------------------------

    def start(self) -> Watcher:
        for target, name in ((self._read_events, "watch-events"), (self._work, "watch-check")):
            thread = threading.Thread(target=self._in_context(target), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stopping.set()
        self._wake.set()
        self._close_stream()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def _in_context(self, target):
        def run():
            with self.app.app_context():
                target()

        return run

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a broken stream is fine
                pass

    # -- what other parts ask ---------------------------------------------

    def restarts(self, container_id: str, window: float = RESTART_WINDOW) -> int:
        """How many times the engine restarted the container within ``window`` seconds:
        a ``start`` after a ``die`` with no ``stop`` between (``docker restart`` and a
        manual start after ``docker stop`` are not counted)."""
        cutoff = time.time() - window
        with self._lock:
            events = list(self._history.get(container_id, ()))
        count, died = 0, False
        for at, action in events:
            if action == "die":
                died = True
            elif action in ("stop", "restart"):
                died = False
            elif action == "start":
                if died and at >= cutoff:
                    count += 1
                died = False
        return count

    def leaving(self, within: float = LEAVING_SECONDS) -> frozenset[str]:
        """Containers sent a stop signal (``docker stop``, ``kill``, ``rm -f``) that have
        not died or started since: route around them before their address is freed. One
        that is still up ``within`` seconds later caught the signal and stays."""
        cutoff = time.time() - within
        with self._lock:
            return frozenset(
                cid
                for cid, history in self._history.items()
                if history and history[-1][1] == "kill" and history[-1][0] >= cutoff
            )

    def mark(self, app_id: int) -> None:
        """Check this app soon (the checker thread)."""
        with self._lock:
            self._dirty.add(app_id)
        self._wake.set()

    # -- the event reader --------------------------------------------------

    def _read_events(self) -> None:
        delay, since = 1.0, time.time() - RESTART_WINDOW  # the last minute: restart history
        while not self._stopping.is_set():
            mine = self._installation()
            if mine is None:
                self._stopping.wait(2)
                continue
            try:
                engine = client(timeout=30)
                try:
                    self._stream = engine.api.events(
                        since=int(since), decode=True,
                        filters={"type": "container", "event": list(EVENTS),
                                 "label": [f"{LABEL_INSTALLATION}={mine}"]},
                    )  # fmt: skip
                    self.connected.set()
                    delay = 1.0
                    for event in self._stream:
                        since = max(since, event.get("time") or since)
                        self._note(event)
                finally:
                    self.connected.clear()
                    self._close_stream()
                    engine.close()
            except Exception as exc:  # noqa: BLE001 - the engine went away: reconnect
                if self._stopping.is_set():
                    return
                log.warning("engine event stream broke (%s); reconnecting in %.0f s", exc, delay)
            if self._stopping.is_set():
                return
            # Whatever happened while disconnected: the next reconcile sees it.
            with self._lock:
                self._reconcile = True
            self._wake.set()
            self._stopping.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _installation(self) -> str | None:
        try:
            return installation.current_id()
        except Exception:  # noqa: BLE001 - not migrated or database down: try again
            log.warning("the watcher cannot read the installation id yet", exc_info=True)
            return None

    def _note(self, event: dict) -> None:
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        action = (event.get("Action") or event.get("status") or "").split(":")[0]
        app_id = attributes.get(LABEL_APP, "")
        cid = actor.get("ID") or event.get("id") or ""
        database_id = attributes.get(LABEL_DATABASE, "")
        if database_id.isdigit() and cid:
            with self._lock:
                self._dirty_databases.add(int(database_id))
            self._wake.set()
            return
        if not app_id.isdigit() or not cid:
            return
        at = (event.get("timeNano") or 0) / 1e9 or time.time()
        if action == "kill" and attributes.get("signal") not in STOP_SIGNALS:
            action = "signal"  # a reload signal (HUP, USR1): the container stays
        with self._lock:
            history = self._history.setdefault(cid, collections.deque(maxlen=64))
            history.append((at, action))
            if action == "destroy":
                self._history.pop(cid, None)
            self._dirty.add(int(app_id))
        self._wake.set()

    # -- the checker -------------------------------------------------------

    def _work(self) -> None:
        from app.extensions import db

        next_reconcile = 0.0
        statuses = self._status_reader()
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stopping.is_set():
                return
            changed = statuses()
            with self._lock:
                dirty, self._dirty = self._dirty | changed, set()
                databases, self._dirty_databases = self._dirty_databases, set()
                reconcile, self._reconcile = self._reconcile, False
            if reconcile or time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + self.reconcile_seconds
                dirty |= self._all_apps()
                databases |= self._all_databases()
            self._check_databases(databases)
            for app_id in sorted(dirty):
                try:
                    self.check(app_id, self)
                except Exception:  # noqa: BLE001 - one app's failure must not stop the watch
                    log.exception("checking app %s failed", app_id)
                    with self._lock:
                        self._reconcile = True  # try again at the next round
                finally:
                    db.session.remove()
            self._forget_old()

    def _check_databases(self, database_ids: set[int]) -> None:
        from app.extensions import db

        for database_id in sorted(database_ids):
            try:
                self.check_database(database_id)
            except Exception:  # noqa: BLE001 - one database's failure must not stop the watch
                log.exception("checking database %s failed", database_id)
            finally:
                db.session.remove()

    def _all_databases(self) -> set[int]:
        from app.databases import lifecycle
        from app.extensions import db

        try:
            return set(lifecycle.watched_ids())
        except Exception:  # noqa: BLE001 - the database is down: next round
            log.warning("reconcile: could not list the databases", exc_info=True)
            return set()
        finally:
            db.session.remove()

    def _status_reader(self) -> Callable[[], set[int]]:
        """Apps whose deployments changed status since the last call (the deployment
        status stream): a switch or a revert changes what is routed without any
        container event, and a deployment leaving its watch window may be announced."""
        from redis.exceptions import RedisError

        from app.deploys import livestatus
        from app.extensions import redis

        after = livestatus.last_id()

        def changed() -> set[int]:
            nonlocal after
            try:
                after, events = livestatus.read(redis.client, after)
            except RedisError:
                return set()
            return {e["app_id"] for e in events if not livestatus.is_health(e) and "app_id" in e}

        return changed

    def _all_apps(self) -> set[int]:
        """Apps with a container, and apps that are routed (whose containers may be gone)."""
        from sqlalchemy import select

        from app.extensions import db
        from app.models import Application

        try:
            routed = set(
                db.session.scalars(
                    select(Application.id).where(Application.routed_deployment_id.is_not(None))
                )
            )
            running = set(db.session.scalars(select(Application.id)))
            return routed | (installation_app_ids() & running)
        except Exception:  # noqa: BLE001 - the engine or database is down: next round
            log.warning("reconcile: could not list the apps", exc_info=True)
            return set()
        finally:
            db.session.remove()

    def _forget_old(self) -> None:
        cutoff = time.time() - 2 * RESTART_WINDOW
        with self._lock:
            for cid in [c for c, h in self._history.items() if h and h[-1][0] < cutoff]:
                del self._history[cid]
