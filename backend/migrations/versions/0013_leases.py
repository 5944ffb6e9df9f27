"""Database leases (backend/background/leases.py): of the processes sharing the database, the one holding a
lease runs the periodic housekeeping (budget periods, alert rules) for that period.

Revision ID: 0013_leases
"""
import sqlalchemy as sa
from alembic import op

revision = "0013_leases"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(300), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
