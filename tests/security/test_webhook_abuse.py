"""Issue 17, webhooks: captured bodies replayed under fresh delivery ids, signed payloads
of odd types, and floods of unknown webhook URLs.

- A signed (for GitLab: token-authenticated) body deploys once, whatever delivery id
  header comes with it: the body's SHA-256 is remembered as long as the delivery id.
- A signed payload whose fields have types the forge never sends, nesting too deep to
  parse, or a top level that is not an object, is a 400 in the API error shape and a
  delivery row saying why; it never reaches the deploy decision.
- Refusals of unknown webhook URLs are limited per source address (429 after N per
  window) and audited once per burst, with the count of the ones not recorded.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import func, select

from app.extensions import db, queue
from app.models import AuditEvent, Deployment, WebhookDelivery
from app.sources import webhooks
from tests.conftest import RequestScopedClient
from tests.factories import make_app, make_project, make_team
from tests.sources import payloads

REPO = "https://git.example.com/acme/site.git"
SHA = "3" * 40
OLD_SHA = "4" * 40
PROVIDERS = ("github", "gitlab", "gitea", "generic")
DELIVERY_HEADER = {
    "github": "X-GitHub-Delivery",
    "gitlab": "X-Gitlab-Event-UUID",
    "gitea": "X-Gitea-Delivery",
    "generic": "X-Slipway-Delivery",
}


@pytest.fixture
def hook(app):
    row = make_app(make_project(make_team()), git_url=REPO, git_branch="main", auto_deploy=True)
    secret = webhooks.rotate_secret(row)
    db.session.commit()
    app.test_client_class = RequestScopedClient
    return row, secret


def _post(client, provider, row, body, headers):
    return client.post(f"/webhooks/{provider}/{row.webhook_token}", data=body, headers=headers)


def _deployments(app_id: int) -> list[Deployment]:
    db.session.expire_all()
    return db.session.scalars(
        select(Deployment).where(Deployment.application_id == app_id).order_by(Deployment.id)
    ).all()


def _deliveries(app_id: int) -> list[WebhookDelivery]:
    db.session.expire_all()
    return db.session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.application_id == app_id)
        .order_by(WebhookDelivery.id)
    ).all()


# ---- item 8: an identical signed body deploys once -------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_signed_body_replayed_with_fresh_delivery_ids_deploys_once(app, client, hook, provider):
    row, secret = hook
    old_body, old_headers = payloads.signed_request(
        provider, secret, payloads.BUILDERS[provider](REPO, "refs/heads/main", OLD_SHA),
        delivery="old",
    )  # fmt: skip
    new_body, new_headers = payloads.signed_request(
        provider, secret, payloads.BUILDERS[provider](REPO, "refs/heads/main", SHA),
        delivery="new",
    )  # fmt: skip
    assert _post(client, provider, row, old_body, old_headers).status_code == 202
    assert _post(client, provider, row, new_body, new_headers).status_code == 202
    # The captured old push, five times under fresh ids: it must not bring the old
    # commit back.
    for n in range(5):
        headers = old_headers | {DELIVERY_HEADER[provider]: f"fresh-{n}"}
        again = _post(client, provider, row, old_body, headers)
        assert again.status_code == 200, again.get_data(as_text=True)
        assert again.json["status"] == "duplicate"
    # The forge's own redelivery (the same id) is still a duplicate too.
    redelivery = _post(client, provider, row, old_body, old_headers)
    assert redelivery.status_code == 200 and redelivery.json["status"] == "duplicate"
    assert [d.commit_sha for d in _deployments(row.id)] == [OLD_SHA, SHA]
    old, new = _deliveries(row.id)
    assert (old.delivery_id, old.replays, new.replays) == ("old", 6, 0)


def test_one_body_racing_itself_under_different_delivery_ids_deploys_once(app, hook):
    row, secret = hook
    body, headers = payloads.signed_request(
        "github", secret, payloads.github_push(REPO, "refs/heads/main", SHA)
    )
    url = f"/webhooks/github/{row.webhook_token}"
    barrier, statuses = threading.Barrier(8), []

    def send(n):
        client = app.test_client()
        barrier.wait()
        answer = client.post(url, data=body, headers=headers | {"X-GitHub-Delivery": f"r-{n}"})
        statuses.append(answer.status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 7 + [202]
    assert len(_deployments(row.id)) == 1
    [delivery] = _deliveries(row.id)
    assert delivery.replays == 7


def test_a_body_that_could_not_be_queued_deploys_when_sent_again_under_a_new_id(
    app, client, hook, monkeypatch
):
    """Answered 503, the body never deployed: the forge sending it again (some forges'
    redelivery gets a new id) deploys it once; after that it is a duplicate."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from rq import Queue

    row, secret = hook
    real_enqueue = Queue.enqueue

    def refuse(self, *args, **kwargs):
        raise RedisConnectionError("Connection refused.")

    body, headers = payloads.signed_request(
        "github", secret, payloads.github_push(REPO, "refs/heads/main", SHA), delivery="first"
    )
    monkeypatch.setattr(Queue, "enqueue", refuse)
    assert _post(client, "github", row, body, headers).status_code == 503
    monkeypatch.setattr(Queue, "enqueue", real_enqueue)
    second = _post(client, "github", row, body, headers | {"X-GitHub-Delivery": "second"})
    assert second.status_code == 202, second.get_data(as_text=True)
    third = _post(client, "github", row, body, headers | {"X-GitHub-Delivery": "third"})
    assert third.status_code == 200 and third.json["status"] == "duplicate"
    assert [d.status for d in _deployments(row.id)] == ["failed", "queued"]
    [delivery] = _deliveries(row.id)
    assert delivery.outcome == "deployed" and delivery.deployment_id == second.json["deployment"]


def test_delivery_rows_from_before_body_digests_do_not_block_new_deliveries(app, client, hook):
    row, secret = hook
    for n in range(3):
        db.session.add(WebhookDelivery(application_id=row.id, provider="github",
                                       delivery_id=f"legacy-{n}", event="push",
                                       outcome="ignored", reason="old"))  # fmt: skip
    db.session.commit()
    assert [d.body_sha256 for d in _deliveries(row.id)] == [None] * 3
    body, headers = payloads.signed_request(
        "github", secret, payloads.github_push(REPO, "refs/heads/main", SHA)
    )
    assert _post(client, "github", row, body, headers).status_code == 202


# ---- item 9: odd types in a signed payload ------------------------------------------

STR_VALUES = (5, True, 1.5, [], {}, ["refs/heads/main"])
LIST_VALUES = (5, "x", True, {}, {"0": "x"})
OBJECT_VALUES = (5, "x", True, [], [{}])
INT_VALUES = ("1", True, 1.5, [], {}, None)

GITHUB_SHAPED = {
    "str": [
        "ref", "after", "repository.clone_url", "repository.ssh_url", "repository.html_url",
        "repository.url", "head_commit.id", "head_commit.message", "head_commit.author.name",
        "commits.0.id", "commits.0.message", "commits.0.author.name",
        "commits.0.author.username", "commits.0.modified.0",
    ],
    "list": ["commits", "commits.0.added", "commits.0.modified", "commits.0.removed"],
    "object": ["repository", "head_commit", "commits.0", "commits.0.author",
               "head_commit.author"],
    "null": ["ref", "after", "repository", "commits.0", "commits.0.modified.0"],
}  # fmt: skip
FIELDS = {
    "github": GITHUB_SHAPED,
    "generic": GITHUB_SHAPED,
    "gitea": GITHUB_SHAPED | {"int": ["total_commits"]},
    "gitlab": {
        "str": [
            "ref", "after", "checkout_sha", "project.git_http_url", "project.git_ssh_url",
            "project.web_url", "project.http_url", "project.ssh_url", "repository.url",
            "repository.homepage", "repository.git_http_url", "repository.git_ssh_url",
            "commits.0.id", "commits.0.message", "commits.0.author.name",
            "commits.0.modified.0",
        ],
        "list": ["commits", "commits.0.added", "commits.0.modified", "commits.0.removed"],
        "object": ["project", "repository", "commits.0", "commits.0.author"],
        "int": ["total_commits_count"],
        "null": ["ref", "after", "project", "repository", "commits.0"],
    },
}  # fmt: skip
WRONG = {"str": STR_VALUES, "list": LIST_VALUES, "object": OBJECT_VALUES, "int": INT_VALUES,
         "null": (None,)}  # fmt: skip


def _field_cases():
    for provider, kinds in FIELDS.items():
        for kind, paths in kinds.items():
            for path in paths:
                yield pytest.param(provider, path, WRONG[kind], id=f"{provider}-{path}-{kind}")


def _set(payload: dict, path: str, value) -> dict:
    payload = json.loads(json.dumps(payload))  # unshared: head_commit is commits[0] here
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return payload


def _shown(path: str) -> str:
    """``commits.0.added`` as the answer names it: ``commits[0].added``."""
    shown = ""
    for key in path.split("."):
        shown += f"[{key}]" if key.isdigit() else (f".{key}" if shown else key)
    return shown


def _assert_malformed(client, provider, row, body, headers, why: str):
    response = _post(client, provider, row, body, headers)
    assert response.status_code == 400, (why, response.status_code, response.get_data()[:300])
    error = response.json["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "bad_delivery" and why in error["message"], (why, error)
    delivery = DELIVERY_HEADER[provider]
    logged = db.session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.application_id == row.id,
            WebhookDelivery.delivery_id == headers[delivery],
        )
    )
    assert logged is not None, why
    assert logged.outcome == "malformed" and why in logged.reason, (why, logged.reason)
    assert logged.deployment_id is None


@pytest.mark.parametrize(("provider", "path", "values"), list(_field_cases()))
def test_a_field_of_an_unexpected_type_is_400_and_logged(app, client, hook, provider, path,
                                                        values):  # fmt: skip
    row, secret = hook
    good = payloads.BUILDERS[provider](REPO, "refs/heads/main", SHA)
    for value in values:
        body, headers = payloads.signed_request(provider, secret, _set(good, path, value))
        db.session.expire_all()
        _assert_malformed(client, provider, row, body, headers, _shown(path))
    assert _deployments(row.id) == [] and queue("deploy").count == 0


def _signed(provider: str, secret: str, body: bytes, delivery: str) -> dict:
    _, headers = payloads.signed_request(provider, secret, {}, delivery=delivery)
    if provider != "gitlab":
        name = {"github": "X-Hub-Signature-256", "gitea": "X-Gitea-Signature",
                "generic": "X-Slipway-Signature"}[provider]  # fmt: skip
        signature = payloads.sign(secret, body)
        headers[name] = signature if provider == "gitea" else "sha256=" + signature
    return headers


DEEP = 5000
MALFORMED_BODIES = [
    pytest.param(b'{"ref": ' + b"[" * DEEP + b"]" * DEEP + b"}", "nested", id="deep-list"),
    pytest.param(b'{"a": ' * DEEP + b"1" + b"}" * DEEP, "nested", id="deep-object"),
    pytest.param(b"[" * DEEP + b"]" * DEEP, "nested", id="deep-top-level"),
    pytest.param(b"[]", "not a JSON object", id="top-level-list"),
    pytest.param(b"5", "not a JSON object", id="top-level-number"),
    pytest.param(b'"push"', "not a JSON object", id="top-level-string"),
    pytest.param(b"null", "not a JSON object", id="top-level-null"),
    pytest.param(b"true", "not a JSON object", id="top-level-bool"),
    pytest.param(b"payload=%7B%7D", "not JSON", id="form-encoded"),
    pytest.param(b'{"ref": "refs/heads/\xff"}', "not JSON", id="invalid-utf8"),
    pytest.param(b'{"commits": 5}', "commits", id="commits-5"),
    pytest.param(b'{"commits": [{"added": 1}]}', "commits[0].added", id="added-1"),
    pytest.param(b'{"commits": [{"modified": true}]}', "commits[0].modified", id="modified-true"),
    pytest.param(b'{"ref": "refs/heads/ma\\ud800in"}', "ref", id="lone-surrogate"),
    pytest.param(b'{"ref": "refs/heads/ma\\u0000in"}', "ref", id="nul-character"),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("body", "why"), MALFORMED_BODIES)
def test_a_malformed_signed_payload_is_400_and_logged(app, client, hook, provider, body, why):
    row, secret = hook
    headers = _signed(provider, secret, body, delivery="malformed-1")
    _assert_malformed(client, provider, row, body, headers, why)
    # Sent again, it is still refused (and counted as a replay), never deployed.
    again = _post(client, provider, row, body, headers)
    assert again.status_code == 400 and again.json["error"]["code"] == "bad_delivery"
    [logged] = _deliveries(row.id)
    assert logged.replays == 1
    assert _deployments(row.id) == [] and queue("deploy").count == 0


@pytest.mark.parametrize("url", ["https://[::1", "https://a]b/acme/site.git",
                                 "https://\uff03/acme/site.git"])  # fmt: skip
def test_an_unparseable_repository_url_is_another_repository_not_a_crash(app, client, hook, url):
    row, secret = hook
    payload = payloads.github_push(REPO, "refs/heads/main", SHA)
    payload["repository"] = {"clone_url": url}
    body, headers = payloads.signed_request("github", secret, payload)
    response = _post(client, "github", row, body, headers)
    assert response.status_code == 200, response.get_data()[:300]
    assert response.json == {"status": "ignored", "reason": "the push is for another repository"}


def test_valid_pushes_of_every_forge_still_deploy(app, client, hook):
    row, secret = hook
    for n, provider in enumerate(PROVIDERS):
        sha = f"{n + 5:x}" * 40
        body, headers = payloads.signed_request(
            provider, secret, payloads.BUILDERS[provider](REPO, "refs/heads/main", sha)
        )
        response = _post(client, provider, row, body, headers)
        assert response.status_code == 202, (provider, response.get_data()[:300])
    tag = payloads.gitlab_push(REPO, "refs/tags/v1", SHA, tag=True)
    tag["checkout_sha"] = None  # GitLab sends null for a deleted ref
    body, headers = payloads.signed_request("gitlab", secret, tag, event="Tag Push Hook")
    assert _post(client, "gitlab", row, body, headers).status_code == 200
    deleted = payloads.github_push(REPO, "refs/heads/main", payloads.ZERO)  # head_commit null
    body, headers = payloads.signed_request("github", secret, deleted)
    answer = _post(client, "github", row, body, headers)
    assert answer.status_code == 200 and "deleted" in answer.json["reason"]


# ---- item 10: a flood of unknown webhook URLs -----------------------------------------


def _refusals(ip: str | None = None) -> list[AuditEvent]:
    db.session.expire_all()
    query = select(AuditEvent).where(AuditEvent.action == "webhook.refused")
    if ip:
        query = query.where(AuditEvent.ip == ip)
    return db.session.scalars(query.order_by(AuditEvent.id)).all()


def test_an_unknown_token_flood_is_limited_per_address_and_audited_once_per_burst(app_with, hook):
    row, secret = hook
    flask_app = app_with(WEBHOOK_REFUSAL_LIMIT="5 per 2 seconds", TRUSTED_PROXIES=1)
    client = flask_app.test_client()
    flood, other = "203.0.113.7", "198.51.100.2"

    def unknown(address: str, n: int):
        return client.post(f"/webhooks/github/guess-{n}", data=b"{}", headers={
            "X-Forwarded-For": address, "Content-Type": "application/json"})  # fmt: skip

    start = time.monotonic()
    answers = [unknown(flood, n) for n in range(12)]
    assert time.monotonic() - start < 1.5, "too slow to stay within one window"
    assert [a.status_code for a in answers] == [404] * 5 + [429] * 7
    limited = answers[-1]
    assert limited.json["error"]["code"] == "rate_limited"
    assert set(limited.json["error"]) == {"code", "message", "details"}
    assert int(limited.headers["Retry-After"]) > 0
    [first] = _refusals(flood)
    assert first.details["reason"] == "unknown webhook URL" and first.target_id is None
    assert first.details["unrecorded_before"] == 0
    # Another address has its own allowance and its own row.
    assert unknown(other, 0).status_code == 404
    assert len(_refusals(other)) == 1
    # The flooded address (a forge's shared one, say) still delivers to real apps: a
    # known token is never limited, a bad signature to it is still a 401.
    body, headers = payloads.signed_request(
        "github", secret, payloads.github_push(REPO, "refs/heads/main", SHA)
    )
    url = f"/webhooks/github/{row.webhook_token}"
    forwarded = headers | {"X-Forwarded-For": flood}
    assert client.post(url, data=body, headers=forwarded).status_code == 202
    forged = forwarded | {"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Delivery": "x"}
    assert client.post(url, data=body, headers=forged).status_code == 401
    # The next burst gets one new row, counting the refusals the last one did not record.
    time.sleep(max(0.0, start + 2.3 - time.monotonic()))
    assert unknown(flood, 99).status_code == 404
    unknown_rows = [e for e in _refusals(flood) if e.details["reason"] == "unknown webhook URL"]
    assert len(unknown_rows) == 2
    assert unknown_rows[1].details["unrecorded_before"] == 11  # 4 answered 404, 7 answered 429


def test_unknown_tokens_within_the_default_limit_are_still_404_and_audited(app, client):
    answer = client.post("/webhooks/gitea/nope", data=b"{}")
    assert answer.status_code == 404 and answer.json["error"]["code"] == "not_found"
    [event] = _refusals()
    assert event.details["provider"] == "gitea" and event.ip == "127.0.0.1"
    assert db.session.scalar(select(func.count(WebhookDelivery.id))) == 0


def test_the_refusal_limit_is_a_setting(app):
    assert app.config["WEBHOOK_REFUSAL_LIMIT"] == "20 per minute"
