"""The payload format of each index version: versions built before ingestion went through LlamaIndex's
`QdrantVectorStore` are `native`; they keep serving until rebuilt.

Revision ID: 0015_index_format
"""
import sqlalchemy as sa
from alembic import op

revision = "0015_index_format"
down_revision = "0001"  # index_versions comes from 0001
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("index_versions", sa.Column("format", sa.String(20), nullable=False, server_default="native"))


def downgrade() -> None:
    with op.batch_alter_table("index_versions") as batch:  # SQLite rebuilds the table
        batch.drop_column("format")
