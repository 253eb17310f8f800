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


def test_htmx_runs_no_script_from_a_fragment_and_caches_no_page(page):
    """Defence behind the CSP: htmx neither executes <script> in swapped HTML
    (its default would) nor keeps authenticated pages in its history cache."""
    _dashboard(page)
    config = page.evaluate(
        "({eval: htmx.config.allowEval, scripts: htmx.config.allowScriptTags,"
        " cache: htmx.config.historyCacheSize})"
    )
    assert config == {"eval": False, "scripts": False, "cache": 0}
    page.evaluate(
        "window.__ran = false;"
        "htmx.swap(document.body, '<div id=frag><script>window.__ran = true</script></div>',"
        " {swapStyle: 'beforeend'})"
    )
    assert page.locator("#frag").count() == 1
    assert page.evaluate("window.__ran") is False
    assert page.locator("#frag script").count() == 0
