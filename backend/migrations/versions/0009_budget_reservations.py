"""Budget reservations: a hard budget holds each request's estimated cost from before its first
paid call until its ledger rows are written (backend.ledger.budgets `reserve` / `settle`), so concurrent
requests cannot all pass a check made before any of them spent. Rows expire (`expires_epoch`,
seconds since 1970) so a crashed process does not hold a budget for ever.

No data changes: saved price patterns keep working (regexes are now matched by the `regex`
package under a timeout), and price rows with an infinite or NaN rate, which validation now
refuses, are left in place and ignored when the table is read (the log names them).

Revision ID: 0009_budget_reservations
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_budget_reservations"
down_revision = "0008_ledger_source"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_reservations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("budget_id", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("amount_usd", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_epoch", sa.Float, nullable=False),
    )
    op.create_index("ix_budget_reservations_budget", "budget_reservations", ["budget_id", "expires_epoch"])
    op.create_index("ix_budget_reservations_request", "budget_reservations", ["request_id"])
    op.create_index("ix_budget_reservations_expires", "budget_reservations", ["expires_epoch"])


def downgrade() -> None:
    op.drop_table("budget_reservations")
