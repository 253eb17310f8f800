"""The progress line (clone → build → start → health → switch) stays on final deployments.

A served deployment shows every step done; one that failed or was cancelled
shows the steps it passed as done and the one it stopped in as failed, in words
as well as colours. The page and the ``_status.html`` partial show the same line.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from app.deploys import pipeline
from app.deploys.buildlog import BuildLog
from app.extensions import db
from app.models import Deployment
from tests.factories import make_app, make_project, team_of


class _Steps(HTMLParser):
    """The ``<li>`` items of ``ol.steps``: (class, aria-current, visible text, all text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[dict] = []
        self.label: str | None = None
        self._in_steps = False
        self._hidden_depth = 0
        self._item: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "ol" and "steps" in (attrs.get("class") or "").split():
            self._in_steps = True
            self.label = attrs.get("aria-label")
        elif tag == "li" and self._in_steps:
            self._item = {"class": attrs.get("class"), "current": attrs.get("aria-current"),
                          "seen": "", "text": ""}  # fmt: skip
            self.items.append(self._item)
        elif self._item is not None and tag == "span":
            hidden = attrs.get("aria-hidden") == "true"
            if self._hidden_depth or hidden:
                self._hidden_depth += 1

    def handle_endtag(self, tag):
        if tag == "ol":
            self._in_steps = False
        elif tag == "li":
            self._item = None
        elif tag == "span" and self._hidden_depth:
            self._hidden_depth -= 1

    def handle_data(self, data):
        if self._item is not None:
            self._item["seen"] += data
            if not self._hidden_depth:
                self._item["text"] += data  # what a screen reader reads


def steps_of(body: str) -> _Steps:
    parser = _Steps()
    parser.feed(body)
    parser.close()
    return parser


def _fragment(client, dep_id: int) -> str:
    response = client.get(f"/deployments/{dep_id}", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _deployment(user, status: str, step: str | None = None, logged=()) -> int:
    application = make_app(make_project(team_of(user)))
    dep = Deployment(application_id=application.id, status=status, step=step)
    db.session.add(dep)
    db.session.commit()
    if logged:
        log = BuildLog(dep.id)  # the pipeline's own marks, as _advance writes them
        for name in logged:
            log.info(f"── {name}")
            log.line(f"output of {name}")
        log.flush()
    return dep.id


@pytest.mark.parametrize("status", ["running", "replaced"])
def test_a_served_deployment_shows_every_step_done(logged_in, status):
    client, user = logged_in
    steps = ["clone", "build", "start", "health", "switch", "watch"]
    dep_id = _deployment(user, status, logged=steps)
    for body in (_fragment(client, dep_id), client.get(f"/deployments/{dep_id}").text):
        found = steps_of(body)
        assert found.label == "Progress"
        assert [i["class"] for i in found.items] == ["done"] * len(steps)
        assert [i["text"].strip() for i in found.items] == [f"{s} (done)" for s in steps]
        assert all(i["current"] is None for i in found.items)
        assert "data-live-log" not in body  # final: nothing follows it any more


def test_a_failed_pipeline_run_marks_the_step_it_stopped_in(app, logged_in, tmp_path):
    """A real pipeline run that fails in its build step (an invalid image, no Docker
    reached): the row keeps the step it stopped in, and the page says so."""
    client, user = logged_in
    app.config["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"  # nothing may reach Docker
    app.config["BUILDS_DIR"] = str(tmp_path / "builds")
    application = make_app(
        make_project(team_of(user)), source_type="image", image="not a valid image!"
    )
    dep = Deployment(application_id=application.id, status="queued")
    db.session.add(dep)
    db.session.commit()
    dep_id = dep.id

    assert pipeline.run(dep_id) == "failed"
    db.session.expire_all()
    assert db.session.get(Deployment, dep_id).step == "build"  # what pipeline.py stores

    for body in (_fragment(client, dep_id), client.get(f"/deployments/{dep_id}").text):
        found = steps_of(body)
        assert [(i["class"], i["current"]) for i in found.items] == [
            ("done", None), ("failed", "step"), ("pending", None), ("pending", None),
            ("pending", None), ("pending", None),
        ]  # fmt: skip
        assert found.items[1]["text"] == "build: failed"
        assert [i["text"] for i in found.items[2:]] == ["start", "health", "switch", "watch"]


def test_a_cancelled_deployment_marks_where_it_was_cancelled(logged_in):
    client, user = logged_in
    dep_id = _deployment(user, "cancelled", step="start", logged=["clone", "build", "start"])
    found = steps_of(_fragment(client, dep_id))
    assert [i["class"] for i in found.items] == ["done", "done", "failed"] + ["pending"] * 3
    assert found.items[2]["current"] == "step"
    assert found.items[2]["text"] == "start: cancelled"


def test_a_build_printing_a_step_mark_cannot_move_the_line(logged_in):
    """The line is read from the row's step, never from the log: build output that
    looks like the pipeline's step mark changes nothing."""
    client, user = logged_in
    dep_id = _deployment(user, "failed", step="clone", logged=["clone"])
    log = BuildLog(dep_id)
    log.line("── switch")  # printed by the build (stdout)
    log.line("── health", stream="container")
    log.flush()
    found = steps_of(_fragment(client, dep_id))
    assert [i["class"] for i in found.items] == ["failed"] + ["pending"] * 5


def test_an_active_deployment_shows_its_current_step(logged_in):
    client, user = logged_in
    dep_id = _deployment(user, "building", step="build", logged=["clone", "build"])
    found = steps_of(_fragment(client, dep_id))
    assert [(i["class"], i["current"]) for i in found.items][:3] == [
        ("done", None), ("current", "step"), ("pending", None),
    ]  # fmt: skip
    assert found.items[1]["text"] == "build"


@pytest.mark.parametrize("status", ["queued", "failed", "superseded"])
def test_no_progress_line_before_the_first_step(logged_in, status):
    """Queued, or ended before cloning (a lock timeout, superseded): nothing to show."""
    client, user = logged_in
    dep_id = _deployment(user, status)
    assert steps_of(_fragment(client, dep_id)).items == []
