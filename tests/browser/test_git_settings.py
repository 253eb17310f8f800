"""The git settings page in a browser, under the real CSP: secret shown once,
deploy key, watch-path errors beside the field, and the delivery log."""

from __future__ import annotations

import json
import re

import requests
from playwright.sync_api import expect

from tests.browser.conftest import log_in, seed, shot
from tests.sources import payloads


def test_git_settings_and_deliveries(page, server):
    seeded = seed("shop", apps=("web",))
    app_id = seeded.app_ids["web"]
    log_in(page, seeded.email)
    page.goto(f"/apps/{app_id}")
    expect(page.locator("#git")).to_contain_text("Webhook not set up")
    page.get_by_role("link", name="Webhook, deploy key and token").click()
    expect(page.locator("h1")).to_have_text("Git integration")
    shot(page, "git-empty")

    page.get_by_role("button", name="Generate secret").click()
    secret = page.locator("pre.secret code").inner_text().strip()
    assert len(secret) >= 40
    shot(page, "git-secret-once")
    page.get_by_role("link", name="Done").click()
    webhook = page.locator("#webhook")
    expect(webhook).to_contain_text("••••••••")
    assert secret not in page.content()
    github_url = webhook.locator("dd code.copy").first.inner_text()
    assert re.search(r"/webhooks/github/[\w-]{20,}$", github_url)

    page.get_by_role("button", name="Generate deploy key").click()
    expect(page.locator("pre.pubkey")).to_contain_text("ssh-ed25519 AAAA")

    push = page.locator("#push")
    push.get_by_label("Watch paths").fill("src/**\n../etc")
    push.get_by_role("button", name="Save").click()
    expect(page.locator("#field-watch_paths .errors")).to_contain_text(
        "cannot leave the repository"
    )
    page.locator("#push").get_by_label("Watch paths").fill("src/**\nDockerfile")
    page.locator("#push").get_by_role("button", name="Save").click()
    expect(page.locator(".flash.success")).to_contain_text("Push settings saved")
    page.locator("details.howto summary").click()
    shot(page, "git-configured")

    # Two deliveries through the real server: one ignored (another branch), one replayed.
    for ref, delivery in (("refs/heads/feature", "a1"), ("refs/heads/feature", "a1")):
        body, headers = payloads.signed_request(
            "github", secret, payloads.github_push("https://git.example.com/acme/web.git", ref,
                                                   "4" * 40), delivery=delivery)  # fmt: skip
        answer = requests.post(github_url, data=body, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
    assert json.loads(answer.text)["status"] == "duplicate"
    page.goto(f"/apps/{app_id}/webhooks/deliveries")
    row = page.locator("table.deliveries tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("auto-deploy is off")
    expect(row).to_contain_text("+1 replay ignored")
    shot(page, "git-deliveries")


def test_copy_buttons_put_the_webhook_address_and_the_secret_on_the_clipboard(page, server):
    """The copy buttons work under the CSP (app.js, no inline handler); an owner shows the
    secret on the page that lists the addresses and copies it too."""
    seeded = seed("shop", apps=("web",))
    app_id = seeded.app_ids["web"]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    log_in(page, seeded.email)
    page.goto(f"/apps/{app_id}/git")
    page.get_by_role("button", name="Generate secret").click()
    page.get_by_role("link", name="Done").click()
    webhook = page.locator("#webhook")
    expect(webhook.locator("[data-unreachable]")).to_contain_text("SLIPWAY_PUBLIC_URL")
    github_url = webhook.locator("#webhook-url-github").inner_text().strip()
    copy = webhook.get_by_role("button", name="Copy GitHub address")
    expect(copy).to_be_visible()
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == github_url
    webhook.get_by_role("button", name="Show secret").click()
    secret = page.locator("#webhook-secret").inner_text().strip()
    assert len(secret) >= 40
    page.get_by_role("button", name="Copy secret").click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "git-secret-shown")
