"""Metric samples: host, per-app and per-database figures at 15 s, 1 min and 15 min
resolution."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, UTCDateTime


class MetricScope(enum.StrEnum):
    host = "host"
    app = "app"
    database = "database"


class MetricSample(Base):
    """One point of one series: the host, or one app (its replicas summed).

    ``ts`` is the sample time (raw rows) or the bucket start (downsampled rows);
    ``resolution`` is the seconds one row stands for. Network figures are the
    containers' cumulative byte counters (the last one in a bucket); rates are
    derived when a chart reads them.
    """

    __tablename__ = "metric_samples"
    __table_args__ = (
        # "app X (or the host) between t0 and t1 at resolution r"
        Index("ix_metric_samples_series", "scope", "application_id", "resolution", "ts"),
        # retention deletes by resolution and age
        Index("ix_metric_samples_resolution_ts", "resolution", "ts"),
        # "database X between t0 and t1 at resolution r"
        Index("ix_metric_samples_database", "database_id", "resolution", "ts"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope: Mapped[str] = mapped_column(String(10))
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE")
    )
    # A managed database's series (scope ``database``); a plain column: the rows of a
    # deleted database go with their retention.
    database_id: Mapped[int | None] = mapped_column(Integer)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    resolution: Mapped[int] = mapped_column(Integer)
    containers: Mapped[int] = mapped_column(Integer, default=0)
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    mem_bytes: Mapped[int | None] = mapped_column(BigInteger)
    mem_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)
    net_rx_bytes: Mapped[int | None] = mapped_column(BigInteger)
    net_tx_bytes: Mapped[int | None] = mapped_column(BigInteger)
