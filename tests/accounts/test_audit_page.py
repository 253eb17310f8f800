"""The team's audit log page, its CSV export and the retention job (issue 14, item 8)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import delete, func, insert, select, text

from app import audit
from app.extensions import db
from app.models import AuditEvent, Membership, ProjectMembership, Role, Team
from tests.conftest import csrf_token
from tests.factories import make_project, make_team, make_user, team_of

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _event(team_id, user_id, action="app.created", when=T0, target=("application", 1), **details):
    db.session.execute(
        insert(AuditEvent),
        [{"team_id": team_id, "user_id": user_id, "action": action, "target_type": target[0],
          "target_id": target[1], "ip": "192.0.2.7", "details": details, "created_at": when}],
    )  # fmt: skip


def _export(client, query: str = ""):
    """The page's "Export CSV" form: its filters posted with the CSRF token."""
    data = dict(parse_qsl(query)) | {"csrf_token": csrf_token(client, "/")}
    return client.post("/team/audit.csv", data=data)


def _ids(body: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="event-(\d+)">', body)]


def _all_ids(team_id, **where) -> list[int]:
    query = select(AuditEvent.id).where(AuditEvent.team_id == team_id)
    for key, value in where.items():
        query = query.where(getattr(AuditEvent, key) == value)
    return list(db.session.scalars(query.order_by(AuditEvent.id.desc())))


@pytest.fixture
def world(app, auth):
    """An admin's team with two developers and a mixed trail, and another team's trail."""
    admin = make_user(role=Role.admin)
    team = team_of(admin)
    ann = make_user(team=team, role=Role.developer, email="ann@example.com")
    bob = make_user(team=team, role=Role.developer, email="bob@example.com")
    other = make_user()
    other_team = team_of(other)
    for day in range(10):
        when = T0 + timedelta(days=day)
        _event(team.id, ann.id, "app.created", when, ("application", 7))
        _event(team.id, bob.id, "member.role_changed", when, ("membership", 3), role="admin")
        _event(team.id, bob.id, "member.removed", when, ("membership", 4))
        _event(other_team.id, other.id, "app.created", when, ("application", 7))
    db.session.commit()
    assert auth.login(admin).status_code == 303
    # The admin's own sign-in is on the team's log too: keep the trail to the rows above.
    db.session.execute(delete(AuditEvent).where(AuditEvent.action == "login.succeeded"))
    db.session.commit()

    class World:
        pass

    w = World()
    w.admin, w.team, w.ann, w.bob, w.other, w.other_team = admin, team, ann, bob, other, other_team
    return w


def test_member_filter_returns_exactly_that_members_events(client, world):
    body = client.get(f"/team/audit?member={world.ann.id}").get_data(as_text=True)
    assert _ids(body) == _all_ids(world.team.id, user_id=world.ann.id)
    assert len(_ids(body)) == 10


def test_action_filter_exact_and_by_family(client, world):
    exact = client.get("/team/audit?action=member.removed").get_data(as_text=True)
    assert _ids(exact) == _all_ids(world.team.id, action="member.removed")
    family = client.get("/team/audit?action=member.").get_data(as_text=True)
    expected = [
        i for i in _all_ids(world.team.id) if i not in _all_ids(world.team.id, action="app.created")
    ]
    assert _ids(family) == expected and len(expected) == 20


def test_object_filter_by_type_and_id(client, world):
    by_type = client.get("/team/audit?object_type=membership").get_data(as_text=True)
    assert len(_ids(by_type)) == 20
    by_id = client.get("/team/audit?object_type=membership&object_id=4").get_data(as_text=True)
    assert _ids(by_id) == _all_ids(world.team.id, action="member.removed")


def test_time_range_is_inclusive_by_day_in_utc(client, world):
    body = client.get("/team/audit?since=2026-03-12&until=2026-03-13").get_data(as_text=True)
    ids = _ids(body)
    rows = db.session.execute(select(AuditEvent.created_at).where(AuditEvent.id.in_(ids))).all()
    assert len(ids) == 6
    assert {r.created_at.date().isoformat() for r in rows} == {"2026-03-12", "2026-03-13"}


def test_filters_combine(client, world):
    body = client.get(
        f"/team/audit?member={world.bob.id}&action=member.role_changed&since=2026-03-19"
    ).get_data(as_text=True)
    assert len(_ids(body)) == 1


def test_pages_walk_back_without_duplicates_or_gaps(client, world):
    for n in range(95):
        _event(world.team.id, world.ann.id, "deploy.started", T0 + timedelta(days=20, minutes=n))
    db.session.commit()
    seen, url, pages = [], "/team/audit", 0
    while url:
        body = client.get(url).get_data(as_text=True)
        page = _ids(body)
        assert 0 < len(page) <= audit.PAGE_SIZE
        seen += page
        pages += 1
        older = re.search(r'<a href="([^"]+)" rel="next">Older</a>', body)
        url = older.group(1).replace("&amp;", "&") if older else None
    assert seen == _all_ids(world.team.id)  # newest first, each once, none missing
    assert pages == 3 and len(seen) == 125


def test_pages_keep_the_filter(client, world):
    for n in range(60):
        _event(world.team.id, world.ann.id, "app.created", T0 + timedelta(days=30, minutes=n))
    db.session.commit()
    first = client.get(f"/team/audit?member={world.ann.id}").get_data(as_text=True)
    older = re.search(r'<a href="([^"]+)" rel="next">Older</a>', first).group(1)
    second = client.get(older.replace("&amp;", "&")).get_data(as_text=True)
    assert _ids(first) + _ids(second) == _all_ids(world.team.id, user_id=world.ann.id)


def test_another_teams_events_never_appear(client, world):
    mine = set(_all_ids(world.team.id))
    theirs = set(_all_ids(world.other_team.id))
    body = client.get("/team/audit?action=app.created").get_data(as_text=True)
    assert set(_ids(body)) <= mine and not set(_ids(body)) & theirs
    # Naming the other team's member as a filter is not a choice here: refused.
    assert client.get(f"/team/audit?member={world.other.id}").status_code == 422
    exported = _export(client).get_data(as_text=True)
    ids = {int(row["id"]) for row in csv.DictReader(io.StringIO(exported))}
    assert ids <= mine | set(_all_ids(world.team.id)) and not ids & theirs


def test_the_page_shows_who_what_object_address(client, world):
    body = client.get(f"/team/audit?member={world.bob.id}").get_data(as_text=True)
    assert "bob@example.com" in body and "member.role_changed" in body
    assert "membership #3" in body and "192.0.2.7" in body and "role=admin" in body
    assert f'<option value="{world.bob.id}" selected>' in body  # the filter stays chosen
    refused = client.get("/team/audit?action=member.&since=nope").get_data(as_text=True)
    assert '<option value="member." selected>' in refused and 'value="nope"' in refused


def test_secret_looking_details_are_never_shown(client, world):
    _event(world.team.id, world.ann.id, "env.set", T0, ("application", 7), key="API_URL",
           token="canary-token-value", secret_value="canary-secret-value")  # fmt: skip
    db.session.commit()
    page = client.get("/team/audit?action=env.set").get_data(as_text=True)
    exported = _export(client, "action=env.set").get_data(as_text=True)
    for body in (page, exported):
        assert "API_URL" in body and "canary" not in body


@pytest.mark.parametrize(
    "query, message",
    [
        ("since=2026-13-45", "Not a valid date value"),
        ("until=yesterday", "Not a valid date value"),
        ("since=2026-03-12&until=2026-03-11", "The end date is before the start date."),
        ("object_id=4", "Choose the object&#39;s type too."),
        ("object_type=membership&object_id=x", "Not a valid integer value"),
        ("action=no.such.action", "Not a valid choice"),
        ("object_type=no_such_model", "Not a valid choice"),
        ("member=999999", "Not a valid choice"),
        ("before=-3", "Number must be between"),
    ],
)
def test_bad_filter_input_is_422_with_the_message(client, world, query, message):
    for response in (client.get(f"/team/audit?{query}"), _export(client, query)):
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    assert _all_ids(world.team.id, action="audit.exported") == []  # refused: nothing exported


def test_csv_export_has_header_rows_and_is_audited(client, world):
    response = _export(client, f"member={world.bob.id}&action=member.")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == (
        "id", "time_utc", "user_id", "user_email", "user_name", "action", "object_type",
        "object_id", "address", "details",
    )  # fmt: skip
    assert [int(r[0]) for r in rows[1:]] == _all_ids(world.team.id, user_id=world.bob.id)
    assert rows[1][3] == "bob@example.com" and rows[1][8] == "192.0.2.7"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[1][1])
    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.exported"))
    assert event.team_id == world.team.id and event.user_id == world.admin.id
    assert event.details == {"filters": {"user_id": world.bob.id, "action": "member."}}


def test_csv_export_covers_more_than_one_batch(client, world, monkeypatch):
    monkeypatch.setattr(audit, "EXPORT_BATCH", 7)
    rows = list(csv.DictReader(io.StringIO(_export(client).get_data(as_text=True))))
    # The export's own event is committed before the rows are read: it is the first.
    assert [int(r["id"]) for r in rows] == _all_ids(world.team.id)
    assert rows[0]["action"] == "audit.exported" and len(rows) == 31


def test_csv_neutralises_formula_cells(client, world):
    world.ann.name = '=HYPERLINK("http://evil.example","x")'
    db.session.commit()
    for first in ("+1", "-2", "@SUM(A1)", "\tcmd", "\rcmd"):
        db.session.execute(
            insert(AuditEvent),
            [{"team_id": world.team.id, "user_id": world.ann.id, "action": "app.created",
              "target_type": first, "target_id": None, "ip": None, "details": {}}],
        )  # fmt: skip
    db.session.commit()
    exported = _export(client, f"member={world.ann.id}").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {r["user_name"] for r in rows} == {'\'=HYPERLINK("http://evil.example","x")'}
    types = {r["object_type"] for r in rows}
    assert {"'+1", "'-2", "'@SUM(A1)", "'\tcmd", "'\rcmd"} <= types
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize("role", [Role.viewer, Role.developer])
def test_viewers_and_developers_may_not_read_the_log(app, client, auth, role):
    member = make_user(role=role)
    _event(team_of(member).id, member.id)
    db.session.commit()
    auth.login(member)
    assert client.get("/team/audit").status_code == 403
    assert _export(client).status_code == 403
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "audit.exported")) == 0  # fmt: skip


def test_a_project_limited_admin_may_not_read_the_log(app, client, auth):
    admin = make_user(role=Role.admin)
    team = team_of(admin)
    project = make_project(team)
    membership = db.session.scalar(select(Membership).where(Membership.user_id == admin.id))
    membership.all_projects = False
    db.session.add(ProjectMembership(membership_id=membership.id, project_id=project.id,
                                     role=Role.admin.value))  # fmt: skip
    db.session.commit()
    auth.login(admin)
    assert client.get("/team/audit").status_code == 403


def test_owner_and_admin_may_read_the_log(app, client, auth):
    owner = make_user(role=Role.owner)
    _event(team_of(owner).id, owner.id)
    db.session.commit()
    auth.login(owner)
    assert client.get("/team/audit").status_code == 200
    assert _export(client).status_code == 200
    page = client.get("/team/audit?action=app.created").get_data(as_text=True)
    assert 'action="/team/audit.csv"' in page and 'value="app.created"' in page


def test_anonymous_is_sent_to_login(app, client):
    make_user()
    response = client.post("/team/audit.csv")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# ---- the query and its indexes -------------------------------------------------------


def test_the_member_filter_uses_its_index(app):
    owner = make_user()
    team = team_of(owner)
    users = [make_user(team=team, role=Role.developer) for _ in range(20)]
    db.session.execute(
        insert(AuditEvent),
        [{"team_id": team.id, "user_id": users[n % 20].id, "action": "app.created",
          "details": {}} for n in range(4000)],
    )  # fmt: skip
    db.session.commit()
    statement = audit._statement(team.id, audit.Filters(user_id=users[3].id), None, 51)
    compiled = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE audit_events"))
            plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
        else:
            conn.execute(text("ANALYZE"))
            found = conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
            plan = "\n".join(str(r[-1]) for r in found)
        assert "ix_audit_events_team_user" in plan, plan
        assert "TEMP B-TREE" not in plan.upper() and "Sort" not in plan  # no sort: index order


def test_query_joins_the_actor_in_one_statement(app):
    owner = make_user()
    team_id, email = team_of(owner).id, owner.email
    for _ in range(5):
        audit.record(audit.Action.APP_CREATED, team_id=team_id, user_id=owner.id)
    db.session.commit()
    statements = []
    from sqlalchemy import event

    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        rows, older = audit.query(team_id)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert len(statements) == 1 and older is None
    assert {r.user_email for r in rows} == {email} and len(rows) == 5


# ---- retention -----------------------------------------------------------------------


def test_retention_deletes_only_old_rows_of_each_team(app):
    now = datetime(2026, 12, 1, tzinfo=UTC)
    short, long_ = make_team(), make_team()
    short.audit_retention_days = 30
    long_.audit_retention_days = 400
    db.session.commit()
    for team in (short, long_, None):
        for age in (10, 31, 200, 366, 401):
            _event(team.id if team else None, None, "app.created", now - timedelta(days=age),
                   age=age)  # fmt: skip
    db.session.commit()
    app.config["AUDIT_RETENTION_DAYS"] = 365
    counts = audit.apply_retention(now=now, batch=2)  # small batches: several statements

    def ages(team):
        owner = AuditEvent.team_id.is_(None) if team is None else AuditEvent.team_id == team.id
        return sorted(e.details["age"] for e in db.session.scalars(select(AuditEvent).where(owner)))

    assert ages(short) == [10]
    assert ages(long_) == [10, 31, 200, 366]
    assert ages(None) == [10, 31, 200]
    assert counts["deleted"] == 4 + 1 + 2 and counts["teamless"] == 2


def test_retention_job_logs_one_line_with_counts(app, caplog, monkeypatch):
    from app import jobs

    team = make_team()
    _event(team.id, None, "app.created", datetime.now(UTC) - timedelta(days=800))
    _event(team.id, None, "app.created", datetime.now(UTC))
    db.session.commit()
    monkeypatch.setattr(jobs, "_app", app)  # what jobs.bind does in the worker
    with caplog.at_level("INFO", logger="slipway.jobs"):
        counts = jobs.apply_audit_retention()
    assert counts["deleted"] == 1
    lines = [r.getMessage() for r in caplog.records if "audit retention" in r.getMessage()]
    assert len(lines) == 1 and "1 rows deleted" in lines[0]
    assert db.session.scalar(select(func.count(AuditEvent.id))) == 1


def test_retention_is_scheduled_daily(app):
    from app import jobs, scheduler
    from app.extensions import queue

    first = scheduler.enqueue_once(jobs.apply_audit_retention, 86400)
    assert first and scheduler.enqueue_once(jobs.apply_audit_retention, 86400) is None
    assert queue("default").count == 1
    assert "audit-retention" in {job.id for job in scheduler.build(app).get_jobs()}


def test_a_teams_retention_setting_default_is_365(app):
    assert db.session.get(Team, make_team().id).audit_retention_days == 365
    assert app.config["AUDIT_RETENTION_DAYS"] == 365


def test_members_sign_ins_and_failed_logins_are_on_their_teams_log(client, auth):
    owner = make_user(role=Role.owner)
    team = team_of(owner)
    member = make_user(team, Role.developer)
    auth.login(member.email, "not the password")
    auth.login(member)
    auth.logout()
    rows = db.session.execute(
        select(AuditEvent.action, AuditEvent.team_id).where(AuditEvent.user_id == member.id)
    ).all()
    assert ("login.succeeded", team.id) in rows and ("logout", team.id) in rows
    failed = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "login.failed"))
    assert (failed.team_id, failed.target_id) == (team.id, member.id)
    rows, _older = audit.query(team.id, audit.Filters(action="login.failed"))
    assert [row.id for row in rows] == [failed.id]
    # An unknown address belongs to no team.
    auth.login("nobody@example.com", "whatever")
    unknown = db.session.scalars(
        select(AuditEvent.team_id).where(AuditEvent.action == "login.failed")
    ).all()
    assert None in unknown
