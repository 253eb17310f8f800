"""The team switcher in the top bar: create a second team, switch back and forth."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import log_in, seed, shot


def test_create_a_team_and_switch_between_teams_from_the_top_bar(page, server):
    seeded = seed("home-shop", apps=("web",))
    log_in(page, seeded.email)
    switcher = page.locator("details.team-switcher")
    expect(page.locator("main")).to_contain_text("home-shop")
    home = switcher.locator("summary").inner_text()

    switcher.locator("summary").click()
    switcher.get_by_role("link", name="All teams · new team").click()
    page.get_by_label("Team name").fill("Side project")
    page.get_by_role("button", name="Create team").click()
    expect(page.locator(".flash")).to_contain_text("Team Side project created")
    expect(switcher.locator("summary")).to_have_text("Side project")
    expect(page.locator("main")).not_to_contain_text("home-shop")

    switcher.locator("summary").click()
    expect(switcher.locator(".menu")).to_be_visible()
    shot(page, "team-switcher")
    switcher.get_by_role("button", name=home).click()
    expect(switcher.locator("summary")).to_have_text(home)
    expect(page.locator("main")).to_contain_text("home-shop")

    # An empty team is refused a bad name with the message by the field.
    page.goto("/teams")
    page.get_by_role("button", name="Create team").click()
    expect(page.locator("#field-name .errors")).to_contain_text("required")
