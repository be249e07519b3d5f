"""The first schema: every table of registry.model.tables."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_logs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('op_time', sa.Float(), nullable=False),
        sa.Column('username', sa.String(length=255), nullable=False),
        sa.Column('operation', sa.String(length=32), nullable=False),
        sa.Column('resource_type', sa.String(length=32), nullable=False),
        sa.Column('resource', sa.String(length=1024), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=True),
        sa.Column('remote_addr', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    op.create_index(op.f('ix_audit_logs_op_time'), 'audit_logs', ['op_time'], unique=False)
    op.create_index(op.f('ix_audit_logs_project_id'), 'audit_logs', ['project_id'], unique=False)
    op.create_table('login_failures',
        sa.Column('username', sa.String(length=255), nullable=False),
        sa.Column('remote_addr', sa.String(length=64), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('last_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('username', 'remote_addr'))
    op.create_table('settings',
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('key'))
    op.create_table('users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('username', sa.String(length=255), nullable=False),
        sa.Column('email', sa.String(length=255), nullable=False),
        sa.Column('realname', sa.String(length=255), nullable=False),
        sa.Column('comment', sa.String(length=1024), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=False),
        sa.Column('sysadmin', sa.Boolean(), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('username'))
    op.create_table('projects',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=True),
        sa.Column('public', sa.Boolean(), nullable=False),
        sa.Column('quota_bytes', sa.BigInteger(), nullable=False),
        sa.Column('content_trust', sa.Boolean(), nullable=False),
        sa.Column('auto_delete_untagged', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'))
    op.create_table('immutable_rules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('repo_pattern', sa.String(length=255), nullable=False),
        sa.Column('repo_decoration', sa.String(length=32), nullable=False),
        sa.Column('tag_pattern', sa.String(length=255), nullable=False),
        sa.Column('tag_decoration', sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index(op.f('ix_immutable_rules_project_id'), 'immutable_rules', ['project_id'], unique=False)
    op.create_table('members',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('project_id', 'user_id'))
    op.create_table('project_blobs',
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=255), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('project_id', 'digest'))
    op.create_table('repositories',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('pull_count', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'))
    op.create_index(op.f('ix_repositories_project_id'), 'repositories', ['project_id'], unique=False)
    op.create_table('retention_policies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('rules', sa.JSON(), nullable=False),
        sa.Column('schedule', sa.String(length=255), nullable=False),
        sa.Column('last_run', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('project_id'))
    op.create_table('robots',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.String(length=1024), nullable=False),
        sa.Column('secret_hash', sa.String(length=255), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=True),
        sa.Column('permissions', sa.JSON(), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('creator', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'))
    op.create_table('webhook_policies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.String(length=1024), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('event_types', sa.JSON(), nullable=False),
        sa.Column('targets', sa.JSON(), nullable=False),
        sa.Column('creator', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index(op.f('ix_webhook_policies_project_id'), 'webhook_policies', ['project_id'], unique=False)
    op.create_table('artifacts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repository_id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=255), nullable=False),
        sa.Column('media_type', sa.String(length=255), nullable=False),
        sa.Column('artifact_type', sa.String(length=255), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=True),
        sa.Column('extra', sa.JSON(), nullable=False),
        sa.Column('push_time', sa.Float(), nullable=False),
        sa.Column('pull_time', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('repository_id', 'digest'))
    op.create_index(op.f('ix_artifacts_repository_id'), 'artifacts', ['repository_id'], unique=False)
    op.create_index(op.f('ix_artifacts_subject'), 'artifacts', ['subject'], unique=False)
    op.create_table('retention_executions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('policy_id', sa.Integer(), nullable=False),
        sa.Column('dry_run', sa.Boolean(), nullable=False),
        sa.Column('trigger', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('results', sa.JSON(), nullable=False),
        sa.Column('start_time', sa.Float(), nullable=False),
        sa.Column('end_time', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['policy_id'], ['retention_policies.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index(op.f('ix_retention_executions_policy_id'), 'retention_executions', ['policy_id'], unique=False)
    op.create_table('webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('policy_id', sa.Integer(), nullable=False),
        sa.Column('event_type', sa.String(length=64), nullable=False),
        sa.Column('address', sa.String(length=2048), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.String(length=1024), nullable=False),
        sa.Column('next_attempt', sa.Float(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['policy_id'], ['webhook_policies.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['status', 'next_attempt'], unique=False)
    op.create_index(op.f('ix_webhook_deliveries_policy_id'), 'webhook_deliveries', ['policy_id'], unique=False)
    op.create_table('tags',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('repository_id', sa.Integer(), nullable=False),
        sa.Column('artifact_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('push_time', sa.Float(), nullable=False),
        sa.Column('pull_time', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('repository_id', 'name'))
    op.create_index(op.f('ix_tags_artifact_id'), 'tags', ['artifact_id'], unique=False)
    op.create_table(
        'artifact_blobs',
        sa.Column('artifact_id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('artifact_id', 'digest'))
    op.create_index(op.f('ix_artifact_blobs_digest'), 'artifact_blobs', ['digest'], unique=False)
    op.create_table('web_sessions',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('remote_addr', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('last_seen', sa.Float(), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token_hash'))
    op.create_index(op.f('ix_web_sessions_user_id'), 'web_sessions', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_web_sessions_user_id'), table_name='web_sessions')
    op.drop_table('web_sessions')
    op.drop_index(op.f('ix_artifact_blobs_digest'), table_name='artifact_blobs')
    op.drop_table('artifact_blobs')
    op.drop_table('tags')
    op.drop_table('webhook_deliveries')
    op.drop_table('retention_executions')
    op.drop_table('artifacts')
    op.drop_table('webhook_policies')
    op.drop_table('robots')
    op.drop_table('retention_policies')
    op.drop_table('repositories')
    op.drop_table('project_blobs')
    op.drop_table('members')
    op.drop_table('immutable_rules')
    op.drop_table('projects')
    op.drop_table('users')
    op.drop_table('settings')
    op.drop_table('login_failures')
    op.drop_table('audit_logs')
