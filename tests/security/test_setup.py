"""SECURITY.md case 6: first run creates the owner once; no default password and
no shared default secret key."""

from __future__ import annotations

import re
import stat
import threading

import pytest

from app import config as config_module
from app.extensions import db
from app.models import Installation, Membership, Team, User
from tests.conftest import csrf_token
from tests.factories import PASSWORD


def _setup_data(token: str, email: str = "first@example.com", team: str = "First team"):
    return {
        "csrf_token": token,
        "name": "First Owner",
        "email": email,
        "team": team,
        "password": PASSWORD,
        "confirm": PASSWORD,
    }


def test_setup_creates_exactly_one_owner_team_and_installation(app, client, counts):
    response = client.post("/setup", data=_setup_data(csrf_token(client, "/setup")))
    assert response.status_code == 303 and response.location == "/"
    found = counts()
    assert (found["users"], found["teams"], found["memberships"], found["installation"]) == (
        1,
        1,
        1,
        1,
    )
    user = db.session.query(User).one()
    assert db.session.query(Membership).one().role == "owner"
    assert db.session.get(Installation, 1).owner_id == user.id
    assert user.password_hash != PASSWORD and user.check_password(PASSWORD)


def test_setup_is_gone_after_it_ran(app, client, new_client, db_state, app_with):
    """A second setup (another browser, a fresh process) changes nothing and sends to login."""
    token = csrf_token(client, "/setup")
    assert client.post("/setup", data=_setup_data(token)).status_code == 303
    before = db_state()

    attacker = new_client()
    page = attacker.get("/setup")
    assert page.status_code == 302 and page.location == "/login"
    token = csrf_token(attacker, "/login")
    hostile = _setup_data(token, email="attacker@example.com", team="Attackers")
    response = attacker.post("/setup", data=hostile)
    assert response.status_code == 302 and response.location == "/login"
    assert db_state() == before

    # A process that has not cached "installed" reads it from the database.
    fresh = app_with()
    fresh_client = new_client(fresh)
    assert fresh_client.get("/setup").location == "/login"
    hostile["csrf_token"] = csrf_token(fresh_client, "/login")
    response = fresh_client.post("/setup", data=hostile)
    assert response.status_code == 302 and response.location == "/login"
    assert db_state() == before


def test_setup_with_an_existing_installation_keeps_the_owners_password(app, client, owner, counts):
    before = counts()
    token = csrf_token(client, "/login")
    data = _setup_data(token, email=owner.email)
    data["password"] = data["confirm"] = "attacker chosen password"
    response = client.post("/setup", data=data)
    assert response.status_code == 302 and response.location == "/login"
    assert counts() == before
    db.session.expire_all()
    assert db.session.get(User, owner.id).check_password(PASSWORD)


def _race(app, new_client, datas):
    """POST /setup from two threads at once, each with its own client and app context."""
    barrier = threading.Barrier(len(datas))
    results: list = [None] * len(datas)

    def run(index: int) -> None:
        with app.app_context():
            client = new_client()
            token = csrf_token(client, "/setup")
            data = datas[index](token)
            barrier.wait()
            try:
                results[index] = client.post("/setup", data=data)
            except Exception as exc:  # the race loser must not crash: recorded, asserted below
                results[index] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(datas))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_two_racing_setups_create_one_owner_one_team_one_installation(
    app, new_client, counts, real_password_hashing
):
    results = _race(
        app,
        new_client,
        [
            lambda token: _setup_data(token, "racer-one@example.com", "Team one"),
            lambda token: _setup_data(token, "racer-two@example.com", "Team two"),
        ],
    )
    found = counts()
    assert (found["users"], found["teams"], found["memberships"], found["installation"]) == (
        1,
        1,
        1,
        1,
    )
    statuses = sorted(
        (r.status_code, r.location) if not isinstance(r, Exception) else (500, repr(r))
        for r in results
    )
    assert statuses == [(302, "/login"), (303, "/")], statuses


def test_a_double_submitted_setup_creates_one_owner(app, new_client, counts, real_password_hashing):
    """The same form sent twice at once (a double click): one owner, the loser goes to login."""
    results = _race(app, new_client, [_setup_data, _setup_data])
    found = counts()
    assert (found["users"], found["teams"], found["installation"]) == (1, 1, 1)
    statuses = sorted(
        (r.status_code, r.location) if not isinstance(r, Exception) else (500, repr(r))
        for r in results
    )
    assert statuses == [(302, "/login"), (303, "/")], statuses


def test_there_is_no_default_account(app, client, counts):
    """Before setup no credentials work; after it, only the owner's own password does."""
    token = csrf_token(client, "/setup")
    for email, password in [
        ("admin@example.com", "admin"),
        ("admin", "admin"),
        ("admin@localhost", "password"),
        ("root@localhost", "changeme"),
        ("slipway@localhost", "slipway"),
    ]:
        response = client.post(
            "/login", data={"csrf_token": token, "email": email, "password": password}
        )
        assert response.status_code == 302 and response.location == "/setup"
    assert counts()["users"] == 0
    page = client.get("/setup").get_data(as_text=True)
    password_inputs = re.findall(r"<input[^>]*type=\"password\"[^>]*>", page)
    assert len(password_inputs) == 2
    assert not any(re.search(r'value="[^"]', tag) for tag in password_inputs)

    client.post("/setup", data=_setup_data(token))
    assert counts()["users"] == 1


def test_a_short_setup_password_is_refused_and_nothing_is_created(app, client, counts):
    token = csrf_token(client, "/setup")
    data = _setup_data(token)
    data["password"] = data["confirm"] = "admin"
    response = client.post("/setup", data=data)
    assert response.status_code == 422
    assert counts()["users"] == counts()["teams"] == counts()["installation"] == 0


# ---- generated secrets -----------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("SECRET_KEY", "ENCRYPTION_KEYS", "ENV", "DATA_DIR"):
        monkeypatch.delenv(f"SLIPWAY_{name}", raising=False)


def test_a_fresh_data_dir_gets_its_own_secret_keys_readable_only_by_the_owner(clean_env, tmp_path):
    settings = config_module.load({"DATA_DIR": str(tmp_path)})
    key_file = tmp_path / "secret_key"
    enc_file = tmp_path / "encryption_keys"
    for path in (key_file, enc_file):
        assert path.exists()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    assert settings["SECRET_KEY"] == key_file.read_text().strip()
    assert len(settings["SECRET_KEY"]) >= 32
    assert len(next(iter(settings["ENCRYPTION_KEYS"].values()))) == 32
    # Kept, not regenerated: the next start reads the same keys.
    again = config_module.load({"DATA_DIR": str(tmp_path)})
    assert again["SECRET_KEY"] == settings["SECRET_KEY"]
    assert again["ENCRYPTION_KEYS"] == settings["ENCRYPTION_KEYS"]


def test_two_installs_never_share_a_secret_key(clean_env, tmp_path):
    one = config_module.load({"DATA_DIR": str(tmp_path / "one")})
    two = config_module.load({"DATA_DIR": str(tmp_path / "two")})
    assert one["SECRET_KEY"] != two["SECRET_KEY"]
    assert one["ENCRYPTION_KEYS"] != two["ENCRYPTION_KEYS"]


def test_the_generated_secret_key_is_not_a_known_default(clean_env, tmp_path):
    settings = config_module.load({"DATA_DIR": str(tmp_path)})
    assert settings["SECRET_KEY"] not in {
        "",
        "dev",
        "changeme",
        "secret",
        "test-secret-key",
        "slipway",
    }


@pytest.mark.parametrize(
    "given",
    [{}, {"SECRET_KEY": "a" * 64}, {"ENCRYPTION_KEYS_TEXT": "k1:" + "A" * 43 + "="}],
    ids=["no keys", "no encryption key", "no secret key"],
)
def test_production_refuses_to_start_without_its_keys(clean_env, tmp_path, given):
    with pytest.raises(config_module.ConfigError):
        config_module.load({"DATA_DIR": str(tmp_path), "SLIPWAY_ENV": "production", **given})
    assert not (tmp_path / "secret_key").exists()
    assert not (tmp_path / "encryption_keys").exists()


def test_production_from_the_environment_refuses_to_start_without_keys(
    clean_env, monkeypatch, tmp_path
):
    monkeypatch.setenv("SLIPWAY_ENV", "production")
    monkeypatch.setenv("SLIPWAY_DATA_DIR", str(tmp_path))
    with pytest.raises(config_module.ConfigError):
        config_module.load()
    assert list(tmp_path.iterdir()) == []


def test_the_team_of_a_failed_setup_is_not_left_behind(app, client, counts):
    token = csrf_token(client, "/setup")
    data = _setup_data(token)
    data["confirm"] = "something else entirely"
    assert client.post("/setup", data=data).status_code == 422
    assert counts()["teams"] == 0 and db.session.query(Team).count() == 0
