"""SECURITY.md cases 3, 4 and 5: login rate limits and answers, the session
cookie, and where ``next=`` may send the user after login."""

from __future__ import annotations

import re
import statistics
import time
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, User
from tests.conftest import Auth, csrf_token
from tests.factories import PASSWORD

COOKIE = "slipway_session"


def _post_login(client, email: str, password: str, **kwargs):
    token = csrf_token(client, "/login")
    return client.post(
        "/login", data={"csrf_token": token, "email": email, "password": password}, **kwargs
    )


def _is_logged_in(client) -> bool:
    response = client.get("/account/")
    return response.status_code == 200


def _logins_succeeded() -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "login.succeeded")
    )


def _account_limit(flask_app) -> int:
    """The per-minute allowance of LOGIN_LIMIT_ACCOUNT_IP ("5 per minute;20 per hour" → 5)."""
    return int(flask_app.config["LOGIN_LIMIT_ACCOUNT_IP"].split(";")[0].split()[0])


def _failed_login_rows() -> list[AuditEvent]:
    db.session.expire_all()
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "login.failed").order_by(AuditEvent.id)
    ).all()


def _normalised(body: str, email: str) -> str:
    body = re.sub(r'(name="csrf[-_]token"[^>]*(?:content|value)=")[^"]+', r"\1TOKEN", body)
    body = re.sub(r'(value=")[^"]+("[^>]*name="csrf_token")', r"\1TOKEN\2", body)
    return body.replace(email, "EMAIL")


# ---- case 3: rate limits ---------------------------------------------------


def test_failed_logins_lock_the_account_from_that_address_even_for_the_right_password(
    app, client, owner
):
    """After LOGIN_LIMIT_ACCOUNT_IP failures the next try from that address is refused."""
    for _ in range(_account_limit(app)):
        assert _post_login(client, owner.email, "wrong password").status_code == 401
    response = _post_login(client, owner.email, PASSWORD)
    assert response.status_code == 429
    assert not _is_logged_in(client)
    assert _logins_succeeded() == 0
    db.session.refresh(owner)
    assert owner.last_login_at is None


def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(app_with, owner):
    """Issue 11 item 10: a guesser at X cannot lock the owner out; the right password from
    Y, an address that has not failed, logs in at once. X stays limited; the failures are
    in the audit log."""
    proxied = app_with(TRUSTED_PROXIES=1)
    attacker, owner_browser = proxied.test_client(), proxied.test_client()
    x, y = {"X-Forwarded-For": "198.51.100.66"}, {"X-Forwarded-For": "203.0.113.5"}
    limit = _account_limit(proxied)
    for _ in range(limit):
        assert _post_login(attacker, owner.email, "wrong password", headers=x).status_code == 401
    assert _post_login(attacker, owner.email, "wrong password", headers=x).status_code == 429
    assert _post_login(owner_browser, owner.email, PASSWORD, headers=y).status_code == 303
    assert _is_logged_in(owner_browser)
    assert _post_login(attacker, owner.email, PASSWORD, headers=x).status_code == 429
    assert not _is_logged_in(attacker)
    rows = _failed_login_rows()
    assert rows and {r.ip for r in rows} == {"198.51.100.66"}
    assert {r.details["email"] for r in rows} == {owner.email}
    assert sum(r.details["count"] for r in rows) == limit  # refused tries are not checks


def test_under_account_pressure_an_address_that_failed_must_wait(app_with, owner):
    """Past LOGIN_LIMIT_ACCOUNT failures (many addresses, any spelling of the email, one
    bucket) an address that fails again must wait LOGIN_SLOW_SECONDS, even with the right
    password; addresses that have not failed are not slowed."""
    proxied = app_with(TRUSTED_PROXIES=1, LOGIN_LIMIT_ACCOUNT="4 per minute")
    client = proxied.test_client()
    spellings = [owner.email, owner.email.upper(), f"  {owner.email}  ", owner.email.title()]
    for number, spelling in enumerate(spellings):
        headers = {"X-Forwarded-For": f"198.51.100.{number + 1}"}
        assert _post_login(client, spelling, "wrong password", headers=headers).status_code == 401
    first = {"X-Forwarded-For": "198.51.100.1"}
    # Under pressure now: one more failure from an address, then it must wait.
    assert _post_login(client, owner.email, "wrong password", headers=first).status_code == 401
    assert _post_login(client, owner.email, PASSWORD, headers=first).status_code == 429
    assert not _is_logged_in(client)
    fresh = proxied.test_client()
    headers = {"X-Forwarded-For": "203.0.113.77"}
    assert _post_login(fresh, owner.email, PASSWORD, headers=headers).status_code == 303
    assert _logins_succeeded() == 1


def test_a_flood_of_failed_logins_adds_one_audit_row_a_minute_per_account_and_address(
    app_with, owner
):
    """The count goes up; the table does not grow with the flood."""
    roomy = app_with(
        LOGIN_LIMIT_ACCOUNT_IP="100 per minute",
        LOGIN_LIMIT_ACCOUNT="100 per minute",
        LOGIN_LIMIT_IP="100 per minute",
    )
    client = roomy.test_client()
    for _ in range(12):
        assert _post_login(client, "nobody@example.com", "guess").status_code == 401
    rows = _failed_login_rows()
    assert 1 <= len(rows) <= 2  # two only if the flood straddled a minute
    assert sum(r.details["count"] for r in rows) == 12
    assert {r.details["email"] for r in rows} == {"nobody@example.com"}


def test_failed_logins_are_limited_per_ip_and_spoofed_forwarded_for_does_not_reset_it(
    app_with, owner
):
    limited = app_with(LOGIN_LIMIT_IP="3 per minute", TRUSTED_PROXIES=0)
    client = limited.test_client()
    for number in range(3):
        response = _post_login(
            client,
            f"nobody{number}@example.com",
            "guess",
            headers={"X-Forwarded-For": f"10.0.0.{number}"},
        )
        assert response.status_code == 401
    spoofed = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Real-IP": "203.0.113.9",
        "Forwarded": "for=203.0.113.9",
    }
    response = _post_login(client, owner.email, PASSWORD, headers=spoofed)
    assert response.status_code == 429
    assert not _is_logged_in(client)
    assert _logins_succeeded() == 0


def test_behind_a_trusted_proxy_the_limit_follows_the_forwarded_client(app_with, owner):
    """The control for the test above: with TRUSTED_PROXIES=1 each client has its own bucket."""
    proxied = app_with(LOGIN_LIMIT_IP="3 per minute", TRUSTED_PROXIES=1)
    client = proxied.test_client()
    for number in range(3):
        headers = {"X-Forwarded-For": "198.51.100.1"}
        response = _post_login(client, f"nobody{number}@example.com", "guess", headers=headers)
        assert response.status_code == 401
    headers = {"X-Forwarded-For": "198.51.100.1"}
    assert _post_login(client, "x@example.com", "guess", headers=headers).status_code == 429
    headers = {"X-Forwarded-For": "198.51.100.2"}
    assert _post_login(client, owner.email, PASSWORD, headers=headers).status_code == 303


def test_known_and_unknown_accounts_get_the_same_answer(app, owner, new_client):
    known_client, unknown_client = new_client(), new_client()
    unknown_email = "nobody-here@example.com"
    known = _post_login(known_client, owner.email, "wrong password")
    unknown = _post_login(unknown_client, unknown_email, "wrong password")
    assert known.status_code == unknown.status_code == 401
    assert _normalised(known.get_data(as_text=True), owner.email) == _normalised(
        unknown.get_data(as_text=True), unknown_email
    )
    ignore = {"Set-Cookie", "Content-Length"}
    assert {k for k in known.headers.keys() if k not in ignore} == {
        k for k in unknown.headers.keys() if k not in ignore
    }


def test_a_locked_known_account_and_a_locked_unknown_one_look_the_same(app, owner, new_client):
    answers = {}
    for email in (owner.email, "nobody-here@example.com"):
        client = new_client()
        for _ in range(_account_limit(app)):
            _post_login(client, email, "wrong password")
        response = _post_login(client, email, "wrong password")
        answers[email] = (response.status_code, _normalised(response.get_data(as_text=True), email))
    assert answers[owner.email] == answers["nobody-here@example.com"]
    assert answers[owner.email][0] == 429


def test_unknown_accounts_spend_the_time_of_a_password_check(
    app, owner, new_client, real_password_hashing
):
    """No timing oracle: an unknown email still runs an argon2 verify at full cost."""
    owner.set_password(PASSWORD)  # a production-cost hash
    db.session.commit()

    def timed(email: str) -> float:
        client = new_client()
        token = csrf_token(client, "/login")
        start = time.perf_counter()
        response = client.post(
            "/login", data={"csrf_token": token, "email": email, "password": "wrong"}
        )
        assert response.status_code == 401
        return time.perf_counter() - start

    timed("warm-up@example.com")  # the dummy hash is made on first use
    known = statistics.median(timed(owner.email) for _ in range(4))
    unknown = statistics.median(timed(f"nobody{n}@example.com") for n in range(4))
    # Without the dummy verify an unknown email answers ~20x faster than a known one.
    assert known * 0.3 < unknown < known * 3, (known, unknown)


# ---- case 4: the session cookie ----------------------------------------------


def _set_cookie_header(response) -> str:
    found = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]
    assert found, response.headers
    return found[-1]


def _copy_session(source, target) -> None:
    target.set_cookie(COOKIE, source.get_cookie(COOKIE).value)


def test_session_cookie_changes_at_login_and_the_old_one_stays_anonymous(
    app, client, owner, new_client
):
    csrf_token(client, "/login")
    before = client.get_cookie(COOKIE).value
    response = Auth(client).login(owner)
    assert response.status_code == 303
    after = client.get_cookie(COOKIE).value
    assert after != before
    replay = new_client()
    replay.set_cookie(COOKIE, before)
    assert not _is_logged_in(replay)
    assert _is_logged_in(client)


def test_session_cookie_is_httponly_and_samesite_lax(app, client, owner):
    response = Auth(client).login(owner)
    header = _set_cookie_header(response)
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header


def test_session_cookie_is_secure_when_public_url_is_https(app_with, owner):
    https_app = app_with(PUBLIC_URL="https://slipway.example.com")
    client = https_app.test_client()
    base = "https://slipway.example.com"
    page = client.get("/login", base_url=base)
    assert "Secure" in _set_cookie_header(page)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True))[1]
    response = client.post(
        "/login",
        base_url=base,
        data={"csrf_token": token, "email": owner.email, "password": PASSWORD},
        headers={"Referer": f"{base}/login"},
    )
    assert response.status_code == 303
    header = _set_cookie_header(response)
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header


def test_session_cookie_is_not_marked_secure_over_plain_http(app, client, owner):
    """The control: Secure follows PUBLIC_URL, it is not simply always there."""
    assert "Secure" not in _set_cookie_header(Auth(client).login(owner))


@pytest.mark.parametrize("how", ["logout", "password change", "revoke other sessions"])
def test_a_copied_session_cookie_stops_working(app, client, owner, how, new_client):
    assert Auth(client).login(owner).status_code == 303
    stolen = new_client()
    _copy_session(client, stolen)
    assert _is_logged_in(stolen)
    token = csrf_token(client, "/")
    if how == "logout":
        response = client.post("/logout", data={"csrf_token": token})
        assert response.status_code == 303
        assert not _is_logged_in(client)
    elif how == "password change":
        new = "a brand new passphrase"
        response = client.post(
            "/account/password",
            data={"csrf_token": token, "current": PASSWORD, "password": new, "confirm": new},
        )
        assert response.status_code == 303
        assert _is_logged_in(client)
    else:
        response = client.post("/account/sessions/revoke", data={"csrf_token": token})
        assert response.status_code == 303
        assert _is_logged_in(client)
    response = stolen.get("/")
    assert response.status_code == 302 and response.location.startswith("/login")
    assert stolen.get("/", headers={"HX-Request": "true"}).status_code == 401


def test_logout_also_ends_the_users_sessions_in_other_browsers(app, owner, new_client):
    laptop, phone = new_client(), new_client()
    assert Auth(laptop).login(owner).status_code == 303
    assert Auth(phone).login(owner).status_code == 303
    assert Auth(laptop).logout().status_code == 303
    assert not _is_logged_in(phone)


def test_a_failed_password_change_keeps_other_sessions(app, client, owner, new_client):
    """The control for the tests above: only a real change ends the sessions."""
    assert Auth(client).login(owner).status_code == 303
    other = new_client()
    _copy_session(client, other)
    token = csrf_token(client, "/")
    response = client.post(
        "/account/password",
        data={"csrf_token": token, "current": "wrong", "password": "x" * 12, "confirm": "x" * 12},
    )
    assert response.status_code == 422
    assert _is_logged_in(other)
    db.session.expire_all()
    assert db.session.get(User, owner.id).check_password(PASSWORD)


# ---- case 5: next= -------------------------------------------------------------

HOSTILE_NEXT = [
    "//evil.example",
    "/\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "https://evil.example",
    "\\/\\/evil.example",
    "/%09/evil.example",
    "/\t/evil.example",
    "///evil.example",
    " //evil.example",
    "/\\/evil.example",
    "http:/evil.example",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.example",
]


def _login_via_link(client, user, next_in_url: str):
    """Follow a link ``/login?next=…`` (the value exactly as written in the URL), then log in."""
    page = client.get("/login?next=" + quote(next_in_url, safe="/%:"))
    html = page.get_data(as_text=True)
    carried = re.search(r'name="next"[^>]*value="([^"]*)"|value="([^"]*)"[^>]*name="next"', html)
    next_value = (carried[1] or carried[2]) if carried else ""
    next_value = next_value.replace("&#34;", '"').replace("&lt;", "<").replace("&gt;", ">")
    next_value = next_value.replace("&#39;", "'").replace("&amp;", "&")
    token = re.search(r'name="csrf-token" content="([^"]+)"', html)[1]
    return client.post(
        "/login",
        data={"csrf_token": token, "email": user.email, "password": PASSWORD, "next": next_value},
    )


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_next_from_a_link_never_leaves_the_site(app, client, owner, target):
    response = _login_via_link(client, owner, target)
    assert response.status_code == 303
    assert response.location == "/"


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_next_posted_directly_never_leaves_the_site(app, client, owner, target):
    token = csrf_token(client, "/login")
    response = client.post(
        "/login",
        data={"csrf_token": token, "email": owner.email, "password": PASSWORD, "next": target},
    )
    assert response.status_code == 303
    assert _stays_local(response.location), response.location


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_logged_in_visit_to_login_with_next_never_leaves_the_site(app, client, owner, target):
    assert Auth(client).login(owner).status_code == 303
    response = client.get("/login?next=" + quote(target, safe="/%:"))
    assert response.status_code == 302
    assert response.location == "/"


def test_a_local_next_path_is_kept(app, client, owner):
    response = _login_via_link(client, owner, "/projects/1")
    assert response.status_code == 303
    assert response.location == "/projects/1"


def test_the_login_redirect_carries_the_page_asked_for(app, client, owner):
    from urllib.parse import parse_qs, urlsplit

    response = client.get("/projects/1")
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.location).query)["next"] == ["/projects/1"]
    follow = _login_via_link(client, owner, "/projects/1")
    assert follow.location == "/projects/1"


def _stays_local(location: str) -> bool:
    """A Location a browser resolves on this site: '/' plus a path, no scheme, no host."""
    from urllib.parse import urljoin, urlsplit

    resolved = urlsplit(urljoin("https://slipway.example.com/login", location))
    return (
        resolved.scheme == "https"
        and resolved.netloc == "slipway.example.com"
        and location.startswith("/")
        and not location.startswith("//")
        and "\\" not in location
        and not any(ord(c) < 33 for c in location)
    )
