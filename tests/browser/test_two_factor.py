"""Two-factor login in Chromium: enrol from the QR page, log in with a code; a team that
requires it forces enrolment right after login."""

from __future__ import annotations

import re
import time

import pyotp
from playwright.sync_api import Page, expect

from app.extensions import db
from tests.browser.conftest import log_in, shot
from tests.factories import PASSWORD, make_user, team_of


def _secret(page: Page) -> str:
    text = page.locator("#totp-secret").inner_text()
    return "".join(text.split())


def _enrol_on_this_page(page: Page, name: str) -> str:
    """Read the manual-entry secret, answer with a code; returns the secret."""
    expect(page.get_by_role("heading", name="Turn on two-factor login")).to_be_visible()
    qr = page.get_by_role("img", name="QR code of the two-factor secret")
    expect(qr).to_be_visible()
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    assert page.evaluate("document.querySelector('img.qr').naturalWidth") > 100  # it drew
    shot(page, name)
    secret = _secret(page)
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    with page.expect_navigation():
        page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", name="Two-factor login is on")).to_be_visible()
    codes = re.findall(r"[A-Z2-7]{5}-[A-Z2-7]{5}", page.locator("#recovery-codes").inner_text())
    assert len(codes) == 10
    shot(page, f"{name}-recovery-codes")
    return secret


def test_enrol_from_the_qr_page_then_log_in_with_a_code(page, server):
    make_user(email="ada@example.com")
    db.session.close()
    log_in(page, "ada@example.com")
    page.goto("/account/")
    page.get_by_role("link", name="Turn on two-factor login").click()
    secret = _enrol_on_this_page(page, "two-factor-qr")
    page.get_by_role("link", name="Continue").click()
    expect(page).to_have_url(server.url + "/")

    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/login/two-factor")
    # Not logged in yet: the dashboard sends back to login.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.goto("/login")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/login/two-factor")

    page.get_by_label("Code").fill("000000")
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page.locator("#field-code .errors")).to_contain_text("That code is not right")
    # The enrolment code's step is spent: the next step's code (still accepted) logs in.
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(time.time() + 30))
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_role("heading", name="No projects yet")).to_be_visible()
    shot(page, "two-factor-logged-in")


def test_a_team_that_requires_it_forces_enrolment_after_login(page, server):
    user = make_user(email="bob@example.com")
    team = team_of(user)
    team.require_2fa = True
    db.session.commit()
    db.session.close()

    log_in(page, "bob@example.com")
    expect(page).to_have_url(re.compile(r"/account/two-factor"))
    expect(page.get_by_text("A team you belong to requires two-factor login")).to_be_visible()
    for path in ("/", "/projects/new", "/account/", "/backups/"):
        page.goto(path)
        expect(page).to_have_url(server.url + "/account/two-factor")
    _enrol_on_this_page(page, "two-factor-required")
    page.get_by_role("link", name="Continue").click()
    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_role("heading", name="No projects yet")).to_be_visible()
    page.goto("/account/")
    expect(page.locator("#two-factor")).to_contain_text("cannot be turned off")
