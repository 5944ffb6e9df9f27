"""The console database: one SQL layer (SQLAlchemy Core) over SQLite or PostgreSQL,
with its schema owned by Alembic migrations in backend/migrations."""
from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(500), nullable=False, server_default=""),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("result", sa.String(20), nullable=False),
    sa.Column("actor_kind", sa.String(20), nullable=False, server_default="user"),  # user | api_key | system
    sa.Column("actor_role", sa.String(20), nullable=False, server_default=""),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("name", "version", name="uq_policy_name_version"),
)

index_versions = sa.Table(
    "index_versions",
    metadata,
    sa.Column("collection", sa.String(200), primary_key=True),
    sa.Column("family", sa.String(200), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("embedding_model", sa.String(200), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("n_docs", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_chunks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    # who builds a 'building' version (host:pid) and when it last showed life: jobs.py fails dead ones
    sa.Column("owner", sa.String(300), nullable=False, server_default="", default=lambda: process_owner()),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    # payload format of its points (backend/engine/vectorstore.py): native | llamaindex (migration 0015_index_format)
    sa.Column("format", sa.String(20), nullable=False, server_default="native"),
    info={"owned": {"active": ("building",), "failed": "failed", "action": "index.build"}},
)

traces = sa.Table(
    "traces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("policy", sa.String(200), nullable=False),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("trace", sa.JSON, nullable=False),
    sa.Column("feedback", sa.Integer, nullable=True),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("feedback_by", sa.String(200), nullable=True),
    sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
)


# evaluation runs (backend.evaluation.runs): here so the job runner finds them among the owned records
eval_runs = sa.Table(
    "eval_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("golden_set", sa.String(200), nullable=False),
    sa.Column("golden_version", sa.Integer, nullable=False),
    sa.Column("policy", sa.String(200), nullable=False),
    sa.Column("policy_spec", sa.JSON, nullable=False),
    sa.Column("index", sa.String(200), nullable=False),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("n_items", sa.Integer, nullable=False, server_default="0"),
    sa.Column("done_items", sa.Integer, nullable=False, server_default="0"),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("unresolved", sa.Integer, nullable=False, server_default="0"),
    sa.Column("seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("judge", sa.String(200), nullable=False, server_default=""),  # judge model; "" = not judged
    # who runs a 'running' run (host:pid) and when it last showed life: backend.background.jobs fails the runs of dead owners
    sa.Column("owner", sa.String(300), nullable=False, server_default="", default=lambda: process_owner()),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    info={"owned": {"active": ("running",), "failed": "failed", "action": "eval.run.finish"}},
)
eval_run_items = sa.Table(
    "eval_run_items", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("eval_runs.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("gold", sa.JSON, nullable=False),
    sa.Column("retrieved", sa.JSON, nullable=False),
    sa.Column("answer", sa.Text, nullable=False, server_default=""),
    sa.Column("answer_kind", sa.String(20), nullable=False, server_default=""),
    sa.Column("reference_answer", sa.Text, nullable=False, server_default=""),
    sa.Column("latency_ms", sa.Float, nullable=False, server_default="0"),
    sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("judge_errors", sa.JSON, nullable=True),  # judged metric -> why the judge gave no value
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(ts: datetime) -> datetime:
    """A stored time made comparable: SQLite hands datetimes back naive, and every stored time is UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def process_owner() -> str:
    """host:pid of this process, the owner of the long-running records it writes (backend/background/jobs.py
    marks the records of a dead owner failed at every start)."""
    return f"{socket.gethostname()}:{os.getpid()}"


POOL_SIZE = 16  # per process; PostgreSQL's default max_connections (100) holds a few replicas


def make_engine(url: str) -> Engine:
    """Engine for the URL; SQLite gets WAL and a busy timeout so the console and CLI can share it."""
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit is durable when the process dies (not on power loss) and costs no
            # fsync; FULL spent ~5 ms per commit here, most of a cached answer's time.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # A pool as large as the API's concurrent requests: past pool_size, every request opened and closed
    # its own PostgreSQL connection (QueuePool's overflow), ~15% of a cached answer's server time.
    return sa.create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_SIZE,
                            connect_args={"connect_timeout": 5} if "postgres" in url else {})


def dialect_insert(conn, table: sa.Table):  # noqa: ANN001, ANN201 - Connection -> Insert
    """INSERT with the dialect's ON CONFLICT clauses (SQLite and PostgreSQL share their spelling)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migrations (idempotent; runs at every service start).
    "heads": each feature adds its tables in its own migration branched from 0001."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
