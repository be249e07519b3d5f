"""The artifact index's references (artifact_blobs): what each artifact references, for quota release."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_blobs",
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("artifact_id", "digest"))
    op.create_index(op.f("ix_artifact_blobs_digest"), "artifact_blobs", ["digest"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_artifact_blobs_digest"), table_name="artifact_blobs")
    op.drop_table("artifact_blobs")
