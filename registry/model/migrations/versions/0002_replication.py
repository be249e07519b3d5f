"""Replication (Harbor's): remote registries, policies, executions and their per-artifact tasks."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replication_registries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('type', sa.String(length=32), nullable=False),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('insecure', sa.Boolean(), nullable=False),
        sa.Column('description', sa.String(length=1024), nullable=False),
        sa.Column('access_key', sa.String(length=255), nullable=False),
        sa.Column('access_secret', sa.Text(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'))
    op.create_table('replication_policies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.String(length=1024), nullable=False),
        sa.Column('src_registry_id', sa.Integer(), nullable=True),
        sa.Column('dest_registry_id', sa.Integer(), nullable=True),
        sa.Column('dest_namespace', sa.String(length=255), nullable=False),
        sa.Column('dest_namespace_replace_count', sa.Integer(), nullable=False),
        sa.Column('filters', sa.JSON(), nullable=False),
        sa.Column('trigger', sa.JSON(), nullable=False),
        sa.Column('deletion', sa.Boolean(), nullable=False),
        sa.Column('override', sa.Boolean(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('last_run', sa.Float(), nullable=False),
        sa.Column('creator', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['dest_registry_id'], ['replication_registries.id']),
        sa.ForeignKeyConstraint(['src_registry_id'], ['replication_registries.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'))
    op.create_table('replication_executions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('policy_id', sa.Integer(), nullable=False),
        sa.Column('trigger', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('status_text', sa.String(length=1024), nullable=False),
        sa.Column('scope', sa.JSON(), nullable=False),
        sa.Column('operator', sa.String(length=255), nullable=False),
        sa.Column('lease', sa.Float(), nullable=False),
        sa.Column('start_time', sa.Float(), nullable=False),
        sa.Column('end_time', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['policy_id'], ['replication_policies.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index(op.f('ix_replication_executions_policy_id'), 'replication_executions', ['policy_id'],
                    unique=False)
    op.create_index('ix_replication_executions_status', 'replication_executions', ['status'], unique=False)
    op.create_table('replication_tasks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('execution_id', sa.Integer(), nullable=False),
        sa.Column('resource_type', sa.String(length=32), nullable=False),
        sa.Column('operation', sa.String(length=32), nullable=False),
        sa.Column('src_resource', sa.String(length=1024), nullable=False),
        sa.Column('dst_resource', sa.String(length=1024), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('log', sa.Text(), nullable=False),
        sa.Column('start_time', sa.Float(), nullable=False),
        sa.Column('end_time', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['execution_id'], ['replication_executions.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index(op.f('ix_replication_tasks_execution_id'), 'replication_tasks', ['execution_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_replication_tasks_execution_id'), table_name='replication_tasks')
    op.drop_table('replication_tasks')
    op.drop_index('ix_replication_executions_status', table_name='replication_executions')
    op.drop_index(op.f('ix_replication_executions_policy_id'), table_name='replication_executions')
    op.drop_table('replication_executions')
    op.drop_table('replication_policies')
    op.drop_table('replication_registries')
