"""Releases and A/B: which policy and index version serve live traffic (manager), the sticky
traffic split and guardrails (manager), online A/B statistics and guardrail figures (online,
ab_stats). A live request is answered through them by `backend.live`.

May import: the engine, evaluation runs and statistics, background jobs, the ledger's tables,
settings, errors, text, db, access."""
