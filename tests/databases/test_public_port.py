"""A database's public port through the real Traefik and engine: off by default; once
opened, a client on the host connects over TLS (PostgreSQL's in-protocol upgrade,
Redis' TLS from the first byte, MariaDB's server greeting read through TLS) with the
database's credentials, and a client without TLS gets nothing; a restart routes to the
new container; stop, close and delete take the route away; the port is free again.

Traefik is the deploy tests' (``infra``): its static file declares the two ports of
``DATABASE_PUBLIC_PORTS`` as entrypoints when it starts.
"""

from __future__ import annotations

import socket
import ssl
import time

import psycopg
import pytest
import redis as redis_lib
from sqlalchemy import select

from app import jobs
from app.databases import lifecycle, links, public
from app.extensions import db
from app.models import AuditEvent, Database, Installation
from app.proxy import traefik
from tests.conftest import running_app
from tests.databases.test_lifecycle import IMAGES, cleanup
from tests.deploys.conftest import infra  # noqa: F401 - Docker, Traefik
from tests.factories import make_project, make_team, make_user


@pytest.fixture
def pubapp(infra):  # noqa: F811
    config = infra["config"] | IMAGES | {"DATABASE_READY_TIMEOUT_SECONDS": 90}
    with running_app(config) as app:
        make_user()
        jobs.bind(app)
        installation_id = db.session.scalar(select(Installation.installation_id))
        ids = []
        yield app, config["DATABASE_PUBLIC_PORTS"], ids
        for database_id in ids:
            traefik.remove_database_route(database_id)
    cleanup(installation_id)


def _row(database_id: int) -> Database:
    db.session.expire_all()
    return db.session.get(Database, database_id)


def _created(project, engine: str, ids: list[int]) -> Database:
    database = lifecycle.create(project, name=f"{engine}-pub", engine=engine, memory_limit_mb=256)
    ids.append(database.id)
    assert jobs.database_create(database.id) == "running", _row(database.id).error
    return _row(database.id)


def _routed(database: Database, timeout: float = 10) -> str:
    """Wait until Traefik routes the public port; return the address it routes to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        served = traefik.database_served_by(database.id)
        if served:
            return served.pop()
        time.sleep(0.02)
    raise AssertionError("Traefik did not load the database's route")


def _unrouted(database: Database, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while traefik.database_served_by(database.id) is not None:
        assert time.monotonic() < deadline, "Traefik still routes the database"
        time.sleep(0.02)


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the default cert
    return context


def _talk(database: Database, port: int, password: str) -> str:
    """What the database answers a real client through the public port, over TLS."""
    if database.engine == "postgres":
        with psycopg.connect(
            host="127.0.0.1", port=port, user=database.username, password=password,
            dbname=database.database_name, sslmode="require", connect_timeout=10,
        ) as conn:  # fmt: skip
            ssl_in_use = conn.pgconn.ssl_in_use
            return f"{conn.execute('select 42').fetchone()[0]} tls={ssl_in_use}"
    if database.engine == "redis":
        client = redis_lib.Redis(host="127.0.0.1", port=port, password=password, ssl=True,
                                 ssl_cert_reqs=None, socket_timeout=10)  # fmt: skip
        try:
            client.set("through", "traefik")
            return client.get("through").decode()
        finally:
            client.close()
    # MariaDB: the server speaks first; its greeting (protocol 10 + version) through TLS.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with _tls().wrap_socket(raw, server_hostname="db.example.test") as tls:
            packet = tls.recv(4096)
    return "greeting" if packet[4] == 10 and b"MariaDB" in packet else repr(packet[:60])


def _plain_refused(database: Database, port: int, password: str) -> None:
    """Without TLS the port gives nothing: Traefik waits for a TLS hello."""
    if database.engine == "postgres":
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=port, user=database.username,
                            password=password, dbname=database.database_name,
                            sslmode="disable", connect_timeout=3)  # fmt: skip
        return
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
        if database.engine == "redis":
            raw.sendall(b"PING\r\n")
        raw.settimeout(2)
        try:
            answer = raw.recv(100)
        except TimeoutError:
            answer = b""
    assert b"PONG" not in answer and b"MariaDB" not in answer, answer


EXPECTED = {"postgres": "42 tls=True", "redis": "traefik", "mariadb": "greeting"}


@pytest.mark.parametrize("engine", ["postgres", "redis", "mariadb"])
def test_a_public_port_reaches_the_database_over_tls_only(pubapp, engine):
    app, ports, ids = pubapp
    project = make_project(make_team(), f"pub{engine}")
    database = _created(project, engine, ids)
    password = links.password_of(database)
    assert database.public_port is None and traefik.database_served_by(database.id) is None

    port = ports[0]
    assert lifecycle.set_public_port(database, port) is None
    first = _routed(database)
    assert _talk(database, port, password) == EXPECTED[engine]
    _plain_refused(database, port, password)
    mine = AuditEvent.target_id == database.id
    events = db.session.scalars(select(AuditEvent.action).where(mine))
    assert "database.port_opened" in set(events)

    # A restart gives a new container (maybe a new address): the route follows it.
    lifecycle.restart(database)
    assert jobs.database_action(database.id, "restart") == "running"
    assert _routed(_row(database.id)) and _talk(database, port, password) == EXPECTED[engine]
    print(f"\n{engine}: routed to {first}, then {traefik.database_served_by(database.id)}")

    # Stopped: no route; started again: routed again.
    lifecycle.stop(_row(database.id))
    assert jobs.database_action(database.id, "stop") == "stopped"
    _unrouted(database)
    lifecycle.start(_row(database.id))
    assert jobs.database_action(database.id, "start") == "running"
    _routed(database)
    assert _talk(database, port, password) == EXPECTED[engine]

    # Closed: no route, the port free for another database.
    assert lifecycle.set_public_port(_row(database.id), None) is None
    _unrouted(database)
    assert port in public.free_ports(_row(database.id))


def test_one_port_one_database_and_deletion_frees_it(pubapp):
    app, ports, ids = pubapp
    project = make_project(make_team(), "pubtwo")
    first = _created(project, "redis", ids)
    second = lifecycle.create(project, name="other", engine="redis")
    ids.append(second.id)
    assert lifecycle.set_public_port(first, ports[0]) is None
    _routed(first)
    with pytest.raises(lifecycle.DatabaseError, match="another database"):
        lifecycle.set_public_port(second, ports[0])
    assert _row(second.id).public_port is None
    assert public.free_ports(second) == [ports[1]]

    lifecycle.delete(_row(first.id), final_backup=False)
    assert jobs.database_delete(first.id, False) == "deleted"
    _unrouted(first)
    assert _row(first.id).public_port is None
    assert public.free_ports(_row(second.id)) == list(ports)


def test_the_watcher_mends_a_stale_route_and_leaves_a_right_one_alone(pubapp):
    """After a host restart a container may come back on another address: the watcher's
    look puts the route right; a route that is right is not written again (no reload)."""
    app, ports, ids = pubapp
    database = _created(make_project(make_team(), "pubstale"), "redis", ids)
    password = links.password_of(database)
    assert lifecycle.set_public_port(database, ports[1]) is None
    right = _routed(database)
    path = traefik.database_route_path(database.id)
    written = path.stat().st_mtime_ns
    assert lifecycle.observe(database.id) is None and path.stat().st_mtime_ns == written

    traefik.write_database_route(database.id, ports[1], "10.255.255.1:6379")
    deadline = time.monotonic() + 10
    while traefik.database_served_by(database.id) != {"10.255.255.1:6379"}:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert lifecycle.observe(database.id) is None  # still running: only the route moves
    deadline = time.monotonic() + 10
    while traefik.database_served_by(database.id) != {right}:
        assert time.monotonic() < deadline, "the route was not mended"
        time.sleep(0.02)
    assert _talk(_row(database.id), ports[1], password) == "traefik"
