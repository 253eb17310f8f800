"""The API keys page (issue 15): make a key (its token shown once), refused input (422,
nothing made), the list, revoking through the confirm page; another user's key is 404."""

from __future__ import annotations

import re
from datetime import timedelta

from app.extensions import db
from app.models import ApiKey, Membership, ProjectMembership, Role
from app.models.base import utcnow
from tests.api.conftest import Api, make_key
from tests.conftest import Auth, csrf_token
from tests.factories import make_project, make_user, team_of

PAGE = "/account/api-keys/"


def _create(client, **fields):
    data = {"csrf_token": csrf_token(client, PAGE), "name": "ci", "scopes": ["deploy"]} | fields
    return client.post(PAGE, data=data)


def _token_in(html: str) -> str:
    found = re.search(r'id="api-token">(slw_[0-9]+_[A-Za-z0-9_-]+)<', html)
    assert found, html
    return found.group(1)


def test_the_page_lists_nothing_and_offers_every_scope_with_its_label(logged_in):
    client, _ = logged_in
    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "no API key" in html
    for scope, label in (("read", "Read everything"), ("admin", "Everything the member")):
        assert f'value="{scope}"' in html and label in html
    assert 'href="/account/api-keys/"' in client.get("/").get_data(as_text=True)  # the nav link


def test_a_new_key_shows_its_token_once_and_the_token_works(logged_in, client):
    client, owner = logged_in
    project = make_project(team_of(owner), "shop")
    day = (utcnow() + timedelta(days=30)).date()
    response = _create(client, name="CI deploys", scopes=["read", "deploy"],
                       projects=[str(project.id)], expires_on=day.isoformat())  # fmt: skip
    assert response.status_code == 200  # the answer itself, not a redirect to a URL
    html = response.get_data(as_text=True)
    token = _token_in(html)
    assert "shown only now" in html and 'data-copy-target="api-token"' in html
    key = db.session.query(ApiKey).one()
    assert (key.name, key.scopes, key.project_ids) == ("CI deploys", ["read", "deploy"],
                                                       [project.id])  # fmt: skip
    assert key.expires_at.date() == day + timedelta(days=1)  # valid through that day
    assert token.startswith(key.prefix) and token.split("_", 2)[2] not in key.secret_hash
    # never again: not on the list, nowhere in the page
    listing = client.get(PAGE).get_data(as_text=True)
    assert token not in listing and key.prefix in listing and "CI deploys" in listing
    assert "shop" in listing
    me = Api(client, token).get("/api/v1/me")
    assert me.status_code == 200 and me.get_json()["key"]["scopes"] == ["read", "deploy"]


def test_bad_input_is_422_next_to_the_field_and_makes_nothing(logged_in):
    client, owner = logged_in
    other_team = make_project(make_user().memberships[0].team, "theirs")
    yesterday = (utcnow() - timedelta(days=1)).date().isoformat()
    for fields, where in (
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["root"]}, "scopes"),
        ({"projects": [str(other_team.id)]}, "projects"),
        ({"expires_on": yesterday}, "expires_on"),
        ({"expires_on": "not a date"}, "expires_on"),
    ):
        response = _create(client, **fields)
        assert response.status_code == 422, fields
        html = response.get_data(as_text=True)
        errors = re.search(f'id="{where}-error"[^>]*>(.*?)</div>', html).group(1)
        assert 'class="error"' in errors, (fields, html)
        assert len(re.findall(r'<span class="error">', html)) == 1, fields  # that field only
        assert "slw_" not in html
    assert db.session.query(ApiKey).count() == 0


def test_a_project_limited_member_can_choose_only_their_projects(client):
    owner = make_user()
    team = team_of(owner)
    mine, hidden = make_project(team, "mine-proj"), make_project(team, "secret-proj")
    user = make_user(role=Role.owner)
    membership = Membership(team_id=team.id, user_id=user.id, role="developer",
                            all_projects=False)  # fmt: skip
    db.session.add(membership)
    db.session.flush()
    db.session.add(ProjectMembership(membership_id=membership.id, project_id=mine.id,
                                     role="developer"))  # fmt: skip
    user.current_team_id = team.id
    db.session.commit()
    assert Auth(client).login(user).status_code == 303
    html = client.get(PAGE).get_data(as_text=True)
    assert "mine-proj" in html and "secret-proj" not in html
    assert _create(client, projects=[str(hidden.id)]).status_code == 422
    assert db.session.query(ApiKey).count() == 0
    assert _create(client, projects=[str(mine.id)]).status_code == 200
    assert db.session.query(ApiKey).one().team_id == team.id


def test_revoke_goes_through_the_confirm_page_and_the_key_stops_working(logged_in):
    client, owner = logged_in
    token = _token_in(_create(client).get_data(as_text=True))
    key = db.session.query(ApiKey).one()
    assert Api(client, token).get("/api/v1/me").status_code == 200
    confirm = client.get(f"{PAGE}{key.id}/revoke")
    assert confirm.status_code == 200 and "Revoke the key ci?" in confirm.get_data(as_text=True)
    assert db.session.get(ApiKey, key.id).revoked_at is None  # the GET changed nothing
    # without the CSRF token: refused, nothing revoked
    assert client.post(f"{PAGE}{key.id}/revoke").status_code == 400
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).revoked_at is None
    done = client.post(f"{PAGE}{key.id}/revoke", data={"csrf_token": csrf_token(client, PAGE)})
    assert done.status_code == 303 and done.headers["Location"].endswith(PAGE)
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).revoked_at is not None
    assert Api(client, token).get("/api/v1/me").status_code == 401
    assert "revoked" in client.get(PAGE).get_data(as_text=True)


def test_another_users_key_is_404_and_stays_alive(logged_in):
    client, owner = logged_in
    colleague = make_user(team=team_of(owner), role=Role.developer)
    theirs, token = make_key(colleague, team_of(owner))
    assert "ci" not in client.get(PAGE).get_data(as_text=True).split("Your keys", 1)[1].split(
        "New key")[0]  # fmt: skip
    assert client.get(f"{PAGE}{theirs.id}/revoke").status_code == 404
    posted = client.post(f"{PAGE}{theirs.id}/revoke",
                         data={"csrf_token": csrf_token(client, PAGE)})  # fmt: skip
    assert posted.status_code == 404
    db.session.expire_all()
    assert db.session.get(ApiKey, theirs.id).revoked_at is None
    assert Api(client, token).get("/api/v1/me").status_code == 200


def test_a_key_of_the_users_other_team_is_404_on_this_teams_page(logged_in):
    client, owner = logged_in
    elsewhere = make_user()
    other_team = team_of(elsewhere)
    db.session.add(Membership(team_id=other_team.id, user_id=owner.id, role="owner"))
    db.session.commit()
    key, _ = make_key(owner, other_team)
    assert client.get(f"{PAGE}{key.id}/revoke").status_code == 404
