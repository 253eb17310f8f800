"""Notifications: channels per team (generic webhook, Slack/Discord-style webhook,
email over SMTP), each subscribed to chosen events.

``event`` only enqueues one delivery job per subscribed channel (ids only), and
never raises: telling the team must never change a job's result. Deliveries run
on their own queue, ``notify``, which ``make run`` serves with a worker of its own:
an unreachable channel can never hold up a deploy or wait behind a backup. A
delivery job makes one attempt, bounded in time (``NOTIFY_TIMEOUT_SECONDS`` per
socket operation, three times that for the whole job, RQ's job timeout); a failed
attempt schedules the next one with exponential backoff (RQ's ``enqueue_in``, moved
onto the queue by the notify worker's RQ scheduler) instead of sleeping in the job.
URLs and SMTP hosts pass the SSRF check on save and again here, at use.

A generic webhook channel signs each body it sends (``signature_headers``): the
receiver computes HMAC-SHA256 over ``<timestamp>.<body>`` with the channel's
signing secret and compares it with ``X-Slipway-Signature``; the timestamp bounds
replays. The README documents the scheme for receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.request
from datetime import timedelta
from urllib.error import HTTPError, URLError

from flask import current_app
from rq.job import Callback
from sqlalchemy import select

from app import crypto, mail, names, outbound
from app.extensions import db, queue
from app.models import (
    Application,
    Backup,
    Certificate,
    ChannelKind,
    Deployment,
    NotificationChannel,
    NotificationEvent,
    Restore,
    Team,
)

log = logging.getLogger("slipway.notify")
SECRET_CONTEXT = "notification-channel-secret"
SIGNING_CONTEXT = "notification-signing-secret"
SIGNATURE_HEADER = "X-Slipway-Signature"
TIMESTAMP_HEADER = "X-Slipway-Timestamp"
EVENT_HEADER = "X-Slipway-Event"
QUEUE = "notify"
JOB = "app.jobs.send_notification"


class DeliveryError(Exception):
    pass


def _timeout() -> float:
    """Seconds allowed to each socket operation of an attempt (connect, send, read)."""
    return current_app.config["NOTIFY_TIMEOUT_SECONDS"]


def _job_options() -> dict:
    # The whole attempt (DNS, connect, TLS, login, send) ends within the job timeout; an
    # attempt that runs out of it (or raises) schedules the next one from RQ's failure
    # callback, so a channel that hangs is retried like one that refuses.
    return {
        "job_timeout": max(int(3 * _timeout()), 1),
        "failure_ttl": 86400,
        "on_failure": Callback("app.jobs.notification_attempt_failed"),
    }


def event(team_id: int, what: NotificationEvent, object_id: int) -> int:
    """Enqueue a delivery to every channel of the team subscribed to ``what``."""
    try:
        channels = db.session.scalars(
            select(NotificationChannel).where(NotificationChannel.team_id == team_id)
        ).all()
        ids = [c.id for c in channels if what.value in (c.events or [])]
        for channel_id in ids:
            queue(QUEUE).enqueue(JOB, channel_id, what.value, object_id, 0, **_job_options())
        return len(ids)
    except Exception:  # noqa: BLE001 - a notification never fails the caller
        log.exception("could not enqueue notifications for team %s", team_id)
        return 0


def message(what: str, object_id: int) -> tuple[str, str]:
    """(subject, text) for an event, built from the rows (no secret is in them)."""
    if what == NotificationEvent.backup_failed.value:
        b = db.session.get(Backup, object_id)
        name = b.policy.name if b else "?"
        return (f"Backup of {name} failed", f"Backup #{object_id} of policy {name} failed: "
                f"{b.error if b else 'the row is gone'}")  # fmt: skip
    if what == NotificationEvent.drill_failed.value:
        r = db.session.get(Restore, object_id)
        reason = r.error if r else "the row is gone"
        return (
            f"Restore drill #{object_id} failed",
            f"Restore drill #{object_id} failed: {reason}",
        )
    if what == NotificationEvent.deploy_failed.value:
        d = db.session.get(Deployment, object_id)
        name = d.application.name if d else "?"
        reason = d.error if d else "the row is gone"
        return (
            f"Deployment of {name} failed",
            f"Deployment #{object_id} of {name} failed: {reason}",
        )
    if what in APP_EVENTS:
        return _app_message(what, object_id)
    if what in CERTIFICATE_EVENTS:
        return _certificate_message(what, object_id)
    return (f"Slipway: {what}", f"Slipway event {what} (#{object_id})")


APP_EVENTS = {
    NotificationEvent.app_down.value: "is down",
    NotificationEvent.app_crash_looping.value: "keeps crashing",
    NotificationEvent.app_recovered.value: "serves again",
}


CERTIFICATE_EVENTS = {
    NotificationEvent.certificate_failed.value: "could not be ordered",
    NotificationEvent.certificate_expiring.value: "expires soon",
}


def _certificate_message(what: str, cert_id: int) -> tuple[str, str]:
    """A certificate event; the text is its state in words when the delivery is made."""
    from app.proxy import certwords

    cert = db.session.get(Certificate, cert_id)
    if cert is None:
        gone = f"Certificate #{cert_id} {CERTIFICATE_EVENTS[what]}"
        return (gone, f"{gone}; it has been removed since.")
    hosts = ", ".join(cert.hosts)
    subject = f"Certificate for {hosts} {CERTIFICATE_EVENTS[what]}"
    if what == NotificationEvent.certificate_expiring.value and cert.not_after:
        subject = f"Certificate for {hosts} expires on {cert.not_after:%Y-%m-%d}"
    return (subject, f"{subject}: {certwords.describe(cert)}")


def _app_message(what: str, app_id: int) -> tuple[str, str]:
    """An app's health event; the reason is the app's health when the delivery is made
    (its summary holds no secret: exit codes, states, no log lines)."""
    a = db.session.get(Application, app_id)
    if a is None:
        return (f"App #{app_id} {APP_EVENTS[what]}", f"App #{app_id} {APP_EVENTS[what]}.")
    name = f"{a.name} ({a.project.name})"
    summary = (a.health_detail or {}).get("summary") or a.health or "unknown"
    return (f"{name} {APP_EVENTS[what]}", f"{name} {APP_EVENTS[what]}: {summary}")


def check_host_at_use(host: str) -> None:
    try:
        outbound.check_host(host)
    except outbound.HostRefused as exc:
        raise DeliveryError(f"{exc} Not sending there.") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could point anywhere, internal addresses included: never follow."""

    def redirect_request(self, *args, **kwargs):
        return None


def new_signing_secret() -> str:
    """A channel's signing key: 32 random bytes as 64 hex characters."""
    return secrets.token_hex(32)


def signature_headers(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict:
    """``X-Slipway-Timestamp: <unix seconds>`` and ``X-Slipway-Signature: sha256=<hex>``,
    the HMAC-SHA256 under ``signing_secret`` of ``b"<timestamp>." + body``: the timestamp is
    signed too, so a receiver that refuses old ones refuses a replayed body."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(signing_secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"sha256={mac.hexdigest()}"}


def _post_json(url: str, payload: dict, signing_secret: str | None = None) -> None:
    host = names.url_host(url)
    check_host_at_use(host)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Slipway"}
    if signing_secret is not None:
        headers |= signature_headers(signing_secret, body)
        headers[EVENT_HEADER] = str(payload.get("event", ""))
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=_timeout()) as response:
            if not 200 <= response.status < 300:
                raise DeliveryError(f"{host} answered {response.status}")
    except HTTPError as exc:
        if 300 <= exc.code < 400:
            raise DeliveryError(
                f"{host} answered {exc.code}, a redirect, which notifications do not follow; "
                "use the final URL of the webhook"
            ) from None
        raise DeliveryError(f"{host} answered {exc.code}") from None
    except URLError as exc:
        raise DeliveryError(f"{host}: {getattr(exc, 'reason', exc)}") from None
    except OSError as exc:
        raise DeliveryError(f"{host}: {exc}") from None


def _secret(channel: NotificationChannel) -> str:
    """The channel's URL or SMTP password; one stored under a retired key is a plain error."""
    return _decrypt(
        channel.secret, SECRET_CONTEXT, "the channel's URL or SMTP password",
        f"edit {channel.name} and enter it again",
    )  # fmt: skip


def _signing_secret(channel: NotificationChannel) -> str | None:
    if not channel.signing_secret:
        return None
    return _decrypt(
        channel.signing_secret, SIGNING_CONTEXT, "the channel's signing secret",
        f"make a new signing secret for {channel.name}",
    )  # fmt: skip


def _decrypt(stored: str, context: str, what: str, remedy: str) -> str:
    try:
        return crypto.decrypt_stored(stored, context=context, what=what, remedy=remedy)
    except crypto.SecretError as exc:
        raise DeliveryError(str(exc)) from None


def _send_email(channel: NotificationChannel, subject: str, text: str) -> None:
    s = channel.settings or {}
    check_host_at_use(s["host"])
    password = _secret(channel) if s.get("username") and channel.secret else None
    server = mail.Server(
        host=s["host"], port=int(s.get("port", 25)),
        tls="starttls" if s.get("starttls") else "none",
        username=s["username"] if password is not None else "", password=password or "",
    )  # fmt: skip
    try:
        mail.send(server, s["sender"], s["to"], subject, text, timeout=_timeout())
    except mail.MailError as exc:
        raise DeliveryError(str(exc)) from None


def send(channel: NotificationChannel, what: str, subject: str, text: str) -> None:
    """Deliver once; raises :class:`DeliveryError` with a plain reason."""
    team = db.session.get(Team, channel.team_id)
    if channel.kind == ChannelKind.email.value:
        _send_email(channel, subject, text)
        return
    url = _secret(channel)
    if channel.kind == ChannelKind.slack.value:
        # Slack reads "text", Discord "content"; each ignores the other.
        _post_json(url, {"text": text, "content": text})
    else:
        _post_json(url, {"event": what, "subject": subject, "text": text,
                         "team": team.name if team else None},
                   signing_secret=_signing_secret(channel))  # fmt: skip


def deliver(channel_id: int, what: str, object_id: int, attempt: int = 0) -> str:
    """The delivery job: one attempt; a failure schedules the next (``retry_later``).

    Returns ``sent``, ``retrying`` (the next attempt is scheduled), ``failed`` (no
    attempt left) or ``channel gone``. Never sleeps: the worker is free at once.
    """
    channel = db.session.get(NotificationChannel, channel_id)
    if channel is None:
        return "channel gone"
    subject, text = message(what, object_id)
    try:
        send(channel, what, subject, text)
        return "sent"
    except (DeliveryError, crypto.SecretError, KeyError) as exc:
        log.warning("channel %s, attempt %s: %s", channel_id, attempt + 1, exc)
        return retry_later(channel_id, what, object_id, attempt)


def retry_later(channel_id: int, what: str, object_id: int, attempt: int) -> str:
    """Schedule attempt ``attempt + 1`` after ``base * 2**attempt`` seconds, if any is left."""
    retries = current_app.config["NOTIFY_RETRIES"]
    if attempt >= retries:
        log.warning("channel %s: giving up after %s attempts", channel_id, attempt + 1)
        return "failed"
    delay = current_app.config["NOTIFY_RETRY_BASE_SECONDS"] * (2**attempt)
    queue(QUEUE).enqueue_in(
        timedelta(seconds=delay), JOB, channel_id, what, object_id, attempt + 1, **_job_options()
    )
    return "retrying"
