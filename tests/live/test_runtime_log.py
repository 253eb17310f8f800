"""The runtime log socket against real containers on the real Docker engine.

Containers are started here with Slipway's labels (as the pipeline would) from
the busybox base image of tests/lab.py; ids start far from any real app's so the
labels never match someone else's containers on a shared engine.
"""

from __future__ import annotations

import random
import time

import docker
import pytest
from sqlalchemy import text

from app.deploys import livestatus
from app.extensions import db
from app.models import Deployment
from app.runtime import installation
from tests import lab
from tests.factories import make_app, make_project, make_user, team_of
from tests.livekit import close, receive

TEST_LABEL = "slipway.test-live"
SCRIPT_V1 = r"""
i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo "early $i"; done
echo '<img src=x onerror=alert(1)>'
printf '\033[32mgreen\033[0m\n'
s=x; n=0; while [ $n -lt 13 ]; do s="$s$s"; n=$((n+1)); done; echo "long $s"
echo ready
j=0; while :; do j=$((j+1)); echo "v1 live $j"; sleep 0.2; done
"""
SCRIPT_V2 = r"""j=0; while :; do j=$((j+1)); echo "v2 live $j"; sleep 0.2; done"""
SCRIPT_FLOOD = r"""
while :; do echo "flood flood flood flood flood flood flood flood flood flood"; done
"""


@pytest.fixture(scope="module")
def engine():
    lab.ensure_base_image()
    client = docker.from_env()
    yield client
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)
    client.close()


@pytest.fixture
def world(app, engine):
    """A user and an app whose ids no other container on this engine carries."""
    base = random.randrange(10**6, 10**9)
    for table in ("applications", "deployments"):
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text(f"ALTER SEQUENCE {table}_id_seq RESTART WITH {base}"))
        else:
            db.session.execute(text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
            db.session.execute(
                text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)"),
                {"t": table, "s": base},
            )
    db.session.commit()
    user = make_user()
    application = make_app(make_project(team_of(user)))
    made = {"email": user.email, "app_id": application.id}
    yield made
    for container in engine.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)


def _run(engine, app_id: int, script: str, status: str = "running", **options) -> int:
    dep = Deployment(application_id=app_id, status=status)
    db.session.add(dep)
    db.session.commit()
    engine.containers.run(
        lab.BASE_IMAGE,
        ["/bin/sh", "-c", script],
        detach=True,
        labels={
            TEST_LABEL: "1",
            "slipway.app": str(app_id),
            "slipway.deployment": str(dep.id),
            "slipway.replica": "0",
            **installation.labels(),
        },
        **options,
    )
    return dep.id


def _wait_for_output(engine, dep_id: int, needle: bytes, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = engine.containers.list(filters={"label": f"slipway.deployment={dep_id}"})
        if found and needle in found[0].logs(tail=400):
            return
        time.sleep(0.1)
    raise AssertionError(f"the container never printed {needle!r}")


def _texts(received) -> list[str]:
    return [line["html"] for line in received.lines()]


def test_tail_starts_with_the_last_lines_then_follows_and_switches_on_redeploy(
    app, live_server, engine, world
):
    d1 = _run(engine, world["app_id"], SCRIPT_V1)
    _wait_for_output(engine, d1, b"ready")
    db.session.remove()
    ws = live_server.connect(f"/ws/apps/{world['app_id']}/logs", live_server.login(world["email"]))
    try:
        first = receive(ws, timeout=10, until=lambda f: any("v1 live 2" in h for h in _t(f)))
        attached = first.of("attached")
        assert attached and attached[0]["deployment_id"] == d1 and attached[0]["replicas"] == ["r0"]
        texts = _texts(first)
        early = [t for t in texts if t.startswith("early ")]
        assert early[0] != "early 1" and early[-1] == "early 300"  # the last lines, not all
        assert len([t for t in texts if not t.startswith("v1 live")]) <= 200
        assert "&lt;img src=x onerror=alert(1)&gt;" in texts
        assert '<span class="ansi-fg-32">green</span>' in texts
        long_line = next(t for t in texts if t.startswith("long "))
        assert long_line.endswith("…[line cut]") and len(long_line) < 4100
        assert all(line["ts"][:2] == "20" and line["src"] == "r0" for line in first.lines())

        d2 = _run(engine, world["app_id"], SCRIPT_V2, status="deploying")
        _wait_for_output(engine, d2, b"v2 live 1")
        new = db.session.get(Deployment, d2)
        old = db.session.get(Deployment, d1)
        new.status, old.status = "running", "replaced"
        db.session.commit()
        livestatus.publish([old, new])
        db.session.remove()
        after = receive(ws, timeout=10, until=lambda f: any("v2 live 3" in h for h in _t(f)))
        switched = after.of("attached")
        assert switched and switched[0]["deployment_id"] == d2
        texts = _texts(after)
        assert texts.index("v2 live 3") > max(
            (i for i, t in enumerate(texts) if t.startswith("v1 live")), default=-1
        )
    finally:
        close(ws)


def _t(frames) -> list[str]:
    return [line["html"] for f in frames if f["type"] == "lines" for line in f["lines"]]


def test_a_flood_is_cut_to_a_rate_with_skipped_markers(app, live_server, engine, world):
    dep = _run(engine, world["app_id"], SCRIPT_FLOOD)
    _wait_for_output(engine, dep, b"flood")
    db.session.remove()
    cfg = app.config
    ws = live_server.connect(f"/ws/apps/{world['app_id']}/logs", live_server.login(world["email"]))
    try:
        start = time.monotonic()
        got = receive(ws, timeout=3)
        elapsed = time.monotonic() - start
    finally:
        close(ws)
    line_frames = got.of("lines")
    skipped = sum(f.get("skipped", 0) for f in line_frames)
    sent = len(got.lines())
    assert skipped > sent, (skipped, sent)  # the flood is far above the rate
    found = engine.containers.list(filters={"label": f"slipway.deployment={dep}"})
    printed = found[0].logs().count(b"\n")
    assert sent + skipped <= printed  # nothing counted twice
    assert sent <= cfg["LIVE_BURST_LINES"] + cfg["LIVE_LINES_PER_SECOND"] * elapsed * 1.1
    assert max(len(f["lines"]) for f in line_frames) <= cfg["LIVE_BURST_LINES"]


def test_no_running_deployment_says_so_and_waits(app, live_server, world):
    db.session.remove()
    ws = live_server.connect(f"/ws/apps/{world['app_id']}/logs", live_server.login(world["email"]))
    try:
        got = receive(ws, timeout=1.5)
    finally:
        close(ws)
    assert got.of("attached") == [{"type": "attached", "deployment_id": None, "replicas": []}]
    assert got.close_code is None


def test_two_tails_of_one_container_share_one_stream(app, live_server, engine, world):
    from app.live.runtimelogs import ContainerFollow

    d1 = _run(engine, world["app_id"], SCRIPT_V1)
    _wait_for_output(engine, d1, b"ready")
    db.session.remove()
    session = live_server.login(world["email"])
    path = f"/ws/apps/{world['app_id']}/logs"
    first = live_server.connect(path, session)
    second = None
    try:
        receive(first, timeout=10, until=lambda f: any("v1 live 2" in h for h in _t(f)))
        second = live_server.connect(path, session)
        joined = receive(second, timeout=10, until=lambda f: any("v1 live" in h for h in _t(f)))
        texts = _texts(joined)
        assert "early 300" in texts and texts.count("early 300") == 1  # the recent lines, once
        assert len([t for t in texts if t.startswith("early ")]) <= 200
        shared = [f for f in ContainerFollow._registry.values() if not f.ended]
        assert len(shared) == 1 and len(shared[0].buffers) == 2
        both = receive(first, timeout=3, until=lambda f: len(_t(f)) >= 5)
        assert all(t.startswith("v1 live") for t in _texts(both))
    finally:
        close(first)
        if second is not None:
            close(second)
    deadline = time.monotonic() + 5
    while ContainerFollow._registry and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ContainerFollow._registry  # the last tail out closed the stream


def test_the_logs_page_and_download_show_the_last_lines_escaped(app, live_server, engine, world):
    d1 = _run(engine, world["app_id"], SCRIPT_V1)
    _wait_for_output(engine, d1, b"ready")
    db.session.remove()
    session = live_server.login(world["email"])
    page = session.get(f"{live_server.url}/apps/{world['app_id']}/logs", timeout=10)
    assert page.status_code == 200
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text and "<img src=x" not in page.text
    assert '<span class="ansi-fg-32">green</span>' in page.text
    assert "early 300" in page.text and "early 100\n" not in page.text  # the last 200 only
    download = session.get(f"{live_server.url}/apps/{world['app_id']}/logs/download", timeout=10)
    assert download.status_code == 200
    assert download.headers["Content-Type"].startswith("text/plain")
    assert download.headers["Content-Disposition"].startswith("attachment;")
    lines = download.text.splitlines()
    assert lines[0].startswith("r0 20") and lines[0].endswith("early 1")  # all, with timestamps
    assert any(line.endswith("<img src=x onerror=alert(1)>") for line in lines)  # plain text


CANARY = "s3cr3t-canary-9f2c41"
SCRIPT_SECRET = r"""
echo "starting with API_TOKEN=$API_TOKEN"
echo ready
j=0; while :; do j=$((j+1)); echo "tick $j token=$API_TOKEN"; sleep 0.2; done
"""


@pytest.mark.parametrize("role", ["viewer", "owner"])
def test_secret_env_values_are_redacted_on_the_page_in_frames_and_the_download(
    app, live_server, engine, world, role
):
    """An app printing its secret value: no role reads it back (secrets are write-only in
    Slipway), so the Logs page, the socket's frames and the download show ••••••."""
    from sqlalchemy import select

    from app.models import Application, User
    from app.projects import envvars

    application = db.session.get(Application, world["app_id"])
    envvars.set_var(application, "API_TOKEN", CANARY, secret=True)
    db.session.commit()
    email = world["email"]
    if role == "viewer":
        owner = db.session.scalar(select(User).where(User.email == email))
        email = make_user(team_of(owner), role="viewer").email
    dep = _run(engine, world["app_id"], SCRIPT_SECRET, environment={"API_TOKEN": CANARY})
    _wait_for_output(engine, dep, b"tick 2")
    db.session.remove()
    session = live_server.login(email)
    page = session.get(f"{live_server.url}/apps/{world['app_id']}/logs", timeout=10)
    assert page.status_code == 200
    assert "starting with API_TOKEN=••••••" in page.text and CANARY not in page.text
    download = session.get(f"{live_server.url}/apps/{world['app_id']}/logs/download", timeout=10)
    assert download.status_code == 200
    assert "API_TOKEN=••••••" in download.text and CANARY not in download.text
    ws = live_server.connect(f"/ws/apps/{world['app_id']}/logs", session)
    try:
        got = receive(ws, timeout=10, until=lambda f: sum("tick" in h for h in _t(f)) >= 5)
    finally:
        close(ws)
    texts = _texts(got)
    assert "starting with API_TOKEN=••••••" in texts
    assert any(t.startswith("tick ") and t.endswith("token=••••••") for t in texts)
    assert not any(CANARY in t for t in texts)
