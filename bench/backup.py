"""Backup benchmark (issue 6): Slipway's backup against the raw pipeline, on >= 1 GB.

    .venv/bin/python bench/backup.py

Real services on loopback: PostgreSQL 127.0.0.1:5432 (role slipway), where the
source database ``slipway_bk_bench`` is generated once (a table of random hex
text rows, built server-side with generate_series + md5(random()), so that
pg_dump's compression cannot make it trivially small) and kept for later runs
(``--drop`` drops it at the end); ``moto_server`` (S3) started by the bench on a
free port; Slipway's own state in a temporary SQLite file; Redis DB 14 on
127.0.0.1:6379 (``--redis-url``; only the heartbeat key is written there).

Rounds alternate (``--rounds``, 2 by default):
- raw: ``pg_dump -Fc`` piped into boto3 ``upload_fileobj`` (default TransferConfig)
  to the same S3 server;
- raw with Slipway's S3 client (``storage.client``: checksums only where required,
  as many S3-compatible services need) into ``upload_fileobj``: the same pipeline
  with the same S3 options, so the ratio to it is Slipway's own overhead;
- Slipway: ``app.backups.runs.run`` in a child process (as in the worker): pg_dump
  through a SHA-256 into the local file and the multipart upload, verification,
  row counts. The child's resident memory (VmRSS, /proc, every 20 ms) is sampled.
Then a restore drill of the last Slipway backup (``app.restores``) restores it into
a scratch database, compares row counts, and drops it.

Progress goes to stderr; the last stdout line is one JSON object with
``throughput_ratio`` (best Slipway MB/s ÷ best raw MB/s, dump bytes over wall
time; Slipway's time is that of the ``runs.run`` call), the per-round ratios
and their median, the same against the raw pipeline with Slipway's S3 client
(``throughput_ratio_same_s3_client``), ``worker_peak_rss_mb`` and
``restore_verified``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = "postgresql://slipway:slipway@127.0.0.1:5432"
SOURCE = "slipway_bk_bench"
KEY = "k1:" + "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_source(min_bytes: int) -> int:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (SOURCE,)).fetchone():
            conn.execute(f"CREATE DATABASE {SOURCE}")
    with psycopg.connect(f"{PG}/{SOURCE}", autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS rows (id bigserial PRIMARY KEY, body text)")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (k text PRIMARY KEY, v text)")
        conn.execute(
            "INSERT INTO meta VALUES ('made by', 'bench/backup.py') ON CONFLICT DO NOTHING"
        )
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        while size < min_bytes:
            say(f"generating: {size / 1e6:.0f} MB of {min_bytes / 1e6:.0f} MB")
            # ~1 KB rows (31 random md5s): below TOAST's threshold, stored as is.
            conn.execute(
                "INSERT INTO rows (body) SELECT array_to_string(ARRAY(SELECT md5(random()::text"
                " || g) FROM generate_series(1, 31)), '') FROM generate_series(1, 200000) g"
            )
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        conn.execute("VACUUM ANALYZE rows")
    return size


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    import requests

    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=5)
            return proc, url
        except requests.RequestException:  # not listening yet, or slow on a loaded machine
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("moto_server did not start")


def raw_round(s3_url: str, bucket: str, key: str, s3=None) -> tuple[float, int]:
    """pg_dump -Fc | boto3 upload_fileobj; returns (seconds, bytes).

    ``s3``: the client to upload with; by default a plain boto3 client, whose
    TransferManager asks for CRC32 checksums. Slipway's client (``storage.client``)
    computes checksums only where S3 requires them (many S3-compatible services
    refuse the newer ones) and sends Content-MD5 instead. Passing Slipway's client
    gives the raw pipeline the same S3 options, so the only difference left is
    Slipway's own pipeline.
    """
    import boto3
    from botocore.config import Config

    if s3 is None:
        s3 = boto3.client("s3", endpoint_url=s3_url, aws_access_key_id="bench",
                          aws_secret_access_key="bench", region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))  # fmt: skip
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGUSER": "slipway", "PGPASSWORD": "slipway",
           "PGDATABASE": SOURCE}  # fmt: skip
    began = time.monotonic()
    proc = subprocess.Popen(["pg_dump", "-Fc", "--no-password"], stdout=subprocess.PIPE, env=env)
    s3.upload_fileobj(proc.stdout, bucket, key)
    if proc.wait() != 0:
        raise RuntimeError("raw pg_dump failed")
    seconds = time.monotonic() - began
    size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    return seconds, size


def child_env(data_dir: Path, redis_url: str) -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")},
            "SLIPWAY_DATABASE_URL": f"sqlite:///{data_dir}/slipway.db",
            "SLIPWAY_DATA_DIR": str(data_dir), "SLIPWAY_REDIS_URL": redis_url,
            "SLIPWAY_SECRET_KEY": "bench", "SLIPWAY_ENCRYPTION_KEYS": KEY,
            "SLIPWAY_BACKUP_ALLOWED_HOSTS": "127.0.0.1"}  # fmt: skip


def rss_sampler(pid: int, peak: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak[0] = max(peak[0], int(line.split()[1]))
        except OSError:
            return
        stop.wait(0.02)


def slipway_round(env: dict, backup_id: int) -> tuple[float, int, float]:
    """Run app.backups.runs.run in a child; returns (seconds, bytes, peak RSS MB).

    The seconds are those of the ``runs.run`` call, timed in the child: the
    worker forks its work horse from a preloaded app, so a fresh interpreter's
    start-up and ``create_app`` are not part of a real backup.
    """
    proc = subprocess.Popen([sys.executable, __file__, "--child-backup", str(backup_id)],
                            env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=rss_sampler, args=(proc.pid, peak, stop), daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    result = json.loads(out.strip().splitlines()[-1])
    if result["status"] != "succeeded":
        raise RuntimeError(f"Slipway backup failed: {result}")
    return result["seconds"], result["size"], peak[0] / 1024


def child_backup(backup_id: int) -> None:
    from app import create_app
    from app.backups import runs
    from app.extensions import db
    from app.models import Backup

    app = create_app()
    with app.app_context():
        began = time.monotonic()
        status = runs.run(backup_id)
        seconds = time.monotonic() - began
        size = db.session.get(Backup, backup_id).size_bytes
    print(json.dumps({"status": status, "size": size, "seconds": seconds}))


def setup_state(env: dict, s3_url: str, bucket: str) -> None:
    os.environ.update(env)
    from flask_migrate import upgrade

    from app import create_app, crypto
    from app.backups import runs
    from app.extensions import db
    from app.models import BackupDestination, BackupPolicy, Team

    app = create_app()
    with app.app_context():
        upgrade()
        team = Team(name="bench")
        db.session.add(team)
        db.session.flush()
        dest = BackupDestination(
            team_id=team.id, name="moto", endpoint_url=s3_url, region="us-east-1",
            bucket=bucket, prefix="slipway", access_key_id="bench", path_style=True,
            secret_access_key=crypto.encrypt("bench", context=runs.S3_SECRET),
        )  # fmt: skip
        db.session.add(dest)
        db.session.flush()
        db.session.add(BackupPolicy(
            team_id=team.id, name="bench", target_type="postgres", destination_id=dest.id,
            database_url=f"postgresql://slipway@127.0.0.1:5432/{SOURCE}",
            database_password=crypto.encrypt("slipway", context=runs.DB_PASSWORD),
        ))  # fmt: skip
        db.session.commit()
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child-backup", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--min-gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--drop", action="store_true", help="drop the source database at the end")
    args = parser.parse_args()
    if args.child_backup:
        child_backup(args.child_backup)
        return

    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-backup-"))
    moto = None
    try:
        db_bytes = ensure_source(int(args.min_gb * 1e9))
        say(f"source database {SOURCE}: {db_bytes / 1e9:.2f} GB")
        moto, s3_url = start_moto(tmp / "moto.log")
        env = child_env(tmp, args.redis_url)
        app = setup_state(env, s3_url, "bench")
        from app.backups import storage
        from app.extensions import db
        from app.models import Backup, BackupPolicy, Restore

        with app.app_context():
            ours_client = storage.client(storage.S3Target(s3_url, "us-east-1", "bench", "",
                                                          "bench", "bench", True))  # fmt: skip
            ours_client.create_bucket(Bucket="bench")
            policy = db.session.query(BackupPolicy).one()
        raw, raw_same, ours, rss = [], [], [], []
        for n in range(args.rounds):
            seconds, size = raw_round(s3_url, "bench", f"raw/{n}.dump")
            raw.append((seconds, size))
            say(f"raw round {n + 1}: {size / 1e6:.0f} MB in {seconds:.1f} s "
                f"({size / 1e6 / seconds:.1f} MB/s)")  # fmt: skip
            seconds, size = raw_round(s3_url, "bench", f"raw-same/{n}.dump", ours_client)
            raw_same.append((seconds, size))
            say(f"raw round {n + 1} with Slipway's S3 client: {size / 1e6:.0f} MB in "
                f"{seconds:.1f} s ({size / 1e6 / seconds:.1f} MB/s)")  # fmt: skip
            with app.app_context():
                backup = Backup(team_id=policy.team_id, policy_id=policy.id, trigger="manual")
                db.session.add(backup)
                db.session.commit()
                backup_id = backup.id
            seconds, size, peak = slipway_round(env, backup_id)
            ours.append((seconds, size))
            rss.append(peak)
            say(f"Slipway round {n + 1}: {size / 1e6:.0f} MB in {seconds:.1f} s "
                f"({size / 1e6 / seconds:.1f} MB/s), peak RSS {peak:.0f} MB")  # fmt: skip
        from app.backups import restores

        with app.app_context():
            drill = Restore(team_id=policy.team_id, backup_id=backup_id, kind="drill")
            db.session.add(drill)
            db.session.commit()
            began = time.monotonic()
            restores.run(drill.id)
            db.session.refresh(drill)
            drill_seconds = time.monotonic() - began
            say(f"drill: {drill.status} in {drill_seconds:.1f} s: {drill.comparison} {drill.error}")
            verified = drill.status == "succeeded" and bool(drill.comparison.get("matches"))
        best_raw = max(size / s for s, size in raw)
        best_raw_same = max(size / s for s, size in raw_same)
        best_ours = max(size / s for s, size in ours)
        pairs = [s_raw / s_ours for (s_raw, _), (s_ours, _) in zip(raw, ours, strict=True)]
        pairs_same = [a / b for (a, _), (b, _) in zip(raw_same, ours, strict=True)]
        print(
            json.dumps(
                {
                    "throughput_ratio": round(best_ours / best_raw, 3),
                    "round_ratios": [round(r, 3) for r in pairs],
                    "median_round_ratio": round(statistics.median(pairs), 3),
                    "throughput_ratio_same_s3_client": round(best_ours / best_raw_same, 3),
                    "round_ratios_same_s3_client": [round(r, 3) for r in pairs_same],
                    "worker_peak_rss_mb": round(max(rss), 1),
                    "restore_verified": verified,
                    "raw_mb_per_s": [round(size / 1e6 / s, 1) for s, size in raw],
                    "raw_same_s3_client_mb_per_s": [
                        round(size / 1e6 / s, 1) for s, size in raw_same
                    ],  # fmt: skip
                    "slipway_mb_per_s": [round(size / 1e6 / s, 1) for s, size in ours],
                    "dump_mb": round(ours[-1][1] / 1e6, 1),
                    "source_db_gb": round(db_bytes / 1e9, 2),
                    "drill_seconds": round(drill_seconds, 1),
                    "rounds": args.rounds,
                    "loadavg_1m": os.getloadavg()[0],
                }
            )
        )
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        if args.drop:
            import psycopg

            with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {SOURCE} WITH (FORCE)")


if __name__ == "__main__":
    main()
