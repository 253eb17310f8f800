"""Two-factor login: enrolment, the code step of a login, replay, recovery codes,
enforcement by a team, turning it off, and the limit on guesses."""

from __future__ import annotations

import hashlib
import re
import threading
import time

import pyotp
from sqlalchemy import func, select

from app import crypto
from app.accounts import twofactor
from app.extensions import db
from app.models import AuditEvent, RecoveryCode, User
from tests.conftest import Auth, csrf_token
from tests.factories import make_user, team_of

CODE_RE = re.compile(r"\b[A-Z2-7]{5}-[A-Z2-7]{5}\b")


def code_at(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def enrol(client) -> tuple[str, list[str]]:
    """Enrol the logged-in client through the pages; returns (secret, recovery codes)."""
    page = client.get("/account/two-factor")
    assert page.status_code == 200, page.status_code
    body = page.get_data(as_text=True)
    assert 'src="data:image/svg+xml' in body  # the QR code, rendered here
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', body).group(1).replace(" ", "")
    token = csrf_token(client, "/account/two-factor")
    done = client.post("/account/two-factor", data={"csrf_token": token, "code": code_at(secret)})
    assert done.status_code == 200, done.get_data(as_text=True)
    codes = CODE_RE.findall(done.get_data(as_text=True))
    return secret, codes


def enrolled_user(**kwargs) -> tuple[User, str, list[str]]:
    """A user with two-factor login on, through the domain functions."""
    user = make_user(**kwargs)
    secret = twofactor.pending_secret(user, create=True)
    codes = twofactor.confirm_enrolment(user, code_at(secret))
    return user, secret, codes


def post_code(client, code: str):
    token = csrf_token(client, "/login")
    return client.post("/login/two-factor", data={"csrf_token": token, "code": code})


def audit_count(action) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == action))


def test_enrolment_stores_the_secret_encrypted_and_ten_hashed_recovery_codes(logged_in):
    client, user = logged_in
    secret, codes = enrol(client)
    assert len(codes) == 10 and len(set(codes)) == 10
    db.session.expire_all()
    user = db.session.get(User, user.id)
    assert user.totp_enabled_at is not None
    assert secret not in user.totp_secret
    assert crypto.decrypt(user.totp_secret, context=twofactor.SECRET_CONTEXT) == secret
    rows = select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)
    hashes = set(db.session.scalars(rows))
    assert len(hashes) == 10
    assert not hashes & set(codes)
    assert hashes == {hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in codes}
    assert audit_count("two_factor.enabled") == 1
    # No code or secret in any audit row.
    details = " ".join(str(e.details) for e in db.session.scalars(select(AuditEvent)))
    assert secret not in details and not any(c in details for c in codes)
    # Shown once: the account page says it is on and shows no code.
    account = client.get("/account/").get_data(as_text=True)
    assert "10 of 10 recovery codes left" in account
    assert not CODE_RE.search(account)


def test_a_wrong_code_at_enrolment_turns_nothing_on(logged_in):
    client, user = logged_in
    client.get("/account/two-factor")
    token = csrf_token(client, "/account/two-factor")
    response = client.post("/account/two-factor", data={"csrf_token": token, "code": "000000"})
    assert response.status_code == 422
    assert "That code is not right" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).totp_enabled_at is None
    assert db.session.scalar(select(func.count(RecoveryCode.id))) == 0


def test_the_password_alone_does_not_log_in(client, auth):
    user, secret, _ = enrolled_user()
    response = auth.login(user)
    assert response.status_code == 303
    assert response.headers["Location"] == "/login/two-factor"
    # A pending login grants nothing: every page still asks for a login.
    for path in ("/", "/account/", "/projects/new", "/reauth"):
        page = client.get(path)
        assert page.status_code == 302 and page.location.startswith("/login"), path
    assert "Two-factor login" in client.get("/login/two-factor").get_data(as_text=True)
    response = post_code(client, code_at(secret, 1))
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_a_wrong_code_is_refused_and_audited(client, auth):
    user, secret, _ = enrolled_user()
    auth.login(user)
    wrong = f"{(int(code_at(secret, 1)) + 1) % 1_000_000:06d}"
    response = post_code(client, wrong)
    assert response.status_code == 401
    assert "That code is not right" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert audit_count("two_factor.failed") == 1
    assert post_code(client, "").status_code == 422


def test_a_code_works_once_in_its_time_step(client, auth):
    user, secret, _ = enrolled_user()
    code = code_at(secret, 1)
    auth.login(user)
    assert post_code(client, code).status_code == 303
    auth.logout()
    auth.login(user)
    assert post_code(client, code).status_code == 401  # replayed
    assert post_code(client, code_at(secret)).status_code == 401  # an older step
    assert client.get("/").status_code == 302


def test_the_code_that_confirmed_enrolment_cannot_log_in(client, auth):
    user = make_user()
    secret = twofactor.pending_secret(user, create=True)
    code = code_at(secret)
    twofactor.confirm_enrolment(user, code)
    auth.login(user)
    assert post_code(client, code).status_code == 401


def test_two_simultaneous_logins_with_one_code_let_one_in(app, client):
    """Two browsers that both know the password and saw the same code."""
    user, secret, _ = enrolled_user()
    clients = [client, app.test_client()]
    tokens = []
    for each in clients:
        assert Auth(each).login(user).status_code == 303
        tokens.append(csrf_token(each, "/login/two-factor"))
    code = code_at(secret, 1)
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def attempt(each, token):
        barrier.wait()
        answer = each.post("/login/two-factor", data={"csrf_token": token, "code": code})
        statuses.append(answer.status_code)

    pairs = zip(clients, tokens, strict=True)
    threads = [threading.Thread(target=attempt, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [303, 401]
    assert sorted(each.get("/").status_code for each in clients) == [200, 302]


def test_verify_itself_lets_one_of_two_racing_checks_through(app):
    """The atomic UPDATE, under two threads with their own connections."""
    user, secret, _ = enrolled_user()
    code = code_at(secret, 1)
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def attempt():
        with app.app_context():
            mine = db.session.get(User, user.id)
            barrier.wait()
            results.append(twofactor.verify(mine, code))
            db.session.remove()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False, True]


def test_a_recovery_code_works_once(client, auth):
    user, _, codes = enrolled_user()
    auth.login(user)
    response = post_code(client, codes[3].lower())  # any case
    assert response.status_code == 303
    assert "9 left" in client.get("/").get_data(as_text=True)
    assert audit_count("two_factor.recovery_code_used") == 1
    auth.logout()
    auth.login(user)
    assert post_code(client, codes[3]).status_code == 401
    assert client.get("/").status_code == 302
    assert post_code(client, codes[4]).status_code == 303


def test_a_pending_login_expires_after_five_minutes(client, auth):
    user, secret, _ = enrolled_user()
    auth.login(user)
    with client.session_transaction() as session:
        session["pending_login"] = {**session["pending_login"], "at": int(time.time()) - 301}
    response = post_code(client, code_at(secret, 1))
    assert response.status_code == 303 and response.location.startswith("/login")
    assert client.get("/").status_code == 302


def test_a_password_change_ends_a_pending_login(client, auth):
    user, secret, _ = enrolled_user()
    auth.login(user)
    user.end_all_sessions()
    db.session.commit()
    response = post_code(client, code_at(secret, 1))
    assert response.status_code == 303 and response.location.startswith("/login")
    assert client.get("/").status_code == 302


def test_guessing_codes_is_rate_limited(app, client, auth):
    user, secret, _ = enrolled_user()
    auth.login(user)
    allowed = int(app.config["TWO_FACTOR_LIMIT_USER"].split()[0])
    for _ in range(allowed):
        assert post_code(client, "000000").status_code == 401
    assert post_code(client, "000000").status_code == 429
    # Refused even with the right code, and a new login does not reset the count.
    assert post_code(client, code_at(secret, 1)).status_code == 429
    auth.login(user)
    assert post_code(client, code_at(secret, 1)).status_code == 429
    assert client.get("/").status_code == 302
    # One audit row for the flood, with the count.
    db.session.expire_all()
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "two_factor.failed")
    ).all()
    assert len(events) == 1 and events[0].details["count"] == allowed


# ---- a team that requires two-factor login --------------------------------------------


def _require(user) -> None:
    team = team_of(user)
    team.require_2fa = True
    db.session.commit()


def test_a_team_that_requires_it_sends_every_page_to_enrolment(client, auth):
    user = make_user()
    _require(user)
    response = auth.login(user)
    assert response.status_code == 303
    assert response.location.startswith("/account/two-factor")
    token = csrf_token(client, "/account/two-factor")
    for path in ("/", "/account/", "/projects/new", "/backups/"):
        page = client.get(path)
        assert page.status_code == 302 and page.location == "/account/two-factor", path
    posted = client.post("/projects/new", data={"csrf_token": token, "name": "sneaky"})
    assert posted.status_code == 303 and posted.location == "/account/two-factor"
    htmx = client.get("/", headers={"HX-Request": "true"})
    assert htmx.status_code == 403 and htmx.headers["HX-Redirect"] == "/account/two-factor"
    api = client.get("/", headers={"Accept": "application/json"})
    assert api.status_code == 403 and api.get_json()["error"]["code"] == "two_factor_required"
    from app.models import Project

    assert db.session.scalar(select(func.count(Project.id))) == 0
    enrol(client)
    assert client.get("/").status_code == 200
    assert client.get("/account/").status_code == 200


def test_a_required_team_member_can_still_log_out(client, auth):
    user = make_user()
    _require(user)
    auth.login(user)
    token = csrf_token(client, "/account/two-factor")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/").location.startswith("/login")


def test_turning_it_off_is_refused_while_a_team_requires_it(logged_in):
    client, user = logged_in
    enrol(client)
    _require(user)
    token = csrf_token(client, "/account/")
    assert "cannot be turned off" in client.get("/account/").get_data(as_text=True)
    response = client.post("/account/two-factor/disable", data={"csrf_token": token})
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(User, user.id).totp_enabled_at is not None
    assert audit_count("two_factor.disabled") == 0


def test_turning_it_off_and_making_new_codes(logged_in, auth):
    client, user = logged_in
    secret, codes = enrol(client)
    token = csrf_token(client, "/account/")
    assert client.get("/account/two-factor/recovery-codes").status_code == 200
    fresh = client.post("/account/two-factor/recovery-codes", data={"csrf_token": token})
    assert fresh.status_code == 200
    new_codes = CODE_RE.findall(fresh.get_data(as_text=True))
    assert len(new_codes) == 10 and not set(new_codes) & set(codes)
    assert audit_count("two_factor.recovery_codes_regenerated") == 1
    assert client.get("/account/two-factor/disable").status_code == 200
    off = client.post("/account/two-factor/disable", data={"csrf_token": token})
    assert off.status_code == 303
    db.session.expire_all()
    assert db.session.get(User, user.id).totp_secret is None
    assert db.session.scalar(select(func.count(RecoveryCode.id))) == 0
    assert audit_count("two_factor.disabled") == 1
    auth.logout()
    assert auth.login(user).location == "/"  # the password alone again


def test_making_new_codes_and_turning_off_ask_again_when_the_check_is_old(logged_in):
    client, user = logged_in
    enrol(client)
    with client.session_transaction() as session:
        session["auth_checked_at"] -= 601
    token = csrf_token(client, "/account/")
    for path in ("/account/two-factor/recovery-codes", "/account/two-factor/disable"):
        page = client.get(path)
        assert page.status_code == 303 and page.location.startswith("/reauth"), path
        posted = client.post(path, data={"csrf_token": token})
        assert posted.status_code == 303 and posted.location.startswith("/reauth"), path
    db.session.expire_all()
    assert db.session.get(User, user.id).totp_enabled_at is not None
    assert audit_count("two_factor.recovery_codes_regenerated") == 0
