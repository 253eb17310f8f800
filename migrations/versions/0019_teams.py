"""teams for real (issue 14): project-limited memberships, invitations, two-factor
login, single sign-on, the audit page's indexes

New tables: ``project_memberships`` (a limited membership's projects and its role on
each), ``invitations`` (hashed single-use tokens), ``recovery_codes`` (hashed),
``oidc_providers`` and ``oidc_identities``. New columns, all plain ADD COLUMNs with
server defaults, so SQLite rebuilds nothing: ``memberships.all_projects`` (true: every
existing member keeps seeing every project), ``teams.require_2fa``,
``teams.audit_retention_days`` (365), ``users.current_team_id`` (no foreign key: a
stale id falls back to the first team), ``users.totp_*``,
``installation.password_login``. The audit page pages newest first by member, action
and object: one index for each, ending in ``id``.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 12:38:41.770487

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("all_projects", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("projects", sa.JSON(), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["accepted_by_id"],
            ["users.id"],
            name=op.f("fk_invitations_accepted_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by_id"],
            ["users.id"],
            name=op.f("fk_invitations_invited_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_invitations_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_invitations_team_id"), "invitations", ["team_id"])

    op.create_table(
        "oidc_providers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("discovery_url", sa.String(length=500), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("allowed_domains", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("default_role", sa.String(length=20), nullable=False),
        sa.Column("groups_claim", sa.String(length=100), nullable=True),
        sa.Column("group_roles", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_oidc_providers_team_id_teams"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_providers")),
        sa.UniqueConstraint("slug", name=op.f("uq_oidc_providers_slug")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_recovery_codes_user_id"), "recovery_codes", ["user_id"])

    op.create_table(
        "oidc_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["oidc_providers.id"],
            name=op.f("fk_oidc_identities_provider_id_oidc_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oidc_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_identities")),
        sa.UniqueConstraint(
            "provider_id", "subject", name=op.f("uq_oidc_identities_provider_id_subject")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_oidc_identities_provider_id"), "oidc_identities", ["provider_id"])
    op.create_index(op.f("ix_oidc_identities_user_id"), "oidc_identities", ["user_id"])

    op.create_table(
        "project_memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("membership_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["memberships.id"],
            name=op.f("fk_project_memberships_membership_id_memberships"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_memberships_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_memberships")),
        sa.UniqueConstraint(
            "membership_id",
            "project_id",
            name=op.f("uq_project_memberships_membership_id_project_id"),
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_project_memberships_membership_id"), "project_memberships", ["membership_id"]
    )
    op.create_index(
        op.f("ix_project_memberships_project_id"), "project_memberships", ["project_id"]
    )

    op.create_index("ix_audit_events_created_at", "audit_events", ["created_at"])
    op.create_index("ix_audit_events_team_action", "audit_events", ["team_id", "action", "id"])
    op.create_index(
        "ix_audit_events_team_target", "audit_events", ["team_id", "target_type", "target_id", "id"]
    )
    op.create_index("ix_audit_events_team_user", "audit_events", ["team_id", "user_id", "id"])

    op.add_column(
        "installation",
        sa.Column("password_login", sa.Boolean(), server_default=sa.true(), nullable=False),
    )

    op.add_column(
        "memberships",
        sa.Column("all_projects", sa.Boolean(), server_default=sa.true(), nullable=False),
    )

    op.add_column(
        "teams", sa.Column("require_2fa", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column(
        "teams",
        sa.Column("audit_retention_days", sa.Integer(), server_default="365", nullable=False),
    )

    op.add_column("users", sa.Column("current_team_id", sa.Integer(), nullable=True))
    op.add_column("users", sa.Column("totp_secret", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("totp_enabled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade():
    op.drop_column("users", "totp_last_step")
    op.drop_column("users", "totp_enabled_at")
    op.drop_column("users", "totp_secret")
    op.drop_column("users", "current_team_id")

    op.drop_column("teams", "audit_retention_days")
    op.drop_column("teams", "require_2fa")

    op.drop_column("memberships", "all_projects")

    op.drop_column("installation", "password_login")

    op.drop_index("ix_audit_events_team_user", table_name="audit_events")
    op.drop_index("ix_audit_events_team_target", table_name="audit_events")
    op.drop_index("ix_audit_events_team_action", table_name="audit_events")
    op.drop_index("ix_audit_events_created_at", table_name="audit_events")

    op.drop_index(op.f("ix_project_memberships_project_id"), table_name="project_memberships")
    op.drop_index(op.f("ix_project_memberships_membership_id"), table_name="project_memberships")

    op.drop_table("project_memberships")
    op.drop_index(op.f("ix_oidc_identities_user_id"), table_name="oidc_identities")
    op.drop_index(op.f("ix_oidc_identities_provider_id"), table_name="oidc_identities")

    op.drop_table("oidc_identities")
    op.drop_index(op.f("ix_recovery_codes_user_id"), table_name="recovery_codes")

    op.drop_table("recovery_codes")
    op.drop_table("oidc_providers")
    op.drop_index(op.f("ix_invitations_team_id"), table_name="invitations")

    op.drop_table("invitations")
