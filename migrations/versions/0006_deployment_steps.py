"""deployment steps: fill in ``deployments.step`` of final rows from their logs

The progress line is read from ``deployments.step`` alone. Deployments that failed
or were cancelled before the pipeline kept the step on final rows have none; the
last step mark the pipeline logged for them (``── <step>`` on the ``slipway``
stream, which build output cannot write) says where they stopped. Data only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STEPS = ("clone", "build", "start", "health", "switch")
MARK = "── "


def upgrade():
    deployments = sa.table(
        "deployments", sa.column("id", sa.Integer), sa.column("status", sa.String),
        sa.column("step", sa.String),
    )
    lines = sa.table(
        "deployment_log_lines", sa.column("deployment_id", sa.Integer),
        sa.column("seq", sa.Integer), sa.column("stream", sa.String), sa.column("text", sa.Text),
    )
    newest_mark = (
        sa.select(lines.c.text)
        .where(
            lines.c.deployment_id == deployments.c.id,
            lines.c.stream == "slipway",
            lines.c.text.in_([MARK + step for step in STEPS]),
        )
        .order_by(lines.c.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(deployments.c.id, newest_mark).where(
            deployments.c.step.is_(None),
            deployments.c.status.in_(("failed", "cancelled")),
        )
    ).all()
    for deployment_id, text in rows:
        if text:
            bind.execute(
                deployments.update()
                .where(deployments.c.id == deployment_id)
                .values(step=text[len(MARK):])
            )


def downgrade():
    pass  # the filled-in steps are true; nothing to undo
