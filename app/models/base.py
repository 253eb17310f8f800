"""Declarative base: typed mappings and a naming convention Alembic can rely on."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer, "sqlite")

# Every table with an integer id declares ``{"sqlite_autoincrement": True}``: ids are in
# container, image, network and route names, labels, audit targets and logs, and without
# AUTOINCREMENT SQLite gives a deleted newest row's id to the next row (PostgreSQL's
# sequences never do). tests/test_ids.py holds every table to it; migration 0011.


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp that always comes back aware, in UTC, whatever the database.

    PostgreSQL stores ``timestamptz`` and returns aware values; SQLite stores text
    without a zone and returns naive ones. Values are written as UTC (a naive one
    is taken to be UTC already) and read back with ``tzinfo=UTC``, so no caller
    has to fix up naive datetimes. The DDL stays ``DateTime(timezone=True)``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        value = value.astimezone(UTC)
        # SQLite would store the offset in the text, and compare text: keep it naive UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
