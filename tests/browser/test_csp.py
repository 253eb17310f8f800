"""Pages load with no Content-Security-Policy violation and no console error."""

from __future__ import annotations

from tests.browser.conftest import log_in, seed


def _dashboard(page):
    email = seed().email
    response = page.goto("/login")
    assert "style-src 'self'" in response.headers["content-security-policy"]
    log_in(page, email)
    page.wait_for_load_state("load")


def test_htmx_injects_no_inline_style(page):
    """app.js configures htmx before it starts, so nothing trips the CSP."""
    _dashboard(page)
    assert page.console.csp_violations() == []
