"""API key budget reservations: `budget_reservations.api_key` names the key whose monthly budget a
row holds (budget_id 0, backend.ledger.budgets.KEY_BUDGET_ID), so an API key's paid calls reserve their
estimated cost before the call like a hard budget's (backend.ledger.budgets `reserve` / `settle`); checking
the key's spend before the request and adding it after let concurrent requests overrun the budget.

No data changes: existing rows are hard budgets' (api_key NULL).

Revision ID: 0011_key_reservations
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_key_reservations"
down_revision = "0010_record_owners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("budget_reservations", sa.Column("api_key", sa.String(64), nullable=True))
    op.create_index("ix_budget_reservations_key", "budget_reservations", ["api_key", "expires_epoch"])


def downgrade() -> None:
    op.drop_index("ix_budget_reservations_key", "budget_reservations")
    with op.batch_alter_table("budget_reservations") as batch:  # SQLite rebuilds the table
        batch.drop_column("api_key")
