"""Per-chunk embedding cache (backend/ingestion/embedding_cache.py): a rebuild embeds only chunk texts that
no earlier build of the same model embedded.

Revision ID: 0012_embedding_cache
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_embedding_cache"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embedding_cache",
        sa.Column("model", sa.String(300), primary_key=True),
        sa.Column("text_sha256", sa.String(64), primary_key=True),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("embedding_cache")
