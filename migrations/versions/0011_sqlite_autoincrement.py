"""ids are never reused on SQLite: every table with an integer id gets AUTOINCREMENT back

Without ``AUTOINCREMENT`` SQLite hands out ``max(id) + 1``: delete the newest app
and the next one gets its id, and with it the old app's audit trail, delivery log,
container, image and route names. 0001 declared it for ``deployments`` only and
0003's rebuild of ``applications`` dropped it there. Each table whose CREATE
statement lacks it is rebuilt (batch mode, every row, index, constraint and foreign
key kept; migrations/env.py runs this with foreign keys off and checks them after),
and ``sqlite_sequence`` is raised to the highest id still in sight: the table's own,
the ids other rows refer to (foreign keys) and the audit trail's target ids, so a
deleted row that left any trace is not handed out again.

PostgreSQL sequences never hand out an id twice: nothing to do there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 16:10:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Every table with an integer id (``installation`` is the one row with id 1), and the
# ``audit_events.target_type`` its rows are recorded under (the model's class name).
TABLES = {
    "users": "user",
    "teams": "team",
    "memberships": "membership",
    "projects": "project",
    "environments": "environment",
    "applications": "application",
    "env_vars": "envvar",
    "domains": "domain",
    "deployments": "deployment",
    "deployment_log_lines": "deploymentlogline",
    "audit_events": "auditevent",
    "metric_samples": "metricsample",
    "webhook_deliveries": "webhookdelivery",
    "backup_destinations": "backupdestination",
    "backup_policies": "backuppolicy",
    "backups": "backup",
    "restores": "restore",
    "notification_channels": "notificationchannel",
}


def _highest_id_in_sight(conn, inspector, table: str) -> int:
    """The table's highest id, or a higher one that other rows still refer to."""
    found = [f"SELECT max(id) AS v FROM {table}"]
    for other in inspector.get_table_names():
        for fk in inspector.get_foreign_keys(other):
            if fk["referred_table"] == table and fk["referred_columns"] == ["id"]:
                (column,) = fk["constrained_columns"]
                found.append(f"SELECT max({column}) FROM {other}")
    found.append("SELECT max(target_id) FROM audit_events WHERE target_type = :kind")
    query = "SELECT max(v) FROM (" + " UNION ALL ".join(found) + ")"
    return conn.execute(sa.text(query), {"kind": TABLES[table]}).scalar() or 0


def upgrade():
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    for table in TABLES:
        create = conn.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"),
            {"t": table},
        ).scalar()
        if "AUTOINCREMENT" not in create.upper():
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ):
                pass
    inspector = sa.inspect(conn)
    for table in TABLES:
        counted = conn.execute(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}
        ).scalar()
        # Never lower a sequence that already counted past every id still in sight.
        seq = max(_highest_id_in_sight(conn, inspector, table), counted or 0)
        conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        conn.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)"),
            {"t": table, "seq": seq},
        )


def downgrade():
    """AUTOINCREMENT is kept: taking it away would let SQLite reuse ids again."""
