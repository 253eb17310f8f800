"""webhook body digest: remember the SHA-256 of every signed body (issue 17)

A captured signed body replayed under a fresh delivery id deployed again, since the
delivery id header is not signed. Each delivery row now keeps the digest of its raw
body, unique per application: an identical body inserts no second row, whatever id
comes with it. Rows from before have NULL, which a unique constraint lets repeat.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 15:45:00

"""
from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_sha256", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_webhook_deliveries_application_id_body_sha256"),
            ["application_id", "body_sha256"],
        )


def downgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_webhook_deliveries_application_id_body_sha256"), type_="unique"
        )
        batch_op.drop_column("body_sha256")
