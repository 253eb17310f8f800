"""Projects and applications through their forms, as a user clicks through them."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from app.extensions import db
from app.models import Application
from app.projects import envvars
from tests.browser.conftest import log_in, seed, shot

SECRET = "sk_live_7f3a9c-never-show-me"


def test_create_project_and_git_app_with_env_vars(page, server):
    log_in(page, seed().email)

    page.get_by_role("link", name="New project").click()
    page.get_by_label("Name").fill("acme")
    page.get_by_label("Description").fill("The Acme storefront")
    with page.expect_navigation():
        page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("status")).to_have_text("Project acme created.")
    expect(page.get_by_role("heading", name="acme")).to_be_visible()
    expect(page.get_by_text("No applications yet.")).to_be_visible()

    page.get_by_role("link", name="New application").click()
    expect(page.get_by_role("heading", name="New application")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("web")
    page.get_by_label("Git repository").check()
    page.get_by_label("Repository URL").fill("https://git.example.com/acme/web.git")
    page.get_by_label("Branch").fill("main")
    page.get_by_label("Environment variables", exact=True).fill("LOG_LEVEL=info\nWEB_CONCURRENCY=4")
    page.get_by_label("Secret environment variables").fill(f"STRIPE_KEY={SECRET}")
    with page.expect_navigation():
        page.get_by_role("button", name="Create application").click()

    expect(page).to_have_url(re.compile(r"/apps/\d+$"))
    expect(page.get_by_role("status")).to_have_text("Application web created.")
    expect(page.get_by_role("heading", name="web")).to_contain_text("not deployed")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("https://git.example.com/acme/web.git")
    expect(facts).to_contain_text("main")
    expect(facts).to_contain_text("web.acme.localhost")

    rows = page.locator("#env tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="LOG_LEVEL")).to_contain_text("info")
    expect(rows.filter(has_text="WEB_CONCURRENCY")).to_contain_text("4")
    secret_row = rows.filter(has_text="STRIPE_KEY")
    expect(secret_row.locator(".masked")).to_have_text("••••••••")
    expect(secret_row.locator(".tag")).to_have_text("secret")
    assert SECRET not in page.content()
    shot(page, "app-created")

    # Nor does the edit form give it back; it names the secret key only.
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page.get_by_label("Environment variables", exact=True)).to_have_value(
        "LOG_LEVEL=info\nWEB_CONCURRENCY=4"
    )
    expect(page.get_by_label("Secret environment variables")).to_have_value("")
    expect(page.get_by_text("Secret keys set:")).to_contain_text("STRIPE_KEY")
    assert SECRET not in page.content()

    # The value was kept, encrypted, for the deploy worker.
    db.session.rollback()
    app = db.session.scalar(db.select(Application).where(Application.name == "web"))
    assert envvars.decrypted(app)["STRIPE_KEY"] == SECRET
    assert SECRET not in (next(v for v in app.env_vars if v.is_secret).secret_value or "")

    # The dashboard lists it.
    page.get_by_role("link", name="Projects").first.click()
    expect(page.locator("section.project", has_text="acme")).to_contain_text("web")


def test_source_toggle_and_invalid_image_keeps_the_input(page, server):
    seeded = seed("shop")
    log_in(page, seeded.email)
    page.goto(f"/projects/{seeded.project_id}/apps/new")

    git_fields = page.locator("fieldset[data-source=git]")
    image_fields = page.locator("fieldset[data-source=image]")
    expect(git_fields).to_be_visible()
    expect(image_fields).to_be_hidden()

    page.get_by_label("Docker image").check()
    expect(git_fields).to_be_hidden()
    expect(image_fields).to_be_visible()
    page.get_by_label("Git repository").check()
    expect(git_fields).to_be_visible()
    expect(image_fields).to_be_hidden()
    page.get_by_label("Docker image").check()

    page.get_by_label("Name", exact=True).fill("api")
    page.get_by_label("Description").fill("The public API")
    page.get_by_label("Image", exact=True).fill("Not A Valid/Image!")
    page.get_by_label("Container port").fill("8080")
    page.get_by_label("Environment variables", exact=True).fill("MODE=api")
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/apps/new")
    ) as answer:
        page.get_by_role("button", name="Create application").click()
    assert answer.value.status == 422
    page.wait_for_load_state()

    image_field = page.locator("#field-image")
    expect(image_field).to_have_class(re.compile(r"\bhas-error\b"))
    expect(image_field.locator(".errors")).to_contain_text("Enter an image reference")
    expect(page.get_by_label("Image", exact=True)).to_have_attribute("aria-invalid", "true")
    # Everything else the user typed is still there, and the image source still chosen.
    expect(page.get_by_label("Docker image")).to_be_checked()
    expect(image_fields).to_be_visible()
    expect(git_fields).to_be_hidden()
    expect(page.get_by_label("Name", exact=True)).to_have_value("api")
    expect(page.get_by_label("Description")).to_have_value("The public API")
    expect(page.get_by_label("Image", exact=True)).to_have_value("Not A Valid/Image!")
    expect(page.get_by_label("Container port")).to_have_value("8080")
    expect(page.get_by_label("Environment variables", exact=True)).to_have_value("MODE=api")
    # Only the image is wrong: no other field complains.
    expect(page.locator(".field.has-error")).to_have_count(1)
    shot(page, "app-form-invalid-image")

    page.get_by_label("Image", exact=True).fill("nginx:1.27")
    with page.expect_navigation():
        page.get_by_role("button", name="Create application").click()
    expect(page.get_by_role("status")).to_have_text("Application api created.")
    expect(page.locator("dl.facts")).to_contain_text("nginx:1.27")
    expect(page.locator("dl.facts")).to_contain_text("8080")
    expect(page.locator("#env tbody tr")).to_have_count(1)


def test_inline_name_validation_without_submitting(page, server):
    seeded = seed("shop", apps=("web",))
    log_in(page, seeded.email)
    page.goto(f"/projects/{seeded.project_id}/apps/new")
    form_url = page.url
    page.evaluate("window.__noReload = 'still here'")

    name = page.get_by_label("Name", exact=True)
    errors = page.locator("#name-error")
    with page.expect_request(lambda r: "/apps/validate/name" in r.url) as sent:
        name.press_sequentially("web", delay=30)
    expect(errors).to_have_text("This project already has an app with this name.")
    request = sent.value
    assert request.method == "POST"
    assert request.headers.get("hx-request") == "true"
    assert request.headers.get("x-csrftoken"), "htmx sent no CSRF header"
    assert request.headers["x-csrftoken"] == page.locator('meta[name="csrf-token"]').get_attribute(
        "content"
    )
    shot(page, "app-form-inline-name-taken")

    name.fill("Web App!")
    expect(errors).to_contain_text("lowercase letters, digits and '-'")
    name.fill("web-2")
    expect(errors).to_be_empty()

    assert page.url == form_url
    assert page.evaluate("window.__noReload") == "still here"


def test_delete_app_through_the_confirmation_page(page, server):
    seeded = seed("shop", apps=("web", "worker"))
    doomed, project_id = seeded.app_ids["web"], seeded.project_id
    log_in(page, seeded.email)

    page.goto(f"/apps/{doomed}")
    page.locator(".page-head").get_by_role("link", name="Delete", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/apps/{doomed}/delete$"))
    expect(page.get_by_role("heading", name="Delete application web?")).to_be_visible()
    expect(page.get_by_text("deployment history")).to_be_visible()
    shot(page, "app-delete-confirm")

    # Cancel goes back and deletes nothing.
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(re.compile(rf"/apps/{doomed}$"))

    page.locator(".page-head").get_by_role("link", name="Delete", exact=True).click()
    with page.expect_navigation():
        page.get_by_role("button", name="Delete application").click()
    expect(page).to_have_url(re.compile(rf"/projects/{project_id}$"))
    expect(page.get_by_role("status")).to_have_text("Application web deleted.")
    apps = page.locator("table.apps tbody")
    expect(apps.get_by_role("link", name="worker")).to_be_visible()
    expect(apps.get_by_role("link", name="web", exact=True)).to_have_count(0)
    shot(page, "project-after-delete")

    assert page.goto(f"/apps/{doomed}").status == 404
