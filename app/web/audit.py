"""The current team's audit log: filter, page back in time, export as CSV. Admins and
owners only (``access.Action.AUDIT_READ``). The export is a POST of the page's filters:
it is itself audited, and GETs change nothing.

The CSV is streamed: rows are read in keyset batches of ``app.audit.EXPORT_BATCH`` and
written out batch by batch, so an export of a million rows needs the memory of one batch. A
cell that a spreadsheet would read as a formula (``= + - @``, tab, CR first) gets a
leading ``'``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

from flask import Blueprint, Response, current_app, render_template, request, url_for
from sqlalchemy import select

from app import access, audit
from app.extensions import db
from app.forms import AuditFilterForm
from app.models import Membership, Team, User
from app.models.base import Base

bp = Blueprint("audit", __name__)

CSV_COLUMNS = ("id", "time_utc", "user_id", "user_email", "user_name", "action",
               "object_type", "object_id", "address", "details")  # fmt: skip
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _members(team: Team) -> list[tuple[int, str, str]]:
    return list(
        db.session.execute(
            select(User.id, User.name, User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.team_id == team.id)
            .order_by(User.name, User.email)
        ).tuples()
    )


def _object_types() -> list[str]:
    # What ``audit.record`` stores as target_type: the lower-cased model class name.
    return sorted({mapper.class_.__name__.lower() for mapper in Base.registry.mappers})


def _action_choices() -> list[tuple[str, str]]:
    values = sorted(action.value for action in audit.Action)
    families = sorted({v.split(".")[0] for v in values if "." in v})
    return (
        [("", "Any action")]
        + [(f"{family}.", f"{family}.* (all)") for family in families]
        + [(v, v) for v in values]
    )


def _form(team: Team, formdata) -> AuditFilterForm:
    form = AuditFilterForm(formdata=formdata)
    form.member.choices = [("", "Anyone")] + [
        (str(uid), f"{name} <{email}>" if name else email) for uid, name, email in _members(team)
    ]
    form.action.choices = _action_choices()
    form.object_type.choices = [("", "Any object")] + [(t, t) for t in _object_types()]
    return form


def _filters(form: AuditFilterForm) -> audit.Filters:
    def at(day, extra_days=0):
        if day is None:
            return None
        return datetime.combine(day, time.min, tzinfo=UTC) + timedelta(days=extra_days)

    return audit.Filters(
        user_id=int(form.member.data) if form.member.data else None,
        action=form.action.data or None,
        target_type=form.object_type.data or None,
        target_id=form.object_id.data if form.object_type.data else None,
        since=at(form.since.data),
        until=at(form.until.data, 1),  # "to" is inclusive: up to the end of that day
    )


def _args_without_before(values) -> dict[str, str]:
    return {k: v for k, v in values.items() if k not in ("before", "csrf_token") and v != ""}


@bp.get("/team/audit")
def index():
    team = access.in_current_team(access.Action.AUDIT_READ)
    form = _form(team, request.args)
    if not form.validate():
        return _refused(team, form)
    rows, older = audit.query(team.id, _filters(form), before_id=form.before.data)
    args = _args_without_before(request.args)
    return render_template(
        "audit/index.html", team=team, form=form, rows=rows, export_args=args,
        older_url=url_for("audit.index", **args, before=older) if older else None,
        newest_url=url_for("audit.index", **args) if form.before.data else None,
    )  # fmt: skip


def _refused(team: Team, form: AuditFilterForm):
    return render_template("audit/index.html", team=team, form=form, rows=[],
                           export_args=None), 422  # fmt: skip


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _visible_details(row: audit.Row) -> str:
    shown = row.shown_details()
    return json.dumps(shown, sort_keys=True, default=str) if shown else ""


def _csv_lines(flask_app, team_id: int, filters: audit.Filters) -> Iterator[str]:
    """The CSV, one chunk per batch. Each batch is read in an app context of its own,
    entered and left within one step of the generator: nothing (no request context, no
    session, no connection) stays open while the client reads, and a client that stops
    reading leaves nothing pushed (``stream_with_context`` would keep the request's
    context pushed across the yields, popped whenever the response is closed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    before_id = None
    while True:
        with flask_app.app_context():
            rows, before_id = audit.query(
                team_id, filters, before_id=before_id, limit=audit.EXPORT_BATCH
            )
        buffer.seek(0)
        buffer.truncate()
        for row in rows:
            when = row.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            values = (row.id, when, row.user_id, row.user_email, row.user_name, row.action,
                      row.target_type, row.target_id, row.ip, _visible_details(row))  # fmt: skip
            writer.writerow([_cell(v) for v in values])
        if rows:
            yield buffer.getvalue()
        if before_id is None:
            return


@bp.post("/team/audit.csv")
def export():
    # A POST (with the page's filters as hidden fields and the CSRF token): the export
    # writes its own audit event, and GETs change nothing.
    team = access.in_current_team(access.Action.AUDIT_READ)
    form = _form(team, request.form)
    form.before.data = None  # an export is everything that matches
    if not form.validate():
        return _refused(team, form)
    filters = _filters(form)
    audit.record(audit.Action.AUDIT_EXPORTED, team_id=team.id, target=team,
                 filters=filters.as_details())  # fmt: skip
    db.session.commit()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        _csv_lines(current_app._get_current_object(), team.id, filters),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="audit-{team.id}-{stamp}.csv"'},
    )
