"""``slipway`` against a live server: login, listings, env, and the API's errors."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

from sqlalchemy import select

from app.extensions import db
from app.models import Deployment, EnvVar, Team
from tests.browser.conftest import ROOT
from tests.cli.conftest import LossyProxy, member
from tests.factories import make_app, make_destination, make_policy, make_project


def _shop(team_id: int, *names: str, project: str = "shop") -> dict[str, int]:
    made = make_project(db.session.get(Team, team_id), project)
    ids = {name: make_app(made, name).id for name in names}
    db.session.close()
    return ids


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- login ------------------------------------------------------------------


def test_login_checks_the_key_and_keeps_it_for_the_owner_only(cli):
    owner = member()
    done = cli("login", "--url", cli.url + "/api/v1/", "--token", owner.token)
    assert done.code == 0, done
    assert "Logged in to " + cli.url in done.out
    saved = cli.config_dir / "config.json"
    assert _mode(saved) == 0o600
    assert _mode(cli.config_dir) == 0o700
    assert json.loads(saved.read_text()) == {"url": cli.url, "token": owner.token}
    # The next command uses it.
    me = cli("whoami", "--json")
    assert me.code == 0, me
    assert me.json()["id"] == owner.user_id


def test_login_asks_for_what_it_is_not_given_and_does_not_echo_the_key(cli):
    owner = member()
    done = cli("login", input=f"{cli.url}\n{owner.token}\n")
    assert done.code == 0, done
    assert owner.token not in done.out + done.err
    assert json.loads((cli.config_dir / "config.json").read_text())["token"] == owner.token


def test_a_wrong_key_is_refused_with_the_apis_message_and_nothing_is_saved(cli):
    member()
    done = cli("login", "--url", cli.url, "--token", "slw_1_notthesecret")
    assert done.code == 1
    assert "This API key is unknown, revoked or expired." in done.err
    assert "invalid_key" in done.err
    assert not (cli.config_dir / "config.json").exists()


def test_environment_variables_override_the_saved_login(logged_in):
    cli, _ = logged_in
    other = member()
    me = cli("whoami", "--json", env={"SLIPWAY_TOKEN": other.token})
    assert me.code == 0, me
    assert me.json()["id"] == other.user_id
    bad = cli("whoami", env={"SLIPWAY_TOKEN": "slw_9_nope"})
    assert bad.code == 1 and "unknown, revoked or expired" in bad.err


def test_without_a_login_the_cli_says_how_to_log_in(cli):
    done = cli("apps", "ls")
    assert done.code == 1
    assert "Not logged in: run `slipway login`" in done.err


def test_a_server_that_cannot_be_reached_is_a_clear_message(cli):
    from tests.lab import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    done = cli("whoami", env={"SLIPWAY_URL": dead, "SLIPWAY_TOKEN": "slw_1_x"})
    assert done.code == 1
    assert f"Cannot reach Slipway at {dead}" in done.err
    assert "Traceback" not in done.err


def test_logout_forgets_the_login(logged_in):
    cli, _ = logged_in
    assert cli("logout").code == 0
    assert not (cli.config_dir / "config.json").exists()
    assert cli("whoami").code == 1


# ---- apps -------------------------------------------------------------------


def test_apps_ls_json_is_the_apis_data_and_the_table_lines_up(logged_in):
    cli, owner = logged_in
    ids = _shop(owner.team_id, "web", "worker-long-name")
    _shop(member().team_id, "theirs", project="elsewhere")  # another team's: never listed
    listed = cli("apps", "ls", "--json")
    assert listed.code == 0, listed
    data = listed.json()
    assert isinstance(data, list)
    assert sorted(a["id"] for a in data) == sorted(ids.values())
    assert {(a["project"], a["name"]) for a in data} == {
        ("shop", "web"),
        ("shop", "worker-long-name"),
    }
    table = cli("apps", "ls")
    assert table.code == 0, table
    lines = table.out.splitlines()
    assert lines[0].split() == ["APP", "ID", "SOURCE", "STATUS", "HEALTH", "URL"]
    assert len(lines) == 3
    starts = {line.index(str(ids[name])) for line, name in
              zip(sorted(lines[1:]), sorted(ids), strict=True)}  # fmt: skip
    assert starts == {lines[0].index("ID")}  # the ID column starts at the same place


def test_apps_ls_filters_by_project(logged_in):
    cli, owner = logged_in
    _shop(owner.team_id, "web")
    blog = _shop(owner.team_id, "site", project="blog")
    done = cli("apps", "ls", "--project", "blog", "--json")
    assert done.code == 0, done
    assert [a["id"] for a in done.json()] == [blog["site"]]


def test_apps_create_from_an_image(logged_in):
    cli, owner = logged_in
    _shop(owner.team_id)
    done = cli("apps", "create", "shop", "cache", "--image", "redis:7", "--port", "6379",
               "--env", "MAXMEMORY=64mb", "--env", "MODE=lru")  # fmt: skip
    assert done.code == 0, done
    env = cli("env", "ls", "shop/cache", "--json").json()
    assert {v["key"]: v["value"] for v in env} == {"MAXMEMORY": "64mb", "MODE": "lru"}
    assert "App shop/cache created" in done.out
    made = cli("apps", "show", "shop/cache", "--json").json()
    assert (made["source_type"], made["image"], made["container_port"]) == (
        "image",
        "redis:7",
        6379,
    )


def test_the_apis_field_errors_are_printed_and_nothing_is_made(logged_in):
    cli, owner = logged_in
    _shop(owner.team_id, "web")
    done = cli("apps", "create", "shop", "Bad_Name!", "--image", "redis:7")
    assert done.code == 1
    assert "Some fields are not valid. (422 invalid)" in done.err
    assert "  name: " in done.err
    taken = cli("apps", "create", "shop", "web", "--image", "redis:7")
    assert taken.code == 1 and "  name: " in taken.err
    assert len(cli("apps", "ls", "--json").json()) == 1


def test_an_unknown_app_is_an_error_naming_it(logged_in):
    cli, owner = logged_in
    _shop(owner.team_id, "web")
    done = cli("env", "ls", "shop/nope")
    assert done.code == 1
    assert "No app 'nope' in project 'shop'" in done.err


def test_a_badly_named_app_is_a_usage_error(logged_in):
    cli, _ = logged_in
    done = cli("deploy", "just-a-name")
    assert done.code == 2
    assert "name an app as <project>/<app>" in done.err


def test_a_too_narrow_key_gets_the_apis_refusal(cli):
    reader = member(scopes=("read",))
    _shop(reader.team_id, "web")
    cli.login(reader.token)
    assert cli("env", "ls", "shop/web").code == 0
    done = cli("env", "set", "A=1", "shop/web")
    assert done.code == 1
    assert "(403 " in done.err


# ---- env --------------------------------------------------------------------


def _env_rows(app_id: int) -> dict[str, tuple[str | None, bool]]:
    db.session.expire_all()
    rows = db.session.scalars(select(EnvVar).where(EnvVar.application_id == app_id))
    found = {row.key: (row.value, row.is_secret) for row in rows}
    db.session.close()
    return found


def test_env_set_ls_unset(logged_in):
    cli, owner = logged_in
    app_id = _shop(owner.team_id, "web")["web"]
    done = cli("env", "set", "LOG_LEVEL=debug", "URL=https://x.example/a=b", "shop/web")
    assert done.code == 0, done
    secret = cli("env", "set", "shop/web", "API_TOKEN=s3cr3t-value", "--secret")
    assert secret.code == 0, secret
    rows = _env_rows(app_id)
    assert rows["LOG_LEVEL"] == ("debug", False)
    assert rows["URL"] == ("https://x.example/a=b", False)
    assert rows["API_TOKEN"][1] is True

    listed = cli("env", "ls", "shop/web", "--json")
    assert listed.code == 0, listed
    by_key = {v["key"]: v for v in listed.json()}
    assert by_key["API_TOKEN"]["value"] is None and by_key["API_TOKEN"]["secret"] is True
    assert by_key["LOG_LEVEL"]["value"] == "debug"
    table = cli("env", "ls", "shop/web")
    assert "s3cr3t-value" not in table.out
    assert [line.split()[:2] for line in table.out.splitlines()[1:]] == [
        ["API_TOKEN", "(secret)"], ["LOG_LEVEL", "debug"], ["URL", "https://x.example/a=b"]
    ]  # fmt: skip

    removed = cli("env", "unset", "LOG_LEVEL", "API_TOKEN", "shop/web")
    assert removed.code == 0, removed
    assert set(_env_rows(app_id)) == {"URL"}


def test_env_set_refuses_a_bad_name_before_asking_the_server(logged_in):
    cli, owner = logged_in
    app_id = _shop(owner.team_id, "web")["web"]
    done = cli("env", "set", "1BAD=x", "shop/web")
    assert done.code == 2
    assert _env_rows(app_id) == {}


# ---- domains, backups -------------------------------------------------------


def test_domains_add_and_ls(logged_in):
    cli, owner = logged_in
    app_id = _shop(owner.team_id, "web")["web"]
    added = cli("domains", "add", "shop/web", "shop.example.com", "--https", "off")
    assert added.code == 0, added
    assert "shop.example.com added" in added.out
    listed = cli("domains", "ls", "shop/web", "--json")
    assert listed.code == 0, listed
    [domain] = listed.json()
    assert (domain["app_id"], domain["host"], domain["https_mode"]) == (
        app_id,
        "shop.example.com",
        "off",
    )
    table = cli("domains", "ls", "shop/web").out.splitlines()
    assert table[0].split() == ["ID", "HOST", "PATH", "HTTPS", "WWW", "STATE"]
    assert table[1].split()[1:4] == ["shop.example.com", "/", "off"]
    bad = cli("domains", "add", "shop/web", "bad_host.example.com")
    assert bad.code == 1 and "  host: " in bad.err


def test_backups_policies_run_and_ls(logged_in):
    cli, owner = logged_in
    team = db.session.get(Team, owner.team_id)
    policy = make_policy(team, make_destination(team, "http://127.0.0.1:9", "bucket"), None)
    policy_id = policy.id
    db.session.close()
    policies = cli("backups", "policies", "--json")
    assert [p["id"] for p in policies.json()] == [policy_id]
    assert cli("backups", "ls").err.strip() == "No backups."
    started = cli("backups", "run", str(policy_id), "--json")
    assert started.code == 0, started
    backup = started.json()
    assert backup["policy_id"] == policy_id
    listed = cli("backups", "ls", str(policy_id), "--json")
    assert [b["id"] for b in listed.json()] == [backup["id"]]
    missing = cli("backups", "run", str(policy_id + 1000))
    assert missing.code == 1 and "(404 " in missing.err


# ---- deploy without waiting, completion, start-up ---------------------------


def test_deploy_starts_one_deployment(logged_in):
    cli, owner = logged_in
    app_id = _shop(owner.team_id, "web")["web"]
    done = cli("deploy", "shop/web", "--json")
    assert done.code == 0, done
    started = done.json()
    assert started["app_id"] == app_id and started["status"] == "queued"
    rows = list(
        db.session.scalars(select(Deployment.id).where(Deployment.application_id == app_id))
    )
    db.session.close()
    assert rows == [started["id"]]
    listed = cli("deployments", "ls", "shop/web", "--json")
    assert [d["id"] for d in listed.json()] == [started["id"]]


def test_a_deploy_whose_answer_is_lost_is_retried_and_deploys_once(logged_in, api_server):
    """The POST carries an Idempotency-Key: the retry after a dropped answer gets the
    first answer again, and the server starts one deployment, not two."""
    cli, owner = logged_in
    app_id = _shop(owner.team_id, "web")["web"]
    port = int(api_server.url.rsplit(":", 1)[1])
    proxy = LossyProxy(port, drops=1)
    try:
        done = cli("deploy", "shop/web", "--json", env={"SLIPWAY_URL": proxy.url})
    finally:
        proxy.close()
    assert done.code == 0, done
    posts = [path for method, path in proxy.seen if method == b"POST"]
    assert posts == [f"/api/v1/apps/{app_id}/deployments".encode()] * 2  # sent twice
    rows = list(
        db.session.scalars(select(Deployment.id).where(Deployment.application_id == app_id))
    )
    db.session.close()
    assert rows == [done.json()["id"]]  # deployed once


def test_completion_prints_clicks_script():
    for shell, marker in (("bash", "_SLIPWAY_COMPLETE=bash_complete"),
                          ("zsh", "_SLIPWAY_COMPLETE=zsh_complete"),
                          ("fish", "_SLIPWAY_COMPLETE=fish_complete")):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "slipway_cli", "completion", shell],
                              cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert marker in done.stdout


def test_the_cli_imports_neither_flask_nor_sqlalchemy_nor_the_server():
    probe = ("import sys, slipway_cli.main; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('flask', 'sqlalchemy', 'app', 'pydantic', 'werkzeug', 'requests')))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


# ---- databases --------------------------------------------------------------


def test_databases_create_ls_link_and_delete(logged_in):
    from app.models import Database

    cli, owner = logged_in
    _shop(owner.team_id, "web")
    made = cli("databases", "create", "shop", "shop-db", "--engine", "redis", "--memory", "128")
    assert made.code == 0, made
    assert "Database shop-db is being created: creating." in made.out
    listed = cli("databases", "ls", "shop", "--json").json()
    assert [(d["name"], d["engine"], d["status"]) for d in listed] == [
        ("shop-db", "redis", "creating")
    ]
    table = cli("databases", "ls", "shop").out.splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "ENGINE", "STATUS"] and "shop-db:6379" in table[1]
    shown = cli("databases", "show", "shop", "shop-db").out
    assert "••••••••" in shown and "password" not in shown.lower().replace("password_rotated", "")

    linked = cli("databases", "link", "shop/web", "shop-db", "--prefix", "CACHE")
    assert linked.code == 0, linked
    assert "CACHE_REDIS_URL" in linked.out
    again = cli("databases", "link", "shop/web", "shop-db")
    assert again.code == 1 and "  database_id: Database shop-db is already linked" in again.err
    assert cli("databases", "unlink", "shop/web", "shop-db").code == 0

    # Being created: the state refuses a delete; the API's words come back.
    refused = cli("databases", "delete", "shop", "shop-db", "--yes")
    assert refused.code == 1 and "(409 conflict)" in refused.err
    row = db.session.scalar(select(Database).where(Database.name == "shop-db"))
    row.status = "running"
    db.session.commit()
    db.session.close()
    gone = cli("databases", "delete", "shop", "shop-db", "--yes", "--no-final-backup")
    assert gone.code == 0 and "is being deleted: deleting." in gone.out


def test_databases_refused_fields_and_unknown_names(logged_in):
    cli, owner = logged_in
    _shop(owner.team_id)
    bad = cli("databases", "create", "shop", "Bad Name", "--engine", "postgres")
    assert bad.code == 1 and "  name: " in bad.err
    usage = cli("databases", "create", "shop", "ok-db", "--engine", "mongodb")
    assert usage.code == 2 and "mongodb" in usage.err
    unknown = cli("databases", "show", "shop", "nope")
    assert unknown.code == 1 and "No database 'nope' in project 'shop'" in unknown.err
