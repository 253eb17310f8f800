"""Default addresses unique in the installation; the image id a deployment ran

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 16:00:00

``applications.address`` is the default address's label part (``<app>.<project>``,
the base domain is a setting): unique in the whole installation, so two teams'
apps of the same names never share a host. Existing duplicates keep the oldest
app's address; the newer ones get ``<app>-a<id>.<project>``.

``deployments.image_id`` is the content id (``sha256:…``) of the image a deployment
built or pulled; a rollback starts that id, and only if the kept tag still names it.

Columns are added without a table rebuild (a SQLite rebuild would lose AUTOINCREMENT).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _distinct(name: str, app_id: int, project: str) -> str:
    suffix = f"-a{app_id}"
    return f"{name[: 63 - len(suffix)]}{suffix}.{project}"


def upgrade():
    op.add_column("applications", sa.Column("address", sa.String(length=127), nullable=True))
    op.add_column("deployments", sa.Column("image_id", sa.String(length=100), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT a.id, a.name, p.name FROM applications a "
            "JOIN projects p ON p.id = a.project_id ORDER BY a.id"
        )
    ).all()
    taken: set[str] = set()
    for app_id, name, project in rows:
        address = f"{name}.{project}"
        if address in taken:
            address = _distinct(name, app_id, project)
        taken.add(address)
        conn.execute(
            sa.text("UPDATE applications SET address = :address WHERE id = :id"),
            {"address": address, "id": app_id},
        )
    op.create_index("ix_applications_address", "applications", ["address"], unique=True)


def downgrade():
    op.drop_index("ix_applications_address", table_name="applications")
    op.drop_column("deployments", "image_id")
    op.drop_column("applications", "address")
