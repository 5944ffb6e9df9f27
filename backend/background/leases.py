"""Database leases: a named right to do periodic work that expires unless its holder renews it,
so of the processes sharing one database (the console, every API worker) one does the work per
period, and another takes over when that one dies (after the lease's TTL) or stops (at once).

Times are the processes' own UTC clocks: hosts sharing a database keep NTP time, and a lease's TTL
leaves room for their skew."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.db import dialect_insert, metadata, utcnow

leases = sa.Table(  # migration 0013_leases
    "leases",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(300), nullable=False),  # process_owner() plus the instance's own suffix
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


def try_acquire(engine: Engine, name: str, holder: str, ttl_s: float) -> bool:
    """Take the lease `name` for `ttl_s` seconds, or renew it when `holder` has it. True when
    `holder` has it now. One transaction that works alike on SQLite and PostgreSQL: the row is
    created expired if missing, then taken only if expired or already ours — racing holders
    serialize on the row (PostgreSQL's row lock re-checks the WHERE; SQLite's write lock), so one wins."""
    now = utcnow()
    t = leases.c
    with engine.begin() as conn:
        conn.execute(dialect_insert(conn, leases).values(name=name, holder="", expires_at=now).on_conflict_do_nothing())
        taken = conn.execute(leases.update().where(t.name == name, sa.or_(t.expires_at <= now, t.holder == holder))
                             .values(holder=holder, expires_at=now + timedelta(seconds=ttl_s)))
        return taken.rowcount == 1


def release(engine: Engine, name: str, holder: str) -> None:
    """Give the lease up (a stopping process), so another takes it at its next try, not after the TTL."""
    with engine.begin() as conn:
        conn.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))
