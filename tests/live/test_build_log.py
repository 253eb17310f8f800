"""The build log socket: replay what is stored, follow Redis, end when final."""

from __future__ import annotations

import threading
import time

from app.deploys import livestatus
from app.deploys.buildlog import BuildLog
from app.extensions import db
from app.models import Deployment
from tests.factories import make_app, make_project, make_user, team_of
from tests.livekit import close, receive


def _deployment(status: str = "building", step: str | None = "build") -> tuple[int, str]:
    user = make_user()
    application = make_app(make_project(team_of(user)))
    dep = Deployment(application_id=application.id, status=status, step=step)
    db.session.add(dep)
    db.session.commit()
    ids = dep.id, user.email
    db.session.close()
    return ids


def _set_status(dep_id: int, status: str, step: str | None) -> None:
    dep = db.session.get(Deployment, dep_id)
    dep.status, dep.step = status, step
    db.session.commit()
    livestatus.publish(dep)
    db.session.remove()


def test_replay_then_follow_has_no_gap_and_no_duplicate(app, live_server):
    """Lines written before, during and after the handshake arrive once each, in order."""
    dep_id, email = _deployment()
    session = live_server.login(email)
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
                    time.sleep(0.003)  # a build prints in bursts
            log.flush()
            _set_status(dep_id, "deploying", "start")
            _set_status(dep_id, "running", None)

    writer = threading.Thread(target=build)
    writer.start()
    assert halfway.wait(20)
    ws = live_server.connect(f"/ws/deployments/{dep_id}/log", session)
    got = receive(ws, timeout=60)
    writer.join()

    seqs = [line["seq"] for line in got.lines()]
    assert seqs == list(range(1, total + 1))
    assert all(line["html"] == f"line {line['seq']}" for line in got.lines())
    statuses = [f["status"] for f in got.of("status")]
    assert statuses[-1] == "running" and "deploying" in statuses
    assert got.close_code == 1000


def test_the_page_shown_lines_are_not_sent_again(app, live_server):
    """``after=`` (the last seq the page rendered) skips what the page already shows."""
    dep_id, email = _deployment(status="failed", step=None)
    log = BuildLog(dep_id)
    for i in range(1, 11):
        log.line(f"line {i}")
    log.flush()
    db.session.remove()
    ws = live_server.connect(f"/ws/deployments/{dep_id}/log?after=7", live_server.login(email))
    got = receive(ws)
    assert [line["seq"] for line in got.lines()] == [8, 9, 10]
    assert got.of("status")[-1]["final"] is True
    assert got.close_code == 1000


def test_a_quiet_build_gets_status_frames_and_the_socket_stays_open(app, live_server):
    dep_id, email = _deployment(status="building", step="clone")
    ws = live_server.connect(f"/ws/deployments/{dep_id}/log", live_server.login(email))
    try:
        first = receive(ws, timeout=5, until=lambda frames: frames)
        assert first.frames[0]["status"] == "building" and first.frames[0]["step"] == "clone"
        _set_status(dep_id, "building", "build")
        step = receive(ws, timeout=5, until=lambda frames: frames)
        assert step.frames == [
            {"type": "status", "deployment_id": dep_id, "app_id": step.frames[0]["app_id"],
             "status": "building", "step": "build", "final": False, "latest": True}
        ]  # fmt: skip
        assert ws.connected
    finally:
        close(ws)


def test_a_batch_stored_and_published_at_the_seam_is_sent_once(app, live_server, monkeypatch):
    """Subscribed, then a batch lands (stored *and* published), then the replay: once only."""
    dep_id, email = _deployment()
    log = BuildLog(dep_id)
    for i in range(1, 6):
        log.line(f"line {i}")
    log.flush()
    db.session.remove()
    real_last_id = livestatus.last_id
    seam = []

    def batch_at_the_seam() -> str:  # runs in the socket's thread, after SUBSCRIBE
        if not seam:
            seam.append(True)
            at_seam = BuildLog(dep_id)
            for i in range(6, 11):
                at_seam.line(f"line {i}")
            at_seam.flush()
        return real_last_id()

    monkeypatch.setattr(livestatus, "last_id", batch_at_the_seam)
    ws = live_server.connect(f"/ws/deployments/{dep_id}/log", live_server.login(email))
    first = receive(ws, timeout=5, until=lambda frames: len(frames) >= 2)
    log = BuildLog(dep_id)
    for i in range(11, 16):
        log.line(f"line {i}")
    log.flush()
    _set_status(dep_id, "failed", None)
    rest = receive(ws, timeout=10)
    assert seam, "the seam hook did not run"
    seqs = [line["seq"] for line in first.lines() + rest.lines()]
    assert seqs == list(range(1, 16))
    assert rest.close_code == 1000
