"""Notification channels: generic webhooks, Slack/Discord-style webhooks, email (SMTP).

Values pass the dashboard's ``ChannelForm`` (names, the public-host check on URLs and
SMTP hosts) and are saved by ``app.backups.setup.save_channel``, as on the page. The
webhook URL (it often holds a token) and the SMTP password are write-only: a channel
shows its URL's host only. A generic webhook's signing secret is in the answer to its
creation, once, as the page shows it once.
"""

from __future__ import annotations

from sqlalchemy import select

from app import access, outbound
from app.access import Action
from app.backups import setup
from app.backups.forms import ChannelForm
from app.models import ChannelKind, NotificationChannel
from app.web.api import base, forms, spec
from app.web.api.base import bp
from app.web.api.conventions import iso

TAG = "Notifications"
TAKEN = "Your team already has a channel with this name."


def present_channel(channel: NotificationChannel) -> dict:
    s = channel.settings or {}
    email = channel.kind == ChannelKind.email.value
    return {
        "id": channel.id, "name": channel.name, "kind": channel.kind,
        "events": list(channel.events or []),
        "url_host": None if email else s.get("host"),
        "smtp_host": s.get("host") if email else None,
        "smtp_port": s.get("port") if email else None,
        "smtp_starttls": bool(s.get("starttls")) if email else None,
        "smtp_username": (s.get("username") or None) if email else None,
        "sender": s.get("sender") if email else None, "to": s.get("to") if email else None,
        "has_secret": bool(channel.secret), "signed": bool(channel.signing_secret),
        "created_at": iso(channel.created_at),
    }  # fmt: skip


def _current_values(channel: NotificationChannel) -> dict:
    """What the edit page fills its form with (the secrets stay out: empty keeps them)."""
    shown = present_channel(channel)
    values = {"name": channel.name, "events": shown["events"]}
    if channel.kind == ChannelKind.email.value:
        values |= {k: shown[k] for k in ("smtp_host", "smtp_port", "smtp_starttls",
                                          "smtp_username", "sender", "to")}  # fmt: skip
    return values


@bp.get("/notification-channels")
@spec.operation("listNotificationChannels", "Notifications", "The team's channels",
                Action.NOTIFICATION_READ, query="PageQuery",
                response="NotificationChannelPage")  # fmt: skip
def channels_list():
    team = access.in_current_team(Action.NOTIFICATION_READ)
    params = base.query()
    statement = select(NotificationChannel).where(NotificationChannel.team_id == team.id)
    return base.page(statement, NotificationChannel.id, present_channel, params,
                     newest_first=False)  # fmt: skip


@bp.post("/notification-channels")
@spec.operation("createNotificationChannel", TAG, "Add a channel", Action.NOTIFICATION_MANAGE,
                body="NotificationChannelCreate", response="NotificationChannelCreated",
                status=201, shown_once=True)  # fmt: skip
def channel_create():
    team = access.in_current_team(Action.NOTIFICATION_MANAGE)
    values = base.body().model_dump()
    form = forms.validated(ChannelForm, values, allowed_hosts=outbound.allowed_hosts())
    if setup.name_taken(NotificationChannel, team.id, form.name.data):
        forms.fail_fields({"name": TAKEN})
    channel = NotificationChannel(team_id=team.id)
    signing_secret = setup.save_channel(form, channel)
    return base.respond(
        present_channel(channel) | {"signing_secret": signing_secret}, 201,
        headers={"Location": f"/api/v1/notification-channels/{channel.id}"},
    )  # fmt: skip


@bp.get("/notification-channels/<int:channel_id>")
@spec.operation("getNotificationChannel", TAG, "One channel", Action.NOTIFICATION_READ,
                response="NotificationChannel", etag=True)  # fmt: skip
def channel_get(channel_id: int):
    channel = access.notification_channel(channel_id, Action.NOTIFICATION_READ)
    return base.respond(present_channel(channel), etag=True)


@bp.patch("/notification-channels/<int:channel_id>")
@spec.operation("updateNotificationChannel", TAG, "Change a channel (not its kind)",
                Action.NOTIFICATION_MANAGE, body="NotificationChannelUpdate",
                response="NotificationChannel", etag=True)  # fmt: skip
def channel_update(channel_id: int):
    channel = access.notification_channel(channel_id, Action.NOTIFICATION_MANAGE)
    changes = base.body().model_dump(exclude_unset=True)
    base.if_match(present_channel(channel))
    email_only = ("smtp_host", "smtp_port", "smtp_starttls", "smtp_username", "smtp_password",
                  "sender", "to")  # fmt: skip
    wrong = [k for k in changes if (k in email_only) != (channel.kind == ChannelKind.email.value)
             and k not in ("name", "events")]  # fmt: skip
    if wrong:
        forms.fail_fields({k: f"Not a setting of a {channel.kind} channel." for k in wrong})
    values = _current_values(channel) | changes
    form = forms.validated(ChannelForm, values, allowed_hosts=outbound.allowed_hosts(),
                           kind=channel.kind)  # fmt: skip
    if setup.name_taken(NotificationChannel, channel.team_id, form.name.data, channel.id):
        forms.fail_fields({"name": TAKEN})
    setup.save_channel(form, channel)
    return base.respond(present_channel(channel), etag=True)


@bp.delete("/notification-channels/<int:channel_id>")
@spec.operation("deleteNotificationChannel", TAG, "Delete a channel", Action.NOTIFICATION_MANAGE,
                status=204, etag=True)  # fmt: skip
def channel_delete(channel_id: int):
    channel = access.notification_channel(channel_id, Action.NOTIFICATION_MANAGE)
    base.if_match(present_channel(channel))
    setup.delete_channel(channel)
    return base.no_content()
