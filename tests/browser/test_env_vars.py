"""The environment-variable list of an app page, changed in place through htmx."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import log_in, seed, shot


def test_add_and_delete_env_var_without_reload(page, server):
    seeded = seed("shop", apps=("web",))
    app_id = seeded.app_ids["web"]
    log_in(page, seeded.email)
    page.goto(f"/apps/{app_id}")
    app_url = page.url
    page.evaluate("window.__noReload = 'still here'")
    env = page.locator("#env")
    expect(env).to_contain_text("No environment variables.")

    env.get_by_placeholder("KEY").fill("FEATURE_FLAG")
    env.get_by_placeholder("value").fill("on")
    with page.expect_response(lambda r: r.url.endswith(f"/apps/{app_id}/env")) as answer:
        env.get_by_role("button", name="Add or replace").click()
    assert answer.value.status == 200
    row = page.locator("#env tbody tr", has_text="FEATURE_FLAG")
    expect(row).to_contain_text("on")
    # The form came back empty, ready for the next one.
    expect(page.locator("#env").get_by_placeholder("KEY")).to_have_value("")

    # A secret added the same way is masked at once.
    page.locator("#env").get_by_placeholder("KEY").fill("API_TOKEN")
    page.locator("#env").get_by_placeholder("value").fill("tok-123-secret")
    page.locator("#env").get_by_label("Secret").check()
    page.locator("#env").get_by_role("button", name="Add or replace").click()
    secret_row = page.locator("#env tbody tr", has_text="API_TOKEN")
    expect(secret_row.locator(".masked")).to_have_text("••••••••")
    assert "tok-123-secret" not in page.content()

    # A bad key is answered 422 and its error swapped in under the field.
    page.locator("#env").get_by_placeholder("KEY").fill("1BAD")
    with page.expect_response(lambda r: r.url.endswith(f"/apps/{app_id}/env")) as answer:
        page.locator("#env").get_by_role("button", name="Add or replace").click()
    assert answer.value.status == 422
    expect(page.locator("#env #field-key .errors")).to_contain_text("letters, digits and '_'")
    expect(page.locator("#env tbody tr")).to_have_count(2)
    shot(page, "env-added")

    assert page.url == app_url
    assert page.evaluate("window.__noReload") == "still here"

    dialogs: list[str] = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#env tbody tr")).to_have_count(2)
    assert dialogs == ["Delete FEATURE_FLAG?"]

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    with page.expect_response(lambda r: "/env/" in r.url and r.url.endswith("/delete")) as gone:
        page.locator("#env tbody tr", has_text="FEATURE_FLAG").get_by_role(
            "button", name="Delete"
        ).click()
    assert gone.value.status == 200
    expect(page.locator("#env tbody tr", has_text="FEATURE_FLAG")).to_have_count(0)
    expect(page.locator("#env tbody tr")).to_have_count(1)
    assert dialogs == ["Delete FEATURE_FLAG?", "Delete FEATURE_FLAG?"]
    shot(page, "env-deleted")

    assert page.url == app_url
    assert page.evaluate("window.__noReload") == "still here"
    # The change is real: a reload shows the same list.
    page.reload()
    expect(page.locator("#env tbody tr")).to_have_count(1)
    expect(page.locator("#env")).to_contain_text("API_TOKEN")
