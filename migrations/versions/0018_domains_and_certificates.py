"""domains with HTTPS modes, www handling and path prefixes; certificates and the ACME
account (issue 13)

``domains`` had one row per host (``UNIQUE(host)``, inline, which SQLite cannot drop
without rebuilding the table). Two apps may now share a host under different path
prefixes, so the rows move to a new table ``app_domains`` with ``UNIQUE(host,
path_prefix)`` and the columns of issue 13; ``domains`` is dropped. A host's rows all
belong to one team (``team_id``, checked by ``app.proxy.domains``). The old ``https``
flag was stored but never routed: rows that had it get ``https_mode = 'redirect'``,
the others ``'off'``, so nothing changes for them until someone edits them.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 10:10:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("hosts_json", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chain_pem", sa.Text(), nullable=True),
        sa.Column("key_ciphertext", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("preflight_json", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("renew_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("warned_json", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_certificates_application_id_applications"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificates")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_certificates_application_id"), "certificates", ["application_id"])
    op.create_index(op.f("ix_certificates_next_attempt_at"), "certificates", ["next_attempt_at"])
    op.create_index(op.f("ix_certificates_renew_at"), "certificates", ["renew_at"])

    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("directory_url", sa.String(length=1000), nullable=False),
        sa.Column("key_ciphertext", sa.Text(), nullable=False),
        sa.Column("account_url", sa.String(length=1000), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acme_accounts")),
        sa.UniqueConstraint("directory_url", name=op.f("uq_acme_accounts_directory_url")),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "app_domains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("path_prefix", sa.String(length=255), nullable=False),
        sa.Column("strip_prefix", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("https_mode", sa.String(length=20), nullable=False),
        sa.Column("www", sa.String(length=20), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_app_domains_application_id_applications"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_app_domains_team_id_teams"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.id"],
            name=op.f("fk_app_domains_certificate_id_certificates"),
            ondelete="SET NULL",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_domains")),
        sa.UniqueConstraint("host", "path_prefix", name=op.f("uq_app_domains_host")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_app_domains_application_id"), "app_domains", ["application_id"])
    op.create_index(op.f("ix_app_domains_host"), "app_domains", ["host"])
    op.execute(
        "INSERT INTO app_domains (id, application_id, team_id, host, path_prefix, "
        "strip_prefix, https_mode, www, created_at) "
        "SELECT d.id, d.application_id, p.team_id, d.host, d.path_prefix, "
        "false, CASE WHEN d.https THEN 'redirect' ELSE 'off' END, 'none', d.created_at "
        "FROM domains d JOIN applications a ON a.id = d.application_id "
        "JOIN projects p ON p.id = a.project_id"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('app_domains', 'id'), "
            "coalesce((SELECT max(id) FROM app_domains), 0) + 1, false)"
        )
    op.drop_table("domains")


def downgrade():
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("path_prefix", sa.String(length=255), nullable=False),
        sa.Column("https", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["applications.id"],
            name=op.f("fk_domains_application_id_applications"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domains")),
        sa.UniqueConstraint("host", name=op.f("uq_domains_host")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_domains_application_id"), "domains", ["application_id"])
    # One row per host survives (the lowest id): the old table had no prefixes to share.
    op.execute(
        "INSERT INTO domains (id, application_id, host, path_prefix, https, created_at) "
        "SELECT id, application_id, host, path_prefix, https_mode != 'off', created_at "
        "FROM app_domains WHERE id IN (SELECT min(id) FROM app_domains GROUP BY host)"
    )
    op.drop_table("app_domains")
    op.drop_table("acme_accounts")
    op.drop_index(op.f("ix_certificates_renew_at"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_next_attempt_at"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_application_id"), table_name="certificates")
    op.drop_table("certificates")
