"""At a phone's width (390 × 844 CSS pixels, an iPhone 12–15) every main page is usable:
the page itself never scrolls sideways (a wide table scrolls inside its own box), and the
main buttons (Deploy, Delete, Save, …) are on screen, not cut off at the right edge."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from app import crypto, notify
from app.extensions import db
from app.models import Deployment, NotificationChannel
from tests.browser.conftest import log_in, seed, shot
from tests.factories import make_app, make_destination, make_policy, team_of

WIDTH, HEIGHT = 390, 844
LONG = "a-rather-long-unbroken-name-" * 6  # what users type and commits say


@pytest.fixture
def phone(open_page, server):
    def opener():
        page = open_page(server)
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        return page

    return opener


def _world() -> tuple[str, dict]:
    seeded = seed("shop", apps=("web",))
    from app.models import Application, User

    owner = db.session.scalar(db.select(User).filter_by(email=seeded.email))
    team = team_of(owner)
    web = db.session.get(Application, seeded.app_ids["web"])
    web.description = "The shop's front end. " + LONG
    web.git_url = f"https://git.example.com/acme/{LONG}.git"
    make_app(web.project, "image-app", source_type="image", image=f"ghcr.io/acme/{LONG}:1")
    for n in range(3):
        db.session.add(Deployment(application_id=web.id, status="failed", trigger="manual",
                                  commit_sha=f"{n}" * 40, commit_message=f"Commit {n} {LONG}",
                                  error=f"step build failed: {LONG}"))  # fmt: skip
    dest = make_destination(team, "https://s3.eu-central-1.example.com", "backups-bucket",
                            prefix=f"nightly/{LONG[:60]}")  # fmt: skip
    policy = make_policy(team, dest, None, name="nightly-slipway-database")
    channel = NotificationChannel(
        team_id=team.id, name="ops-webhook-for-failures", kind="webhook",
        events=["backup.failed", "drill.failed", "deploy.failed"],
        settings={"host": "hooks.example-company-with-a-long-name.com"},
        secret=crypto.encrypt("https://hooks.example.com/x", context=notify.SECRET_CONTEXT),
    )  # fmt: skip
    db.session.add(channel)
    db.session.commit()
    deployment = db.session.scalar(db.select(Deployment.id).order_by(Deployment.id.desc()))
    ids = {"p": seeded.project_id, "a": web.id, "d": deployment, "dest": dest.id,
           "pol": policy.id, "ch": channel.id}  # fmt: skip
    db.session.close()
    return seeded.email, ids


# (page, the buttons or links that must be on screen, by their accessible name)
PAGES = [
    ("/", ["New project"]),
    ("/projects/{p}", ["New application", "Edit", "Delete"]),
    ("/apps/{a}", ["Deploy", "Edit", "Delete"]),
    ("/apps/{a}/edit", ["Save"]),
    ("/apps/{a}/deployments", []),
    ("/deployments/{d}", []),
    ("/apps/{a}/logs", []),
    ("/apps/{a}/git", ["Generate secret", "Save"]),
    ("/backups/", ["Add destination", "Add policy", "Run now"]),
    ("/backups/destinations/{dest}/edit", ["Save"]),
    ("/notifications/", ["Send test", "Edit", "Delete", "Add channel"]),
    ("/notifications/{ch}/edit", ["Save", "Make signing secret"]),
    ("/account/", ["Change password"]),
    ("/account/two-factor", ["Turn on", "Copy secret"]),
    ("/server", []),
    ("/workers", []),
]


def _on_screen(locator) -> str | None:
    """None when the element lies wholly inside the screen's width, the page not scrolled
    sideways (scrolling it into view would hide that it is cut off)."""
    box = locator.evaluate(
        "e => { window.scrollTo(0, window.scrollY); const r = e.getBoundingClientRect();"
        " return r.width ? [r.left + window.scrollX, r.right + window.scrollX] : null; }"
    )
    if box is None:
        return "not rendered"
    if box[0] < 0 or box[1] > WIDTH + 1:
        return f"x {box[0]:.0f}..{box[1]:.0f} of {WIDTH}"
    return None


def test_every_main_page_fits_a_phone(phone):
    email, ids = _world()
    page = phone()
    log_in(page, email)
    problems = []
    for path, buttons in PAGES:
        url = path.format(**ids)
        response = page.goto(url)
        assert response.status == 200, url
        page.wait_for_load_state("load")
        width = page.evaluate("document.scrollingElement.scrollWidth")
        if width > WIDTH + 1:
            problems.append(f"{url}: the page is {width} px wide")
        for name in buttons:
            target = (
                page.get_by_role("button", name=name, exact=True)
                .or_(page.get_by_role("link", name=name, exact=True))
                .first
            )
            expect(target).to_be_visible()
            where = _on_screen(target)
            if where:
                problems.append(f"{url}: {name!r} is cut off ({where})")
    page.goto(f"/apps/{ids['a']}")
    shot(page, "phone-390-app")
    page.goto(f"/projects/{ids['p']}")
    shot(page, "phone-390-project")
    assert problems == [], "\n".join(problems)


def test_a_wide_table_scrolls_in_its_own_box(phone):
    email, ids = _world()
    page = phone()
    log_in(page, email)
    page.goto(f"/apps/{ids['a']}/deployments")
    table = page.locator("table").first
    scroll = table.evaluate(
        "t => { for (let e = t; e; e = e.parentElement) {"
        "  const s = getComputedStyle(e).overflowX;"
        "  if (s === 'auto' || s === 'scroll') return [e.clientWidth, e.scrollWidth]; }"
        "  return null; }"
    )
    assert scroll is not None, "no element around the table scrolls sideways"
    assert scroll[0] <= WIDTH
    shot(page, "phone-390-deployments")
