"""app health: what is serving, apart from the last deployment's status (issue 12)

The runtime watcher (``app/runtime/watch.py``) keeps, per app, the health of the
replicas Traefik is told to serve: ``health`` (up, degraded, down, restarting,
crash-looping; NULL until an app has been routed), ``health_detail`` (why, per
replica: state, exit code, OOM kill, the last lines it printed, redacted) and
``health_since``. ``routed_deployment_id`` is the deployment whose replicas the
route serves, ``routed_replicas`` how many it started with (a removed replica still
counts as missing) and ``routed_port`` the port they listen on. Plain columns (no foreign key): a deployment row
only goes away with its app.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 19:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COLUMNS = ("health", "health_detail", "health_since", "routed_deployment_id", "routed_replicas",
           "routed_port")


def upgrade():
    # Plain ADD COLUMNs: nullable, no constraint, so SQLite needs no table rebuild.
    op.add_column("applications", sa.Column("health", sa.String(length=20), nullable=True))
    op.add_column("applications", sa.Column("health_detail", sa.JSON(), nullable=True))
    op.add_column(
        "applications", sa.Column("health_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("applications", sa.Column("routed_deployment_id", sa.Integer(), nullable=True))
    op.add_column("applications", sa.Column("routed_replicas", sa.Integer(), nullable=True))
    op.add_column("applications", sa.Column("routed_port", sa.Integer(), nullable=True))


def downgrade():
    for name in reversed(COLUMNS):
        op.drop_column("applications", name)
