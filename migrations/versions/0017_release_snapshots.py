"""release snapshots: each deployment records the env, settings and image digest it ran
with; apps get a watch window (issue 12 items 3 and 4)

``env_ciphertext`` is the env as one AES-GCM ciphertext (made by the app: a migration
has no encryption key); ``env_digest`` lets a page tell whether today's env differs
without decrypting anything. Rows from before have NULL: they recorded nothing, and a
rollback to one uses today's env and says so. ``watch_seconds`` NULL = the setting
SLIPWAY_WATCH_SECONDS.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 18:50:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

COLUMNS = (
    sa.Column("env_ciphertext", sa.Text(), nullable=True),
    sa.Column("env_digest", sa.String(length=64), nullable=True),
    sa.Column("env_source", sa.String(length=20), nullable=True),
    sa.Column("settings", sa.Text(), nullable=True),
    sa.Column("image_digest", sa.String(length=255), nullable=True),
    sa.Column("watch_until", sa.DateTime(timezone=True), nullable=True),
)


def upgrade():
    # Plain ADD COLUMN (nullable, no default): never a table rebuild on SQLite.
    for column in COLUMNS:
        op.add_column("deployments", column)
    op.add_column("applications", sa.Column("watch_seconds", sa.Integer(), nullable=True))


def downgrade():
    op.drop_column("applications", "watch_seconds")
    for column in reversed(COLUMNS):
        op.drop_column("deployments", column.name)
