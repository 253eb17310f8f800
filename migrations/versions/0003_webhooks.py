"""git_integration (issue 5)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 19:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_token", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("watch_paths", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("deploy_tags", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("deploy_key_private", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("deploy_key_public", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("git_known_hosts", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("git_token", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("git_token_user", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_applications_webhook_token"), ["webhook_token"]
        )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("git_ref", sa.String(length=255), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=10), nullable=False),
        sa.Column("delivery_id", sa.String(length=100), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=True),
        sa.Column("commit_sha", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"], ["applications.id"],
            name=op.f("fk_webhook_deliveries_application_id_applications"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"], ["deployments.id"],
            name=op.f("fk_webhook_deliveries_deployment_id_deployments"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "application_id", "provider", "delivery_id",
            name=op.f("uq_webhook_deliveries_application_id_provider_delivery_id"),
        ),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_app_id", ["application_id", "id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_app_id")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("git_ref")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_applications_webhook_token"), type_="unique")
        for column in (
            "git_token_user", "git_token", "git_known_hosts", "deploy_key_public",
            "deploy_key_private", "deploy_tags", "watch_paths", "webhook_token",
        ):
            batch_op.drop_column(column)
