"""Ledger: where each request came from (`source`: api | console | system) and the API key's name;
`source` becomes a key of the three daily roll-ups and a value of `ledger_dims`; a new roll-up
`ledger_key_daily` holds each API key's requests and cost per day (the key budgets read it on
every API request).

Existing rows: a ledger user 'key:NAME' was an API key without an end user (source api, api_key
NAME), the user 'system' the system; every other row is taken as console traffic (the CLI's
rows cannot be told apart). The roll-ups are derived data: they are dropped, created again with
the new key column and refilled from the raw rows with INSERT ... SELECT ... GROUP BY (one
statement each, on SQLite and PostgreSQL), and `ledger_key_daily` is filled the same way. The
downgrade drops the new table, columns and indexes and rebuilds the roll-ups without `source`.

Revision ID: 0008_ledger_source
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_ledger_source"
down_revision = "0003_ledger"
branch_labels = None
depends_on = None

DAY_S = 86400
ROLLUPS = ("ledger_daily", "ledger_latency_daily", "ledger_question_daily")

# The raw rows as this migration knows them (not the application's table object: later code may change).
L = sa.table(
    "ledger",
    sa.column("epoch", sa.BigInteger), sa.column("user", sa.String), sa.column("policy", sa.String),
    sa.column("model", sa.String), sa.column("variant", sa.String), sa.column("index_version", sa.String),
    sa.column("kind", sa.String), sa.column("stage", sa.String), sa.column("status", sa.String),
    sa.column("cache_hit", sa.Boolean), sa.column("prompt_tokens", sa.Integer),
    sa.column("completion_tokens", sa.Integer), sa.column("cached_tokens", sa.Integer),
    sa.column("cost_usd", sa.Float), sa.column("saved_usd", sa.Float), sa.column("latency_ms", sa.Float),
    sa.column("price_known", sa.Boolean), sa.column("lat_bucket", sa.SmallInteger),
    sa.column("retrieve_bucket", sa.SmallInteger), sa.column("total_bucket", sa.SmallInteger),
    sa.column("question_hash", sa.String), sa.column("source", sa.String), sa.column("api_key", sa.String),
)
DIMS_TABLE = sa.table("ledger_dims", sa.column("dim", sa.String), sa.column("value", sa.String),
                      sa.column("first_day", sa.Integer), sa.column("last_day", sa.Integer))


def _create_rollups(with_source: bool) -> dict[str, sa.Table]:
    def src() -> list[sa.Column]:
        return [sa.Column("source", sa.String(20), primary_key=True)] if with_source else []

    daily = op.create_table(
        "ledger_daily",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("policy", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("user", sa.String(200), primary_key=True),
        sa.Column("variant", sa.String(100), primary_key=True),
        sa.Column("index_version", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(20), primary_key=True),
        sa.Column("cache_hit", sa.Boolean, primary_key=True),
        *src(),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("saved_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("unpriced", sa.Integer, nullable=False),
    )
    latency = op.create_table(
        "ledger_latency_daily",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("stage", sa.String(20), primary_key=True),
        sa.Column("policy", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("variant", sa.String(100), primary_key=True),
        sa.Column("index_version", sa.String(200), primary_key=True),
        *src(),
        sa.Column("bucket", sa.SmallInteger, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    question = op.create_table(
        "ledger_question_daily",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("question_hash", sa.String(16), primary_key=True),
        sa.Column("policy", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("variant", sa.String(100), primary_key=True),
        sa.Column("index_version", sa.String(200), primary_key=True),
        *src(),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("saved_usd", sa.Float, nullable=False),
    )
    return {"daily": daily, "latency": latency, "question": question}


def _refill(t: dict[str, sa.Table], with_source: bool) -> None:
    """The roll-ups from the raw rows, as LedgerStore.rebuild_rollups computes them."""
    conn = op.get_bind()
    day = (L.c.epoch // DAY_S).label("day")
    variant = sa.func.coalesce(L.c.variant, "").label("variant")
    src = [L.c.source.label("source")] if with_source else []

    keys = [day, L.c.kind, L.c.policy, L.c.model, L.c.user, variant, L.c.index_version, L.c.status, L.c.cache_hit, *src]
    conn.execute(t["daily"].insert().from_select(
        [k.name for k in keys] + ["calls", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd",
                                  "saved_usd", "latency_ms", "unpriced"],
        sa.select(*keys, sa.func.count(), sa.func.sum(L.c.prompt_tokens), sa.func.sum(L.c.completion_tokens),
                  sa.func.sum(L.c.cached_tokens), sa.func.sum(L.c.cost_usd), sa.func.sum(L.c.saved_usd),
                  sa.func.sum(L.c.latency_ms), sa.func.sum(sa.case((L.c.price_known, 0), else_=1)))
        .group_by(*keys)))

    dims = [L.c.policy.label("policy"), L.c.model.label("model"), variant, L.c.index_version.label("index_version"),
            *src]
    parts = [sa.select(day, L.c.stage.label("stage"), *dims, L.c.lat_bucket.label("bucket"))]
    for stage, col in (("retrieve", L.c.retrieve_bucket), ("total", L.c.total_bucket)):
        parts.append(sa.select(day, sa.literal(stage, sa.String).label("stage"), *dims, col.label("bucket"))
                     .where(L.c.kind == "chat", col.is_not(None)))
    u = sa.union_all(*parts).subquery("u")
    ukeys = [u.c[c] for c in u.c.keys()]
    conn.execute(t["latency"].insert().from_select(
        [c.name for c in ukeys] + ["n"], sa.select(*ukeys, sa.func.count()).group_by(*ukeys)))

    qkeys = [day, L.c.question_hash, L.c.policy, L.c.model, variant, L.c.index_version, *src]
    conn.execute(t["question"].insert().from_select(
        [k.name for k in qkeys] + ["requests", "cost_usd", "saved_usd"],
        sa.select(*qkeys, sa.func.count(), sa.func.sum(L.c.cost_usd), sa.func.sum(L.c.saved_usd))
        .where(L.c.kind == "chat").group_by(*qkeys)))


def upgrade() -> None:
    op.add_column("ledger", sa.Column("source", sa.String(20), nullable=False, server_default="console"))
    op.add_column("ledger", sa.Column("api_key", sa.String(64), nullable=True))
    conn = op.get_bind()
    conn.execute(L.update().where(L.c.user.like("key:%"))
                 .values(source="api", api_key=sa.func.substr(L.c.user, 5, 64)))
    conn.execute(L.update().where(L.c.user == "system").values(source="system"))
    op.create_index("ix_ledger_source_epoch", "ledger", ["source", "epoch"])
    op.create_index("ix_ledger_api_key_epoch", "ledger", ["api_key", "epoch"])

    for name in ROLLUPS:
        op.drop_table(name)
    _refill(_create_rollups(with_source=True), with_source=True)
    # the filter's choices: each source with the first and last day it was seen
    daily = sa.table("ledger_daily", sa.column("day", sa.Integer), sa.column("source", sa.String))
    conn.execute(DIMS_TABLE.delete().where(DIMS_TABLE.c.dim == "source"))
    conn.execute(DIMS_TABLE.insert().from_select(
        ["dim", "value", "first_day", "last_day"],
        sa.select(sa.literal("source", sa.String), daily.c.source, sa.func.min(daily.c.day), sa.func.max(daily.c.day))
        .group_by(daily.c.source)))

    keys = op.create_table(
        "ledger_key_daily",
        sa.Column("api_key", sa.String(64), primary_key=True),
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
    )
    day = L.c.epoch // DAY_S
    conn.execute(keys.insert().from_select(
        ["api_key", "day", "requests", "calls", "cost_usd"],
        sa.select(L.c.api_key, day, sa.func.sum(sa.case((L.c.kind == "chat", 1), else_=0)), sa.func.count(),
                  sa.func.sum(L.c.cost_usd)).where(L.c.api_key.is_not(None)).group_by(L.c.api_key, day)))


def downgrade() -> None:
    conn = op.get_bind()
    op.drop_table("ledger_key_daily")
    conn.execute(DIMS_TABLE.delete().where(DIMS_TABLE.c.dim == "source"))
    for name in ROLLUPS:
        op.drop_table(name)
    _refill(_create_rollups(with_source=False), with_source=False)
    op.drop_index("ix_ledger_api_key_epoch", "ledger")
    op.drop_index("ix_ledger_source_epoch", "ledger")
    with op.batch_alter_table("ledger") as batch:  # SQLite rebuilds the table; PostgreSQL drops the columns
        batch.drop_column("api_key")
        batch.drop_column("source")
