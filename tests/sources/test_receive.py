"""POST /webhooks/<provider>/<token>: what deploys, what is ignored and why, replays."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db, queue
from app.models import Deployment, WebhookDelivery
from app.models.base import utcnow
from app.sources import pushes, webhooks
from tests.sources.conftest import REPO, SHA

PROVIDERS = ["github", "gitlab", "gitea", "generic"]


def _deployments(app_id):
    return db.session.scalars(select(Deployment).where(Deployment.application_id == app_id)).all()


def _deliveries(app_id):
    return db.session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.application_id == app_id)
        .order_by(WebhookDelivery.id)
    ).all()


def test_github_documented_signature_vector_verifies():
    """GitHub's own test vector: secret, payload and signature from its docs."""
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert webhooks._hmac_sha256(secret, body).hex() == expected


def test_github_vector_through_verify(app, hooked):
    from app import crypto

    row, _ = hooked
    row.webhook_secret = crypto.encrypt("It's a Secret to Everybody", context="webhook_secret")
    headers = {"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c"
               "46f4379c8b043e17"}  # fmt: skip
    webhooks.verify(row, "github", headers, b"Hello, World!")
    with pytest.raises(webhooks.Refused):
        webhooks.verify(row, "github", headers, b"Hello, World?")


def test_fixtures_carry_the_documented_push_fields():
    """The push fixtures have the top-level fields and nesting of the forges' documented
    examples (GitHub push, GitLab push and tag push, Gitea push), not a subset."""
    from tests.sources import payloads

    def keys(names: str) -> set[str]:
        return set(names.split())

    github = payloads.github_push(REPO, "refs/heads/main", SHA)
    assert set(github) == keys("ref before after created deleted forced base_ref compare "
                               "commits head_commit repository pusher sender")  # fmt: skip
    repo = github["repository"]
    assert keys("owner clone_url ssh_url git_url svn_url html_url url hooks_url compare_url "
                "pushed_at default_branch visibility") <= set(repo)  # fmt: skip
    assert keys("login id name email type site_admin") <= set(repo["owner"])
    assert set(github["pusher"]) == keys("name email")
    assert keys("login id type url html_url") <= set(github["sender"])
    commit = keys("id tree_id distinct message timestamp url author committer added removed "
                  "modified")  # fmt: skip
    assert set(github["head_commit"]) == commit
    deleted = payloads.github_push(REPO, "refs/heads/main", "0" * 40)
    assert deleted["deleted"] and deleted["commits"] == [] and deleted["head_commit"] is None

    gitlab = payloads.gitlab_push(REPO, "refs/heads/main", SHA)
    assert set(gitlab) == keys("object_kind event_name before after ref ref_protected "
                               "checkout_sha user_id user_name user_username user_email "
                               "user_avatar project_id project repository commits "
                               "total_commits_count")  # fmt: skip
    assert keys("git_http_url git_ssh_url path_with_namespace avatar_url http_url ssh_url "
                "homepage namespace") <= set(gitlab["project"])  # fmt: skip
    assert set(gitlab["commits"][0]) == keys("id message title timestamp url author added "
                                             "modified removed")  # fmt: skip
    tag = payloads.gitlab_push(REPO, "refs/tags/v1", SHA, tag=True)
    assert (tag["object_kind"], tag["commits"], tag["total_commits_count"]) == ("tag_push", [], 0)

    gitea = payloads.gitea_push(REPO, "refs/heads/main", SHA)
    assert set(gitea) == keys("ref before after compare_url commits total_commits "
                              "head_commit repository pusher sender")  # fmt: skip
    assert set(gitea["pusher"]) == keys("id login full_name email avatar_url username")
    assert keys("owner html_url ssh_url clone_url website stars_count") <= set(gitea["repository"])
    assert keys("verification committer added removed modified") <= set(gitea["commits"][0])
    # Every URL comes from the repository given: another repository's payload never
    # names the app's repository in a secondary field.
    other = "https://git.example.com/acme/site2.git"
    for build in (payloads.github_push, payloads.gitlab_push, payloads.gitea_push):
        text = json.dumps(build(other, "refs/heads/main", SHA))
        assert "acme/site.git" not in text and "acme/site/" not in text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_push_to_tracked_branch_queues_that_commit(poster, provider):
    response = poster.push(provider, message="Fix the header\n\nlonger body")
    assert response.status_code == 202, response.get_data(as_text=True)
    [dep] = _deployments(poster.app_row.id)
    assert response.json == {"status": "queued", "deployment": dep.id}
    assert (dep.trigger, dep.commit_sha, dep.git_ref) == ("webhook", SHA, "main")
    assert dep.commit_message.startswith("Fix the header")
    assert dep.commit_author == "Ada Lovelace"
    job = queue("deploy").fetch_job(dep.rq_job_id)
    assert job is not None and job.args == [dep.id]  # the id only, no payload, no secret
    [delivery] = _deliveries(poster.app_row.id)
    assert (delivery.provider, delivery.outcome, delivery.deployment_id) == (
        provider, "deployed", dep.id)  # fmt: skip
    assert delivery.ref == "refs/heads/main" and delivery.commit_sha == SHA


def test_github_ping_answers_200_and_is_logged(poster):
    response = poster.send("github", {"zen": "Keep it simple.", "hook_id": 1}, event="ping")
    assert response.status_code == 200
    assert _deployments(poster.app_row.id) == []
    assert _deliveries(poster.app_row.id)[0].event == "ping"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"ref": "refs/heads/feature"}, "branch feature is not the tracked branch main"),
        ({"ref": "refs/heads/main-2"}, "branch main-2 is not the tracked branch main"),
        ({"repo": "https://git.example.com/acme/site-fork.git"}, "another repository"),
        ({"repo": "https://git.example.com/ACME/site.git"}, "another repository"),
        ({"message": "Docs only [skip deploy]"}, "[skip deploy]"),
        ({"message": "wip [SKIP CI]"}, "[skip ci]"),
        ({"sha": "0" * 40}, "was deleted"),
        ({"ref": "refs/tags/v1.0"}, "does not deploy tags"),
        ({"ref": "refs/merge-requests/1/head"}, "neither a branch nor a tag"),
    ],
)
def test_pushes_that_do_not_deploy_are_acknowledged_with_a_reason(poster, kwargs, reason):
    response = poster.push("github", **kwargs)
    assert response.status_code == 200
    assert response.json["status"] == "ignored" and reason in response.json["reason"]
    assert _deployments(poster.app_row.id) == []
    [delivery] = _deliveries(poster.app_row.id)
    assert delivery.outcome == "ignored" and reason in delivery.reason


def test_repository_url_may_differ_only_by_dot_git_and_trailing_slash(poster):
    assert poster.push("github", repo=REPO.removesuffix(".git")).status_code == 202
    assert pushes.same_repository("git@Example.com:acme/site.git", "git@example.com:acme/site")
    assert not pushes.same_repository(
        "https://example.com/acme/site", "http://example.com/acme/site"
    )


def test_auto_deploy_off_logs_and_ignores(poster):
    poster.app_row.auto_deploy = False
    db.session.commit()
    response = poster.push("gitlab")
    assert response.status_code == 200 and "auto-deploy is off" in response.json["reason"]
    assert _deployments(poster.app_row.id) == []


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_watch_paths_use_added_modified_removed(poster, provider):
    poster.app_row.watch_paths = "src/**\nDockerfile"
    db.session.commit()
    docs = poster.push(provider, files=(("docs/a.md",), ("README.md",), ()))
    assert docs.status_code == 200 and "watch paths" in docs.json["reason"]
    removed = poster.push(provider, files=((), (), ("src/deep/old.py",)))
    assert removed.status_code == 202
    dockerfile = poster.push(provider, files=((), ("Dockerfile",), ()))
    assert dockerfile.status_code == 202


def test_watch_path_globs():
    from app import names

    assert names.glob_regex("src/**").match("src/a/b.py")
    assert names.glob_regex("*.py").match("a.py") and not names.glob_regex("*.py").match("a/b.py")
    assert names.glob_regex("**/*.py").match("a/b.py") and names.glob_regex("**/*.py").match("b.py")
    assert names.glob_regex("web/").match("web/x") and not names.glob_regex("Dockerfile").match(
        "Dockerfile.dev")  # fmt: skip


def test_truncated_commit_list_deploys_whatever_the_watch_paths(poster):
    """GitLab lists at most 20 commits; unknown changes must not be ignored."""
    from tests.sources import payloads

    poster.app_row.watch_paths = "src/**"
    db.session.commit()
    payload = payloads.gitlab_push(REPO, "refs/heads/main", SHA, files=(("docs/x",), (), ()))
    payload["total_commits_count"] = 40
    assert poster.send("gitlab", payload).status_code == 202


def test_tags_deploy_only_when_the_app_asks(poster):
    poster.app_row.deploy_tags = "v*"
    db.session.commit()
    other = poster.push("gitlab", ref="refs/tags/nightly", event="Tag Push Hook", tag=True)
    assert other.status_code == 200 and "does not match v*" in other.json["reason"]
    tag = poster.push("gitlab", ref="refs/tags/v1.2.0", event="Tag Push Hook", tag=True)
    assert tag.status_code == 202
    [dep] = _deployments(poster.app_row.id)
    assert dep.git_ref == "v1.2.0"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_replayed_delivery_deploys_once(poster, provider):
    first = poster.push(provider, delivery="delivery-1")
    again = poster.push(provider, delivery="delivery-1")
    assert first.status_code == 202
    assert again.status_code == 200 and again.json["status"] == "duplicate"
    assert len(_deployments(poster.app_row.id)) == 1
    [delivery] = _deliveries(poster.app_row.id)
    assert delivery.replays == 1


def test_missing_delivery_id_is_400_and_stores_nothing(poster):
    body, headers = __import__("tests.sources.payloads", fromlist=["x"]).signed_request(
        "github", poster.secret, {"zen": "x"}, event="ping")  # fmt: skip
    del headers["X-GitHub-Delivery"]
    assert poster.raw("github", body, headers).status_code == 400
    assert _deliveries(poster.app_row.id) == []


def test_signed_body_that_is_not_json_is_400(poster):
    from tests.sources import payloads

    body = b"payload=%7B%7D"
    headers = {"X-Hub-Signature-256": "sha256=" + payloads.sign(poster.secret, body),
               "X-GitHub-Delivery": "d1", "X-GitHub-Event": "push"}  # fmt: skip
    response = poster.raw("github", body, headers)
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_delivery"


def test_oversized_body_is_413_before_anything_else(poster):
    from tests.sources import payloads

    payload = payloads.github_push(REPO, "refs/heads/main", SHA)
    payload["padding"] = "x" * (webhooks.MAX_BODY_BYTES + 10)
    response = poster.send("github", payload)
    assert response.status_code == 413
    assert _deliveries(poster.app_row.id) == [] and _deployments(poster.app_row.id) == []


def test_unknown_provider_and_unknown_token_are_404(poster):
    body, headers = b"{}", {"Content-Type": "application/json"}
    assert poster.client.post(f"/webhooks/bitbucket/{poster.app_row.webhook_token}",
                              data=body, headers=headers).status_code == 404  # fmt: skip
    assert poster.raw("github", body, headers, token="nope").status_code == 404


def _add_deliveries(app_id: int, prefix: str, count: int, age: timedelta) -> None:
    created = utcnow() - age
    db.session.add_all(
        WebhookDelivery(application_id=app_id, provider="github", delivery_id=f"{prefix}-{n}",
                        event="push", outcome="ignored", reason="test", created_at=created)
        for n in range(count)
    )  # fmt: skip
    db.session.commit()


def _delivery_count(app_id: int) -> int:
    return db.session.scalar(
        select(func.count(WebhookDelivery.id)).where(WebhookDelivery.application_id == app_id)
    )


def test_deliveries_older_than_30_days_beyond_the_newest_200_are_pruned(poster):
    _add_deliveries(poster.app_row.id, "old", webhooks.KEEP_DELIVERIES + 25, timedelta(days=31))
    for n in range(20):  # 20 different pushes: the same body again would be a replay
        poster.push("github", ref="refs/heads/other", sha=f"{n + 1:040x}", delivery=f"new-{n}")
    count = _delivery_count(poster.app_row.id)
    # Pruning runs every 20th delivery: between 200 and 219 are kept, the oldest go.
    assert webhooks.KEEP_DELIVERIES <= count < webhooks.KEEP_DELIVERIES + 20
    oldest = db.session.scalar(
        select(WebhookDelivery.delivery_id).where(WebhookDelivery.delivery_id == "old-0")
    )
    assert oldest is None


def test_a_redelivery_within_30_days_deploys_nothing_however_many_came_since(poster):
    """The dedupe memory is time-based: 300 later deliveries do not push a 29-day-old
    delivery id (or body) out, so the forge's redelivery of it is still a duplicate, and
    so is its body under a fresh id."""
    assert poster.push("github", delivery="early").status_code == 202
    early = db.session.scalar(select(WebhookDelivery).where(WebhookDelivery.delivery_id == "early"))
    early.created_at = utcnow() - timedelta(days=29)
    db.session.commit()
    _add_deliveries(poster.app_row.id, "busy", 300, timedelta(days=1))
    for n in range(20):  # one of them has an id divisible by 20: pruning runs
        poster.push("github", ref="refs/heads/other", sha=f"{n + 1:040x}", delivery=f"new-{n}")
    assert _delivery_count(poster.app_row.id) == 1 + 300 + 20  # nothing young is forgotten
    again = poster.push("github", delivery="early")
    assert again.status_code == 200 and again.json["status"] == "duplicate"
    fresh = poster.push("github", delivery="early-under-a-fresh-id")
    assert fresh.status_code == 200 and fresh.json["status"] == "duplicate"
    assert len(_deployments(poster.app_row.id)) == 1


def test_a_deploy_that_cannot_be_queued_is_503_logged_and_redeliverable(poster, monkeypatch):
    """Redis refusing the job: the forge gets 503 in the API error shape (not 202
    "queued"), the delivery log says why, and a redelivery of the same id deploys."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from rq import Queue

    real_enqueue = Queue.enqueue

    def refuse(self, *args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(Queue, "enqueue", refuse)
    response = poster.push("github", delivery="flaky")
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "60"
    [failed] = _deployments(poster.app_row.id)
    assert failed.status == "failed" and "could not queue" in failed.error
    assert response.json == {"error": {
        "code": "not_queued", "message": response.json["error"]["message"],
        "details": {"delivery": "flaky", "deployment": failed.id}}}  # fmt: skip
    assert "Connection refused" not in response.get_data(as_text=True)
    [row] = _deliveries(poster.app_row.id)
    assert row.outcome == "not_queued" and "could not be queued" in row.reason

    monkeypatch.setattr(Queue, "enqueue", real_enqueue)
    again = poster.push("github", delivery="flaky")
    assert again.status_code == 202, again.get_data(as_text=True)
    db.session.expire_all()
    queued = db.session.get(Deployment, again.json["deployment"])
    assert queued.status == "queued" and queue("deploy").fetch_job(queued.rq_job_id)
    [row] = _deliveries(poster.app_row.id)
    assert (row.outcome, row.deployment_id, row.replays) == ("deployed", queued.id, 0)
    # Once queued, the id is remembered like any other: a further replay deploys nothing.
    third = poster.push("github", delivery="flaky")
    assert third.status_code == 200 and third.json["status"] == "duplicate"
    assert len(_deployments(poster.app_row.id)) == 2


def test_json_answers_never_carry_the_secret(poster):
    response = poster.push("gitlab")
    assert poster.secret not in json.dumps(response.json)


def test_concurrent_pushes_to_one_app_all_queue(app, hooked):
    """Racing start_deploys may both supersede (and cancel the job of) the same queued
    row; the second cancel must not turn the delivery into a 500."""
    import threading

    from tests.conftest import RequestScopedClient
    from tests.sources import payloads

    row, secret = hooked
    app.test_client_class = RequestScopedClient
    url = f"/webhooks/github/{row.webhook_token}"
    bodies = [
        payloads.signed_request(
            "github", secret, payloads.github_push(REPO, "refs/heads/main", f"{n:040x}")
        )
        for n in range(1, 13)
    ]
    barrier, statuses = threading.Barrier(len(bodies)), []

    def send(body, headers):
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post(url, data=body, headers=headers).status_code)

    threads = [threading.Thread(target=send, args=pair) for pair in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [202] * len(bodies)
    assert len(_deployments(row.id)) == len(bodies)


def test_a_push_superseding_a_deploy_whose_job_was_already_cancelled_still_deploys(app, hooked):
    """Two pushes race: the first one's RQ job is cancelled (by a concurrent
    supersede) before the second start_deploy supersedes it again. The second push
    still gets its deployment queued, and the first ends superseded, its job gone."""
    from rq.job import Job, JobStatus
    from rq.serializers import JSONSerializer

    from app.deploys import control
    from app.extensions import redis

    row, _ = hooked
    first = control.start_deploy(row, trigger="webhook")
    Job.fetch(first.rq_job_id, connection=redis.client, serializer=JSONSerializer).cancel()
    second = control.start_deploy(row, trigger="webhook")
    db.session.expire_all()
    assert db.session.get(Deployment, first.id).status == "superseded"
    assert db.session.get(Deployment, second.id).status == "queued"
    job = Job.fetch(second.rq_job_id, connection=redis.client, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.QUEUED
    assert queue("deploy").job_ids == [second.rq_job_id]


def test_start_deploy_says_itself_when_the_queue_refuses(app, monkeypatch):
    """The caller learns "not queued" from start_deploy, not by reading the row."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from rq import Queue

    from app.deploys import control
    from tests.factories import make_app, make_project, make_team

    def refuse(self, *args, **kwargs):
        raise RedisConnectionError("Connection refused.")

    monkeypatch.setattr(Queue, "enqueue", refuse)
    app_row = make_app(make_project(make_team()))
    with pytest.raises(control.DeployNotQueued) as raised:
        control.start_deploy(app_row, trigger="webhook", raise_if_not_queued=True)
    assert raised.value.deployment.status == "failed"
    assert db.session.get(Deployment, raised.value.deployment.id).status == "failed"
    kept = control.start_deploy(app_row, trigger="manual")  # the pages show the failed row
    assert kept.status == "failed" and "could not queue" in kept.error
