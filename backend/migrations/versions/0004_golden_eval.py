"""Golden sets (items, edit history, frozen versions) and evaluation runs with per-item results.

Revision ID: 0004_golden_eval
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_golden_eval"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "golden_sets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "golden_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("set_id", sa.Integer, sa.ForeignKey("golden_sets.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("external_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("references", sa.JSON, nullable=False),
        sa.Column("reference_answer", sa.Text, nullable=False, server_default=""),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=True),
        sa.Column("review_comment", sa.Text, nullable=False, server_default=""),
        sa.Column("source_trace", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "golden_item_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer, nullable=False, index=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("before", sa.JSON, nullable=True),
        sa.Column("after", sa.JSON, nullable=True),
    )
    op.create_table(
        "golden_set_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("set_id", sa.Integer, sa.ForeignKey("golden_sets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("items", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("set_id", "version", name="uq_golden_set_version"),
    )
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("golden_set", sa.String(200), nullable=False),
        sa.Column("golden_version", sa.Integer, nullable=False),
        sa.Column("policy", sa.String(200), nullable=False),
        sa.Column("policy_spec", sa.JSON, nullable=False),
        sa.Column("index", sa.String(200), nullable=False),
        sa.Column("collection", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("n_items", sa.Integer, nullable=False, server_default="0"),
        sa.Column("done_items", sa.Integer, nullable=False, server_default="0"),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("unresolved", sa.Integer, nullable=False, server_default="0"),
        sa.Column("seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False, index=True),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "eval_run_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("eval_runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("gold", sa.JSON, nullable=False),
        sa.Column("retrieved", sa.JSON, nullable=False),
        sa.Column("answer", sa.Text, nullable=False, server_default=""),
        sa.Column("answer_kind", sa.String(20), nullable=False, server_default=""),
        sa.Column("reference_answer", sa.Text, nullable=False, server_default=""),
        sa.Column("latency_ms", sa.Float, nullable=False, server_default="0"),
        sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    for name in ("eval_run_items", "eval_runs", "golden_set_versions", "golden_item_history", "golden_items", "golden_sets"):
        op.drop_table(name)
