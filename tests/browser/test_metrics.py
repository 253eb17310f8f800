"""Metric charts draw under the real CSP; Server and Workers pages render."""

from __future__ import annotations

import math
from datetime import timedelta

from playwright.sync_api import expect

from app.extensions import db
from app.models import MetricSample
from app.models.base import utcnow
from tests.browser.conftest import log_in, seed, shot


def _samples(app_id: int | None, count: int = 200) -> None:
    start = utcnow() - timedelta(seconds=15 * count)
    for i in range(count):
        wave = (math.sin(i / 12) + 1) / 2
        db.session.add(
            MetricSample(
                scope="app" if app_id else "host",
                application_id=app_id,
                resolution=15,
                ts=start + timedelta(seconds=15 * i),
                containers=1,
                cpu_percent=5 + 40 * wave,
                mem_bytes=int((80 + 60 * wave) * 2**20),
                mem_limit_bytes=256 * 2**20,
                net_rx_bytes=i * 150_000 + int(wave * 900_000),
                net_tx_bytes=i * 40_000,
            )  # fmt: skip
        )
    db.session.commit()
    db.session.close()


def test_the_app_metrics_page_draws_three_charts(page):
    seeded = seed("shop", ("web",))
    app_id = seeded.app_ids["web"]
    _samples(app_id)
    log_in(page, seeded.email)
    page.goto(f"/apps/{app_id}/metrics")
    expect(page.locator(".metric-charts.drawn")).to_be_visible()
    expect(page.locator(".metric-charts canvas")).to_have_count(3)
    expect(page.locator(".u-legend").first).to_contain_text("CPU")
    assert page.console.csp_violations() == [] and page.console.errors() == []
    shot(page, "metrics-app-hour")
    page.get_by_role("link", name="Last day").click()
    expect(page.get_by_text("No data yet")).to_be_visible()
    shot(page, "metrics-app-day-empty")


def test_the_server_and_workers_pages_render_for_the_owner(page):
    seeded = seed()
    _samples(None)
    log_in(page, seeded.email)
    page.get_by_role("link", name="Server").click()
    expect(page.locator(".metric-charts canvas")).to_have_count(3)
    shot(page, "metrics-server")
    page.get_by_role("link", name="Workers").click()
    expect(page.get_by_role("heading", name="Queues")).to_be_visible()
    shot(page, "workers")
    assert page.console.csp_violations() == []
