"""SECURITY.md cases 2, 7 and 17 for websockets, against a real server and client.

Refusals happen at the handshake: the client gets an HTTP status instead of a
``101 Switching Protocols``, so not a single frame exists.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from simple_websocket.errors import ConnectionError as HandshakeRefused

from app.deploys.buildlog import BuildLog
from app.extensions import db
from app.models import Role
from tests.livekit import receive, serving

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def live(app):
    with serving(app) as server:
        yield server


def _socket_urls(app, routes, world) -> list[str]:
    # url_map builds websocket rules as absolute ws:// URLs: keep the path.
    urls = [urlsplit(url).path for _e, _m, url in routes(app, world, websockets=True)]
    assert len(urls) >= 3, urls  # build log, runtime log, status
    return urls


def test_no_session_is_refused_before_the_first_frame(app, live, routes, team_a):
    for url in _socket_urls(app, routes, team_a):
        with pytest.raises(HandshakeRefused) as refused:
            live.connect(url, session=None)
        assert refused.value.status_code == 401, url


def test_another_teams_objects_are_refused_before_the_first_frame(
    app, live, routes, team_a, team_b
):
    email, urls = team_a.user.email, _socket_urls(app, routes, team_b)
    db.session.close()
    session = live.login(email)
    for url in urls:
        if url == "/ws/status":
            continue  # no object: it carries only the user's own teams (tests/live)
        with pytest.raises(HandshakeRefused) as refused:
            live.connect(url, session)
        assert refused.value.status_code == 404, url


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://127.0.0.1.evil.example", "null", "http://localhost:1"],
)
def test_a_cross_site_origin_is_refused(app, live, routes, team_a, origin):
    email, urls = team_a.user.email, _socket_urls(app, routes, team_a)
    db.session.close()
    session = live.login(email)
    for url in urls:
        with pytest.raises(HandshakeRefused) as refused:
            live.connect(url, session, origin=origin)
        assert refused.value.status_code == 403, url


def test_the_same_origin_and_a_viewer_are_accepted(app, live, team_a):
    """The refusals above are not a socket that never opens for anyone."""
    from tests.factories import make_user

    viewer = make_user(team_a.team, Role.viewer)
    url = f"/ws/deployments/{team_a.deployment.id}/log"
    email = viewer.email
    db.session.close()
    got = receive(live.connect(url, live.login(email)), timeout=5)
    assert got.of("status") and got.close_code == 1000


def test_log_lines_arrive_escaped_in_frames(app, live, team_a):
    dep_id, email = team_a.deployment.id, team_a.user.email
    log = BuildLog(dep_id)
    log.line(XSS)
    log.line(f"\x1b[31m{XSS}\x1b[0m</pre><script>alert(2)</script>")
    log.line('"><svg onload=alert(3)>')
    log.flush()
    db.session.close()
    ws = live.connect(f"/ws/deployments/{dep_id}/log", live.login(email))
    got = receive(ws, timeout=5)
    html = [line["html"] for line in got.lines()]
    assert html[0] == "&lt;img src=x onerror=alert(1)&gt;"
    assert html[1] == (
        '<span class="ansi-fg-31">&lt;img src=x onerror=alert(1)&gt;</span>'
        "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
    )
    assert html[2] == "&#34;&gt;&lt;svg onload=alert(3)&gt;"
    for text in html:
        assert "<img" not in text and "<script" not in text and "<svg" not in text
