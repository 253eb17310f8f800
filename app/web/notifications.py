"""Notification channels: list, add, edit, test, delete. Admins manage; viewers may look.

Webhook URLs and SMTP passwords are stored encrypted and never shown again: the
list shows a webhook's host only. A generic webhook's signing secret is shown once,
when the channel is added or the secret is replaced.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from app import access, notify, outbound
from app.backups import setup
from app.backups.forms import EVENT_LABELS, ChannelForm
from app.extensions import db
from app.models import ChannelKind, NotificationChannel

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


def _page(form, status=200):
    team = access.current_team()
    channels = db.session.query(NotificationChannel).filter_by(team_id=team.id).order_by(
        NotificationChannel.name).all()  # fmt: skip
    return render_template(
        "notifications/index.html", channels=channels, form=form,
        can_manage=access.allows(access.Action.NOTIFICATION_MANAGE, team), labels=EVENT_LABELS,
    ), status  # fmt: skip


@bp.get("/")
def index():
    access.in_current_team(access.Action.NOTIFICATION_READ)
    return _page(ChannelForm())


@bp.post("/")
def create_post():
    team = access.in_current_team(access.Action.NOTIFICATION_MANAGE)
    form = ChannelForm(allowed_hosts=outbound.allowed_hosts())
    if form.validate() and setup.name_taken(NotificationChannel, team.id, form.name.data):
        form.name.errors.append("Your team already has a channel with this name.")
    if form.errors:
        return _page(form, 422)
    channel = NotificationChannel(team_id=team.id)
    signing_secret = setup.save_channel(form, channel)
    flash(f"Channel {channel.name} added.", "success")
    if signing_secret:
        return _secret_page(channel, signing_secret)
    return redirect(url_for("notifications.index"), 303)


def _secret_page(channel: NotificationChannel, signing_secret: str):
    return render_template(
        "notifications/secret.html", channel=channel, secret=signing_secret,
        signature_header=notify.SIGNATURE_HEADER, timestamp_header=notify.TIMESTAMP_HEADER,
    )  # fmt: skip


def _edit_page(channel: NotificationChannel, form, status=200):
    return render_template("notifications/edit.html", channel=channel, form=form,
                           labels=EVENT_LABELS), status  # fmt: skip


@bp.get("/<int:channel_id>/edit")
def edit_get(channel_id: int):
    channel = access.notification_channel(channel_id, access.Action.NOTIFICATION_MANAGE)
    s = channel.settings or {}
    data = {"name": channel.name, "events": channel.events}
    if channel.kind == ChannelKind.email.value:
        data |= {"smtp_host": s.get("host"), "smtp_port": s.get("port"), "sender": s.get("sender"),
                 "smtp_starttls": s.get("starttls"), "smtp_username": s.get("username"),
                 "to": s.get("to")}  # fmt: skip
    return _edit_page(channel, ChannelForm(formdata=None, data=data, kind=channel.kind))


@bp.post("/<int:channel_id>/edit")
def edit_post(channel_id: int):
    channel = access.notification_channel(channel_id, access.Action.NOTIFICATION_MANAGE)
    form = ChannelForm(allowed_hosts=outbound.allowed_hosts(), kind=channel.kind)
    if form.validate() and setup.name_taken(
        NotificationChannel, channel.team_id, form.name.data, exclude_id=channel.id
    ):
        form.name.errors.append("Your team already has a channel with this name.")
    if form.errors:
        return _edit_page(channel, form, 422)
    setup.save_channel(form, channel)
    flash(f"Channel {channel.name} saved.", "success")
    return redirect(url_for("notifications.index"), 303)


@bp.post("/<int:channel_id>/signing-secret")
def signing_secret_post(channel_id: int):
    channel = access.notification_channel(channel_id, access.Action.NOTIFICATION_MANAGE)
    if channel.kind != ChannelKind.webhook.value:
        abort(404)
    return _secret_page(channel, setup.rotate_signing_secret(channel))


@bp.post("/<int:channel_id>/test")
def test_post(channel_id: int):
    channel = access.notification_channel(channel_id, access.Action.NOTIFICATION_MANAGE)
    try:
        notify.send(channel, "test", "Slipway test notification",
                    f"This is a test of the channel {channel.name}.")  # fmt: skip
        flash(f"Sent a test notification to {channel.name}.", "success")
    except (notify.DeliveryError, KeyError) as exc:
        flash(f"Sending to {channel.name} failed: {exc}", "error")
    return redirect(url_for("notifications.index"), 303)


@bp.get("/<int:channel_id>/delete")
def delete_get(channel_id: int):
    channel = access.notification_channel(channel_id, access.Action.NOTIFICATION_MANAGE)
    return render_template(
        "confirm.html", title=f"Delete channel {channel.name}?",
        message="Its events will no longer be sent anywhere.",
        action=url_for("notifications.delete_post", channel_id=channel.id),
        confirm_label="Delete channel", back=url_for("notifications.index"),
    )  # fmt: skip


@bp.post("/<int:channel_id>/delete")
def delete_post(channel_id: int):
    channel = access.notification_channel(channel_id, access.Action.NOTIFICATION_MANAGE)
    name = channel.name
    setup.delete_channel(channel)
    flash(f"Channel {name} deleted.", "success")
    return redirect(url_for("notifications.index"), 303)
