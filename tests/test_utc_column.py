"""Timestamps come back aware and in UTC from PostgreSQL and SQLite alike."""

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import select

from app.extensions import db
from app.models import Deployment, Team
from app.models.base import UTCDateTime
from tests.factories import make_app, make_project, make_team


def test_a_timestamp_reads_back_aware_utc(app):
    team = make_team()
    db.session.commit()
    team_id, written = team.id, team.created_at
    db.session.expire_all()
    read = db.session.scalar(select(Team.created_at).where(Team.id == team_id))
    assert read.tzinfo is not None and read.utcoffset() == timedelta(0)
    assert read == written


def test_another_zone_is_stored_as_the_same_instant(app):
    """10:00 at +02:00 is 08:00 UTC, and compares as such in a query."""
    project = make_project(make_team())
    deployment = Deployment(application_id=make_app(project).id, status="queued")
    deployment.started_at = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    db.session.add(deployment)
    db.session.commit()
    db.session.expire_all()
    read = db.session.get(Deployment, deployment.id).started_at
    assert read == datetime(2026, 11, 24, 8, 0, tzinfo=UTC) and read.tzinfo is UTC
    later = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert db.session.scalar(
        select(Deployment.id).where(Deployment.started_at < later)
    ) == deployment.id  # fmt: skip


def test_the_type_reads_naive_values_as_utc():
    """SQLite hands back naive datetimes: they are UTC, and become aware."""
    utc = UTCDateTime()
    naive = datetime(2026, 11, 24, 8, 0)

    class SQLite:
        name = "sqlite"

    assert utc.process_result_value(naive, SQLite) == naive.replace(tzinfo=UTC)
    assert utc.process_result_value(None, SQLite) is None
    assert utc.process_bind_param(naive.replace(tzinfo=UTC), SQLite) == naive
