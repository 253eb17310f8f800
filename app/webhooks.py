"""Push webhooks from GitHub, GitLab, Gitea/Forgejo and a generic HMAC sender.

A delivery is authenticated first (:func:`verify`: HMAC-SHA256 over the raw body,
or GitLab's token, compared in constant time), then remembered by its delivery id
in ``webhook_deliveries`` in the same transaction as the deployment it starts, so
a replay can never deploy twice. Whether a push deploys is decided by
:func:`decide`: tracked branch (or a tag pattern), exact repository, skip markers,
watch paths. The request never clones or builds: it only queues.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets as pysecrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import joinedload

from app import deploys, events, names, secrets
from app.extensions import db
from app.models import Application, WebhookDelivery

PROVIDERS = ("github", "gitlab", "gitea", "generic")
SECRET_CONTEXT = "webhook_secret"
MAX_BODY_BYTES = 2 * 1024 * 1024
KEEP_DELIVERIES = 200
SQLITE_RETRIES = 5
SKIP_MARKERS = ("[skip deploy]", "[skip ci]")
ZERO_SHA = re.compile(r"^0+$")
DELIVERY_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
HEX_SIGNATURE_RE = re.compile(r"^[0-9a-fA-F]{64}$")
# (signature header, delivery id header, event header) per provider.
HEADERS = {
    "github": ("X-Hub-Signature-256", "X-GitHub-Delivery", "X-GitHub-Event"),
    "gitlab": ("X-Gitlab-Token", "X-Gitlab-Event-UUID", "X-Gitlab-Event"),
    "gitea": ("X-Gitea-Signature", "X-Gitea-Delivery", "X-Gitea-Event"),
    "generic": ("X-Slipway-Signature", "X-Slipway-Delivery", "X-Slipway-Event"),
}
GITLAB_EVENTS = {"Push Hook": "push", "Tag Push Hook": "push", "System Hook": "system"}


class Refused(Exception):
    """The delivery is not authentic (401); the reason goes to the audit log only."""


class BadDelivery(Exception):
    """Authentic but unusable (400): no delivery id, or a body that is not JSON."""


@dataclass
class Push:
    """What Slipway needs from a push payload, whichever forge sent it."""

    event: str
    ref: str = ""
    after: str = ""
    repo_urls: set[str] = field(default_factory=set)
    message: str = ""
    author: str = ""
    # Every path the pushed commits added, modified or removed; None if the
    # payload lists only some commits (forges cap the list at 20).
    changed: set[str] | None = None


# ---- authentication -----------------------------------------------------------


def new_token() -> str:
    """The unguessable part of an app's webhook URL."""
    return pysecrets.token_urlsafe(24)


def rotate_secret(app: Application) -> str:
    """Give the app a new signing secret (and a URL token if it has none).

    Returns the plaintext once, for the page that shows it; only ciphertext is stored.
    """
    plaintext = pysecrets.token_urlsafe(32)
    app.webhook_secret = secrets.encrypt(plaintext, context=SECRET_CONTEXT)
    if not app.webhook_token:
        app.webhook_token = new_token()
    events.record("webhook.secret_rotated", team_id=app.project.team_id, target=app)
    return plaintext


def _hmac_sha256(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def verify(app: Application, provider: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise :class:`Refused` unless ``body`` is signed with the app's secret.

    Comparisons are constant-time over raw bytes. A missing, empty, malformed or
    other-algorithm signature is refused like a wrong one; so is every delivery
    to an app without a secret.
    """
    if not app.webhook_secret:
        raise Refused("the app has no webhook secret")
    try:
        secret = secrets.decrypt(app.webhook_secret, context=SECRET_CONTEXT)
    except secrets.SecretError as exc:
        raise Refused("the webhook secret cannot be decrypted") from exc
    header = HEADERS[provider][0]
    given = headers.get(header) or ""
    if not given:
        raise Refused(f"no {header} header")
    if provider == "gitlab":
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise Refused("wrong X-Gitlab-Token")
        return
    if provider in ("github", "generic"):
        algorithm, _, given = given.partition("=")
        if algorithm != "sha256":
            raise Refused(f"{header} is not sha256=<hex>")
    if not HEX_SIGNATURE_RE.fullmatch(given):
        raise Refused(f"{header} is not a hex HMAC-SHA256")
    if not hmac.compare_digest(bytes.fromhex(given), _hmac_sha256(secret, body)):
        raise Refused(f"wrong {header}")


def refuse(app: Application | None, provider: str, reason: str) -> None:
    """Audit a refused delivery (with the source address, via ``events``); nothing else."""
    events.record(
        "webhook.refused",
        team_id=app.project.team_id if app else None,
        target=app,
        provider=provider,
        reason=reason,
    )
    db.session.commit()


# ---- payloads -----------------------------------------------------------------


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value) -> str:
    return value if isinstance(value, str) else ""


def _changed(commits: list, complete: bool) -> set[str] | None:
    if not complete:
        return None
    paths: set[str] = set()
    for commit in commits:
        commit = _dict(commit)
        for key in ("added", "modified", "removed"):
            paths.update(p for p in commit.get(key) or [] if isinstance(p, str))
    return paths


def _head(commits: list, after: str, head_commit: dict) -> dict:
    if head_commit:
        return head_commit
    for commit in commits:
        if _dict(commit).get("id") == after:
            return commit
    return _dict(commits[-1]) if commits else {}


def parse(provider: str, event: str, payload: dict) -> Push:
    """Read a push payload as the forge documents it (GitHub's shape for ``generic``)."""
    if provider == "gitlab":
        event = GITLAB_EVENTS.get(event, event)
    if event == "ping":
        return Push(event="ping")
    if event != "push":
        return Push(event=event[:40] or "unknown")
    commits = [c for c in payload.get("commits") or [] if isinstance(c, dict)]
    after = _str(payload.get("after"))
    if provider == "gitlab":
        after = _str(payload.get("checkout_sha")) or after
        project = _dict(payload.get("project"))
        repository = _dict(payload.get("repository"))
        urls = [project.get(k) for k in ("git_http_url", "git_ssh_url", "web_url", "http_url",
                                         "ssh_url")]  # fmt: skip
        urls += [repository.get(k) for k in ("url", "homepage", "git_http_url", "git_ssh_url")]
        total = payload.get("total_commits_count")
        complete = isinstance(total, int) and total <= len(commits)
    else:
        repository = _dict(payload.get("repository"))
        urls = [repository.get(k) for k in ("clone_url", "ssh_url", "html_url", "url")]
        total = payload.get("total_commits")  # Gitea; GitHub sends no total
        complete = total <= len(commits) if isinstance(total, int) else len(commits) < 20
    head = _head(commits, after, _dict(payload.get("head_commit")))
    author = _dict(head.get("author"))
    return Push(
        event="push",
        ref=_str(payload.get("ref")),
        after=after,
        repo_urls={u for u in urls if isinstance(u, str) and u},
        message=_str(head.get("message")),
        author=_str(author.get("name")) or _str(author.get("username")),
        changed=_changed(commits, complete) if commits else None,
    )


def same_repository(a: str, b: str) -> bool:
    """Exactly the same repository: only the host's case, a trailing ``/`` and a
    ``.git`` suffix may differ."""
    return _canonical(a) == _canonical(b)


def _canonical(url: str) -> str:
    url = url.strip().rstrip("/")
    url = url[:-4] if url.endswith(".git") else url
    if "://" in url:
        parts = urlsplit(url)
        return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}"
    user_host, _, path = url.partition(":")
    return f"{user_host.lower()}:{path}"


# ---- decisions ----------------------------------------------------------------


def _matches_any(paths: set[str], patterns: list[str]) -> bool:
    regexes = [names.glob_regex(p) for p in patterns]
    return any(r.match(path) for r in regexes for path in paths)


def _ref_name(app: Application, ref: str) -> tuple[str | None, str]:
    """The branch or tag a push names, if this app deploys it."""
    if ref.startswith("refs/heads/"):
        name = ref.removeprefix("refs/heads/")
        if name != app.git_branch:
            return None, f"branch {name} is not the tracked branch {app.git_branch}"
        return name, ""
    if ref.startswith("refs/tags/"):
        name = ref.removeprefix("refs/tags/")
        if not app.deploy_tags:
            return None, f"tag {name}: this app does not deploy tags"
        if not names.glob_regex(app.deploy_tags).match(name):
            return None, f"tag {name} does not match {app.deploy_tags}"
        return name, ""
    return None, f"{ref or 'no ref'} is neither a branch nor a tag"


def decide(app: Application, push: Push) -> tuple[str | None, str]:
    """``(ref to deploy, why)``, or ``(None, why not)``."""
    if push.event == "ping":
        return None, "ping: the webhook works"
    if push.event != "push":
        return None, f"{push.event} events do not deploy"
    if app.source_type != "git" or not app.git_url:
        return None, "the app is not built from a git repository"
    if not app.auto_deploy:
        return None, "auto-deploy is off for this app"
    if not any(same_repository(url, app.git_url) for url in push.repo_urls):
        return None, "the push is for another repository"
    if ZERO_SHA.fullmatch(push.after or "0"):
        return None, f"{push.ref} was deleted"
    name, why_not = _ref_name(app, push.ref)
    if name is None:
        return None, why_not
    try:
        names.branch(name)
        names.commit_sha(push.after)
    except names.InvalidValue:
        return None, "the push names an invalid ref or commit id"
    lowered = push.message.lower()
    for marker in SKIP_MARKERS:
        if marker in lowered:
            return None, f"the commit message says {marker}"
    patterns = names.watch_paths(app.watch_paths)
    if patterns and push.changed is not None and not _matches_any(push.changed, patterns):
        return None, "no changed file matches the watch paths"
    return name, "deployed"


# ---- receiving ----------------------------------------------------------------


def delivery_id(provider: str, headers: Mapping[str, str]) -> str:
    value = (headers.get(HEADERS[provider][1]) or "").strip()
    if not DELIVERY_ID_RE.fullmatch(value):
        raise BadDelivery(f"{HEADERS[provider][1]} is missing or malformed")
    return value


def receive(
    app: Application, provider: str, headers: Mapping[str, str], body: bytes
) -> tuple[int, dict]:
    """Handle an authenticated delivery: remember it, and deploy if the push asks for it.

    Returns ``(HTTP status, JSON body)``: 202 when a deployment was queued, 200 when
    the delivery was ignored or is a replay.
    """
    delivery = delivery_id(provider, headers)
    try:
        payload = json.loads(body)
    except ValueError:
        raise BadDelivery("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise BadDelivery("the body is not a JSON object")
    push = parse(provider, (headers.get(HEADERS[provider][2]) or "push").strip(), payload)
    ref, reason = decide(app, push)
    app_id = app.id
    fields = {
        "application_id": app_id, "provider": provider, "delivery_id": delivery,
        "event": push.event, "ref": push.ref[:255] or None,
        "commit_sha": push.after[:64] or None, "outcome": "deployed" if ref else "ignored",
        "reason": reason[:500],
    }  # fmt: skip
    try:
        row = _insert_delivery(fields)
    except IntegrityError:
        db.session.rollback()
        _count_replay(app_id, provider, delivery)
        return 200, {"status": "duplicate", "delivery": delivery}
    if ref is None:
        row_id = row.id
        db.session.commit()
        _prune(app_id, row_id)
        return 200, {"status": "ignored", "reason": reason}
    row_id, linked = row.id, {}

    def link(deployment) -> None:
        row.deployment_id = linked["id"] = deployment.id

    # One transaction: the delivery row, the deployment and its audit event.
    deploys.start_deploy(
        app, trigger="webhook", commit_sha=push.after, commit_message=push.message[:2000],
        commit_author=push.author[:255], git_ref=ref, before_commit=link,
    )  # fmt: skip
    _prune(app_id, row_id)
    return 202, {"status": "queued", "deployment": linked["id"]}


def _insert_delivery(fields: dict) -> WebhookDelivery:
    """Insert the delivery row; a concurrent replay waits here, then fails (IntegrityError).

    SQLite refuses to upgrade a read transaction to a write one when another writer
    committed meanwhile ("database is locked"); nothing has happened yet at this
    point, so the insert is simply tried again.
    """
    for attempt in range(SQLITE_RETRIES + 1):
        row = WebhookDelivery(**fields)
        db.session.add(row)
        try:
            db.session.flush()
            return row
        except OperationalError:
            db.session.rollback()
            if db.engine.dialect.name != "sqlite" or attempt == SQLITE_RETRIES:
                raise
            time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")


def _count_replay(app_id: int, provider: str, delivery: str) -> None:
    db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.application_id == app_id,
            WebhookDelivery.provider == provider,
            WebhookDelivery.delivery_id == delivery,
        )
        .values(replays=WebhookDelivery.replays + 1)
    )
    db.session.commit()


def _prune(app_id: int, newest_id: int) -> None:
    """Keep the newest ``KEEP_DELIVERIES`` per app; checked every 20th delivery."""
    if newest_id % 20:
        return
    cutoff = db.session.scalar(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.application_id == app_id)
        .order_by(WebhookDelivery.id.desc())
        .offset(KEEP_DELIVERIES - 1)
        .limit(1)
    )
    if cutoff is not None:
        db.session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.application_id == app_id, WebhookDelivery.id < cutoff
            )
        )
        db.session.commit()


def app_by_token(token: str) -> Application | None:
    if not token or len(token) > 64:
        return None
    return db.session.scalar(
        select(Application)
        .options(joinedload(Application.project))  # the audit events need its team
        .where(Application.webhook_token == token)
    )
