"""Token ledger with daily roll-ups, dated price table (seeded), budgets, alert rules and alerts.

Revision ID: 0003_ledger
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_ledger"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    from backend.pricing import seed_rows

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
    from datetime import datetime, timezone

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
