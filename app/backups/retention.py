"""Retention, run only after a successful backup.

Local copies older than ``keep_local_days`` are deleted; in S3 the newest
backup of each of the last ``keep_daily`` days and of each of the last
``keep_weekly`` ISO weeks stays. The newest good backup is never deleted,
whatever the settings say.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from app import crypto
from app.backups import storage, targets
from app.extensions import db
from app.models import Backup, BackupPolicy, BackupStatus
from app.models.base import utcnow

log = logging.getLogger("slipway.retention")


def _day(b: Backup) -> str:
    return (b.started_at or b.created_at).strftime("%Y-%m-%d")


def _week(b: Backup) -> str:
    year, week, _ = (b.started_at or b.created_at).isocalendar()
    return f"{year}-W{week:02d}"


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

    The newest good backup is never deleted, whatever the settings say. Each
    removal is committed as soon as it is done, so a failure half-way (S3 down,
    a file that cannot be removed) leaves every row telling the truth about
    where its copies are. S3 deletes stop at the first failure; the rest wait
    for the next successful run.
    """
    good = list(db.session.scalars(
        select(Backup)
        .where(Backup.policy_id == policy.id, Backup.status == BackupStatus.succeeded.value)
        .order_by(Backup.id.desc())
    ))  # fmt: skip
    if not good:
        return
    newest = good[0].id
    cutoff = utcnow() - timedelta(days=policy.keep_local_days)
    every = list(db.session.scalars(
        select(Backup).where(Backup.policy_id == policy.id, Backup.local_path.is_not(None))
    ))  # fmt: skip
    for b in every:
        if b.id != newest and (b.started_at or b.created_at) < cutoff:
            # File, then row: only a crash between the two lines leaves a row naming a
            # gone file, and every reader checks that the file exists.
            Path(b.local_path).unlink(missing_ok=True)
            b.local_path = None
            db.session.commit()
    keep = to_keep_in_s3(good, policy.keep_daily, policy.keep_weekly)
    doomed = [b for b in good if b.uploaded and b.id not in keep]
    if not doomed:
        return
    cfg = current_app.config
    try:
        target = targets.s3_target(policy.destination)
        for b in doomed:
            storage.delete(target, b.object_key, retries=cfg["S3_RETRIES"],
                           base_delay=cfg["S3_RETRY_BASE_SECONDS"])  # fmt: skip
            b.uploaded = False
            db.session.commit()
    except (storage.StorageError, crypto.SecretError) as exc:
        log.warning("retention of policy %s stopped, S3 copies kept for now: %s", policy.id, exc)
