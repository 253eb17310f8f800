"""Redis backup benchmark (issue 16): Slipway's backup of a managed Redis against the
raw ``redis-cli --rdb -`` piped into an S3 upload, on the same data.

    .venv/bin/python bench/databases_backup.py [--gb 1.0] [--rounds 2]

A Redis container (``--image``, slipway-test/redis:7 by default) started as the
lifecycle starts one (password, ``--appendonly yes``, the ``slipway.database``
label), filled with ``--gb`` of random (incompressible) 1 KiB values through
``redis-cli --pipe``. ``moto_server`` on a free port; Slipway's state in a
temporary SQLite file; Redis DB 14 on 127.0.0.1:6379 for the heartbeat key.

Rounds alternate:
- raw: ``docker exec redis-cli --rdb -`` (the password from the environment)
  piped into boto3 ``upload_fileobj`` with Slipway's S3 client (the same S3
  options), the minimum any backup of it takes;
- Slipway: ``app.backups.runs.run`` in this process (as in the worker): the dump
  streamed out of the container through the exec API, SHA-256, local file,
  multipart upload, ETag check, key counts.

The last stdout line is one JSON object: ``redis_backup_ratio`` (best Slipway MB/s
÷ best raw MB/s), the sizes and seconds of each round.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backup import KEY, say, start_moto  # noqa: E402

VALUE = 1024


def fill(container: str, password: str, gb: float) -> int:
    """``gb`` of random values, as RESP commands into ``redis-cli --pipe``; returns keys."""
    keys = int(gb * 1e9 / VALUE)
    env = {**os.environ, "REDISCLI_AUTH": password}
    proc = subprocess.Popen(["docker", "exec", "-i", "-e", "REDISCLI_AUTH", container,
                             "redis-cli", "--no-auth-warning", "--pipe"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)  # fmt: skip
    batch = 2000
    for start in range(0, keys, batch):
        out = []
        for i in range(start, min(start + batch, keys)):
            key = f"k:{i}".encode()
            value = os.urandom(VALUE // 2).hex().encode()
            out.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                       % (len(key), key, len(value), value))  # fmt: skip
        proc.stdin.write(b"".join(out))
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("filling Redis failed")
    return keys


def raw_round(container: str, password: str, s3, bucket: str, key: str) -> tuple[float, int]:
    env = {**os.environ, "REDISCLI_AUTH": password}
    began = time.monotonic()
    proc = subprocess.Popen(["docker", "exec", "-e", "REDISCLI_AUTH", container, "redis-cli",
                             "--no-auth-warning", "--rdb", "-"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    s3.upload_fileobj(proc.stdout, bucket, key)
    if proc.wait() != 0:
        raise RuntimeError("raw redis-cli --rdb failed")
    seconds = time.monotonic() - began
    return seconds, s3.head_object(Bucket=bucket, Key=key)["ContentLength"]


def setup(tmp: Path, s3_url: str, redis_url: str):
    os.environ.update({"SLIPWAY_DATABASE_URL": f"sqlite:///{tmp}/slipway.db",
                       "SLIPWAY_DATA_DIR": str(tmp), "SLIPWAY_REDIS_URL": redis_url,
                       "SLIPWAY_SECRET_KEY": "bench", "SLIPWAY_ENCRYPTION_KEYS": KEY,
                       "SLIPWAY_BACKUP_ALLOWED_HOSTS": "127.0.0.1"})  # fmt: skip
    from flask_migrate import upgrade

    from app import create_app

    app = create_app()
    with app.app_context():
        upgrade()
    return app


def rows(app, s3_url: str, image: str, password: str):
    from app import crypto
    from app.backups import targets
    from app.databases import links
    from app.extensions import db
    from app.models import BackupDestination, BackupPolicy, Database, Project, Team

    team = Team(name="bench")
    db.session.add(team)
    db.session.flush()
    project = Project(team_id=team.id, name="bench")
    db.session.add(project)
    db.session.flush()
    database = Database(
        project_id=project.id,
        name="cache",
        engine="redis",
        version="7",
        image=image,
        username="default",
        database_name="0",
        status="running",
        password=crypto.encrypt(password, context=links.PASSWORD_CONTEXT),
    )
    dest = BackupDestination(
        team_id=team.id,
        name="moto",
        endpoint_url=s3_url,
        region="us-east-1",
        bucket="bench",
        prefix="slipway",
        access_key_id="bench",
        path_style=True,
        secret_access_key=crypto.encrypt("bench", context=targets.S3_SECRET),
    )
    db.session.add_all([database, dest])
    db.session.flush()
    policy = BackupPolicy(team_id=team.id, name="bench", target_type="database",
                          database_id=database.id, destination_id=dest.id)  # fmt: skip
    db.session.add(policy)
    db.session.commit()
    return database, policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--image", default="slipway-test/redis:7")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-redis-"))
    password = secrets.token_urlsafe(18)
    name = f"slipway-bench-redis-{secrets.token_hex(3)}"
    moto = None
    try:
        moto, s3_url = start_moto(tmp / "moto.log")
        app = setup(tmp, s3_url, args.redis_url)
        from app.backups import runs, storage
        from app.extensions import db
        from app.models import Backup

        with app.app_context():
            database, policy = rows(app, s3_url, args.image, password)
            subprocess.run(["docker", "run", "-d", "--name", name, "--label",
                            f"slipway.database={database.id}", args.image, "redis-server",
                            "--requirepass", password, "--appendonly", "yes", "--save", "",
                            "--dir", "/data"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            time.sleep(1)
            began = time.monotonic()
            keys = fill(name, password, args.gb)
            say(f"filled {keys} keys of {VALUE} B in {time.monotonic() - began:.1f} s")
            s3 = storage.client(storage.S3Target(s3_url, "us-east-1", "bench", "", "bench",
                                                 "bench", True))  # fmt: skip
            s3.create_bucket(Bucket="bench")
            raw, ours = [], []
            for n in range(args.rounds):
                seconds, size = raw_round(name, password, s3, "bench", f"raw/{n}.rdb")
                raw.append((seconds, size))
                say(f"raw {n + 1}: {size / 1e6:.0f} MB in {seconds:.1f} s "
                    f"({size / 1e6 / seconds:.1f} MB/s)")  # fmt: skip
                backup = Backup(team_id=policy.team_id, policy_id=policy.id, trigger="manual")
                db.session.add(backup)
                db.session.commit()
                began = time.monotonic()
                status = runs.run(backup.id)
                seconds = time.monotonic() - began
                db.session.refresh(backup)
                if status != "succeeded":
                    raise RuntimeError(f"Slipway's backup failed: {backup.error}")
                ours.append((seconds, backup.size_bytes))
                say(
                    f"Slipway {n + 1}: {backup.size_bytes / 1e6:.0f} MB in {seconds:.1f} s "
                    f"({backup.size_bytes / 1e6 / seconds:.1f} MB/s), keys {backup.row_counts}"
                )
                Path(backup.local_path).unlink(missing_ok=True)
        best_raw = max(size / s for s, size in raw)
        best_ours = max(size / s for s, size in ours)
        print(json.dumps({
            "redis_backup_ratio": round(best_ours / best_raw, 3),
            "redis_keys": keys, "redis_value_bytes": VALUE,
            "rdb_mb": round(ours[-1][1] / 1e6, 1),
            "raw_seconds": [round(s, 2) for s, _ in raw],
            "slipway_seconds": [round(s, 2) for s, _ in ours],
            "raw_mb_per_s": [round(size / 1e6 / s, 1) for s, size in raw],
            "slipway_mb_per_s": [round(size / 1e6 / s, 1) for s, size in ours],
            "rounds": args.rounds, "loadavg_1m": os.getloadavg()[0],
        }))  # fmt: skip
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        if moto is not None:
            moto.terminate()
            moto.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
