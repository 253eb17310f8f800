"""Retention, run only after a successful backup.

Local copies older than ``keep_local_days`` are deleted; in S3 the newest
backup of each of the last ``keep_daily`` days and of each of the last
``keep_weekly`` ISO weeks stays. The newest good backup is never deleted,
whatever the settings say.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from app import backups, storage
from app.extensions import db
from app.models import Backup, BackupPolicy
from app.models.base import utcnow


def _day(b: Backup) -> str:
    return _aware(b.started_at or b.created_at).strftime("%Y-%m-%d")


def _week(b: Backup) -> str:
    year, week, _ = _aware(b.started_at or b.created_at).isocalendar()
    return f"{year}-W{week:02d}"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def to_keep_in_s3(good: list[Backup], daily: int, weekly: int) -> set[int]:
    """Ids to keep: newest per day (``daily`` days), per week (``weekly`` weeks), the newest."""
    keep: set[int] = {good[0].id} if good else set()
    for key, limit in ((_day, daily), (_week, weekly)):
        seen: list[str] = []
        for b in good:  # newest first
            period = key(b)
            if period in seen:
                continue
            if len(seen) >= limit:
                break
            seen.append(period)
            keep.add(b.id)
    return keep


def prune(policy: BackupPolicy) -> None:
    """Retention after a success: local files older than N days, S3 beyond daily/weekly.

    The newest good backup is never deleted, whatever the settings say.
    """
    good = list(db.session.scalars(
        select(Backup).where(Backup.policy_id == policy.id, Backup.status == "succeeded")
        .order_by(Backup.id.desc())
    ))  # fmt: skip
    if not good:
        return
    newest = good[0].id
    cutoff = utcnow() - timedelta(days=policy.keep_local_days)
    every = db.session.scalars(
        select(Backup).where(Backup.policy_id == policy.id, Backup.local_path.is_not(None))
    )
    for b in every:
        if b.id != newest and _aware(b.started_at or b.created_at) < cutoff:
            Path(b.local_path).unlink(missing_ok=True)
            b.local_path = None
    keep = to_keep_in_s3(good, policy.keep_daily, policy.keep_weekly)
    target = None
    for b in good:
        if b.uploaded and b.id not in keep:
            target = target or backups.s3_target(policy.destination)
            storage.delete(target, b.object_key)
            b.uploaded = False
    db.session.commit()
