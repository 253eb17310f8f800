"""installation id: the slipway.installation label of the installation's Docker objects

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 12:40:00

"""

import secrets

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("installation_id", sa.String(length=32), nullable=True))
    # An installation set up before this revision gets its id now (there is at most one row).
    op.execute(
        sa.text("UPDATE installation SET installation_id = :value").bindparams(
            value=secrets.token_hex(6)
        )
    )
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.alter_column("installation_id", existing_type=sa.String(length=32), nullable=False)


def downgrade():
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.drop_column("installation_id")
