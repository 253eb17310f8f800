"""Notification channels: list, add, test, delete. Admins manage; viewers may look.

Webhook URLs and SMTP passwords are stored encrypted and never shown again: the
list shows a webhook's host only.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from app import access, notify, outbound
from app.backups import setup
from app.backups.forms import EVENT_LABELS, ChannelForm
from app.extensions import db
from app.models import NotificationChannel, Role

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


def _page(form, status=200):
    team = access.current_team()
    channels = db.session.query(NotificationChannel).filter_by(team_id=team.id).order_by(
        NotificationChannel.name).all()  # fmt: skip
    return render_template(
        "notifications/index.html", channels=channels, form=form,
        can_manage=access.can(team.id, Role.admin), labels=EVENT_LABELS,
    ), status  # fmt: skip


@bp.get("/")
def index():
    access.require(access.current_team().id, Role.viewer)
    return _page(ChannelForm())


@bp.post("/")
def create_post():
    team = access.current_team()
    access.require(team.id, Role.admin)
    form = ChannelForm(allowed_hosts=outbound.allowed_hosts())
    if form.validate() and setup.name_taken(NotificationChannel, team.id, form.name.data):
        form.name.errors.append("Your team already has a channel with this name.")
    if form.errors:
        return _page(form, 422)
    channel = setup.save_channel(form, NotificationChannel(team_id=team.id))
    flash(f"Channel {channel.name} added.", "success")
    return redirect(url_for("notifications.index"), 303)


@bp.post("/<int:channel_id>/test")
def test_post(channel_id: int):
    channel = access.notification_channel(channel_id, Role.admin)
    try:
        notify.send(channel, "test", "Slipway test notification",
                    f"This is a test of the channel {channel.name}.")  # fmt: skip
        flash(f"Sent a test notification to {channel.name}.", "success")
    except (notify.DeliveryError, KeyError) as exc:
        flash(f"Sending to {channel.name} failed: {exc}", "error")
    return redirect(url_for("notifications.index"), 303)


@bp.get("/<int:channel_id>/delete")
def delete_get(channel_id: int):
    channel = access.notification_channel(channel_id, Role.admin)
    return render_template(
        "confirm.html", title=f"Delete channel {channel.name}?",
        message="Its events will no longer be sent anywhere.",
        action=url_for("notifications.delete_post", channel_id=channel.id),
        confirm_label="Delete channel", back=url_for("notifications.index"),
    )  # fmt: skip


@bp.post("/<int:channel_id>/delete")
def delete_post(channel_id: int):
    channel = access.notification_channel(channel_id, Role.admin)
    name = channel.name
    setup.delete_channel(channel)
    flash(f"Channel {name} deleted.", "success")
    return redirect(url_for("notifications.index"), 303)
