"""Releases (policy version x index version), the live configuration with a candidate share,
release events, and pairwise votes from blind comparisons.

Revision ID: 0005_releases
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_releases"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("policy_name", sa.String(200), nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=True),
        sa.Column("collection", sa.String(200), nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "release_state",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("current_id", sa.Integer, nullable=True),
        sa.Column("candidate_id", sa.Integer, nullable=True),
        sa.Column("share", sa.Float, nullable=False, server_default="0"),
        sa.Column("experiment_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("guardrails", sa.JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "release_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", TS, nullable=False, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("from_id", sa.Integer, nullable=True),
        sa.Column("to_id", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_table(
        "pairwise_votes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", TS, nullable=False, index=True),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("policy_a", sa.String(200), nullable=False),
        sa.Column("policy_b", sa.String(200), nullable=False),
        sa.Column("request_a", sa.String(64), nullable=False),
        sa.Column("request_b", sa.String(64), nullable=False),
        sa.Column("shown_first", sa.String(1), nullable=False),
        sa.Column("blind", sa.Boolean, nullable=False),
        sa.Column("vote", sa.String(10), nullable=False),
    )


def downgrade() -> None:
    for name in ("pairwise_votes", "release_events", "release_state", "releases"):
        op.drop_table(name)
