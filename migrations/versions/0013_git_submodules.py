"""submodules per app: ``applications.git_submodules``

A clone now fetches the submodules in ``.gitmodules``; an app can turn that off
(its build log then says ``.gitmodules`` was not followed). On for every app.

Revision ID: 0013
Revises: 0014
Create Date: 2026-12-02 16:30:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN, not a batch operation: on SQLite a batch rebuilds the table
    # from its reflection, which has no AUTOINCREMENT, and ids would be reused again.
    op.add_column(
        "applications",
        sa.Column("git_submodules", sa.Boolean(), server_default=sa.true(), nullable=False),
    )


def downgrade():
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_column("git_submodules")
