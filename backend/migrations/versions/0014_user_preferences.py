"""Each user's console preferences (the console language), kept across sessions and browsers.

Revision ID: 0014_user_preferences
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_user_preferences"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_preferences",
        sa.Column("user_name", sa.String(200), primary_key=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("user_preferences")
