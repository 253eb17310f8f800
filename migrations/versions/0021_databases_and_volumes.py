"""Databases and volumes (issue 16): ``databases``, ``volumes``, ``database_links``;
backup policies of a managed database or a volume; a restore's target database; the
gap an exclusive volume left in a deployment; metric samples of a database.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 20:03:35

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade():
    when = sa.DateTime(timezone=True)
    op.create_table(
        "databases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("engine", sa.String(length=20), nullable=False),
        sa.Column("version", sa.String(length=20), nullable=False),
        sa.Column("image", sa.String(length=255), nullable=False),
        sa.Column("username", sa.String(length=63), nullable=False),
        sa.Column("database_name", sa.String(length=63), nullable=False),
        sa.Column("password", sa.Text(), nullable=False),
        sa.Column("password_rotated_at", when, nullable=True),
        sa.Column("cpu_limit", sa.Numeric(precision=6, scale=2, asdecimal=False), nullable=True),
        sa.Column("memory_limit_mb", sa.Integer(), nullable=True),
        sa.Column("public_port", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("progress", sa.String(length=255), nullable=True),
        sa.Column("container_id", sa.String(length=64), nullable=True),
        sa.Column("ready_at", when, nullable=True),
        sa.Column("deleted_at", when, nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_databases_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_databases_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_databases")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_databases_project_id_name")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_databases_project_id"), "databases", ["project_id"], unique=False)
    op.create_index("ix_databases_public_port", "databases", ["public_port"], unique=True)

    op.create_table(
        "database_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("database_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=40), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_database_links_application_id_applications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_database_links_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["databases.id"],
            name=op.f("fk_database_links_database_id_databases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_database_links")),
        sa.UniqueConstraint(
            "application_id",
            "database_id",
            name=op.f("uq_database_links_application_id_database_id"),
        ),
        sa.UniqueConstraint(
            "application_id", "prefix", name=op.f("uq_database_links_application_id_prefix")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_database_links_application_id"), "database_links", ["application_id"], unique=False
    )
    op.create_index(
        op.f("ix_database_links_database_id"), "database_links", ["database_id"], unique=False
    )

    op.create_table(
        "volumes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("database_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=63), nullable=False),
        sa.Column("docker_name", sa.String(length=127), nullable=True),
        sa.Column("mount_path", sa.String(length=255), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("detached_at", when, nullable=True),
        sa.Column("purge_after", when, nullable=True),
        sa.Column("owner_label", sa.String(length=255), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_volumes_application_id_applications"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["database_id"],
            ["databases.id"],
            name=op.f("fk_volumes_database_id_databases"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_volumes_project_id_projects"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volumes")),
        sa.UniqueConstraint(
            "application_id", "mount_path", name=op.f("uq_volumes_application_id_mount_path")
        ),
        sa.UniqueConstraint("docker_name", name=op.f("uq_volumes_docker_name")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_volumes_application_id"), "volumes", ["application_id"], unique=False)
    op.create_index(op.f("ix_volumes_database_id"), "volumes", ["database_id"], unique=False)
    op.create_index(op.f("ix_volumes_project_id"), "volumes", ["project_id"], unique=False)

    op.add_column(
        "backup_policies",
        sa.Column("database_id", sa.Integer(), nullable=True),
    )
    op.add_column(
        "backup_policies",
        sa.Column("volume_id", sa.Integer(), nullable=True),
    )
    op.add_column(
        "backup_policies",
        sa.Column("stop_app", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index(
        op.f("ix_backup_policies_database_id"), "backup_policies", ["database_id"], unique=False
    )
    op.create_index(
        op.f("ix_backup_policies_volume_id"), "backup_policies", ["volume_id"], unique=False
    )

    op.add_column("deployments", sa.Column("volume_gap_ms", sa.Integer(), nullable=True))

    op.add_column(
        "restores",
        sa.Column("target_database_id", sa.Integer(), nullable=True),
    )

    op.add_column("metric_samples", sa.Column("database_id", sa.Integer(), nullable=True))
    op.create_index(
        "ix_metric_samples_database", "metric_samples", ["database_id", "resolution", "ts"]
    )

def downgrade():
    op.drop_index("ix_metric_samples_database", "metric_samples")
    op.drop_column("metric_samples", "database_id")
    op.drop_column("restores", "target_database_id")
    op.drop_column("deployments", "volume_gap_ms")
    op.drop_index(op.f("ix_backup_policies_volume_id"), "backup_policies")
    op.drop_index(op.f("ix_backup_policies_database_id"), "backup_policies")
    for column in ("stop_app", "volume_id", "database_id"):
        op.drop_column("backup_policies", column)
    op.drop_table("volumes")
    op.drop_table("database_links")
    op.drop_table("databases")
