"""An app's health badge and its "why" panel change in open tabs without a reload.

The watcher's writes are made here as it makes them (store the health, then publish a
health event on the status stream, ``app.deploys.livestatus.publish_health``); the
engine side is tested in ``tests/deploys/test_watch.py``.
"""

from __future__ import annotations

from playwright.sync_api import expect

from app.deploys import livestatus
from app.extensions import db
from app.models import Application
from app.models.base import utcnow
from tests.browser.conftest import log_in, seed, shot


def _set_health(app_id: int, health: str, detail: dict) -> None:
    app = db.session.get(Application, app_id)
    app.health, app.health_detail, app.health_since = health, detail, utcnow()
    db.session.commit()
    livestatus.publish_health(app)
    db.session.close()  # no idle transaction while the browser drives the server


DOWN = {
    "summary": "0 of 1 replica(s) serving: web-r0 was killed: out of memory (exit code 137)",
    "replicas": [
        {"name": "web-r0", "replica": "0", "state": "exited", "exit_code": 137,
         "oom_killed": True, "error": "", "finished_at": "2026-12-02T19:00:00.5Z",
         "restarts": 0, "id": "c0ffee", "serving": False,
         "lines": ["allocating <b>4 GiB</b>", "token=••••••"]},
    ],
    "deployment_id": 1,
}  # fmt: skip


def test_the_health_badge_and_why_down_panel_change_live(page, app):
    seeded = seed("health", ("web",))
    app_id = seeded.app_ids["web"]
    _set_health(app_id, "up", {"summary": "1 of 1 replica(s) serving", "replicas": []})
    log_in(page, seeded.email)
    page.goto(f"/apps/{app_id}")
    badge = page.locator(f'h1 [data-app-health="{app_id}"]')
    expect(badge).to_have_text("up")
    expect(page.locator("#app-health")).to_be_hidden()
    dashboard = page.context.new_page()
    dashboard.goto("/")
    expect(dashboard.locator(f'[data-app-health="{app_id}"]')).to_have_text("up")
    for tab in (page, dashboard):
        tab.evaluate("window.__notReloaded = true")

    _set_health(app_id, "down", DOWN)
    expect(badge).to_have_text("down")
    expect(badge).to_have_class("badge health-down")
    expect(badge).to_have_attribute("title", DOWN["summary"])
    panel = page.locator("#app-health")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("Health: down")
    expect(panel).to_contain_text("exit code 137")
    expect(panel).to_contain_text("out of memory")
    expect(panel).to_contain_text("allocating <b>4 GiB</b>")  # text, never markup
    expect(panel.locator("b")).to_have_count(0)
    expect(dashboard.locator(f'[data-app-health="{app_id}"]')).to_have_text("down")
    shot(page, "app-health-down")

    _set_health(app_id, "up", {"summary": "1 of 1 replica(s) serving", "replicas": []})
    expect(badge).to_have_text("up")
    expect(page.locator("#app-health")).to_be_hidden()
    for tab in (page, dashboard):
        assert tab.evaluate("window.__notReloaded") is True
