"""Issue 11 item 11: "Forgot password?" mails a one-time link (a real SMTP server,
aiosmtpd, receives it; a real RQ worker sends it), and the operator's command
``flask --app app users reset-password EMAIL`` prints one."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import select

from app.accounts import resets
from app.extensions import db, queue, redis
from app.models import AuditEvent, PasswordReset, User
from app.models.base import utcnow
from tests.accounts.conftest import PUBLIC
from tests.conftest import Auth, RequestScopedClient, csrf_token
from tests.factories import PASSWORD

NEW = "a fresh passphrase of mine"
LINK = re.compile(re.escape(PUBLIC) + r"(/password/reset/[A-Za-z0-9_-]+)")


def _new_client(app):
    app.test_client_class = RequestScopedClient
    return app.test_client()


def _run_jobs(app) -> None:
    """Run the queued jobs in this process with RQ's own worker (JSON serializer)."""
    from app import jobs

    jobs.bind(app)
    SimpleWorker([queue("default")], connection=redis.client, serializer=JSONSerializer).work(
        burst=True
    )


def _forgot(client, email: str):
    token = csrf_token(client, "/password/forgot")
    return client.post("/password/forgot", data={"csrf_token": token, "email": email})


def _set(client, path: str, password: str = NEW, confirm: str | None = None):
    token = csrf_token(client, "/login")
    data = {"csrf_token": token, "password": password, "confirm": confirm or password}
    return client.post(path, data=data)


def _mailed_link(inbox, to: str) -> str:
    mails = [m for m in inbox.messages if m.rcpt_tos == [to]]
    assert len(mails) == 1, [m.rcpt_tos for m in inbox.messages]
    text = message_from_bytes(mails[0].content, policy=policy.default).get_content()
    found = LINK.search(text)
    assert found, text
    return found[1]


def _logged_in(client) -> bool:
    return client.get("/account/").status_code == 200


def _normalised(body: str) -> str:
    return re.sub(r'(name="csrf[-_]token"[^>]*(?:content|value)=")[^"]+', r"\1TOKEN", body)


def test_the_login_page_links_to_forgot_password(client, owner):
    body = client.get("/login").get_data(as_text=True)
    assert 'href="/password/forgot"' in body and "Forgot password?" in body


def test_a_mailed_link_sets_the_password_once_and_ends_every_other_session(
    app, client, owner, smtp
):
    laptop = _new_client(app)
    assert Auth(laptop).login(owner).status_code == 303
    response = _forgot(client, owner.email.upper())
    assert response.status_code == 200
    assert "a link to set a new" in response.get_data(as_text=True)
    assert not smtp.messages  # sent by the worker, not while the page waits
    _run_jobs(app)
    path = _mailed_link(smtp, owner.email)
    token = path.rsplit("/", 1)[1]
    row = db.session.scalar(select(PasswordReset))
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() != token
    assert timedelta(minutes=59) < row.expires_at - utcnow() <= timedelta(hours=1)

    page = client.get(path)
    assert page.status_code == 200 and "Set a new password" in page.get_data(as_text=True)
    response = _set(client, path)
    assert response.status_code == 303 and response.location == "/login"
    assert not _logged_in(laptop)  # session_version bumped
    db.session.expire_all()
    user = db.session.get(User, owner.id)
    assert user.check_password(NEW) and not user.check_password(PASSWORD)
    assert Auth(_new_client(app)).login(owner, NEW).status_code == 303

    again = _set(_new_client(app), path, "yet another passphrase")
    assert again.status_code == 410
    assert "already used" in again.get_data(as_text=True)
    assert _new_client(app).get(path).status_code == 410
    db.session.expire_all()
    assert db.session.get(User, owner.id).check_password(NEW)
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert "password.reset_requested" in actions and "password.reset" in actions


def test_an_unknown_email_gets_the_same_answer_and_no_mail(app, owner, smtp):
    known = _forgot(_new_client(app), owner.email)
    unknown = _forgot(_new_client(app), "nobody-here@example.com")
    assert known.status_code == unknown.status_code == 200
    assert _normalised(known.get_data(as_text=True)) == _normalised(unknown.get_data(as_text=True))
    _run_jobs(app)
    assert [m.rcpt_tos for m in smtp.messages] == [[owner.email]]


def test_expired_used_and_forged_links_are_refused_and_change_nothing(app, client, owner):
    expired, superseded, used = (resets.issue(owner, via="cli") for _ in range(3))
    row = db.session.scalar(
        select(PasswordReset).where(
            PasswordReset.token_hash == hashlib.sha256(expired.encode()).hexdigest()
        )
    )
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    forged = "A" * 43

    for token, status, says in ((expired, 410, "expired"), (forged, 404, "not valid")):
        for response in (client.get(f"/password/reset/{token}"),
                         _set(client, f"/password/reset/{token}")):  # fmt: skip
            assert response.status_code == status
            assert says in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, owner.id).check_password(PASSWORD)

    assert _set(client, f"/password/reset/{used}").status_code == 303
    # Using one link closed the user's other open links.
    response = _set(_new_client(app), f"/password/reset/{superseded}", "not this one either")
    assert response.status_code == 410 and "already used" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, owner.id).check_password(NEW)


def test_a_new_password_follows_the_account_pages_rules(app, client, owner):
    path = resets.reset_path(resets.issue(owner, via="cli"))
    response = _set(client, path, "short")
    assert response.status_code == 422
    assert "at least 12 characters" in response.get_data(as_text=True).lower()
    response = _set(client, path, NEW, "something else entirely")
    assert response.status_code == 422 and "Passwords differ." in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, owner.id).check_password(PASSWORD)
    assert _set(client, path).status_code == 303  # the link still works after a typo


@pytest.mark.parametrize("configured", ["nothing", "smtp without public url"])
def test_without_mail_the_page_says_to_ask_the_operator(app, client, owner, configured):
    if configured != "nothing":
        app.config.update(SMTP_HOST="127.0.0.1", SMTP_SENDER="slipway@example.test")
    page = client.get("/password/forgot").get_data(as_text=True)
    assert "Ask the server's" in page and "users reset-password" in page
    response = _forgot(client, owner.email)
    assert response.status_code == 200
    assert "users reset-password" in response.get_data(as_text=True)
    assert queue("default").count == 0
    assert db.session.scalar(select(PasswordReset)) is None


def test_asking_for_links_is_rate_limited(app, owner, smtp):
    app.config.update(
        PASSWORD_RESET_LIMIT_ACCOUNT="2 per hour", PASSWORD_RESET_LIMIT_IP="3 per hour"
    )
    client = _new_client(app)
    answers = [_forgot(client, owner.email).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    _run_jobs(app)
    assert len(smtp.messages) == 2  # the third was answered alike but not mailed


# ---- the operator's command --------------------------------------------------


def test_the_command_prints_a_one_time_link_that_ends_every_session(app, owner):
    app.config["PUBLIC_URL"] = PUBLIC + "/"
    browser = _new_client(app)
    assert Auth(browser).login(owner).status_code == 303
    result = app.test_cli_runner().invoke(args=["users", "reset-password", owner.email.upper()])
    assert result.exit_code == 0, result.output
    path = LINK.search(result.output)[1]
    client = _new_client(app)
    assert client.get(path).status_code == 200
    assert _set(client, path).status_code == 303
    assert not _logged_in(browser)
    assert _set(_new_client(app), path).status_code == 410
    db.session.expire_all()
    assert db.session.get(User, owner.id).check_password(NEW)


def test_without_a_public_url_the_command_prints_the_path(app, owner):
    result = app.test_cli_runner().invoke(args=["users", "reset-password", owner.email])
    assert result.exit_code == 0, result.output
    path = re.search(r"^(/password/reset/[A-Za-z0-9_-]+)$", result.output, re.M)[1]
    assert "SLIPWAY_PUBLIC_URL" in result.output
    assert _new_client(app).get(path).status_code == 200


def test_the_command_refuses_an_unknown_email(app, owner):
    result = app.test_cli_runner().invoke(args=["users", "reset-password", "no@example.com"])
    assert result.exit_code != 0 and "no user has the email no@example.com" in result.output
    assert db.session.scalar(select(PasswordReset)) is None


def test_the_command_sets_a_password_from_stdin(app, owner):
    browser = _new_client(app)
    assert Auth(browser).login(owner).status_code == 303
    runner = app.test_cli_runner()
    args = ["users", "reset-password", owner.email, "--password-stdin"]
    short = runner.invoke(args=args, input="too short\n")
    assert short.exit_code != 0 and "12 to 200 characters" in short.output
    assert _logged_in(browser)
    result = runner.invoke(args=args, input=NEW + "\n")
    assert result.exit_code == 0, result.output
    assert not _logged_in(browser)
    db.session.expire_all()
    assert db.session.get(User, owner.id).check_password(NEW)
    assert Auth(_new_client(app)).login(owner, NEW).status_code == 303
