"""Evaluation runs record their judge model, and each item why a judged metric is missing.

Revision ID: 0006_eval_judge
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_eval_judge"
down_revision = "0004_golden_eval"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("eval_runs", sa.Column("judge", sa.String(200), nullable=False, server_default=""))
    op.add_column("eval_run_items", sa.Column("judge_errors", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_run_items") as batch:  # SQLite rebuilds the table
        batch.drop_column("judge_errors")
    with op.batch_alter_table("eval_runs") as batch:
        batch.drop_column("judge")
