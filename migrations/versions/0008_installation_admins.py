"""installation admins: ``users.installation_admin``, named by the installation's owner

The installation-wide pages (server figures, workers and their retry) were open to
the admin of any team. They are now for the installation's owner and the users the
owner names; nobody is named by this revision (false for every existing user).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 15:40:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("installation_admin", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("installation_admin")
