"""When each cached embedding was last used, so housekeeping can forget vectors no build has asked
for in EMBEDDING_CACHE_DAYS (the vectors of edited or deleted chunks, of a model no longer used).
Existing rows count as used when they were stored.

Revision ID: 0017_embedding_cache_used_at
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_embedding_cache_used_at"
down_revision = "0012_embedding_cache"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("embedding_cache", sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE embedding_cache SET used_at = created_at")
    op.create_index("ix_embedding_cache_used_at", "embedding_cache", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_embedding_cache_used_at", "embedding_cache")
    with op.batch_alter_table("embedding_cache") as batch:
        batch.drop_column("used_at")
