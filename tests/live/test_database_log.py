"""A database's Logs tab follows its container live, like an app's: the last lines
first, then new ones; a new container (a restart, a start after a stop) is followed
within a few seconds; no running container says so; the download has the lines; the
socket is a 404 for another team's database, like the page.

The "database" containers are busybox ones carrying Slipway's labels for a database row
(the lifecycle's own containers are tested in tests/databases/).
"""

from __future__ import annotations

import re
import time

import pytest
import requests
from simple_websocket import ConnectionError as HandshakeRefused

from app.extensions import db
from app.live.tails import DatabaseTail
from app.runtime import installation
from tests import lab
from tests.factories import make_database, make_project, make_team, make_user, team_of
from tests.live.test_runtime_log import TEST_LABEL, engine  # noqa: F401 - the fixture
from tests.livekit import close, receive

SCRIPT = r"""
i=0; while [ $i -lt 250 ]; do i=$((i+1)); echo "boot $i"; done
echo '<img src=x onerror=alert(1)>'
j=0; while :; do j=$((j+1)); echo "{tag} $j"; sleep 0.2; done
"""


@pytest.fixture
def world(app, engine):  # noqa: F811
    user = make_user()
    database = make_database(make_project(team_of(user)), name="shop-db", engine="redis")
    return {"email": user.email, "database_id": database.id}


def _start(client, database_id: int, tag: str):
    labels = {TEST_LABEL: "1", "slipway.database": str(database_id)} | installation.labels()
    container = client.containers.run(
        lab.BASE_IMAGE, ["/bin/sh", "-c", SCRIPT.replace("{tag}", tag)], detach=True,
        labels=labels,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while f"{tag} 1".encode() not in container.logs(tail=50):
        assert time.monotonic() < deadline, "the container printed nothing"
        time.sleep(0.1)
    return container


def _texts(frames) -> list[str]:
    return [line["html"] for f in frames if f["type"] == "lines" for line in f["lines"]]


def test_the_tail_starts_with_the_last_lines_and_follows_a_new_container(
    app,
    live_server,
    engine,  # noqa: F811
    world,
    monkeypatch,
):
    monkeypatch.setattr(DatabaseTail, "CHECK_SECONDS", 0.5)
    first = _start(engine, world["database_id"], "one")
    db.session.remove()
    session = live_server.login(world["email"])
    ws = live_server.connect(f"/ws/databases/{world['database_id']}/logs", session)
    try:
        got = receive(ws, timeout=10, until=lambda f: "one 3" in _texts(f))
        attached = got.of("attached")
        assert attached == [{"type": "attached", "container": True,
                             "following": "Following shop-db's container."}]  # fmt: skip
        texts = [line["html"] for line in got.lines()]
        boots = [t for t in texts if t.startswith("boot ")]
        assert boots[-1] == "boot 250" and boots[0] != "boot 1"  # the last lines only
        assert "&lt;img src=x onerror=alert(1)&gt;" in texts
        assert all(line["src"] == "shop-db" and line["ts"][:2] == "20" for line in got.lines())

        # Restarted as a new container: the tail moves to it by itself.
        first.remove(force=True)
        _start(engine, world["database_id"], "two")
        moved = receive(ws, timeout=10, until=lambda f: "two 3" in _texts(f))
        assert moved.of("attached")[-1]["container"] is True  # after "not running", maybe
        assert not any(line["html"].startswith("one ") for line in moved.lines()[-3:])
    finally:
        close(ws)

    page = requests.get(f"{live_server.url}/databases/{world['database_id']}/logs",
                        cookies=session.cookies, timeout=10).text  # fmt: skip
    sockets = re.findall(r'data-live-runtime="(ws://[^"]+)"', page)
    assert sockets == [f"{live_server.ws_url}/ws/databases/{world['database_id']}/logs"]
    assert "two " in page
    assert "<img src=x" not in page
    download = requests.get(
        f"{live_server.url}/databases/{world['database_id']}/logs/download",
        cookies=session.cookies, timeout=10,
    )  # fmt: skip
    assert download.headers["Content-Disposition"] == 'attachment; filename="shop-db-logs.txt"'
    assert "boot 250" in download.text and download.headers["Content-Type"].startswith("text/plain")


def test_no_running_container_says_so_and_waits(app, live_server, world):
    db.session.remove()
    ws = live_server.connect(f"/ws/databases/{world['database_id']}/logs",
                             live_server.login(world["email"]))  # fmt: skip
    try:
        got = receive(ws, timeout=1.5)
    finally:
        close(ws)
    waiting = "The database is not running: waiting for it."
    assert got.of("attached") == [{"type": "attached", "container": False, "following": waiting}]
    assert got.close_code is None


def test_another_teams_database_gets_no_socket(app, live_server, world):
    other = make_database(make_project(make_team()), name="theirs").id
    db.session.remove()
    session = live_server.login(world["email"])
    with pytest.raises(HandshakeRefused, match="404"):
        live_server.connect(f"/ws/databases/{other}/logs", session)
    response = requests.get(f"{live_server.url}/databases/{other}/logs/download",
                            cookies=session.cookies, timeout=10)  # fmt: skip
    assert response.status_code == 404
