"""/api/v1 live logs as Server-Sent Events: the build log (replay, follow, resume, end) and
an app's runtime output across a redeploy, behind a real threaded server."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from app.accounts import apikeys
from app.deploys import livestatus
from app.deploys.buildlog import BuildLog
from app.extensions import db, redis
from app.live import sockets
from app.models import ApiKey, Deployment, User
from tests.api.conftest import error_of, make_key
from tests.api.sse import open_stream, parse
from tests.factories import make_app, make_project, make_team, make_user, team_of
from tests.live.test_runtime_log import (  # noqa: F401  (fixtures)
    SCRIPT_V1,
    SCRIPT_V2,
    _run,
    _wait_for_output,
    engine,
    world,
)
from tests.livekit import serving

BASE = "/api/v1"


@pytest.fixture
def live_server(app):
    with serving(app) as server:
        yield server


def _deployment(status="building", step="build", user=None) -> tuple[int, str]:
    user = user or make_user()
    application = make_app(make_project(team_of(user)))
    dep = Deployment(application_id=application.id, status=status, step=step)
    db.session.add(dep)
    db.session.commit()
    _, token = make_key(user)
    ids = dep.id, token
    db.session.remove()
    return ids


def _set_status(dep_id: int, status: str, step: str | None = None, error=None) -> None:
    dep = db.session.get(Deployment, dep_id)
    dep.status, dep.step, dep.error = status, step, error
    db.session.commit()
    livestatus.publish(dep)
    db.session.remove()


def _write(dep_id: int, first: int, last: int) -> None:
    log = BuildLog(dep_id)
    for i in range(first, last + 1):
        log.line(f"line {i}")
    log.flush()
    db.session.remove()


# ---- without follow -------------------------------------------------------------


def test_without_follow_the_stored_lines_then_end_only_when_final(app, client):
    dep_id, token = _deployment()
    _write(dep_id, 1, 5)
    auth = {"Authorization": f"Bearer {token}"}
    response = client.get(f"{BASE}/deployments/{dep_id}/logs", headers=auth)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Accel-Buffering"] == "no"
    events = parse(response.get_data(as_text=True))
    assert [(e.name, e.id, e.data["n"], e.data["text"]) for e in events] == [
        ("line", str(n), n, f"line {n}") for n in range(1, 6)
    ]
    _set_status(dep_id, "failed", error="exit 1")
    events = parse(client.get(f"{BASE}/deployments/{dep_id}/logs?after=3", headers=auth).text)
    assert [e.data["n"] for e in events if e.name == "line"] == [4, 5]
    assert events[-1].name == "end" and events[-1].data == {"status": "failed", "error": "exit 1"}
    resumed = client.get(f"{BASE}/deployments/{dep_id}/logs",
                         headers={**auth, "Last-Event-ID": "4"})  # fmt: skip
    assert [e.data["n"] for e in parse(resumed.text) if e.name == "line"] == [5]
    bad = client.get(f"{BASE}/deployments/{dep_id}/logs", headers={**auth, "Last-Event-ID": "x"})
    assert bad.status_code == 422 and "Last-Event-ID" in error_of(bad)["details"]["fields"]


def test_another_team_s_streams_are_404(app, client):
    stranger, _ = _deployment()
    user = make_user()
    _, token = make_key(user)
    auth = {"Authorization": f"Bearer {token}"}
    response = client.get(f"{BASE}/deployments/{stranger}/logs?follow=1", headers=auth)
    assert response.status_code == 404
    app_row = make_app(make_project(make_team()))
    assert client.get(f"{BASE}/apps/{app_row.id}/logs?follow=1", headers=auth).status_code == 404


# ---- follow ---------------------------------------------------------------------


def test_follow_replays_then_follows_with_no_gap_no_double_and_ends(app, live_server):
    """Lines written before, during and after the connection arrive once each, in order;
    ``end`` comes last, with the final status."""
    dep_id, token = _deployment()
    total = 3000
    halfway = threading.Event()

    def build() -> None:
        with app.app_context():
            log = BuildLog(dep_id)
            for i in range(1, total + 1):
                log.line(f"line {i}")
                if i == total // 3:
                    halfway.set()
                if i % 25 == 0:
                    time.sleep(0.003)
            log.flush()
            _set_status(dep_id, "deploying", "start")
            _set_status(dep_id, "running")

    writer = threading.Thread(target=build)
    writer.start()
    assert halfway.wait(20)
    stream = open_stream(f"{live_server.url}{BASE}/deployments/{dep_id}/logs?follow=1", token)
    events = stream.until(lambda e: e.name == "end")
    writer.join()
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-store"
    assert stream.response.headers["X-Accel-Buffering"] == "no"
    lines = stream.lines()
    assert [line["n"] for line in lines] == list(range(1, total + 1))
    assert all(line["text"] == f"line {line['n']}" for line in lines)
    assert [e.id for e in events if e.name == "line"] == [str(n) for n in range(1, total + 1)]
    named = [e.name for e in events if e.name]
    assert named[-1] == "end" and events[-1].data == {"status": "running", "error": None}
    assert "status" in named  # deploying, on the way
    assert next(stream, None) is None  # the server closed it
    stream.close()


def test_a_quiet_stream_ends_as_soon_as_the_deployment_is_final(app, live_server):
    """No lines for a while (a watch window): the final status still ends the stream at
    once, not at the tail's next tick (``livestatus`` wakes the log channel). Three
    rounds at different moments of the tick: a tail that waited for it would be about
    0.8, 0.5 and 0.2 s late in them. A first round warms the server up (its first
    connections and threads cost a loaded CI machine up to 0.4 s once) and is not counted.
    """
    took = []
    for pause in (1.0, 1.2, 1.5, 1.8):
        dep_id, token = _deployment(status="deploying", step="watch")
        url = f"{live_server.url}{BASE}/deployments/{dep_id}/logs?follow=1"
        stream = open_stream(url, token)
        time.sleep(pause)  # the tail waits on the quiet channel now
        started = time.monotonic()
        _set_status(dep_id, "running")
        events = stream.until(lambda e: e.name == "end")
        took.append(time.monotonic() - started)
        stream.close()
        assert events[-1].data["status"] == "running"
    took = took[1:]
    assert max(took) < 0.6 and sorted(took)[1] < 0.3, took


def test_last_event_id_resumes_a_broken_stream_exactly(app, live_server):
    dep_id, token = _deployment()
    _write(dep_id, 1, 40)
    url = f"{live_server.url}{BASE}/deployments/{dep_id}/logs?follow=1"
    first = open_stream(url, token)
    first.until(lambda e: e.name == "line" and e.data["n"] == 25)
    first.close()  # the connection drops mid-stream
    seen = [line["n"] for line in first.lines()]
    _write(dep_id, 41, 60)  # written while nobody listens
    second = open_stream(url, token, headers={"Last-Event-ID": str(seen[-1])})
    second.until(lambda e: e.name == "line" and e.data["n"] == 60)
    threading.Timer(0.3, lambda: _write_and_end(app, dep_id)).start()
    second.until(lambda e: e.name == "end")
    second.close()
    assert seen == list(range(1, 26))
    assert [line["n"] for line in second.lines()] == list(range(26, 71))
    assert second.named("end")[0].data["status"] == "failed"


def _write_and_end(app, dep_id: int) -> None:
    with app.app_context():
        _write(dep_id, 61, 70)
        _set_status(dep_id, "failed", error="exit 2")


def test_a_quiet_stream_sends_keep_alives_and_frees_its_seat_when_closed(app, live_server):
    app.config["API_SSE_KEEPALIVE_SECONDS"] = 0.3
    dep_id, token = _deployment(status="building", step="clone")
    before = sockets.seats.open
    stream = open_stream(f"{live_server.url}{BASE}/deployments/{dep_id}/logs?follow=1", token)
    comments = []
    for event in stream:
        if event.name is None:
            comments.append(event.data)
        if comments.count("keep-alive") >= 2:
            break
    assert sockets.seats.open == before + 1
    stream.close()
    deadline = time.monotonic() + 5
    while sockets.seats.open != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sockets.seats.open == before  # the tail noticed, released seat and slot


def test_a_stream_closed_before_its_first_byte_frees_its_seat_and_slot(app):
    from werkzeug.test import EnvironBuilder

    dep_id, token = _deployment(status="building", step="clone")
    before = sockets.seats.open
    auth = {"Authorization": f"Bearer {token}"}
    environ = EnvironBuilder(f"{BASE}/deployments/{dep_id}/logs?follow=1", headers=auth)
    environ = environ.get_environ()
    started = []
    with app.app_context():
        body = app.wsgi_app(environ, lambda status, headers: started.append(status))
    assert started == ["200 OK"] and sockets.seats.open == before + 1
    body.close()  # what a server does when the client is gone before the first byte
    assert sockets.seats.open == before
    user_id = db.session.get(ApiKey, apikeys.parse(token)[0]).user_id
    assert redis.client.zcard(sockets.SLOTS_KEY.format(user_id)) == 0


def test_a_revoked_key_ends_its_open_stream(app, live_server):
    app.config["WS_RECHECK_SECONDS"] = 0.3
    dep_id, token = _deployment(status="building", step="clone")
    stream = open_stream(f"{live_server.url}{BASE}/deployments/{dep_id}/logs?follow=1", token)
    key_id = apikeys.parse(token)[0]
    threading.Timer(0.5, lambda: _revoke(app, key_id)).start()
    events = stream.until(lambda e: e.name == "error")
    assert events[-1].name == "error" and events[-1].data == {"reason": "access"}
    assert next(stream, None) is None
    stream.close()


def _revoke(app, key_id: int) -> None:
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        apikeys.revoke(key.user, key)
        db.session.remove()


# ---- runtime logs -----------------------------------------------------------------


@pytest.mark.once
def test_runtime_logs_follow_the_app_across_a_redeploy(app, live_server, engine, world):  # noqa: F811
    d1 = _run(engine, world["app_id"], SCRIPT_V1)
    _wait_for_output(engine, d1, b"ready")
    user = db.session.scalar(select(User).where(User.email == world["email"]))
    _, token = make_key(user)
    db.session.remove()
    url = f"{live_server.url}{BASE}/apps/{world['app_id']}/logs?follow=1"
    stream = open_stream(url, token)
    try:
        stream.until(lambda e: e.name == "line" and e.data["text"] == "v1 live 2")
        attached = stream.named("attached")
        assert attached[0].data == {"deployment_id": d1, "replicas": ["r0"]}
        texts = [line["text"] for line in stream.lines()]
        assert "early 300" in texts and "<img src=x onerror=alert(1)>" in texts  # text, not HTML
        assert all(line["replica"] == "r0" and line["ts"][:2] == "20" for line in stream.lines())

        d2 = _run(engine, world["app_id"], SCRIPT_V2, status="deploying")
        _wait_for_output(engine, d2, b"v2 live 1")
        new, old = db.session.get(Deployment, d2), db.session.get(Deployment, d1)
        new.status, old.status = "running", "replaced"
        db.session.commit()
        livestatus.publish([old, new])
        db.session.remove()
        stream.until(lambda e: e.name == "line" and e.data["text"] == "v2 live 3")
        assert [e.data["deployment_id"] for e in stream.named("attached")] == [d1, d2]
        texts = [line["text"] for line in stream.lines()]
        last_v1 = max(i for i, t in enumerate(texts) if t.startswith("v1 live"))
        assert texts.index("v2 live 3") > last_v1
    finally:
        stream.close()


@pytest.mark.once
def test_runtime_logs_without_follow_are_the_recent_lines(app, client, engine, world):  # noqa: F811
    d1 = _run(engine, world["app_id"], SCRIPT_V1)
    _wait_for_output(engine, d1, b"ready")
    user = db.session.scalar(select(User).where(User.email == world["email"]))
    _, token = make_key(user)
    response = client.get(f"{BASE}/apps/{world['app_id']}/logs",
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    texts = [e.data["text"] for e in parse(response.text) if e.name == "line"]
    assert "early 300" in texts and "ready" in texts
