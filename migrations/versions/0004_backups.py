"""backups (issue 6): S3 destinations, policies, backups, restores, notification channels

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('backup_destinations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('endpoint_url', sa.String(length=500), nullable=False),
    sa.Column('region', sa.String(length=63), nullable=False),
    sa.Column('bucket', sa.String(length=63), nullable=False),
    sa.Column('prefix', sa.String(length=200), nullable=False),
    sa.Column('access_key_id', sa.String(length=200), nullable=False),
    sa.Column('secret_access_key', sa.Text(), nullable=False),
    sa.Column('path_style', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_backup_destinations_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup_destinations')),
    sa.UniqueConstraint('team_id', 'name', name=op.f('uq_backup_destinations_team_id_name'))
    )
    with op.batch_alter_table('backup_destinations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backup_destinations_team_id'), ['team_id'], unique=False)

    op.create_table('notification_channels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('secret', sa.Text(), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_notification_channels_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_channels')),
    sa.UniqueConstraint('team_id', 'name', name=op.f('uq_notification_channels_team_id_name'))
    )
    with op.batch_alter_table('notification_channels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_channels_team_id'), ['team_id'], unique=False)

    op.create_table('backup_policies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('target_type', sa.String(length=20), nullable=False),
    sa.Column('database_url', sa.String(length=500), nullable=True),
    sa.Column('database_password', sa.Text(), nullable=True),
    sa.Column('destination_id', sa.Integer(), nullable=False),
    sa.Column('cron', sa.String(length=100), nullable=False),
    sa.Column('keep_local_days', sa.Integer(), nullable=False),
    sa.Column('keep_daily', sa.Integer(), nullable=False),
    sa.Column('keep_weekly', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['destination_id'], ['backup_destinations.id'], name=op.f('fk_backup_policies_destination_id_backup_destinations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_backup_policies_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup_policies')),
    sa.UniqueConstraint('team_id', 'name', name=op.f('uq_backup_policies_team_id_name'))
    )
    with op.batch_alter_table('backup_policies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backup_policies_destination_id'), ['destination_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_backup_policies_team_id'), ['team_id'], unique=False)

    op.create_table('backups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('policy_id', sa.Integer(), nullable=False),
    sa.Column('slot', sa.String(length=40), nullable=True),
    sa.Column('trigger', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('etag', sa.String(length=80), nullable=True),
    sa.Column('bucket', sa.String(length=63), nullable=True),
    sa.Column('object_key', sa.String(length=500), nullable=True),
    sa.Column('upload_id', sa.String(length=500), nullable=True),
    sa.Column('local_path', sa.String(length=500), nullable=True),
    sa.Column('uploaded', sa.Boolean(), nullable=False),
    sa.Column('row_counts', sa.JSON(), nullable=False),
    sa.Column('rq_job_id', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['policy_id'], ['backup_policies.id'], name=op.f('fk_backups_policy_id_backup_policies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_backups_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backups')),
    sa.UniqueConstraint('policy_id', 'slot', name=op.f('uq_backups_policy_id_slot'))
    )
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backups_policy_id'), ['policy_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_backups_team_id'), ['team_id'], unique=False)

    op.create_table('restores',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('backup_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('target_database', sa.String(length=63), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('log', sa.Text(), nullable=False),
    sa.Column('comparison', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['backup_id'], ['backups.id'], name=op.f('fk_restores_backup_id_backups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_restores_team_id_teams'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_restores_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_restores'))
    )
    with op.batch_alter_table('restores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_restores_backup_id'), ['backup_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_restores_team_id'), ['team_id'], unique=False)



def downgrade():
    with op.batch_alter_table('restores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_restores_team_id'))
        batch_op.drop_index(batch_op.f('ix_restores_backup_id'))

    op.drop_table('restores')
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_backups_team_id'))
        batch_op.drop_index(batch_op.f('ix_backups_policy_id'))

    op.drop_table('backups')
    with op.batch_alter_table('backup_policies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_backup_policies_team_id'))
        batch_op.drop_index(batch_op.f('ix_backup_policies_destination_id'))

    op.drop_table('backup_policies')
    with op.batch_alter_table('notification_channels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_channels_team_id'))

    op.drop_table('notification_channels')
    with op.batch_alter_table('backup_destinations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_backup_destinations_team_id'))

    op.drop_table('backup_destinations')
