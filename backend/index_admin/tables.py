"""Tables of the index admin (created by migration 0002_index_admin): who pointed which alias
where and why, and the stored gate comparisons shown next to Promote."""
from __future__ import annotations

import sqlalchemy as sa

from backend.db import metadata

TS = sa.DateTime(timezone=True)

alias_history = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", TS, nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("alias", sa.String(200), nullable=False, index=True),
    sa.Column("from_collection", sa.String(200), nullable=True),
    sa.Column("to_collection", sa.String(200), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),  # promote | rollback
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
)

index_gates = sa.Table(
    "index_gates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", TS, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("family", sa.String(200), nullable=False),
    sa.Column("candidate", sa.String(200), nullable=False, index=True),
    sa.Column("baseline", sa.String(200), nullable=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("n_queries", sa.Integer, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),  # {"candidate": {...}, "baseline": {...} | None}
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),
)
