"""A database through the New database form, its page, and linking it on an app's page."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import log_in, seed, shot


def test_create_a_database_and_link_it_to_an_app(page, server):
    seeded = seed("shop", apps=("web",))
    log_in(page, seeded.email)

    page.goto(f"/projects/{seeded.project_id}")
    databases = page.locator("#databases")
    expect(databases).to_contain_text("No databases yet.")
    databases.get_by_role("link", name="New database").click()
    expect(page.get_by_role("heading", name="New database")).to_be_visible()

    # A bad name comes back 422 with the message under the field, the input kept.
    page.get_by_label("Name").fill("Shop DB")
    with page.expect_navigation():
        page.get_by_role("button", name="Create database").click()
    expect(page.locator("#field-name .errors")).to_contain_text("lowercase letters")
    expect(page.get_by_label("Name")).to_have_value("Shop DB")

    page.get_by_label("Name").fill("shop-db")
    page.get_by_label("Engine").select_option(label="PostgreSQL 16")
    page.get_by_label("Memory limit (MiB)").fill("256")
    with page.expect_navigation():
        page.get_by_role("button", name="Create database").click()
    expect(page).to_have_url(re.compile(r"/databases/\d+$"))
    expect(page.get_by_role("heading", name="shop-db")).to_be_visible()
    expect(page.locator("#database-status")).to_contain_text("creating")
    connection = page.locator("#connection")
    expect(connection).to_contain_text("shop-db")
    expect(connection).to_contain_text("5432")
    expect(connection).to_contain_text("postgresql://app:••••••••@shop-db:5432/")
    # The status polls itself while creating (no Docker here: it stays creating).
    with page.expect_response(lambda r: re.search(r"/databases/\d+$", r.url) is not None
                              and r.request.headers.get("hx-request") == "true"):  # fmt: skip
        pass
    expect(page.locator("#database-status")).to_contain_text("creating")
    shot(page, "database-created")

    page.goto(f"/apps/{seeded.app_ids['web']}")
    linked = page.locator("#linked-databases")
    expect(linked).to_contain_text("No database linked.")
    linked.get_by_label("Database").select_option(label="shop-db (PostgreSQL 16)")
    with page.expect_navigation():
        linked.get_by_role("button", name="Link database").click()
    expect(page.get_by_role("status")).to_contain_text("Database shop-db linked")
    linked = page.locator("#linked-databases")
    expect(linked).to_contain_text("from database shop-db")
    row = linked.locator("tr", has_text="PGPASSWORD")
    expect(row.locator(".masked")).to_have_text("••••••••")
    expect(linked.locator("tr", has_text="PGHOST")).to_contain_text("shop-db")
    shot(page, "database-linked")

    with page.expect_navigation():
        linked.get_by_role("button", name="Unlink").click()
    expect(page.locator("#linked-databases")).to_contain_text("No database linked.")
