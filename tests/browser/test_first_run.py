"""First run: the owner account is created in the browser, under the real CSP."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import shot


def test_first_visit_sets_up_the_owner_and_lands_on_an_empty_dashboard(fresh_server, open_page):
    # fresh_server first: the page's context closes before the server stops.
    page = open_page(fresh_server)

    response = page.goto("/")
    assert response is not None and response.ok
    expect(page).to_have_url(re.compile(r"/setup$"))
    expect(page.get_by_role("heading", name="Welcome to Slipway")).to_be_visible()
    # The CSP allows no inline script: htmx and app.js are files and did load.
    assert page.evaluate("typeof window.htmx") == "object"
    shot(page, "first-run-setup")

    page.get_by_label("Your name").fill("Ada Owner")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Team name").fill("Acme")
    page.get_by_label("Password", exact=True).fill("a long enough password")
    page.get_by_label("Repeat password").fill("a long enough password")
    with page.expect_navigation():
        page.get_by_role("button", name="Create owner account").click()

    expect(page).to_have_url(fresh_server.url + "/")
    expect(page.get_by_role("status")).to_contain_text("Welcome to Slipway")
    expect(page.get_by_role("heading", name="No projects yet")).to_be_visible()
    expect(page.get_by_role("link", name="Create your first project")).to_be_visible()
    expect(page.get_by_role("link", name="Ada Owner")).to_be_visible()
    shot(page, "first-run-dashboard")

    # Setup happens once: the setup page now sends a logged-in owner onwards.
    page.goto("/setup")
    expect(page).to_have_url(fresh_server.url + "/")

    assert page.console.csp_violations() == []
    assert page.console.errors() == []
