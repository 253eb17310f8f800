"""Issue 14: invite by link → accept with a new account → in the team as that member."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from app.extensions import db
from tests.browser.conftest import log_in, seed, shot
from tests.factories import team_of

NEW_PASSWORD = "the newcomer's own passphrase"


def test_a_link_invitation_brings_a_new_member_into_the_team(page, open_page, server):
    seeded = seed("shop")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    log_in(page, seeded.email)
    page.goto("/team/members/")
    expect(page.get_by_role("heading", name=re.compile("^Members of"))).to_be_visible()
    invite = page.locator("form#invite")
    invite.get_by_label("Role").select_option("developer")
    invite.get_by_label("Every project").check()
    with page.expect_navigation():
        invite.get_by_role("button", name="Create invitation").click()
    expect(page.get_by_role("heading", name="Invitation created")).to_be_visible()
    link = page.locator("#invitation-link").inner_text().strip()
    assert re.fullmatch(re.escape(server.url) + r"/invitations/[A-Za-z0-9_-]{43}", link), link
    copy = page.get_by_role("button", name="Copy the invitation link")
    expect(copy).to_be_visible()
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link
    shot(page, "invitation-created")

    # Someone else, in a browser of their own, opens the link and creates an account.
    newcomer = open_page(server)
    newcomer.goto(link)
    expect(newcomer.get_by_role("heading", name=re.compile("^Join "))).to_be_visible()
    expect(newcomer.locator("main")).to_contain_text("as developer")
    newcomer.get_by_label("Your name").fill("Nora Newcomer")
    newcomer.get_by_label("Email").fill("nora@example.com")
    newcomer.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    newcomer.get_by_label("Repeat password").fill(NEW_PASSWORD)
    with newcomer.expect_navigation():
        newcomer.get_by_role("button", name="Create account and join").click()
    expect(newcomer).to_have_url(server.url + "/")
    expect(newcomer.get_by_role("button", name="Log out")).to_be_visible()
    expect(newcomer.locator("main")).to_contain_text("shop")  # the team's project
    shot(newcomer, "invitation-accepted")

    newcomer.goto("/team/members/")
    row = newcomer.locator("#members tr[data-member='nora@example.com']")
    expect(row).to_contain_text("Nora Newcomer")
    expect(row).to_contain_text("developer")
    expect(row).to_contain_text("(you)")

    # The owner's page lists them too, and the link is used up.
    page.goto("/team/members/")
    expect(page.locator("#members tr[data-member='nora@example.com']")).to_contain_text("developer")
    expect(page.locator("main")).to_contain_text("No open invitation.")
    shot(page, "members-page")
    again = open_page(server)
    response = again.goto(link)
    assert response.status == 410
    expect(again.locator("main")).to_contain_text("already used")
    from app.models import User

    nora = db.session.query(User).filter_by(email="nora@example.com").one()
    assert nora.current_team_id == team_of(nora).id
    db.session.close()
