"""Every template filter, global and context value, registered in one place."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from flask_login import current_user

from app import access
from app.deploys import livestatus
from app.live import logformat
from app.runtime import containers


def human_bytes(value: float | None) -> str:
    """``1536`` → ``1.5 KiB``; None (no sample) → a dash."""
    if value is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "–"


def log_html(text: str):
    """A log line as HTML: escaped, then ANSI colours as classes (``app.live.logformat``)."""
    return logformat.to_html(text)


def live_since() -> str:
    """The newest status event id, so a page's socket misses nothing after render."""
    return livestatus.last_id()


def _is_installation_admin() -> bool:
    """The nav's Server and Workers links: the same predicate their views enforce."""
    return current_user.is_authenticated and access.is_installation_admin()


def _is_installation_owner() -> bool:
    return current_user.is_authenticated and access.is_installation_owner(current_user.id)


@dataclass(frozen=True)
class TeamMenu:
    current: object | None
    others: list
    can_manage: bool  # Team settings
    full: bool  # a member of every project: the team-wide pages (backups, notifications)
    audit: bool = False  # the Audit log


def team_menu() -> TeamMenu:
    """The top bar's team switcher: the current team and the user's other teams."""
    from app.accounts import teams

    rows = teams.teams_of(current_user)
    if not rows:
        return TeamMenu(None, [], False, False)
    chosen = current_user.current_team_id
    current = next((team for team, _ in rows if team.id == chosen), None)
    if current is None:  # access.current_membership's fallback: the first membership
        current = min(rows, key=lambda row: row[1].id)[0]
    return TeamMenu(
        current,
        [team for team, _ in rows if team.id != current.id],
        access.can(current_user, access.Action.TEAM_MANAGE, current),
        access.can(current_user, access.Action.BACKUP_READ, current),
        access.can(current_user, access.Action.AUDIT_READ, current),
    )


def register(app: Flask) -> None:
    from app.web.htmx import is_htmx

    app.add_template_filter(human_bytes, "bytes")
    app.add_template_filter(log_html, "log_html")
    app.add_template_global(live_since, "live_since")
    # Callables, so a page that never asks costs no Redis or Docker round trip.
    app.add_template_global(containers.engine_status, "engine_status")
    app.add_template_global(_is_installation_admin, "is_installation_admin")
    app.add_template_global(_is_installation_owner, "is_installation_owner")
    app.add_template_global(team_menu, "team_menu")

    @app.context_processor
    def request_values() -> dict:
        return {"is_htmx": is_htmx()}
