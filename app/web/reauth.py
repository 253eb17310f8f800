"""Sensitive actions ask again: the password (or a two-factor code) when the last check
is older than ``REAUTH_SECONDS``.

Deleting an app or a team, changing a member's role, restoring over a database: the
view calls :func:`required` first and returns its redirect when there is one. The
time of the last check is in the (signed) session, set at login and by the check
page (``auth.reauth_get``).
"""

from __future__ import annotations

import time

from flask import redirect, request, session, url_for

from app.web.htmx import is_htmx

REAUTH_SECONDS = 600
KEY = "auth_checked_at"


def mark_checked() -> None:
    session[KEY] = int(time.time())


def is_fresh() -> bool:
    checked = session.get(KEY)
    return isinstance(checked, int) and 0 <= time.time() - checked < REAUTH_SECONDS


def required(back: str | None = None):
    """None when the last check is recent; else a redirect to the check page, which
    returns to ``back`` (default: this page, for a GET; the referring page otherwise)."""
    if is_fresh():
        return None
    if back is None:
        back = request.full_path.rstrip("?") if request.method == "GET" else request.referrer
    target = url_for("auth.reauth_get", next=back or url_for("dashboard.index"))
    if is_htmx():  # a whole page, not a fragment to swap in
        return "", 200, {"HX-Redirect": target}
    return redirect(target, 303)
