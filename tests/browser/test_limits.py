"""A text longer than its limit, pasted in a real browser, is refused with the limit, not
cut at a ``maxlength`` without a word (which stored a shortened description)."""

from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import func, select

from app.extensions import db
from app.models import Project
from tests.browser.conftest import log_in, seed


def test_a_pasted_description_over_the_limit_is_refused_not_cut(page):
    seeded = seed()
    log_in(page, seeded.email)
    page.goto("/projects/new")
    page.get_by_label("Name").fill("shop")
    page.get_by_label("Description").fill("d" * 2001)
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#field-description .errors")).to_contain_text(
        "The description is limited to 2,000 characters."
    )
    assert len(page.get_by_label("Description").input_value()) == 2001  # kept to shorten
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Project.id))) == 0
    db.session.close()
