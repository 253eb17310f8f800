"""Logging out and back in."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from app.extensions import db
from tests.browser.conftest import log_in, shot
from tests.factories import PASSWORD, make_user


def test_log_out_then_wrong_and_right_password(page, server):
    make_user(email="owner@example.com")
    db.session.close()
    log_in(page, "owner@example.com")
    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()

    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill("not the password")
    with page.expect_response(lambda r: r.request.method == "POST" and "/login" in r.url) as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 401
    page.wait_for_load_state()
    expect(page.locator("#field-password .errors")).to_have_text("Wrong email or password.")
    expect(page.get_by_label("Email")).to_have_value("owner@example.com")
    expect(page.get_by_label("Password")).to_have_value("")
    shot(page, "login-wrong-password")

    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_role("heading", name="No projects yet")).to_be_visible()
