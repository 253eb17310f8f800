"""Single sign-on against a real OpenID Connect provider on loopback (tests/oidc_mock.py).

The Flask test client plays Slipway's side; the provider's pages are fetched over real
HTTP with ``requests``, as a browser would, and its redirect back is fed to the callback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import select, text

from app import crypto
from app.accounts import oidc, sso
from app.extensions import db, redis
from app.models import AuditEvent, Installation, Membership, Role, User
from app.models.sso import OidcIdentity, OidcProvider
from tests.conftest import Auth, csrf_token, running_app
from tests.factories import PASSWORD, make_user, team_of
from tests.lab import LoopbackHTTP
from tests.oidc_mock import MockProvider

ALLOWED_HOSTS = ("127.0.0.1",)


@pytest.fixture(scope="module")
def idp():
    provider = MockProvider()
    yield provider
    provider.stop()


@pytest.fixture
def app(base_config):
    """Slipway, with the provider's loopback address allowed (SLIPWAY_OUTBOUND_ALLOWED_HOSTS)."""
    with running_app({**base_config, "OUTBOUND_ALLOWED_HOSTS": ALLOWED_HOSTS}) as flask_app:
        yield flask_app


def provider_fields(idp, team, **changes) -> sso.ProviderFields:
    values = {
        "slug": "acme", "name": "Acme ID", "discovery_url": idp.url, "client_id": "slipway",
        "client_secret": "client-secret-canary-7431", "allowed_domains": "acme.test",
        "team_id": team.id, "default_role": "developer", "groups_claim": "groups",
        "group_roles": "platform=admin\nstaff=viewer", "enabled": True,
    } | changes  # fmt: skip
    return sso.ProviderFields(**values)


@pytest.fixture
def world(app, idp):
    idp.issue_to = None
    owner = make_user(email="owner@acme.test")  # the first account: the installation's owner
    team = team_of(owner)
    provider = sso.save_provider(None, provider_fields(idp, team))
    return SimpleNamespace(owner=owner, team=team, provider=provider, idp=idp)


def _claims(sub: str, **changes) -> dict:
    return {"email": f"{sub}@acme.test", "email_verified": True, "name": f"User {sub}"} | changes


def start(client, slug: str = "acme", next_url: str | None = None) -> str:
    """Press "Sign in with …": the redirect to the provider's authorization page."""
    url = f"/sso/{slug}/login" + (f"?{urlencode({'next': next_url})}" if next_url else "")
    response = client.get(url)
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"]


def local(url: str) -> str:
    parts = urlsplit(url)
    assert parts.netloc == "localhost", url
    return f"{parts.path}?{parts.query}"


def sign_in(client, idp, sub: str, **claims):
    """The whole flow for ``sub``: Slipway → provider → Slipway's callback; its answer."""
    idp.set_user(sub, **_claims(sub, **claims))
    back = idp.authorize(start(client), sub)
    return client.get(local(back))


def session_user(client) -> int | None:
    with client.session_transaction() as session:
        login_id = session.get("_user_id")
    return int(login_id.split(":")[0]) if login_id else None


def user_by_email(email: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.email == email))


def actions(action) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action.value)))


def failures() -> list[str]:
    return [event.details["reason"] for event in actions(sso.audit.Action.SSO_LOGIN_FAILED)]


def assert_refused(response, status: int, reason: str, client) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert "Sign-in with Acme ID refused" in response.get_data(as_text=True)
    assert session_user(client) is None
    assert reason in failures(), failures()


# ---- the code flow -------------------------------------------------------------------


def test_a_new_user_joins_the_providers_team_with_the_default_role(client, world):
    response = sign_in(client, world.idp, "ada", name="Ada Lovelace")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    user = user_by_email("ada@acme.test")
    assert user is not None and user.name == "Ada Lovelace"
    assert session_user(client) == user.id
    [membership] = db.session.scalars(select(Membership).where(Membership.user_id == user.id))
    assert (membership.team_id, membership.role) == (world.team.id, "developer")
    identity = db.session.scalar(select(OidcIdentity).where(OidcIdentity.user_id == user.id))
    assert (identity.provider_id, identity.subject) == (world.provider.id, "ada")
    assert not user.check_password("")  # a password nobody knows
    assert [e.user_id for e in actions(sso.audit.Action.SSO_USER_CREATED)] == [user.id]
    assert [e.user_id for e in actions(sso.audit.Action.SSO_LOGIN_SUCCEEDED)] == [user.id]
    with client.session_transaction() as session:
        assert session["auth_method"] == "sso"
    assert client.get("/").status_code == 200


def test_the_authorization_request_carries_pkce_state_and_nonce(client, world):
    location = start(client)
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(world.idp.url + "/oauth2/authorize?")
    assert query["response_type"] == "code" and query["client_id"] == "slipway"
    assert query["code_challenge_method"] == "S256"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    with client.session_transaction() as session:
        assert session[sso.SESSION_KEY] == {"acme": query["state"]}
    record = json.loads(redis.client.get(sso._flow_key(query["state"])))
    digest = hashlib.sha256(record["verifier"].encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert query["nonce"] == record["nonce"] and len(query["state"]) >= 40
    assert 0 < redis.client.ttl(sso._flow_key(query["state"])) <= sso.FLOW_SECONDS


def test_groups_map_to_the_highest_matching_role(app, client, world):
    response = sign_in(client, world.idp, "grace", groups=["staff", "platform", "other"])
    assert response.status_code == 303
    user = user_by_email("grace@acme.test")
    assert db.session.scalar(select(Membership.role).where(Membership.user_id == user.id)) == (
        "admin"
    )
    other = app.test_client()
    assert sign_in(other, world.idp, "linus", groups=["staff"]).status_code == 303
    user = user_by_email("linus@acme.test")
    assert db.session.scalar(select(Membership.role).where(Membership.user_id == user.id)) == (
        "viewer"
    )


def test_single_sign_on_never_grants_owner(world):
    for changes in ({"group_roles": "ops=owner"}, {"default_role": "owner"}):
        with pytest.raises(sso.ProviderInvalid) as refused:
            sso.save_provider(world.provider, provider_fields(world.idp, world.team, **changes))
        assert set(refused.value.errors) <= {"group_roles", "default_role"}
    claims = {"groups": ["platform"]}
    world.provider.group_roles = {"platform": "owner"}  # even written straight to the row
    assert sso.role_for(world.provider, claims) == Role.admin


def test_an_existing_identity_signs_in_again_as_the_same_user(app, client, world):
    assert sign_in(client, world.idp, "ada").status_code == 303
    first = session_user(client)
    again = app.test_client()
    assert sign_in(again, world.idp, "ada", name="Renamed There").status_code == 303
    assert session_user(again) == first
    db.session.expire_all()
    assert db.session.scalar(select(text("count(*)")).select_from(OidcIdentity)) == 1
    assert len(actions(sso.audit.Action.SSO_USER_CREATED)) == 1
    assert len(actions(sso.audit.Action.SSO_LOGIN_SUCCEEDED)) == 2


def test_an_account_with_the_same_verified_email_is_linked(client, world):
    existing = make_user(email="dev@acme.test", role=Role.viewer)
    response = sign_in(client, world.idp, "sub-of-dev", email="Dev@ACME.test")
    assert response.status_code == 303
    assert session_user(client) == existing.id
    identity = db.session.scalar(select(OidcIdentity).where(OidcIdentity.subject == "sub-of-dev"))
    assert identity.user_id == existing.id
    assert [e.user_id for e in actions(sso.audit.Action.SSO_IDENTITY_LINKED)] == [existing.id]
    assert actions(sso.audit.Action.SSO_USER_CREATED) == []


def test_a_second_subject_for_a_linked_email_is_refused(app, client, world):
    assert sign_in(client, world.idp, "first-sub", email="same@acme.test").status_code == 303
    other = app.test_client()
    response = sign_in(other, world.idp, "second-sub", email="same@acme.test")
    assert_refused(response, 403, "identity_conflict", other)


def test_next_survives_the_round_trip_but_only_as_a_local_path(app, client, world):
    world.idp.set_user("ada", **_claims("ada"))
    back = world.idp.authorize(start(client, next_url="/settings"), "ada")
    assert client.get(local(back)).headers["Location"] == "/settings"
    other = app.test_client()
    back = world.idp.authorize(start(other, next_url="//evil.example/x"), "ada")
    assert other.get(local(back)).headers["Location"] == "/"


# ---- attacks -------------------------------------------------------------------------


def test_a_wrong_state_is_refused_and_nobody_is_signed_in(app, client, world):
    world.idp.set_user("mallory", **_claims("mallory"))
    back = world.idp.authorize(start(client), "mallory")
    forged = back.replace("state=", "state=forged")
    assert_refused(client.get(local(forged)), 400, "state_mismatch", client)
    assert redis.client.keys("slipway:sso-flow:*") == []  # the real flow ended with it
    # Not ASCII: compared as bytes, refused like any other (not a 500).
    start(client)
    assert_refused(client.get("/sso/acme/callback?code=x&state=%C3%A9t%C3%A9"), 400,
                   "state_mismatch", client)  # fmt: skip
    assert user_by_email("mallory@acme.test") is None
    # The state of a sign-in started in another browser (the attacker's) is no better.
    victim = app.test_client()
    response = victim.get(local(world.idp.authorize(start(client), "mallory")))
    assert_refused(response, 400, "state_mismatch", victim)
    no_state = back.split("&state=")[0].replace("?state=", "?")
    assert_refused(app.test_client().get(local(no_state)), 400, "state_mismatch", victim)
    assert user_by_email("mallory@acme.test") is None


def test_a_replayed_callback_fails_the_second_time(app, client, world):
    world.idp.set_user("ada", **_claims("ada"))
    back = world.idp.authorize(start(client), "ada")
    saved_cookie = client.get_cookie("slipway_session").value
    assert client.get(local(back)).status_code == 303
    assert client.get(local(back)).status_code == 400  # this session's flow is gone
    # The same callback with the session cookie from before the first use: the flow was
    # consumed on the server too.
    replay = app.test_client()
    replay.set_cookie("slipway_session", saved_cookie)
    assert_refused(replay.get(local(back)), 400, "flow_expired", replay)
    assert len(actions(sso.audit.Action.SSO_LOGIN_SUCCEEDED)) == 1


def test_a_code_used_once_is_refused_by_the_provider_in_a_new_flow(app, client, world):
    world.idp.set_user("ada", **_claims("ada"))
    back = world.idp.authorize(start(client), "ada")
    code = parse_qs(urlsplit(back).query)["code"][0]
    assert client.get(local(back)).status_code == 303
    attacker = app.test_client()
    state = parse_qs(urlsplit(start(attacker)).query)["state"][0]
    response = attacker.get(f"/sso/acme/callback?{urlencode({'code': code, 'state': state})}")
    assert_refused(response, 400, "token_exchange_failed", attacker)


def test_a_token_issued_to_another_client_is_refused(client, world):
    world.idp.issue_to = "another-client"
    response = sign_in(client, world.idp, "ada")
    assert_refused(response, 403, "id_token_aud", client)
    assert user_by_email("ada@acme.test") is None


def _real_id_token(idp, client_id: str, nonce: str) -> str:
    """An id token the provider issues to ``client_id``, fetched the way any client would."""
    redirect = "http://localhost/callback"
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect,
                       "scope": "openid email", "state": "s", "nonce": nonce})  # fmt: skip
    back = idp.authorize(f"{idp.url}/oauth2/authorize?{query}", "ada")
    code = parse_qs(urlsplit(back).query)["code"][0]
    answer = requests.post(
        f"{idp.url}/oauth2/token", auth=(client_id, "secret"), timeout=5,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()["id_token"]


def test_each_id_token_check_refuses_a_real_token_that_fails_it(world, monkeypatch):
    idp = world.idp
    idp.set_user("ada", **_claims("ada"))
    metadata = oidc.fetch_discovery(idp.discovery_url)
    token = _real_id_token(idp, "slipway", "nonce-1")

    def check(id_token=token, client_id="slipway", nonce="nonce-1", **meta):
        return oidc.validate_id_token(
            {**metadata, **meta}, id_token, client_id=client_id, nonce=nonce, access_token=None
        )

    assert check()["email"] == "ada@acme.test"  # the control: this token passes as it is
    head, body, signature = token.split(".")
    forged_body = (
        base64.urlsafe_b64encode(
            json.dumps(
                {**json.loads(base64.urlsafe_b64decode(body + "==")), "email": "x@acme.test"}
            ).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    cases = {
        "id_token_aud": lambda: check(client_id="another-client"),
        "id_token_nonce": lambda: check(nonce="nonce-2"),
        "id_token_iss": lambda: check(issuer="http://127.0.0.1:1"),
        "id_token_signature": lambda: check(id_token=f"{head}.{forged_body}.{signature}"),
        "id_token_algorithm": lambda: check(id_token_signing_alg_values_supported=["HS256"]),
    }
    for reason, attempt in cases.items():
        with pytest.raises(oidc.TokenRefused) as refused:
            attempt()
        assert refused.value.reason == reason
    with pytest.raises(oidc.TokenRefused) as refused:
        check(id_token=f"{unsigned}.{body}.")
    assert refused.value.reason == "id_token_signature"
    from joserfc._rfc7519 import claims as joserfc_claims

    later = int(time.time()) + 3600 + oidc.LEEWAY + 1  # the mock's tokens live one hour
    monkeypatch.setattr(joserfc_claims, "_generate_now", lambda: later)
    with pytest.raises(oidc.TokenRefused) as refused:
        check()
    assert refused.value.reason == "id_token_expired"


@pytest.mark.parametrize("verified", [False, "false", None], ids=["false", "string", "missing"])
def test_an_unverified_email_is_refused(app, client, world, verified):
    make_user(email="victim@acme.test", role=Role.owner)
    claims = {"email_verified": verified} if verified is not None else {}
    world.idp.set_user("eve", email="victim@acme.test", **claims)
    response = client.get(local(world.idp.authorize(start(client), "eve")))
    assert_refused(response, 403, "email_unverified", client)
    assert db.session.scalar(select(OidcIdentity.id)) is None


@pytest.mark.parametrize(
    "email",
    ["eve@evil.test", "eve@sub.acme.test", "eve@acme.test.evil.test", "eve@acme.test.",
     "eve@acmetest", "eve@acme.test@evil.test"],
)  # fmt: skip
def test_an_email_outside_the_allowed_domains_is_refused(client, world, email):
    response = sign_in(client, world.idp, "eve", email=email)
    assert response.status_code == 403
    assert session_user(client) is None
    assert set(failures()) <= {"domain_not_allowed", "email_invalid"}
    assert user_by_email(email) is None and user_by_email(email.lower()) is None


def test_an_expired_pending_flow_is_refused(client, world, monkeypatch):
    world.idp.set_user("ada", **_claims("ada"))
    back = world.idp.authorize(start(client), "ada")
    later = time.time() + sso.FLOW_SECONDS + 1
    monkeypatch.setattr(sso, "_now", lambda: later)
    assert_refused(client.get(local(back)), 400, "flow_expired", client)


def test_a_disabled_or_unknown_provider_is_404(client, world):
    world.provider.enabled = False
    db.session.commit()
    assert client.get("/sso/acme/login").status_code == 404
    assert client.get("/sso/acme/callback?code=x&state=y").status_code == 404
    assert client.get("/sso/nobody/login").status_code == 404


def test_the_login_page_offers_each_enabled_provider(client, world):
    body = client.get("/login?next=/settings").get_data(as_text=True)
    assert "Sign in with Acme ID" in body
    assert "/sso/acme/login?next=/settings" in body or "/sso/acme/login?next=%2Fsettings" in body


# ---- password login off --------------------------------------------------------------


def test_password_login_off_refuses_members_but_not_owners(app, client, world):
    developer = make_user(world.team, Role.developer, email="dev@acme.test")
    admin = make_user(world.team, Role.admin, email="admin@acme.test")
    team_owner = make_user(email="other-owner@acme.test")  # owner of a team of their own
    sso.set_password_login(False)
    for user in (developer, admin):
        right = app.test_client()
        answer = Auth(right).login(user)
        wrong = Auth(app.test_client()).login(user, "not the password at all")
        assert answer.status_code == wrong.status_code == 401
        assert "single sign-on" in answer.get_data(as_text=True)
        assert session_user(right) is None
    for user in (world.owner, team_owner):
        owner_client = app.test_client()
        assert Auth(owner_client).login(user).status_code == 303
        assert session_user(owner_client) == user.id
    refused = [e for e in actions(sso.audit.Action.LOGIN_FAILED) if e.details.get("email") in
               (developer.email, admin.email)]  # fmt: skip
    assert refused and all(e.details.get("password_login_off") for e in refused)
    sso.set_password_login(True)
    assert Auth(app.test_client()).login(developer).status_code == 303


def test_the_settings_page_toggles_password_login_only_with_a_provider(app, client, world):
    assert Auth(client).login(world.owner).status_code == 303
    token = csrf_token(client, "/installation/sso")
    world.provider.enabled = False
    db.session.commit()
    response = client.post("/installation/sso/password-login",
                           data={"csrf_token": token, "change": "off"})  # fmt: skip
    assert response.status_code == 422
    assert "Enable a single sign-on provider first" in response.get_data(as_text=True)
    assert db.session.get(Installation, 1).password_login is True
    world.provider.enabled = True
    db.session.commit()
    response = client.post("/installation/sso/password-login",
                           data={"csrf_token": token, "change": "off"})  # fmt: skip
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Installation, 1).password_login is False
    assert [e.details for e in actions(sso.audit.Action.PASSWORD_LOGIN_CHANGED)] == [
        {"password_login": False}
    ]
    # With password login off, the last enabled provider can be neither disabled nor deleted.
    fields = provider_fields(world.idp, world.team, enabled=False, client_secret="")
    with pytest.raises(sso.ProviderInvalid) as refused:
        sso.save_provider(world.provider, fields)
    assert "enabled" in refused.value.errors
    with pytest.raises(sso.PasswordLoginRefused):
        sso.delete_provider(world.provider)


# ---- the provider settings -----------------------------------------------------------


def _form(idp, team, **changes) -> dict:
    return {
        "name": "Corp SSO", "slug": "corp", "discovery_url": idp.discovery_url,
        "client_id": "slipway-corp", "client_secret": "corp-secret-canary-5512",
        "allowed_domains": "Corp.Test. acme.test", "team_id": str(team.id),
        "default_role": "viewer", "groups_claim": "", "group_roles": "", "enabled": "y",
    } | changes  # fmt: skip


def test_the_client_secret_is_stored_encrypted_and_never_rendered(app, client, world):
    assert Auth(client).login(world.owner).status_code == 303
    token = csrf_token(client, "/installation/sso/new")
    response = client.post("/installation/sso/new",
                           data={"csrf_token": token, **_form(world.idp, world.team)})  # fmt: skip
    assert response.status_code == 303, response.get_data(as_text=True)
    stored = db.session.scalar(select(OidcProvider).where(OidcProvider.slug == "corp"))
    assert stored.allowed_domains == "corp.test acme.test"
    with db.engine.connect() as conn:
        raw = conn.execute(text("SELECT client_secret FROM oidc_providers WHERE slug = 'corp'"))
        ciphertext = raw.scalar_one()
        dump = " ".join(str(r) for r in conn.execute(text("SELECT * FROM oidc_providers")))
        audit_rows = " ".join(str(r) for r in conn.execute(text("SELECT * FROM audit_events")))
    assert "corp-secret-canary-5512" not in dump + audit_rows
    assert ciphertext.startswith("k1:")
    assert crypto.decrypt(ciphertext, context=sso.SECRET_CONTEXT) == "corp-secret-canary-5512"
    for url in ("/installation/sso", f"/installation/sso/{stored.id}/edit", "/login"):
        body = client.get(url).get_data(as_text=True)
        assert "corp-secret-canary-5512" not in body and ciphertext not in body, url
    # Saved again with the secret left blank: the stored one stays.
    edit = _form(world.idp, world.team, client_secret="", name="Corp Renamed")
    edit_url = f"/installation/sso/{stored.id}/edit"
    response = client.post(edit_url, data={"csrf_token": token, **edit})
    assert response.status_code == 303
    db.session.expire_all()
    stored = db.session.get(OidcProvider, stored.id)
    assert stored.name == "Corp Renamed" and stored.client_secret == ciphertext
    # A refused form does not echo the secret typed either.
    bad = _form(world.idp, world.team, slug="Bad Slug", client_secret="typed-secret-9981")
    response = client.post(edit_url, data={"csrf_token": token, **bad})
    assert response.status_code == 422
    assert "typed-secret-9981" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"discovery_url": "http://10.0.0.7/.well-known/openid-configuration"}, "discovery_url"),
        ({"discovery_url": "ftp://idp.example/"}, "discovery_url"),
        ({"discovery_url": "http://127.0.0.1:9/"}, "discovery_url"),  # nothing listens
        ({"slug": "Bad Slug"}, "slug"),
        ({"slug": "acme"}, "slug"),  # taken
        ({"allowed_domains": ""}, "allowed_domains"),
        ({"allowed_domains": "acme.test ev!l"}, "allowed_domains"),
        ({"group_roles": "platform"}, "group_roles"),
        ({"group_roles": "a=superuser"}, "group_roles"),
        ({"group_roles": "a=admin", "groups_claim": ""}, "groups_claim"),
        ({"client_secret": ""}, "client_secret"),
        ({"team_id": "999999"}, "team_id"),
    ],
)
def test_bad_provider_settings_are_refused_with_the_field_and_change_nothing(
    app, client, world, changes, field
):
    assert Auth(client).login(world.owner).status_code == 303
    token = csrf_token(client, "/installation/sso/new")
    data = {"csrf_token": token, **_form(world.idp, world.team, **changes)}
    response = client.post("/installation/sso/new", data=data)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert f'id="{field}-error"' in body
    error = body.split(f'id="{field}-error"', 1)[1].split("</div>", 1)[0]
    assert 'class="error"' in error, (field, error)
    assert db.session.scalar(select(OidcProvider.id).where(OidcProvider.slug == "corp")) is None


def test_a_discovery_document_for_another_issuer_is_refused(world):
    """A document served from one address that names another issuer (a mix-up: tokens
    signed by the real provider would be taken for this one's) is refused on save."""
    document = requests.get(world.idp.discovery_url, timeout=5).json()
    impostor = LoopbackHTTP(lambda path: (200, json.dumps(document).encode()))
    try:
        fields = provider_fields(world.idp, world.team, slug="other", discovery_url=impostor.url)
        with pytest.raises(sso.ProviderInvalid) as refused:
            sso.save_provider(None, fields)
        assert "is not the URL it was fetched from" in refused.value.errors["discovery_url"]
        # The control: the same document under its own issuer's address is accepted.
        fields.discovery_url = world.idp.url
        assert sso.save_provider(None, fields).slug == "other"
    finally:
        impostor.stop()


def test_only_the_installation_owner_opens_the_settings(app, client, world):
    team_owner = make_user(world.team, Role.owner, email="teamowner@acme.test")
    assert Auth(client).login(team_owner).status_code == 303
    token = csrf_token(client, "/")
    for url in ("/installation/sso", "/installation/sso/new",
                f"/installation/sso/{world.provider.id}/edit"):  # fmt: skip
        assert client.get(url).status_code == 403, url
    assert client.post("/installation/sso/password-login",
                       data={"csrf_token": token, "change": "off"}).status_code == 403  # fmt: skip
    assert client.post(f"/installation/sso/{world.provider.id}/delete",
                       data={"csrf_token": token}).status_code == 403  # fmt: skip
    assert db.session.get(OidcProvider, world.provider.id) is not None


def test_the_owner_deletes_a_provider(app, client, world):
    assert Auth(client).login(world.owner).status_code == 303
    token = csrf_token(client, "/")
    assert client.get(f"/installation/sso/{world.provider.id}/delete").status_code == 200
    response = client.post(f"/installation/sso/{world.provider.id}/delete",
                           data={"csrf_token": token})  # fmt: skip
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.scalar(select(OidcProvider.id)) is None
    assert len(actions(sso.audit.Action.SSO_PROVIDER_DELETED)) == 1
    assert "Sign in with" not in app.test_client().get("/login").get_data(as_text=True)


def test_the_password_stays_usable_for_an_sso_user_after_a_reset_only(client, world):
    """A created account's password hash is real but of a secret nobody was told."""
    assert sign_in(client, world.idp, "ada").status_code == 303
    user = user_by_email("ada@acme.test")
    assert not user.check_password(PASSWORD) and not user.check_password("")


def test_starting_sign_ins_is_rate_limited_per_address(client, world):
    """Each start costs a request to the provider and a pending flow: 30 a minute."""
    answers = [client.get("/sso/acme/login").status_code for _ in range(31)]
    assert answers[:30] == [303] * 30 and answers[30] == 429
    assert len(redis.client.keys("slipway:sso-flow:*")) == 1  # one pending flow per provider
