"""Audit log benchmark (issue 14): the team's audit page filtered by member over a
million audit rows, and a 100,000-row CSV export's memory.

    .venv/bin/python bench/audit.py
    .venv/bin/python bench/audit.py --database-url postgresql://slipway:slipway@127.0.0.1:5432/slipway_bench

Like ``bench/pages.py`` (whose process helpers it uses): a fresh temporary data
directory, SQLite there by default (``--database-url``: the named PostgreSQL database,
created if missing, its ``public`` schema wiped), a private ``redis-server``, the real
migrations, and a real gunicorn (gthread, 2 workers x 8 threads) serving the app.

The seed is 1,000,000 audit rows in one team across 50 members (the owner among them),
inserted with core ``INSERT`` executemany in batches of 20,000; ids grow with time as in
life; one row in ten is ``deploy.started`` (100,000 rows: the export's filter). The
query plan of the member filter is printed (EXPLAIN on the seeded table).

Then, logged in through the login form as the owner: ``REQUESTS`` sequential GETs of
``/team/audit?member=<id>`` over one keep-alive connection, a random member each time,
half of them the first page and half a page further back (``before=<random id>``),
each checked (200, 50 rows, the member's address on it) → ``audit_member_filter_p95_ms``.
Then the export of ``action=deploy.started`` (a POST to ``/team/audit.csv``, as the
page's "Export CSV" button sends it) is streamed and counted (100,000 rows)
while a thread samples the RSS of gunicorn's workers every 5 ms: the largest growth of
any worker over its RSS just before the export → ``csv_peak_rss_growth_mb``.
Last, in the bench's own process, the team's retention is set to 200 days and the retention
job's function runs once (a third of the rows, in batches of 10,000) →
``retention_deleted_rows``, ``retention_seconds``.

Progress goes to stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import pages as lab  # noqa: E402 - the process helpers; needs ROOT on sys.path

EMAIL, PASSWORD = lab.EMAIL, lab.PASSWORD  # lab.login signs in with these
ROWS = 1_000_000
MEMBERS = 50
BATCH = 20_000
EXPORT_ACTION = "deploy.started"
EXPORT_EVERY = 10  # one row in ten: 100,000 rows
REQUESTS = 100
WARMUP = 10
PAGE_SIZE = 50
SAMPLE_SECONDS = 0.005
RETENTION_DAYS = 200  # the rows span 300 days: a third goes, 10,000 per statement
log = lab.log


def seed(rng: random.Random) -> dict:
    """The owner, 49 more members and a million audit rows; returns what the checks need."""
    from sqlalchemy import insert, text

    from app import audit, create_app
    from app.extensions import db
    from app.models import AuditEvent, Installation, Membership, Role, Team, User

    flask_app = create_app()
    with flask_app.app_context():
        session = db.session
        team = Team(name="Bench Team")
        owner = User(email=EMAIL, name="Bench Owner")
        owner.set_password(PASSWORD)
        session.add_all([team, owner])
        session.flush()
        users = [owner] + [
            User(email=f"member{n:02d}@bench.example.com", name=f"Member {n:02d}",
                 password_hash=owner.password_hash)  # one argon2 hash is enough here
            for n in range(1, MEMBERS)
        ]  # fmt: skip
        session.add_all(users[1:])
        session.flush()
        session.add(Installation(id=1, owner_id=owner.id))
        roles = [Role.admin, Role.developer, Role.developer, Role.viewer]
        session.add_all(
            Membership(team_id=team.id, user_id=u.id,
                       role=(Role.owner if u is owner else rng.choice(roles)).value)
            for u in users
        )  # fmt: skip
        session.commit()
        user_ids = [u.id for u in users]
        emails = {u.id: u.email for u in users}
        team_id = team.id

        others = [a.value for a in audit.Action if a.value != EXPORT_ACTION]
        targets = ["application", "project", "deployment", "domain", "membership", "user"]
        start = datetime.now(UTC) - timedelta(days=300)
        step = timedelta(days=300) / ROWS
        table = AuditEvent.__table__
        started = time.monotonic()
        with db.engine.begin() as conn:
            for base in range(0, ROWS, BATCH):
                rows = []
                for n in range(base, min(base + BATCH, ROWS)):
                    action = EXPORT_ACTION if n % EXPORT_EVERY == 0 else rng.choice(others)
                    rows.append({
                        "team_id": team_id, "user_id": rng.choice(user_ids), "action": action,
                        "target_type": rng.choice(targets), "target_id": rng.randint(1, 5000),
                        "ip": f"10.{n % 250}.{(n // 250) % 250}.{n % 7 + 1}",
                        "details": {"name": f"thing-{n % 997}"}, "created_at": start + step * n,
                    })  # fmt: skip
                conn.execute(insert(table), rows)
                if (base // BATCH) % 10 == 9:
                    log(f"  {base + BATCH:,} rows ({time.monotonic() - started:.0f} s)")
        seconds = time.monotonic() - started
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE audit_events"))
        else:
            with db.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        plan = explain(audit, db, team_id, user_ids[3])
        count = session.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
        exports = session.execute(
            text("SELECT count(*) FROM audit_events WHERE action = :a"), {"a": EXPORT_ACTION}
        ).scalar_one()
        max_id = session.execute(text("SELECT max(id) FROM audit_events")).scalar_one()
        result = {"dialect": db.engine.dialect.name, "rows": count, "export_rows": exports,
                  "insert_seconds": round(seconds, 1), "user_ids": user_ids, "emails": emails,
                  "max_id": max_id, "plan": plan}  # fmt: skip
        db.session.remove()
        db.engine.dispose()
    return result


def explain(audit, db, team_id: int, user_id: int) -> str:
    """The database's plan for the audit page's member filter (its real statement)."""
    from sqlalchemy import text

    statement = audit._statement(team_id, audit.Filters(user_id=user_id), None, PAGE_SIZE + 1)
    sql = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            rows = conn.execute(text(f"EXPLAIN ANALYZE {sql}"))
            return "\n".join(r[0] for r in rows)
        return "\n".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))


# ---- measuring ---------------------------------------------------------------------


def worker_pids(master_pid: int) -> list[int]:
    path = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    return [int(p) for p in path.read_text().split()]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise lab.BenchError(f"no VmRSS for pid {pid}")


class RssSampler(threading.Thread):
    """The highest RSS of each pid, sampled every ``SAMPLE_SECONDS`` until stopped."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids = pids
        self.before = {pid: rss_kib(pid) for pid in pids}
        self.peak = dict(self.before)
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_kib(pid))
            self.samples += 1
            time.sleep(SAMPLE_SECONDS)

    def growth_mb(self) -> float:
        return max(self.peak[p] - self.before[p] for p in self.pids) / 1024


def member_pages(http, base: str, data: dict, rng: random.Random) -> list[float]:
    samples = []
    for n in range(WARMUP + REQUESTS):
        user_id = rng.choice(data["user_ids"])
        path = f"/team/audit?member={user_id}"
        if n % 2:
            path += f"&before={rng.randint(data['max_id'] // 10, data['max_id'])}"
        started = time.perf_counter()
        response = http.get(base + path, timeout=lab.REQUEST_TIMEOUT, allow_redirects=False)
        body = response.text
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise lab.BenchError(f"GET {path}: {response.status_code}\n{body[:500]}")
        rows = body.count('<tr id="event-')
        if rows != PAGE_SIZE or data["emails"][user_id] not in body:
            raise lab.BenchError(f"GET {path}: {rows} rows, member shown: "
                                 f"{data['emails'][user_id] in body}")  # fmt: skip
        if n >= WARMUP:
            samples.append(elapsed)
    return samples


def export(http, base: str, master_pid: int) -> dict:
    """The page's "Export CSV" form (a POST of its filters with the CSRF token)."""
    page = http.get(f"{base}/team/audit?action={EXPORT_ACTION}", timeout=lab.REQUEST_TIMEOUT)
    token = lab.CSRF_RE.search(page.text).group(1)
    path, form = "/team/audit.csv", {"action": EXPORT_ACTION, "csrf_token": token}
    # A small export first (nothing matches: the header only), so the measured one does
    # not count the first use of the CSV code path.
    warm = http.post(base + path, data={"since": "2999-01-01", "csrf_token": token},
                     timeout=lab.REQUEST_TIMEOUT)  # fmt: skip
    if warm.status_code != 200 or warm.text.count("\n") != 1:
        raise lab.BenchError(f"warm-up export: {warm.status_code}")
    sampler = RssSampler(worker_pids(master_pid))
    sampler.start()
    started = time.perf_counter()
    lines = size = 0
    try:
        with http.post(base + path, data=form, timeout=lab.REQUEST_TIMEOUT,
                       stream=True) as response:  # fmt: skip
            if response.status_code != 200:
                raise lab.BenchError(f"GET {path}: {response.status_code}")
            for chunk in response.iter_content(65536):
                lines += chunk.count(b"\n")
                size += len(chunk)
    finally:
        sampler.done.set()
        sampler.join()
    seconds = round(time.perf_counter() - started, 2)
    before = {pid: round(kib / 1024, 1) for pid, kib in sampler.before.items()}
    return {"rows": lines - 1, "bytes": size, "seconds": seconds, "rss_before_mb": before,
            "rss_growth_mb": round(sampler.growth_mb(), 1),
            "rss_samples": sampler.samples}  # fmt: skip


def retention(days: int) -> dict:
    """Set the team's retention to ``days`` and run the retention job's function once."""
    from sqlalchemy import text

    from app import audit, create_app
    from app.extensions import db
    from app.models import Team

    flask_app = create_app()
    with flask_app.app_context():
        team = db.session.scalars(db.select(Team)).one()
        team.audit_retention_days = days
        db.session.commit()
        started = time.monotonic()
        counts = audit.apply_retention()
        seconds = time.monotonic() - started
        left = db.session.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
        db.session.remove()
        db.engine.dispose()
    return {"days": days, "deleted": counts["deleted"], "left": left,
            "seconds": round(seconds, 2), "batch": audit.RETENTION_BATCH}  # fmt: skip


# ---- main --------------------------------------------------------------------------


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main() -> int:  # noqa: C901 - one straight run, set up and torn down
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL URL; default: SQLite in the temp dir")
    parser.add_argument(
        "--force", action="store_true",
        help="allow wiping a PostgreSQL database whose name lacks 'bench'",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)

    import requests

    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-audit-"))
    redis_proc = gunicorn = None
    try:
        log(f"data dir {tmp}")
        redis_proc, redis_url = lab.start_redis(tmp)
        database_url = args.database_url or f"sqlite:///{tmp}/slipway.db"
        if database_url.startswith(("postgresql://", "postgresql+psycopg://")):
            lab.prepare_postgres(database_url, args.force)
        elif not database_url.startswith("sqlite:"):
            raise lab.BenchError("--database-url must be a postgresql:// URL")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env |= {"SLIPWAY_DATA_DIR": str(tmp), "SLIPWAY_DATABASE_URL": database_url,
                "SLIPWAY_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}  # fmt: skip
        os.environ.clear()
        os.environ.update(env)
        lab.migrate(env)
        log(f"seeding {ROWS:,} audit rows across {MEMBERS} members")
        data = seed(random.Random(1))
        log(f"seeded {data['rows']:,} rows on {data['dialect']} in {data['insert_seconds']} s; "
            f"member filter plan:\n{data['plan']}")  # fmt: skip
        port = lab.free_port()
        gunicorn = lab.start_gunicorn(env, tmp, port)
        base = f"http://127.0.0.1:{port}"
        log(f"gunicorn (gthread, 2 workers x 8 threads) healthy on port {port}")
        load_before = os.getloadavg()[0]
        with requests.Session() as http:
            lab.login(http, base)
            cpu_before = lab.server_cpu_seconds(gunicorn.pid)
            pages = lab.summarize(member_pages(http, base, data, random.Random(2)))
            cpu_after = lab.server_cpu_seconds(gunicorn.pid)
            if cpu_before is not None and cpu_after is not None:
                # Includes the warm-up requests; independent of other load on the machine.
                pages["server_cpu_ms_per_request"] = round(
                    (cpu_after - cpu_before) * 1000 / (REQUESTS + WARMUP), 2
                )
            log(f"member filter: n={pages['n']} p50={pages['p50']} ms p95={pages['p95']} ms "
                f"max={pages['max']} ms, worker CPU "
                f"{pages.get('server_cpu_ms_per_request', '?')} ms/request")  # fmt: skip
            exported = export(http, base, gunicorn.pid)
            mib = exported["bytes"] / 2**20
            log(f"CSV export: {exported['rows']:,} rows, {mib:.1f} MiB in {exported['seconds']} "
                f"s; peak RSS growth {exported['rss_growth_mb']} MB")  # fmt: skip
        load_after = os.getloadavg()[0]
        if exported["rows"] != data["export_rows"]:
            raise lab.BenchError(f"export: {exported['rows']} rows, {data['export_rows']} match")
        pruned = retention(RETENTION_DAYS)
        log(f"retention at {RETENTION_DAYS} days: {pruned['deleted']:,} rows deleted in "
            f"{pruned['seconds']} s ({pruned['left']:,} left)")  # fmt: skip
    except lab.BenchError as exc:
        log(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        lab.stop(gunicorn, "gunicorn")
        lab.stop(redis_proc, "redis-server")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = {
        "audit_member_filter_p95_ms": pages["p95"],
        "audit_member_filter_p50_ms": pages["p50"],
        "audit_member_filter_server_cpu_ms": pages.get("server_cpu_ms_per_request"),
        "csv_export_rows": exported["rows"],
        "csv_peak_rss_growth_mb": exported["rss_growth_mb"],
        "csv_export_seconds": exported["seconds"],
        "csv_export_bytes": exported["bytes"],
        "database": data["dialect"],
        "audit_rows": data["rows"],
        "members": MEMBERS,
        "requests": REQUESTS,
        "served_by": "gunicorn gthread, 2 workers x 8 threads",
        "seed_insert_seconds": data["insert_seconds"],
        "member_filter_uses_index": "ix_audit_events_team_user" in data["plan"],
        "target_p95_ms": 100,
        "target_rss_growth_mb": 50,
        "target_met": pages["p95"] < 100 and exported["rss_growth_mb"] < 50,
        "retention_deleted_rows": pruned["deleted"],
        "retention_seconds": pruned["seconds"],
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
        "pages": pages,
        "export": exported,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
