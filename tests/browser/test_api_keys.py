"""API keys in Chromium: make a key on the page, see its token once, use it against
/api/v1/me from outside the browser, revoke it through the confirm page: it stops."""

from __future__ import annotations

import re

import requests
from playwright.sync_api import expect

from app.accounts.apikeys import SCOPE_LABELS
from tests.browser.conftest import log_in, seed, shot


def _me(server, token: str) -> requests.Response:
    return requests.get(
        f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_make_a_key_see_it_once_use_it_and_revoke_it(page, server):
    seeded = seed(project="shop")
    log_in(page, seeded.email)
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name=re.compile("API keys for"))).to_be_visible()
    expect(page.get_by_text("You have no API key")).to_be_visible()

    # refused input first: the error next to the field, nothing made
    page.get_by_label("Name").fill("CI deploys")
    with page.expect_navigation():
        page.get_by_role("button", name="Create key").click()
    expect(page.locator("#field-scopes .errors")).to_contain_text("Choose at least one scope")
    expect(page.get_by_label("Name")).to_have_value("CI deploys")

    page.get_by_label(SCOPE_LABELS["read"]).check()
    page.get_by_label(SCOPE_LABELS["deploy"]).check()
    page.get_by_label("shop").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Key CI deploys created")).to_be_visible()
    expect(page.get_by_text("It is shown only now")).to_be_visible()
    expect(page.get_by_role("button", name="Copy the API key")).to_be_visible()  # script ran
    assert "/account/api-keys/" == page.url.removeprefix(server.url)  # no token in the URL
    token = page.locator("#api-token").inner_text().strip()
    assert re.fullmatch(r"slw_\d+_[A-Za-z0-9_-]{40,}", token), token
    shot(page, "api-key-created")

    me = _me(server, token)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == seeded.email
    assert me.json()["key"]["scopes"] == ["read", "deploy"]
    assert me.json()["key"]["project_ids"] == [seeded.project_id]

    page.get_by_role("link", name="Done").click()
    row = page.locator("#api-keys tbody tr", has_text="CI deploys")
    expect(row).to_contain_text("deploy")
    expect(row).to_contain_text("shop")
    assert token not in page.content()  # never shown again
    page.reload()
    assert token not in page.content()
    shot(page, "api-keys-list")

    row.get_by_role("link", name="Revoke").click()
    expect(page.get_by_role("heading", name="Revoke the key CI deploys?")).to_be_visible()
    with page.expect_navigation():
        page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_text("Key CI deploys revoked")).to_be_visible()
    expect(page.locator("#api-keys tbody tr", has_text="CI deploys")).to_contain_text("revoked")

    gone = _me(server, token)
    assert gone.status_code == 401
    assert gone.json()["error"]["code"] == "invalid_key"
