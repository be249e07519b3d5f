"""Tags indexed by artifact, newest push first: the UI's pages read an artifact's first tags from the index."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tags_artifact_recent", "tags", ["artifact_id", sa.text("push_time DESC"), "name"])
    op.drop_index("ix_tags_artifact_id", table_name="tags")


def downgrade() -> None:
    op.create_index("ix_tags_artifact_id", "tags", ["artifact_id"])
    op.drop_index("ix_tags_artifact_recent", table_name="tags")
