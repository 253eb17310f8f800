"""build log cap: whether a deployment's log was cut, and how much was dropped

``BuildLog`` stores at most ``BUILD_LOG_MAX_BYTES`` of a deployment's build
output; the deployment row says that it cut the log (``log_truncated``) and how
many lines and bytes it did not store, for the page's notice.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 15:50:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN (constant defaults): no table rebuild on SQLite.
    op.add_column(
        "deployments",
        sa.Column("log_truncated", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "deployments",
        sa.Column("log_dropped_lines", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "deployments",
        sa.Column("log_dropped_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade():
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("log_dropped_bytes")
        batch.drop_column("log_dropped_lines")
        batch.drop_column("log_truncated")
