"""SECURITY case 27 (and 7): a database is reachable only from its own project's
network. A container on another project's network can neither resolve its name nor
open a connection to its address; one on its own project's network can (so the
refusals mean something)."""

from __future__ import annotations

import docker
import pytest

from app.runtime.versions import project_network
from tests.databases.test_lifecycle import (  # noqa: F401 - the fixture
    _create,
    _installation_id,
    _project,
    client_run,
    connect,
    dbapp,
)

RESOLVE = ["sh", "-c", 'getent hosts "$TARGET_NAME"']
# Opens a TCP connection to TARGET_IP:TARGET_PORT within 3 s (exit 0) or not.
REACH = ["bash", "-c", 'timeout 3 bash -c "exec 3<>/dev/tcp/$TARGET_IP/$TARGET_PORT"']


def _address(database) -> str:
    client = docker.from_env()
    try:
        attrs = client.containers.get(database.container_id).attrs
        return attrs["NetworkSettings"]["Networks"][project_network(database.project_id)][
            "IPAddress"
        ]
    finally:
        client.close()


@pytest.mark.once
@pytest.mark.usefixtures("dbapp")
@pytest.mark.parametrize("engine", ["postgres", "redis"])
def test_another_projects_network_cannot_resolve_or_reach_the_database(engine):
    database = _create(_project("shop"), engine, "shop-db")
    other = _project("other")
    _create(other, "redis", "other-cache")  # makes the other project's network
    theirs, ours = project_network(other.id), project_network(database.project_id)
    env = {"TARGET_NAME": database.name, "TARGET_IP": _address(database),
           "TARGET_PORT": "5432" if engine == "postgres" else "6379"}  # fmt: skip
    mine = _installation_id()

    # From its own project's network: resolved, reached, and an authenticated session.
    code, output = client_run(ours, RESOLVE, env, mine)
    assert code == 0 and env["TARGET_IP"] in output, output
    assert client_run(ours, REACH, env, mine)[0] == 0
    code, output = connect(database)
    assert code == 0, output

    # From another project's network: no name, no route, no session.
    code, output = client_run(theirs, RESOLVE, env, mine)
    assert code != 0 and env["TARGET_IP"] not in output, output
    code, output = client_run(theirs, REACH, env, mine)
    assert code != 0, output
    code, output = connect(database, network=theirs)
    assert code != 0, output
