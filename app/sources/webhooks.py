"""Push webhooks from GitHub, GitLab, Gitea/Forgejo and a generic HMAC sender.

A delivery is authenticated first (:func:`verify`: HMAC-SHA256 over the raw body,
or GitLab's token, compared in constant time), then remembered by its delivery id
and the SHA-256 of its body in ``webhook_deliveries`` in the same transaction as the
deployment it starts, so a replay can never deploy twice, under its own id or a
fresh one. Whether a push deploys is decided by
``app.pushes``. The request never clones or builds: it only queues.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as pysecrets
import time
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import joinedload
from werkzeug.http import parse_options_header

from app import audit, crypto
from app.deploys import control
from app.extensions import db
from app.models import Application, DeploymentStatus, WebhookDelivery
from app.models.base import utcnow
from app.sources import pushes

PROVIDERS = ("github", "gitlab", "gitea", "generic")
SECRET_CONTEXT = "webhook_secret"
# GitHub caps a delivery at 25 MB and does not send larger ones; GitLab refuses to send a
# hook whose JSON passes 25 MiB (its LimitedEncoder); Gitea and Forgejo state no cap.
# One limit, the larger reading of "25 MB", so nothing a forge sends is refused.
MAX_BODY_BYTES = 25 * 1024 * 1024
MAX_BODY_TEXT = "25 MiB"
KEEP_DELIVERIES = 200
# A delivery id is remembered at least this long, whatever the app's traffic: forges
# redeliver old deliveries (by hand or automatically), and a forgotten id deploys again.
REMEMBER_DELIVERIES = timedelta(days=30)
SQLITE_RETRIES = 5
NOT_QUEUED = "not_queued"
MALFORMED = "malformed"
NOT_QUEUED_REASON = (
    "the deploy could not be queued (the job queue did not answer); answered 503, "
    "so a redelivery of this delivery deploys it"
)
DELIVERY_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
HEX_SIGNATURE_RE = re.compile(r"^[0-9a-fA-F]{64}$")
# (signature header, delivery id header, event header) per provider.
HEADERS = {
    "github": ("X-Hub-Signature-256", "X-GitHub-Delivery", "X-GitHub-Event"),
    "gitlab": ("X-Gitlab-Token", "X-Gitlab-Event-UUID", "X-Gitlab-Event"),
    "gitea": ("X-Gitea-Signature", "X-Gitea-Delivery", "X-Gitea-Event"),
    "generic": ("X-Slipway-Signature", "X-Slipway-Delivery", "X-Slipway-Event"),
}


class Refused(Exception):
    """The delivery is not authentic (401); the reason goes to the audit log only."""


class BadDelivery(Exception):
    """Authentic but unusable (400): no delivery id, or a malformed payload (the message
    says which field; safe to show the sender)."""


class NotQueued(Exception):
    """Authentic and deployable, but the queue refused the deployment (503).

    The delivery row stays, marked ``not_queued``, so the log says so; a redelivery of
    the same id claims that row and tries again instead of counting as a replay.
    """

    def __init__(self, delivery: str, deployment_id: int):
        super().__init__(f"the deployment of delivery {delivery} could not be queued")
        self.delivery, self.deployment_id = delivery, deployment_id


# ---- authentication -----------------------------------------------------------


def new_token() -> str:
    """The unguessable part of an app's webhook URL."""
    return pysecrets.token_urlsafe(24)


def rotate_secret(app: Application) -> str:
    """Give the app a new signing secret (and a URL token if it has none).

    Returns the plaintext once, for the page that shows it; only ciphertext is stored.
    """
    plaintext = pysecrets.token_urlsafe(32)
    app.webhook_secret = crypto.encrypt(plaintext, context=SECRET_CONTEXT)
    if not app.webhook_token:
        app.webhook_token = new_token()
    audit.record(audit.Action.WEBHOOK_SECRET_ROTATED, team_id=app.project.team_id, target=app)
    db.session.commit()
    return plaintext


def reveal_secret(app: Application, user_id: int | None = None) -> str | None:
    """The app's signing secret in clear, for an admin who asked to see it (audited).

    Never part of a GET page: only the answer to the admin's POST carries it."""
    if not app.webhook_secret:
        return None
    plaintext = crypto.decrypt(app.webhook_secret, context=SECRET_CONTEXT)
    audit.record(audit.Action.WEBHOOK_SECRET_REVEALED, team_id=app.project.team_id,
                 target=app, user_id=user_id)  # fmt: skip
    db.session.commit()
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
        secret = crypto.decrypt(app.webhook_secret, context=SECRET_CONTEXT)
    except crypto.SecretError as exc:
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


def refuse_too_large(app: Application, provider: str, size: int | None) -> str:
    """Audit a delivery refused for its size (its signature cannot be checked without
    reading it all); returns the message for the sender."""
    told = f" ({size} bytes)" if size is not None else ""
    message = f"The delivery is larger than {MAX_BODY_TEXT}{told}."
    refuse(app, provider, f"the body is over the {MAX_BODY_TEXT} limit{told}")
    return message


def refuse(app: Application | None, provider: str, reason: str) -> None:
    """Audit a refused delivery (with the source address, via ``audit``); nothing else."""
    audit.record(
        audit.Action.WEBHOOK_REFUSED,
        team_id=app.project.team_id if app else None,
        target=app,
        provider=provider,
        reason=reason,
    )
    db.session.commit()


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
    the delivery was ignored or is a replay — of its delivery id, or of its body under
    another id (the id header is not signed; the body is). Raises :class:`BadDelivery`
    for a malformed payload (logged as a ``malformed`` delivery first) and
    :class:`NotQueued` when the deployment could not be queued, so the forge sees a
    failure it can redeliver.
    """
    delivery = delivery_id(provider, headers)
    digest = hashlib.sha256(body).hexdigest()
    event = (headers.get(HEADERS[provider][2]) or "push").strip()
    try:
        push = pushes.parse(provider, event, _payload(provider, headers, body))
    except pushes.Malformed as exc:
        _log_malformed(app.id, provider, delivery, digest, pushes.event_name(provider, event),
                       str(exc))  # fmt: skip
        raise BadDelivery(str(exc)) from None
    ref, reason = pushes.decide(app, push)
    app_id = app.id
    fields = {
        "application_id": app_id, "provider": provider, "delivery_id": delivery,
        "body_sha256": digest, "event": push.event, "ref": push.ref[:255] or None,
        "commit_sha": push.after[:64] or None, "outcome": "deployed" if ref else "ignored",
        "reason": reason[:500],
    }  # fmt: skip
    try:
        row = _insert_delivery(fields)
    except IntegrityError:
        db.session.rollback()
        earlier = _earlier_row_id(app_id, provider, delivery, digest)
        row = _claim_not_queued(earlier, digest) if ref and earlier else None
        if row is None:
            _count_replay(earlier)
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
    try:
        control.start_deploy(
            app, trigger="webhook", commit_sha=push.after, commit_message=push.message[:2000],
            commit_author=push.author[:255], git_ref=ref, before_commit=link,
            raise_if_not_queued=True,
        )  # fmt: skip
    except control.DeployNotQueued:
        _mark_not_queued(row_id)
        raise NotQueued(delivery, linked["id"]) from None
    _prune(app_id, row_id)
    return 202, {"status": DeploymentStatus.queued.value, "deployment": linked["id"]}


def _payload(provider: str, headers: Mapping[str, str], body: bytes) -> dict:
    """The payload of an authenticated body: JSON, or GitHub's form encoding (the JSON
    in a ``payload`` field; GitHub signs the form body, so it was verified as sent)."""
    content_type, _ = parse_options_header(headers.get("Content-Type") or "")
    if content_type.lower() != pushes.FORM:
        return pushes.load(body)
    if provider != "github":
        raise pushes.Malformed("the body is form-encoded; set the webhook's content type to "
                               "application/json")  # fmt: skip
    return pushes.load_form(body)


def _log_malformed(
    app_id: int, provider: str, delivery: str, digest: str, event: str, reason: str
) -> None:
    """Log an authentic delivery whose payload is malformed (``malformed``, with why).

    The row takes part in replay detection like any other: a second copy (by id or by
    body) only counts a replay on it."""
    fields = {
        "application_id": app_id, "provider": provider, "delivery_id": delivery,
        "body_sha256": digest, "event": event, "outcome": MALFORMED, "reason": reason[:500],
    }  # fmt: skip
    try:
        row_id = _insert_delivery(fields).id
    except IntegrityError:
        db.session.rollback()
        _count_replay(_earlier_row_id(app_id, provider, delivery, digest))
        return
    db.session.commit()
    _prune(app_id, row_id)


def _earlier_row_id(app_id: int, provider: str, delivery: str, digest: str) -> int | None:
    """The row a delivery collided with: the one with its delivery id, else the one with
    its body (None only if that row has gone since, which pruning never does within
    ``REMEMBER_DELIVERIES``)."""
    mine = WebhookDelivery.application_id == app_id
    same_id = db.session.scalar(
        select(WebhookDelivery.id).where(
            mine, WebhookDelivery.provider == provider, WebhookDelivery.delivery_id == delivery
        )
    )
    if same_id is not None:
        return same_id
    return db.session.scalar(
        select(WebhookDelivery.id).where(mine, WebhookDelivery.body_sha256 == digest)
    )


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


def _count_replay(row_id: int | None) -> None:
    if row_id is not None:
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == row_id)
            .values(replays=WebhookDelivery.replays + 1)
        )
    db.session.commit()


def _claim_not_queued(row_id: int, digest: str) -> WebhookDelivery | None:
    """The row of an earlier try of this delivery that could not be queued, claimed for
    this redelivery (uncommitted, in the deployment's transaction); None for a replay.

    A redelivery is the same body, whatever its id (some forges give redeliveries a new
    one); a different body under a not-queued row's id is a replay like any other. Rows
    from before body digests (NULL) are claimed by their delivery id alone. The
    conditional UPDATE lets exactly one of racing redeliveries claim it.
    """
    claimed = db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == row_id,
            WebhookDelivery.outcome == NOT_QUEUED,
            or_(WebhookDelivery.body_sha256 == digest, WebhookDelivery.body_sha256.is_(None)),
        )
        .values(outcome="deployed", reason="deployed")
    ).rowcount
    if not claimed:
        db.session.rollback()
        return None
    return db.session.get(WebhookDelivery, row_id)


def _mark_not_queued(row_id: int) -> None:
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == row_id)
        .values(outcome=NOT_QUEUED, reason=NOT_QUEUED_REASON)
    )
    db.session.commit()


def _prune(app_id: int, newest_id: int) -> None:
    """Forget deliveries that are both older than ``REMEMBER_DELIVERIES`` and beyond the
    app's newest ``KEEP_DELIVERIES``; checked every 20th delivery.

    The age limit is what makes replays harmless: a row younger than 30 days is never
    deleted, however many deliveries arrived since, so a redelivery within that time
    still meets its row. The count only keeps a quiet app's recent log.
    """
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
                WebhookDelivery.application_id == app_id,
                WebhookDelivery.id < cutoff,
                WebhookDelivery.created_at < utcnow() - REMEMBER_DELIVERIES,
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
