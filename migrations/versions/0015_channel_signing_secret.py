"""channel signing secret: generic webhook channels sign their bodies (issue 11)

A receiver could not tell Slipway's notifications from anyone else's posts to its
URL. Each generic webhook channel now has an HMAC-SHA256 key (ciphertext, made by
the app: a migration has no encryption key), which signs every body it sends.
Channels from before have NULL and send unsigned until an admin makes one.

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-02 16:40:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("notification_channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signing_secret", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("notification_channels", schema=None) as batch_op:
        batch_op.drop_column("signing_secret")
