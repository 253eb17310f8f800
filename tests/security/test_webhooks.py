"""SECURITY.md cases 21 and 22 (webhooks), and the webhook, deploy-key and token
parts of cases 12, 13 and 19.

21: every malformed or wrong signature is a 401 that changes nothing but the audit
log (which names the source address); an app without a secret accepts nothing.
22: a replayed delivery deploys once, also when the replays race; a repository or
branch that does not match exactly deploys nothing.
"""

from __future__ import annotations

import hmac
import json
import subprocess
import sys
import threading

import pytest
from sqlalchemy import func, select

from app import crypto, names
from app.extensions import db, queue
from app.models import AuditEvent, Deployment, Role
from app.sources import credentials, gitsrc, webhooks
from tests.conftest import RequestScopedClient
from tests.factories import make_app, make_project, make_team
from tests.security.test_secrets import _database_text, _every_get_page, _redis_text
from tests.security.test_secrets import all_logs as all_logs  # a fixture, re-exported
from tests.sources import payloads

REPO = "https://git.example.com/acme/site.git"
SHA = "2" * 40


@pytest.fixture
def hook(app):
    row = make_app(make_project(make_team()), git_url=REPO, git_branch="main", auto_deploy=True)
    secret = webhooks.rotate_secret(row)
    db.session.commit()
    app.test_client_class = RequestScopedClient
    return row, secret


def _push_body() -> bytes:
    return json.dumps(payloads.github_push(REPO, "refs/heads/main", SHA)).encode()


def _state_without_audit(db_state):
    state = db_state()
    state.pop("audit_events")
    return state


def _sig(secret: str, body: bytes) -> str:
    return payloads.sign(secret, body)


BODY = _push_body()
GOOD = "placeholder"  # replaced per test with the real secret's signature


def _bad_github_headers(secret: str) -> dict[str, dict]:
    good = _sig(secret, BODY)
    return {
        "missing": {},
        "empty": {"X-Hub-Signature-256": ""},
        "prefix only": {"X-Hub-Signature-256": "sha256="},
        "no prefix": {"X-Hub-Signature-256": good},
        "sha1": {
            "X-Hub-Signature-256": "sha1=" + hmac.new(secret.encode(), BODY, "sha1").hexdigest()
        },
        "sha512 label": {"X-Hub-Signature-256": "sha512=" + good},
        "upper label": {"X-Hub-Signature-256": "SHA256=" + good},
        "truncated": {"X-Hub-Signature-256": "sha256=" + good[:-2]},
        "extended": {"X-Hub-Signature-256": "sha256=" + good + "00"},
        "not hex": {"X-Hub-Signature-256": "sha256=" + "z" * 64},
        "other body": {"X-Hub-Signature-256": "sha256=" + _sig(secret, BODY + b" ")},
        "other secret": {"X-Hub-Signature-256": "sha256=" + _sig(secret + "x", BODY)},
        "gitlab header": {"X-Gitlab-Token": secret},
        "old header": {
            "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), BODY, "sha1").hexdigest()
        },
    }


def test_every_bad_github_signature_is_401_and_changes_nothing(app, client, hook, db_state):
    row, secret = hook
    before = _state_without_audit(db_state)
    cases = _bad_github_headers(secret)
    for label, signature in cases.items():
        headers = signature | {"X-GitHub-Delivery": f"d-{label}", "X-GitHub-Event": "push",
                               "Content-Type": "application/json"}  # fmt: skip
        response = client.post(f"/webhooks/github/{row.webhook_token}", data=BODY, headers=headers)
        assert response.status_code == 401, label
        assert response.json["error"]["code"] == "bad_signature"
    assert _state_without_audit(db_state) == before
    assert queue("deploy").count == 0
    refused = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "webhook.refused")
    ).all()
    assert len(refused) == len(cases)
    assert all(e.ip == "127.0.0.1" and e.target_id == row.id for e in refused)
    assert all(secret not in json.dumps(e.details) for e in refused)


def _assert_one_refusal(row, provider: str, secret: str) -> AuditEvent:
    """Exactly one ``webhook.refused`` audit row: this app, this provider, the source
    address, and never the secret."""
    db.session.expire_all()
    [event] = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "webhook.refused")
    ).all()
    assert (event.ip, event.target_id, event.team_id) == ("127.0.0.1", row.id, row.project.team_id)
    assert event.details["provider"] == provider and event.details["reason"]
    assert secret not in json.dumps(event.details)
    return event


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [
        ("gitlab", "X-Gitlab-Token", None),
        ("gitlab", "X-Gitlab-Token", ""),
        ("gitlab", "X-Gitlab-Token", "wrong"),
        ("gitlab", "X-Gitlab-Token", "SECRET[:-1]"),
        ("gitea", "X-Gitea-Signature", None),
        ("gitea", "X-Gitea-Signature", ""),
        ("gitea", "X-Gitea-Signature", "sha256=GOOD"),
        ("gitea", "X-Gitea-Signature", "GOOD[:-1]"),
        ("generic", "X-Slipway-Signature", None),
        ("generic", "X-Slipway-Signature", ""),
        ("generic", "X-Slipway-Signature", "GOOD"),
        ("generic", "X-Slipway-Signature", "sha1=GOOD"),
    ],
)
def test_bad_gitlab_gitea_generic_credentials_are_401(
    app, client, hook, db_state, provider, header, value
):
    """None: the header is absent altogether (not merely empty)."""
    row, secret = hook
    body, headers = payloads.signed_request(provider, secret, json.loads(BODY))
    if value is None:
        del headers[header]
    else:
        good = _sig(secret, BODY)
        headers[header] = (value.replace("SECRET[:-1]", secret[:-1])
                           .replace("GOOD[:-1]", good[:-1]).replace("GOOD", good))  # fmt: skip
    before = _state_without_audit(db_state)
    response = client.post(f"/webhooks/{provider}/{row.webhook_token}", data=body, headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "bad_signature"
    assert _state_without_audit(db_state) == before
    assert queue("deploy").count == 0
    _assert_one_refusal(row, provider, secret)


@pytest.mark.parametrize("provider", webhooks.PROVIDERS)
def test_an_app_without_a_secret_accepts_nothing(app, client, hook, db_state, provider):
    row, secret = hook
    row.webhook_secret = None
    db.session.commit()
    body, headers = payloads.signed_request(provider, secret, json.loads(BODY))
    before = _state_without_audit(db_state)
    response = client.post(f"/webhooks/{provider}/{row.webhook_token}", data=body, headers=headers)
    assert response.status_code == 401
    assert _state_without_audit(db_state) == before
    assert queue("deploy").count == 0
    assert "no webhook secret" in _assert_one_refusal(row, provider, secret).details["reason"]


def test_comparison_is_constant_time_over_raw_bytes(app, hook, monkeypatch):
    row, secret = hook
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    for provider in webhooks.PROVIDERS:
        _, headers = payloads.signed_request(provider, secret, json.loads(BODY))
        webhooks.verify(row, provider, headers, BODY)
    assert calls == [(bytes, bytes)] * len(webhooks.PROVIDERS)


def test_refusals_record_the_client_address_behind_a_trusted_proxy_only(app_with, hook):
    row, secret = hook
    headers = {"X-Forwarded-For": "203.0.113.9", "X-GitHub-Delivery": "x"}
    for trusted, expected in ((0, "127.0.0.1"), (1, "203.0.113.9")):
        flask_app = app_with(TRUSTED_PROXIES=trusted)
        flask_app.test_client().post(f"/webhooks/github/{row.webhook_token}", data=BODY,
                                     headers=headers)  # fmt: skip
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "webhook.refused")
            .order_by(AuditEvent.id.desc())
        ).first()  # fmt: skip
        assert event.ip == expected


def _deployments(app_id: int) -> int:
    db.session.expire_all()
    return db.session.scalar(
        select(func.count(Deployment.id)).where(Deployment.application_id == app_id)
    )


def test_concurrent_replays_of_one_delivery_deploy_once(app, hook):
    row, secret = hook
    body, headers = payloads.signed_request("github", secret, json.loads(BODY), delivery="race")
    url = f"/webhooks/github/{row.webhook_token}"
    barrier, statuses = threading.Barrier(8), []

    def send():
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post(url, data=body, headers=headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 7 + [202]
    assert _deployments(row.id) == 1


@pytest.mark.parametrize(
    ("repo", "ref"),
    [
        ("https://git.example.com/acme/site2.git", "refs/heads/main"),
        ("https://git.example.com/acme/sit.git", "refs/heads/main"),
        ("https://git.example.com/acme/site.git.evil", "refs/heads/main"),
        ("https://evil.example/acme/site.git", "refs/heads/main"),
        ("http://git.example.com/acme/site.git", "refs/heads/main"),
        ("https://git.example.com/acme/site.git", "refs/heads/Main"),
        ("https://git.example.com/acme/site.git", "refs/heads/mai"),
        ("https://git.example.com/acme/site.git", "refs/heads/main/x"),
        ("https://git.example.com/acme/site.git", "refs/heads/main "),
        ("https://git.example.com/acme/site.git", "refs/remotes/origin/main"),
        ("https://git.example.com/acme/site.git", "main"),
    ],
)
def test_a_repository_or_branch_that_does_not_match_exactly_deploys_nothing(
    app, client, hook, repo, ref
):
    row, secret = hook
    body, headers = payloads.signed_request("github", secret, payloads.github_push(repo, ref, SHA))
    response = client.post(f"/webhooks/github/{row.webhook_token}", data=body, headers=headers)
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert _deployments(row.id) == 0


def test_hostile_commit_ids_never_reach_git(app, client, hook):
    row, secret = hook
    for sha in ("--upload-pack=touch /tmp/pwned", "HEAD", "a" * 39, "g" * 40):
        payload = payloads.github_push(REPO, "refs/heads/main", sha)
        body, headers = payloads.signed_request("github", secret, payload)
        response = client.post(f"/webhooks/github/{row.webhook_token}", data=body, headers=headers)
        assert response.status_code == 200, sha
    assert _deployments(row.id) == 0


# ---- case 12 and 13: ssh URLs, the ssh command, internal hosts -----------------


def test_ssh_urls_are_accepted_and_dangerous_ones_refused():
    assert names.git_url("ssh://git@github.com/acme/site.git")
    assert names.git_url("git@github.com:acme/site.git")
    for bad in ("ssh://-oProxyCommand=x/y", "git@-oProxyCommand=x:y", "git@host:-x",
                "ext::ssh -oProxyCommand=x", "file:///srv/repo", "git@host:../../etc"):  # fmt: skip
        with pytest.raises(names.InvalidValue):
            names.git_url(bad)


def test_ssh_to_an_internal_address_is_refused_at_save_and_at_use(tmp_path):
    for url in ("ssh://git@127.0.0.1/repo.git", "git@10.0.0.5:repo.git", "ssh://git@[::1]/r.git"):
        with pytest.raises(names.InvalidValue):
            names.git_url(url)
        with pytest.raises(gitsrc.GitError):
            gitsrc.clone(url, "main", tmp_path / "x")


def test_the_ssh_command_quotes_every_path(tmp_path):
    creds = gitsrc.Credentials(ssh_private_key="KEY", known_hosts="")
    weird = tmp_path / "a b;$(id)"
    weird.mkdir()
    env = gitsrc._credential_env(creds, weird)
    import shlex

    words = shlex.split(env["GIT_SSH_COMMAND"])
    assert f"UserKnownHostsFile={weird}/known_hosts" in words
    assert str(weird / "id_ed25519") in words and "KEY" not in env["GIT_SSH_COMMAND"]
    assert oct((weird / "id_ed25519").stat().st_mode & 0o777) == "0o600"


def _record_git_calls(monkeypatch) -> list[tuple[list[str], dict]]:
    """Every subprocess ``app.sources.gitsrc`` starts, as (argv, environment); it still runs."""
    calls: list[tuple[list[str], dict]] = []
    real_popen, real_run = subprocess.Popen, subprocess.run

    def recorded(real):
        def spawn(argv, *args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__") == "app.sources.gitsrc":
                calls.append((list(argv), dict(kwargs.get("env") or {})))
            return real(argv, *args, **kwargs)

        return spawn

    # gitsrc.subprocess is the subprocess module: the lab's git server thread spawns
    # through it too, hence the caller check above.
    monkeypatch.setattr(gitsrc.subprocess, "Popen", recorded(real_popen))
    monkeypatch.setattr(gitsrc.subprocess, "run", recorded(real_run))
    return calls


def _git_command(argv: list[str]) -> str:
    """The git subcommand: the first word after git's own ``-C <dir>`` / ``-c <k=v>``."""
    i = 1
    while argv[i] in ("-C", "-c"):
        i += 2
    return argv[i]


def test_clones_run_without_prompts_or_file_protocol_with_dashdash_before_positionals(
    app, tmp_path, monkeypatch
):
    """SECURITY.md case 12, on the real argv and environment of every git process of a
    clone (and of its fetch of an older pushed commit) against a real git server."""
    from tests import lab
    from tests.sources import servers

    server = lab.GitServer(tmp_path)
    try:
        _, work = servers.bare_repo(tmp_path, "site")
        older = servers.commit(work, {"a": "1"}, "one")
        servers.commit(work, {"a": "2"}, "two")
        url, dest = f"{server.url}/site.git", tmp_path / "out"
        calls = _record_git_calls(monkeypatch)
        commit = gitsrc.clone(url, "main", dest, allowed_hosts=("127.0.0.1",), commit=older)
    finally:
        server.stop()
    assert commit.sha == older
    commands = [_git_command(argv) for argv, _ in calls]
    assert commands[0] == "clone" and "fetch" in commands
    for argv, env in calls:
        assert argv[0] == "git"
        assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ASKPASS"] == "/bin/false"
        assert "file" not in env["GIT_ALLOW_PROTOCOL"].split(":")
        assert "ext" not in env["GIT_ALLOW_PROTOCOL"].split(":")
    for argv, _ in calls:
        command = _git_command(argv)
        if command not in ("clone", "fetch"):
            continue
        before = argv[: argv.index(command)]
        assert "protocol.file.allow=never" in before and "protocol.ext.allow=never" in before
        assert "credential.helper=" in before
        positionals = argv[argv.index("--") + 1 :]
        assert positionals == ([url, str(dest)] if command == "clone" else ["origin"])
        options = argv[argv.index(command) + 1 : argv.index("--")]
        assert all(o.startswith("--") for o in options), options  # nothing positional before --


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("git_branch", "--upload-pack=touch {marker}"),
        ("git_branch", "main;touch {marker}"),
        ("git_branch", "$(touch {marker})"),
        ("git_url", "--upload-pack=touch {marker}"),
        ("git_url", "ext::sh -c touch% {marker}"),
        ("git_url", "file://{marker}/repo.git"),
        ("git_url", "http://127.0.0.1:1/x.git --upload-pack=touch {marker}"),
    ],
)
def test_a_hostile_branch_or_url_in_the_database_never_reaches_git(
    app, tmp_path, monkeypatch, field, value
):
    """Written straight into the database (no form, no validation): the clone refuses
    before any git process starts, and nothing runs."""
    from sqlalchemy import update

    from app.models import Application

    marker = tmp_path / "pwned"
    row = make_app(make_project(make_team()))
    db.session.execute(
        update(Application)
        .where(Application.id == row.id)
        .values({field: value.format(marker=marker)})
    )
    db.session.commit()
    db.session.refresh(row)
    calls = _record_git_calls(monkeypatch)
    with pytest.raises(gitsrc.GitError):
        credentials.clone_for(
            row, row.git_branch, None, tmp_path / "out", allowed_hosts=("127.0.0.1",)
        )
    assert calls == [] and not marker.exists()


# ---- case 19: webhook secret, deploy key, token never leave the server ----------


def test_webhook_secret_deploy_key_and_token_never_leave_the_server(
    app,
    client,
    team_a,
    routes,
    member,
    all_logs,  # noqa: F811 - the fixture
):
    member(Role.owner)
    row = team_a.application
    row.git_url, row.auto_deploy = REPO, True
    secret = webhooks.rotate_secret(row)
    credentials.generate_deploy_key(row)
    token = "ghp_CANARYtoken0123456789"
    credentials.set_token(row, token, "x-access-token")
    db.session.commit()
    private = credentials.git_credentials(row).ssh_private_key
    key_body = "".join(private.splitlines()[1:-1])[:40]
    body, headers = payloads.signed_request(
        "github", secret, payloads.github_push(REPO, "refs/heads/main", SHA)
    )
    assert client.post(f"/webhooks/github/{row.webhook_token}", data=body,
                       headers=headers).status_code == 202  # fmt: skip
    seen = [r.get_data(as_text=True) + str(r.headers) for r in
            _every_get_page(app, client, routes, team_a)]  # fmt: skip
    everything = "\n".join([*seen, _database_text(), _redis_text(app), all_logs.text])
    for canary in (secret, key_body, token):
        assert canary not in everything
    for column, context, plain in (
        (row.webhook_secret, "webhook_secret", secret),
        (row.git_token, "git_token", token),
        (row.deploy_key_private, "deploy_key", private),
    ):
        assert crypto.decrypt(column, context=context) == plain
