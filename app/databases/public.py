"""A database's public port: off by default; when a team admin opens one, Traefik
listens on it and carries TLS connections to the database.

The ports an installation may publish are ``SLIPWAY_DATABASE_PUBLIC_PORTS`` (none by
default): each is an entrypoint of Traefik's static file, so opening a port never
restarts Traefik (and never interrupts the apps). One port belongs to one live
database (a unique index holds it). TLS ends at Traefik, which picks the certificate
by the name the client sends (a name Slipway holds a certificate for, such as the
dashboard's own host, verifies; any other gets the default, self-signed one), and the
decrypted stream goes to the container's address on its project network. PostgreSQL
clients upgrade in their protocol (``sslmode=require``), which Traefik understands;
Redis clients speak TLS from the start (``redis-cli --tls``); MariaDB's clients can
only upgrade in their own protocol, which Traefik cannot, so they reach the port
through a local TLS tunnel (the page gives the ``socat`` line).

:func:`sync` makes the route match the row and the container; the lifecycle calls it
when a database becomes ready (a new container has a new address), stops or goes.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import select

from app.databases import engines
from app.extensions import db
from app.models import Database, DatabaseStatus
from app.proxy import traefik
from app.runtime import databases as runtime
from app.runtime.engine import ContainerError

log = logging.getLogger("slipway.databases")
SETTING = "SLIPWAY_DATABASE_PUBLIC_PORTS"


def ports() -> tuple[int, ...]:
    """The ports this installation may publish databases on."""
    return tuple(current_app.config.get("DATABASE_PUBLIC_PORTS", ()))


def describe(found: tuple[int, ...]) -> str:
    """``15432-15439, 16379``: the ports as ranges, for messages."""
    parts, run = [], []
    for port in sorted(found):
        if run and port == run[-1] + 1:
            run.append(port)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [port]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(parts)


def taken(except_id: int | None = None) -> set[int]:
    """The public ports live databases hold (every team's: a port is the host's)."""
    rows = db.session.scalars(
        select(Database.public_port).where(
            Database.public_port.is_not(None), Database.status != DatabaseStatus.deleted.value,
            Database.id != (except_id or 0),
        )
    )  # fmt: skip
    return set(rows)


def free_ports(database: Database) -> list[int]:
    """The ports this database could be given now."""
    held = taken(database.id)
    return [port for port in ports() if port not in held]


def refusal(database: Database, port: int) -> str | None:
    """Why ``port`` cannot be this database's public port, or None."""
    allowed = ports()
    if not allowed:
        return (
            f"No port may be published here: an administrator sets {SETTING} (for example "
            "15432-15439) and restarts Slipway."
        )
    if port not in allowed:
        return f"Port {port} is not one of the ports that may be published ({describe(allowed)})."
    if port in taken(database.id):
        return f"Port {port} is the public port of another database: choose another one."
    return None


def sync(database: Database) -> str | None:
    """Write (a running database with a public port) or remove (any other) its route;
    returns what went wrong, or None. Never raises: the caller's own work is done."""
    port = database.public_port
    running = database.status == DatabaseStatus.running.value and database.container_id
    try:
        if port and running:
            address = runtime.public_address(database, database.container_id)
            traefik.write_database_route(database.id, port, address)
        else:
            traefik.remove_database_route(database.id)
    except (ContainerError, traefik.ProxyError, OSError) as exc:
        log.warning("database %s: its public route was not written: %s", database.id, exc)
        return f"The public port is not routed: {exc}"
    return None


def client_lines(database: Database, host: str, user: str | None, name: str | None) -> list[str]:
    """How to connect from outside, for the page (no password in them). A host given by
    its address has no certificate of Slipway's: the lines then skip verification."""
    port = database.public_port
    by_address = _is_address(host)
    if database.engine == "postgres":
        return [f'psql "host={host} port={port} user={user} dbname={name} sslmode=require"']
    if database.engine == "redis":
        check = "--insecure" if by_address else f"--sni {host}"
        return [f"redis-cli --tls {check} -h {host} -p {port} --askpass"]
    local = engines.spec(database.engine).port
    check = "verify=0" if by_address else f"snihost={host}"
    target = f"[{host}]" if ":" in host else host  # socat's spelling of an IPv6 address
    return [
        f"socat TCP-LISTEN:{local},bind=127.0.0.1,reuseaddr,fork OPENSSL:{target}:{port},{check}",
        f"mariadb -h 127.0.0.1 -P {local} -u {user} -p {name}",
    ]


def _is_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
