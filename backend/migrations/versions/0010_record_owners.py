"""Owners of long-running records: `owner` (host:pid) and `heartbeat_at` on evaluation runs and
index versions, like jobs have. At every start, a record still 'running' / 'building' whose owner
is dead (a dead pid on this host, or no heartbeat for a while from another host) is marked failed
(backend/background/jobs.py); before this, a crash left evaluation runs 'running' forever.

Existing rows get owner '' (the server default): an active row without an owner was written
before owners were recorded, and is failed once its last sign of life is older than the bound.

Revision ID: 0010_record_owners
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_record_owners"
down_revision = "0009_budget_reservations"
branch_labels = None
depends_on = ("0006_eval_judge",)  # eval_runs as 0004/0006 leave it; index_versions comes from 0001

TABLES = ("eval_runs", "index_versions")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("owner", sa.String(300), nullable=False, server_default=""))
        op.add_column(table, sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:  # SQLite rebuilds the table
            batch.drop_column("heartbeat_at")
            batch.drop_column("owner")
