"""Single sign-on in Chromium: the login page's button, the provider's own page (a real
OpenID Connect provider on loopback, tests/oidc_mock.py), and back to Slipway signed in."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.accounts import sso
from app.extensions import db
from app.models import Membership, User
from tests.browser.conftest import log_in, shot, start_server
from tests.conftest import running_app
from tests.factories import make_user, team_of
from tests.oidc_mock import MockProvider

ALLOWED = {"SLIPWAY_OUTBOUND_ALLOWED_HOSTS": "127.0.0.1"}


@pytest.fixture(scope="module")
def idp():
    provider = MockProvider()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def sso_server(base_config, tmp_path_factory):
    """A gunicorn that may talk to the provider on loopback (the shared one may not)."""
    started = start_server(base_config, tmp_path_factory.mktemp("slipway-sso"), ALLOWED)
    yield started
    started.stop()


@pytest.fixture
def app(base_config):
    with running_app({**base_config, "OUTBOUND_ALLOWED_HOSTS": ("127.0.0.1",)}) as flask_app:
        yield flask_app


@pytest.fixture
def acme(app, idp):
    idp.issue_to = None
    owner = make_user(email="owner@acme.test")
    fields = sso.ProviderFields(
        slug="acme", name="Acme ID", discovery_url=idp.url, client_id="slipway",
        client_secret="browser-secret", allowed_domains="acme.test",
        team_id=team_of(owner).id, default_role="developer", groups_claim="groups",
        group_roles="platform=admin", enabled=True,
    )  # fmt: skip
    sso.save_provider(None, fields)
    team_id = team_of(owner).id
    db.session.close()  # no transaction left open while the browser drives the server
    return team_id


def _sign_in_at_the_provider(page, idp, sub: str) -> None:
    page.goto("/login")
    with page.expect_navigation():
        page.get_by_role("link", name="Sign in with Acme ID").click()
    expect(page).to_have_url(re.compile("^" + re.escape(idp.url + "/oauth2/authorize?")))
    expect(page.get_by_role("heading", name="Authorize Client")).to_be_visible()
    page.get_by_placeholder("sub").fill(sub)
    with page.expect_navigation():
        page.get_by_role("button", name="Authorize").click()


def test_sign_in_with_the_provider_lands_on_the_dashboard(open_page, sso_server, idp, acme):
    idp.set_user("ada", email="ada@acme.test", email_verified=True, name="Ada Lovelace",
                 groups=["platform"])  # fmt: skip
    page = open_page(sso_server)
    _sign_in_at_the_provider(page, idp, "ada")
    expect(page).to_have_url(sso_server.url + "/")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.get_by_role("heading", name="No projects yet")).to_be_visible()
    shot(page, "sso-signed-in")
    user = db.session.scalar(select(User).where(User.email == "ada@acme.test"))
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    assert (membership.team_id, membership.role) == (acme, "admin")
    db.session.close()


def test_a_refused_sign_in_says_why_and_signs_nobody_in(open_page, sso_server, idp, acme):
    idp.set_user("eve", email="eve@evil.test", email_verified=True)
    page = open_page(sso_server)
    _sign_in_at_the_provider(page, idp, "eve")
    expect(page.get_by_role("heading", name="Sign-in with Acme ID refused")).to_be_visible()
    expect(page.locator("#sso-refused")).to_contain_text("evil.test may not sign in")
    shot(page, "sso-refused")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_a_wrong_state_in_the_browser_is_refused(open_page, sso_server, idp, acme):
    idp.set_user("ada", email="ada@acme.test", email_verified=True)
    page = open_page(sso_server)
    page.goto("/login")
    with page.expect_navigation():
        page.get_by_role("link", name="Sign in with Acme ID").click()

    # The provider's redirect back, with the state an attacker would put there.
    def forge(route):
        if route.request.method != "POST":
            return route.continue_()
        answer = route.fetch(max_redirects=0)
        location = re.sub(r"state=[^&]+", "state=forged", answer.headers["location"])
        route.fulfill(response=answer, headers={**answer.headers, "location": location})

    page.route(re.compile(re.escape(idp.url) + r"/oauth2/authorize\?.*"), forge)
    page.get_by_placeholder("sub").fill("ada")
    with page.expect_navigation():
        page.get_by_role("button", name="Authorize").click()
    expect(page.locator("#sso-refused")).to_contain_text("state does not match")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_the_owner_adds_a_provider_and_turns_password_login_off(open_page, sso_server, idp, app):
    owner = make_user(email="owner@acme.test")
    email = owner.email
    db.session.close()
    page = open_page(sso_server)
    log_in(page, email)
    page.goto("/server")
    with page.expect_navigation():
        page.get_by_role("link", name="Single sign-on").click()
    expect(page.get_by_text("No provider yet.")).to_be_visible()
    with page.expect_navigation():
        page.get_by_role("button", name="Turn password login off for everyone but owners").click()
    expect(page.locator("#change-error")).to_contain_text("Enable a single sign-on provider first")
    with page.expect_navigation():
        page.get_by_role("link", name="Add a provider").click()
    page.get_by_label("Name (on the button: Sign in with …)").fill("Corp SSO")
    page.get_by_label("Slug (in the callback URL)").fill("corp")
    page.get_by_label("Issuer or discovery URL").fill(idp.url)
    page.get_by_label("Client id").fill("slipway")
    page.get_by_label("Client secret").fill("browser-typed-secret")
    page.get_by_label("Allowed email domains (space-separated)").fill("acme.test")
    page.get_by_label("Their default role").select_option("viewer")
    shot(page, "sso-provider-form")
    with page.expect_navigation():
        page.get_by_role("button", name="Save provider").click()
    expect(page.locator("table.sso-providers")).to_contain_text("Corp SSO")
    assert "browser-typed-secret" not in page.content()
    with page.expect_navigation():
        page.get_by_role("button", name="Turn password login off for everyone but owners").click()
    expect(page.locator("#password-login")).to_contain_text("Off for everyone but owners")
    shot(page, "sso-settings")
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name="Sign in with Corp SSO")).to_be_visible()
    expect(page.get_by_text("Password login is for owners only")).to_be_visible()
