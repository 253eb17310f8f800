"""Issue 17, item 13: a build's output cannot fill the database.

The stored log of a deployment has a cap (``BUILD_LOG_MAX_BYTES``, 10 MiB by
default): past it one marker line says where it was cut, later build output is
neither stored nor published, the build goes on, and Slipway's own lines (the
health check, the final status, a failure's reason) are still stored. Real
database, real Redis, the real Docker engine, Traefik and git server of
tests/deploys.
"""

from __future__ import annotations

import json
import threading
import time

from sqlalchemy import func, select

from app.deploys import buildlog
from app.extensions import db, redis
from app.models import Deployment, DeploymentLogLine
from tests import lab
from tests.conftest import Auth
from tests.deploys.conftest import _deploy, _web_app, app, infra, repo  # noqa: F401 - fixtures
from tests.factories import make_user

MIB = 1024 * 1024
LINE = "0123456789abcdef" * 4  # 64 characters, 65 bytes with the newline
CUT = "build log cut at "
RESERVE = 64 * 1024  # room for Slipway's own lines past the cap (buildlog.RESERVE_BYTES)


def _stored(deployment_id: int) -> tuple[int, int]:
    """(rows, bytes of text plus a newline each) stored for the deployment."""
    rows, size = db.session.execute(
        select(func.count(), func.coalesce(func.sum(func.length(DeploymentLogLine.text) + 1), 0))
        .where(DeploymentLogLine.deployment_id == deployment_id)
    ).one()  # fmt: skip
    return rows, int(size)


def _lines(deployment_id: int, stream: str | None = None) -> list[str]:
    query = select(DeploymentLogLine.text).where(DeploymentLogLine.deployment_id == deployment_id)
    if stream:
        query = query.where(DeploymentLogLine.stream == stream)
    return list(db.session.scalars(query.order_by(DeploymentLogLine.seq)))


class Listener:
    """Counts the lines published on a deployment's build-log channel (real Redis)."""

    def __init__(self, deployment_id: int):
        self.pubsub = redis.client.pubsub()
        self.pubsub.subscribe(buildlog.channel(deployment_id))
        while (msg := self.pubsub.get_message(timeout=5)) is not None:
            if msg["type"] == "subscribe":
                break
        self.lines: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop.is_set():
            msg = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if msg and msg["type"] == "message":
                self.lines.extend(json.loads(msg["data"]))

    def close(self) -> list[dict]:
        time.sleep(0.5)
        self.stop.set()
        self.thread.join(5)
        self.pubsub.close()
        return self.lines


def test_50_mb_of_build_output_stores_at_most_the_cap(app, repo):  # noqa: F811
    """50 MB through BuildLog (the path every build line takes): at most cap + reserve
    is stored and published, one marker says where, Slipway's later lines are kept and
    a last line says how much was dropped; quickly."""
    app_row = _web_app(repo)
    deployment = Deployment(application_id=app_row.id, status="building")
    db.session.add(deployment)
    db.session.commit()
    cap = 10 * MIB  # the default
    listener = Listener(deployment.id)
    began = time.monotonic()
    log = buildlog.BuildLog(deployment.id)
    total = 50 * MIB // (len(LINE) + 1)
    for _ in range(total):
        log.line(LINE)
    log.flush()
    assert _stored(deployment.id)[1] <= cap + 1024  # the build output and the marker
    for n in range(20):  # a crashed container's last lines, then Slipway's own
        log.line(f"container line {n}", stream="container")
    log.info("── health")
    log.info("failed: the container stopped with code 3 before it became healthy")
    log.close()
    elapsed = time.monotonic() - began
    published = listener.close()

    rows, size = _stored(deployment.id)
    assert size <= cap + RESERVE
    assert app.config["BUILD_LOG_MAX_BYTES"] == cap
    assert rows < cap // (len(LINE) + 1) + 1000  # not 800,000
    assert elapsed < 60, f"{elapsed:.1f} s for 50 MB"
    slipway = _lines(deployment.id, "slipway")
    cuts = [t for t in slipway if t.startswith(CUT)]
    assert cuts == [f"{CUT}10 MiB: build output after this line was not stored "
                    "(Slipway's own lines still are)"]  # fmt: skip
    assert slipway[-3:-1] == [
        "── health",
        "failed: the container stopped with code 3 before it became healthy",
    ]
    assert "container line 19" in _lines(deployment.id, "container")
    kept = rows - len(slipway) - 20
    dropped = total - kept
    assert slipway[-1] == (f"build log: {dropped:,} lines ({buildlog.size_text(dropped * 65)}) "
                           "of output after the cut at 10 MiB were not stored")  # fmt: skip
    db.session.expire_all()
    row = db.session.get(Deployment, deployment.id)
    assert row.log_truncated and row.log_dropped_lines == dropped
    assert row.log_dropped_bytes == dropped * 65
    # The live view gets exactly the stored lines, the marker among them; nothing dropped.
    # (Pub/sub ignores Redis database numbers: another test run on this Redis may publish
    # on the same channel name, so only lines with this test's text are counted.)
    stored = set(db.session.execute(
        select(DeploymentLogLine.seq, DeploymentLogLine.stream, DeploymentLogLine.text)
        .where(DeploymentLogLine.deployment_id == deployment.id)
    ).tuples())  # fmt: skip
    ours = {(p["seq"], p["stream"], p["text"]) for p in published} & stored
    assert ours == stored
    assert sum(p["text"] == LINE for p in published) == rows - len(slipway) - 20


def test_slipway_lines_past_the_cap_are_kept_within_the_reserve(app, repo):  # noqa: F811
    """The reserve is bounded too: a flood of Slipway lines cannot pass cap + reserve."""
    app_row = _web_app(repo)
    deployment = Deployment(application_id=app_row.id, status="building")
    db.session.add(deployment)
    db.session.commit()
    log = buildlog.BuildLog(deployment.id, max_bytes=64 * 1024)
    for _ in range(2000):
        log.line(LINE)
    for _ in range(4000):
        log.line(LINE, stream="container")
    for _ in range(4000):
        log.info(LINE)
    log.close()
    _, size = _stored(deployment.id)
    assert size <= 64 * 1024 + RESERVE + 1024  # marker and summary
    container = _lines(deployment.id, "container")
    assert container and len(container) * 65 <= RESERVE
    assert len(_lines(deployment.id, "slipway")) * 65 > 16 * 1024  # the part kept for Slipway


def test_a_real_build_printing_50_mb_is_cut_and_still_deploys(app, infra, repo, client):  # noqa: F811
    """A real docker build printing 50 MB, default cap: the deployment succeeds within a
    minute, the log holds the marker and Slipway's lines up to "running"; the page and
    the download say it was cut."""
    flood = (f"/bin/busybox yes {LINE} | /bin/busybox head -c {50 * MIB} "
             f"&& /bin/busybox echo {time.time()}")  # fmt: skip
    repo.commit(lab.web_files("v1", extra_run=flood), "noisy build")
    app_row = _web_app(repo)
    began = time.monotonic()
    deployment = _deploy(app_row)
    assert deployment.status == "running", deployment.error
    assert time.monotonic() - began < 60
    rows, size = _stored(deployment.id)
    assert size <= 10 * MIB + RESERVE
    slipway = _lines(deployment.id, "slipway")
    assert any(t.startswith(f"{CUT}10 MiB:") for t in slipway)
    assert "running" in slipway and "── switch" in slipway
    assert deployment.log_truncated and deployment.log_dropped_lines > 600_000
    assert slipway[-1].startswith("build log: ") and "were not stored" in slipway[-1]

    user = make_user(app_row.project.team)
    assert Auth(client).login(user).status_code == 303
    page = client.get(f"/deployments/{deployment.id}").get_data(as_text=True)
    assert "data-log-cut" in page and "The build log was cut" in page
    assert f"{deployment.log_dropped_lines:,} lines" in page
    download = client.get(f"/deployments/{deployment.id}/log.txt")
    assert download.status_code == 200 and download.mimetype == "text/plain"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    text = download.get_data(as_text=True)
    first, *rest = text.splitlines()
    assert first.startswith(f"# Build log of deployment #{deployment.id}. The build log was cut")
    assert f"[slipway] {CUT}10 MiB:" in text and "[slipway] running" in rest
    assert len(rest) == rows


def test_the_download_is_for_the_team_only(app, repo, client, new_client):  # noqa: F811
    """The team's member downloads the stored log as text/plain; another team's user gets
    404 and none of it (SECURITY.md 7)."""
    app_row = _web_app(repo)
    deployment = Deployment(application_id=app_row.id, status="running")
    db.session.add(deployment)
    db.session.commit()
    log = buildlog.BuildLog(deployment.id)
    log.line("build output of team A")
    log.flush()
    member = make_user(app_row.project.team)
    assert Auth(client).login(member).status_code == 303
    mine = client.get(f"/deployments/{deployment.id}/log.txt")
    assert mine.status_code == 200 and mine.mimetype == "text/plain"
    assert "build output of team A" in mine.get_data(as_text=True)
    other = new_client()
    assert Auth(other).login(make_user()).status_code == 303  # a user of another team
    response = other.get(f"/deployments/{deployment.id}/log.txt")
    assert response.status_code == 404
    assert "team A" not in response.get_data(as_text=True)
