"""The forges' own published push examples (tests/sources/fixtures, byte for byte) through
POST /webhooks/<provider>/<token>: signed over the fixture's bytes, as JSON and as
GitHub's form encoding, and GitHub-sized deliveries up to its 25 MB cap."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, Deployment, WebhookDelivery
from app.sources import webhooks
from tests.factories import make_app, make_project, make_team
from tests.sources import payloads

FIXTURES = Path(__file__).parent / "fixtures"
# provider → (fixture, the example's repository clone URL, its branch, its commit id)
EXAMPLES = {
    "github": ("github-push-with-new-branch.json", "https://github.com/Codertocat/Hello-World.git",
               "master", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
    "gitlab": ("gitlab-push.json", "http://example.com/mike/diaspora.git", "master",
               "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"),
    "gitea": ("gitea-push.json", "http://localhost:3000/gitea/webhooks.git", "develop",
              "bffeb74224043ba2feb48d137756c8a9331c449a"),
}  # fmt: skip


def _example(provider: str) -> bytes:
    return (FIXTURES / EXAMPLES[provider][0]).read_bytes()


def _app_for(provider: str, **fields):
    _, url, branch, _ = EXAMPLES[provider]
    row = make_app(make_project(make_team()), git_url=url, git_branch=branch, auto_deploy=True,
                   **fields)  # fmt: skip
    secret = webhooks.rotate_secret(row)
    db.session.commit()
    return row, secret


def _headers(provider: str, secret: str, body: bytes, content_type="application/json") -> dict:
    delivery = str(uuid.uuid4())
    signature = payloads.sign(secret, body)
    by_provider = {
        "github": {"X-Hub-Signature-256": "sha256=" + signature, "X-GitHub-Delivery": delivery,
                   "X-GitHub-Event": "push"},
        "gitlab": {"X-Gitlab-Token": secret, "X-Gitlab-Event-UUID": delivery,
                   "X-Gitlab-Event": "Push Hook"},
        "gitea": {"X-Gitea-Signature": signature, "X-Gitea-Delivery": delivery,
                  "X-Gitea-Event": "push"},
        "generic": {"X-Slipway-Signature": "sha256=" + signature,
                    "X-Slipway-Delivery": delivery, "X-Slipway-Event": "push"},
    }  # fmt: skip
    return by_provider[provider] | {"Content-Type": content_type}


def _post(client, provider, row, body, headers):
    return client.post(f"/webhooks/{provider}/{row.webhook_token}", data=body, headers=headers)


def _only_delivery(row) -> WebhookDelivery:
    [delivery] = db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.application_id == row.id)
    ).all()
    return delivery


def _deployments(row) -> list[Deployment]:
    return db.session.scalars(select(Deployment).where(Deployment.application_id == row.id)).all()


def test_the_fixtures_are_the_published_examples():
    """Guards against reformatting: the exact bytes, and what the tests below rely on."""
    for provider, (name, url, branch, sha) in EXAMPLES.items():
        payload = json.loads(_example(provider))
        assert (payload["ref"], payload["after"]) == (f"refs/heads/{branch}", sha), name
        assert json.dumps(url) in _example(provider).decode(), name
    assert len(_example("github")) == 8827 and len(_example("gitlab")) == 2590
    assert len(_example("gitea")) == 2028
    gitea = json.loads(_example("gitea"))["commits"]
    assert not {"added", "modified", "removed"} & set(gitea[0])


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_each_forges_example_deploys_its_branch_through_the_endpoint(client, app, provider):
    row, secret = _app_for(provider)
    body = _example(provider)
    response = _post(client, provider, row, body, _headers(provider, secret, body))
    assert response.status_code == 202, response.get_data(as_text=True)
    [deployment] = _deployments(row)
    assert deployment.commit_sha == EXAMPLES[provider][3]
    assert deployment.git_ref == EXAMPLES[provider][2]
    delivery = _only_delivery(row)
    assert (delivery.outcome, delivery.reason, delivery.deployment_id) == (
        "deployed", "deployed", deployment.id)  # fmt: skip


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_each_forges_example_for_another_branch_is_ignored(client, app, provider):
    row, secret = _app_for(provider)
    row.git_branch = "main"
    db.session.commit()
    body = _example(provider)
    response = _post(client, provider, row, body, _headers(provider, secret, body))
    assert response.status_code == 200
    assert "is not the tracked branch main" in response.json["reason"]
    assert _deployments(row) == []


def test_github_example_with_watch_paths_decides_by_its_file_list(client, app):
    """GitHub's example lists every commit with its files: the watch paths decide."""
    body = _example("github")
    docs_only, secret = _app_for("github", watch_paths="src/**")
    response = _post(client, "github", docs_only, body, _headers("github", secret, body))
    assert response.status_code == 200
    assert response.json["reason"] == "no changed file matches the watch paths"
    readme, secret = _app_for("github", watch_paths="README.md")
    assert (
        _post(client, "github", readme, body, _headers("github", secret, body)).status_code == 202
    )


def test_gitea_example_without_file_lists_deploys_with_files_unknown(client, app):
    """Gitea's documented commit has no added/modified/removed: the files are unknown,
    so watch paths cannot rule the push out, and the log says why it deployed."""
    row, secret = _app_for("gitea", watch_paths="src/**")
    body = _example("gitea")
    response = _post(client, "gitea", row, body, _headers("gitea", secret, body))
    assert response.status_code == 202, response.get_data(as_text=True)
    delivery = _only_delivery(row)
    assert delivery.outcome == "deployed"
    assert "files unknown" in delivery.reason and "1 commit" in delivery.reason
    assert "watch paths" in delivery.reason


def test_gitlab_example_with_a_truncated_list_says_the_files_were_unknown(client, app):
    """GitLab's example lists 2 of its 4 commits: deployed, and the log says why."""
    row, secret = _app_for("gitlab", watch_paths="src/**")
    body = _example("gitlab")
    response = _post(client, "gitlab", row, body, _headers("gitlab", secret, body))
    assert response.status_code == 202
    reason = _only_delivery(row).reason
    assert "files unknown" in reason and "2 of 4 commits" in reason


def test_gitea_null_file_lists_are_empty_lists_not_unknown(client, app):
    """Gitea sends null for an empty list; a commit with all three lists, null or not,
    lists its files."""
    row, secret = _app_for("gitea", watch_paths="src/**")
    payload = json.loads(_example("gitea"))
    payload["commits"][0] |= {"added": None, "modified": ["README.md"], "removed": None}
    body = json.dumps(payload).encode()
    response = _post(client, "gitea", row, body, _headers("gitea", secret, body))
    assert response.status_code == 200
    assert response.json["reason"] == "no changed file matches the watch paths"


# ---- GitHub's form encoding ----------------------------------------------------


def _github_form(body: bytes) -> bytes:
    """What GitHub sends with content type application/x-www-form-urlencoded: one field,
    ``payload``, holding the JSON (``+`` for spaces, everything else percent-encoded)."""
    return urlencode({"payload": body.decode()}).encode()


def test_form_encoded_github_delivery_is_accepted_and_logged(client, app):
    row, secret = _app_for("github")
    form = _github_form(_example("github"))
    headers = _headers("github", secret, form, "application/x-www-form-urlencoded")
    response = _post(client, "github", row, form, headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    [deployment] = _deployments(row)
    assert deployment.commit_sha == EXAMPLES["github"][3]
    delivery = _only_delivery(row)
    assert delivery.outcome == "deployed" and delivery.deployment_id == deployment.id
    assert delivery.delivery_id == headers["X-GitHub-Delivery"]


def test_form_encoded_signature_is_over_the_raw_form_body(client, app):
    """Signing the JSON inside the form (not the bytes sent) is refused: 401, nothing
    parsed or stored."""
    row, secret = _app_for("github")
    body = _example("github")
    headers = _headers("github", secret, body, "application/x-www-form-urlencoded")
    assert _post(client, "github", row, _github_form(body), headers).status_code == 401
    assert _deployments(row) == []
    assert db.session.scalars(select(WebhookDelivery)).all() == []


@pytest.mark.parametrize(
    ("form", "why"),
    [
        (b"zen=1", "no payload field"),
        (b"payload=%7B%7D&payload=%7B%7D", "more than one"),
        (b"payload=%FF", "not JSON"),
    ],
)
def test_malformed_github_forms_are_400_and_logged(client, app, form, why):
    row, secret = _app_for("github")
    headers = _headers("github", secret, form, "application/x-www-form-urlencoded")
    response = _post(client, "github", row, form, headers)
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_delivery"
    delivery = _only_delivery(row)
    assert delivery.outcome == "malformed" and why in delivery.reason


def test_form_encoded_delivery_from_another_sender_says_to_use_json(client, app):
    """Only GitHub documents a form encoding; a signed form from the generic sender is
    logged and refused with what to change."""
    row, secret = _app_for("github")
    form = _github_form(_example("github"))
    headers = _headers("generic", secret, form, "application/x-www-form-urlencoded")
    response = _post(client, "generic", row, form, headers)
    assert response.status_code == 400
    assert "application/json" in response.json["error"]["message"]
    assert "application/json" in _only_delivery(row).reason


# ---- size -----------------------------------------------------------------------


def _vendored_push(size: int) -> bytes:
    """GitHub's example with its commit adding enough vendored files to be about ``size``
    bytes (GitHub lists them twice: in ``commits`` and in ``head_commit``)."""
    payload = json.loads(_example("github"))
    entry = len(json.dumps("vendor/github.com/acme/lib000000/file.go")) + 2  # `, `
    vendored = [f"vendor/github.com/acme/lib{n:06}/file.go"
                for n in range((size - len(_example("github"))) // (2 * entry))]  # fmt: skip
    for commit in (payload["commits"][0], payload["head_commit"]):
        commit["added"] += vendored
    return json.dumps(payload).encode()


def test_a_signed_20_mb_github_push_deploys(client, app):
    row, secret = _app_for("github", watch_paths="vendor/**")
    body = _vendored_push(20 * 1000 * 1000)
    assert 19_000_000 < len(body) <= 20_000_000
    response = _post(client, "github", row, body, _headers("github", secret, body))
    assert response.status_code == 202, response.get_data(as_text=True)[:500]
    assert _only_delivery(row).outcome == "deployed"


def test_a_github_push_over_25_mib_is_413_and_audited(client, app):
    row, secret = _app_for("github")
    body = _vendored_push(26 * 1024 * 1024)
    assert len(body) > webhooks.MAX_BODY_BYTES == 25 * 1024 * 1024
    response = _post(client, "github", row, body, _headers("github", secret, body))
    assert response.status_code == 413
    error = response.json["error"]
    assert error["code"] == "too_large" and "25 MiB" in error["message"]
    assert error["details"] == {"limit": webhooks.MAX_BODY_BYTES, "size": len(body)}
    assert _deployments(row) == [] and db.session.scalars(select(WebhookDelivery)).all() == []
    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.refused"))
    assert event.target_id == row.id and "25 MiB" in event.details["reason"]
