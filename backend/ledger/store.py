"""Ledger tables and the write path.

`ledger` holds one row per model call. Three daily roll-ups, updated in the same transaction
as the row, answer the dashboard for day-aligned ranges without scanning the raw rows:

- `ledger_daily`: calls, tokens, cost, savings by day and every filter dimension (user included);
- `ledger_latency_daily`: latency histogram counts by day, stage and the dimensions but user;
- `ledger_question_daily`: requests and cost per question by day and the dimensions but user
  (question text in `ledger_questions`).

Every row says where its request came from (`source`: api, console or system) and, for API
traffic, the key's name (`api_key`). `source` is a key of all three roll-ups; a fourth,
`ledger_key_daily`, holds each API key's requests and cost per day (a key's month-to-date spend is
checked on every API request: at most 31 rows). Migration 0008_ledger_source.

Roll-up keys store '' for a missing variant (NULLs do not conflict in a unique key)."""
from __future__ import annotations

import hashlib
import unicodedata
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from backend.db import aware, dialect_insert, metadata, utcnow
from backend.ledger.buckets import bucket_of
from backend.ledger.calls import ModelCall, RequestContext

DAY_S = 86400
TS = sa.DateTime(timezone=True)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("ts", TS, nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),  # seconds since 1970 UTC: dialect-neutral time buckets
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
    sa.Column("source", sa.String(20), nullable=False, server_default="console"),  # api | console | system
    sa.Column("api_key", sa.String(64), nullable=True),  # the key's name for API traffic
    sa.Index("ix_ledger_epoch", "epoch"),
    sa.Index("ix_ledger_user_epoch", "user", "epoch"),
    sa.Index("ix_ledger_request", "request_id"),
    sa.Index("ix_ledger_source_epoch", "source", "epoch"),
    sa.Index("ix_ledger_api_key_epoch", "api_key", "epoch"),
)

DIMS = ("kind", "policy", "model", "user", "variant", "index_version", "status", "cache_hit", "source")
ledger_daily = sa.Table(
    "ledger_daily",
    metadata,
    sa.Column("day", sa.Integer, primary_key=True),  # epoch // 86400
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("policy", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("user", sa.String(200), primary_key=True),
    sa.Column("variant", sa.String(100), primary_key=True),
    sa.Column("index_version", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(20), primary_key=True),
    sa.Column("cache_hit", sa.Boolean, primary_key=True),
    sa.Column("source", sa.String(20), primary_key=True),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("saved_usd", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("unpriced", sa.Integer, nullable=False),
)

LAT_DIMS = ("stage", "policy", "model", "variant", "index_version", "source")
ledger_latency_daily = sa.Table(
    "ledger_latency_daily",
    metadata,
    sa.Column("day", sa.Integer, primary_key=True),
    sa.Column("stage", sa.String(20), primary_key=True),
    sa.Column("policy", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("variant", sa.String(100), primary_key=True),
    sa.Column("index_version", sa.String(200), primary_key=True),
    sa.Column("source", sa.String(20), primary_key=True),
    sa.Column("bucket", sa.SmallInteger, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)

Q_DIMS = ("question_hash", "policy", "model", "variant", "index_version", "source")
ledger_question_daily = sa.Table(
    "ledger_question_daily",
    metadata,
    sa.Column("day", sa.Integer, primary_key=True),
    sa.Column("question_hash", sa.String(16), primary_key=True),
    sa.Column("policy", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("variant", sa.String(100), primary_key=True),
    sa.Column("index_version", sa.String(200), primary_key=True),
    sa.Column("source", sa.String(20), primary_key=True),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("saved_usd", sa.Float, nullable=False),
)

# Each API key's traffic per day: the key budgets and the console's API section read it.
ledger_key_daily = sa.Table(
    "ledger_key_daily",
    metadata,
    sa.Column("api_key", sa.String(64), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    sa.Column("requests", sa.Integer, nullable=False),  # chat rows
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
)

# Every value each filter dimension has taken, with the first and last day it was seen: the
# dashboard's filter choices without a DISTINCT over the roll-ups.
FILTER_DIMS = ("policy", "model", "user", "variant", "index_version", "source")
ledger_dims = sa.Table(
    "ledger_dims",
    metadata,
    sa.Column("dim", sa.String(20), primary_key=True),
    sa.Column("value", sa.String(200), primary_key=True),
    sa.Column("first_day", sa.Integer, nullable=False),
    sa.Column("last_day", sa.Integer, nullable=False),
)

ledger_questions = sa.Table(
    "ledger_questions",
    metadata,
    sa.Column("question_hash", sa.String(16), primary_key=True),
    sa.Column("question", sa.String(500), nullable=False),
)


def question_hash(question: str) -> str:
    norm = " ".join(unicodedata.normalize("NFKC", question).casefold().split())
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


def to_epoch(ts: datetime) -> int:
    return int(aware(ts).timestamp())


def row_values(ctx: RequestContext, call: ModelCall) -> dict:
    """The ledger row of one priced call."""
    ts = call.ts or utcnow()
    return dict(
        ts=ts, epoch=to_epoch(ts), request_id=ctx.request_id, user=ctx.user, policy=ctx.policy,
        policy_version=ctx.policy_version, variant=ctx.variant, index_version=ctx.index_version,
        kind=call.kind, stage=call.stage, model=call.model, prompt_tokens=int(call.prompt_tokens),
        completion_tokens=int(call.completion_tokens), cached_tokens=int(call.cached_tokens),
        token_method=call.token_method, cost_usd=float(call.cost_usd), price_known=bool(call.price_known),
        price_id=call.price_id, latency_ms=float(call.latency_ms), retrieve_ms=call.retrieve_ms,
        total_ms=call.total_ms, lat_bucket=bucket_of(call.latency_ms), retrieve_bucket=bucket_of(call.retrieve_ms),
        total_bucket=bucket_of(call.total_ms), cache_hit=bool(call.cache_hit), saved_usd=float(call.saved_usd),
        status=call.status, error_class=call.error_class, question_hash=question_hash(ctx.question),
        question=ctx.question[:500], source=ctx.source, api_key=ctx.api_key,
    )


def _adding_upsert(conn: Connection, table: sa.Table, keys: list[str], adds: list[str]):
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET each `adds` column += the new row's value."""
    stmt = dialect_insert(conn, table)
    return stmt.on_conflict_do_update(index_elements=keys, set_={k: table.c[k] + stmt.excluded[k] for k in adds})


DAILY_SUMS = ["calls", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "saved_usd", "latency_ms",
              "unpriced"]


def _sums(groups: dict[tuple, dict], key: tuple, values: dict, sums: list[str]) -> dict:
    """The roll-up row of `key` in this batch, created with zeroed sums."""
    row = groups.get(key)
    if row is None:
        row = groups[key] = {**values, **dict.fromkeys(sums, 0)}
    return row


def _sort_key(key: tuple) -> tuple:
    return tuple((v is None, "" if v is None else str(v)) for v in key)


class LedgerStore:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._stmts: dict | None = None  # built once: executing the same statement objects skips recompiling

    @property
    def engine(self) -> Engine:
        return self._engine

    def _statements(self, conn: Connection) -> dict:
        if self._stmts is None:
            dims = dialect_insert(conn, ledger_dims)
            self._stmts = {
                "row": ledger.insert(),
                "daily": _adding_upsert(conn, ledger_daily, ["day", *DIMS], DAILY_SUMS),
                "latency": _adding_upsert(conn, ledger_latency_daily, ["day", *LAT_DIMS, "bucket"], ["n"]),
                "question": _adding_upsert(conn, ledger_question_daily, ["day", *Q_DIMS],
                                           ["requests", "cost_usd", "saved_usd"]),
                "key": _adding_upsert(conn, ledger_key_daily, ["api_key", "day"], ["requests", "calls", "cost_usd"]),
                "question_text": dialect_insert(conn, ledger_questions).on_conflict_do_nothing(index_elements=["question_hash"]),
                "dims": dims.on_conflict_do_update(index_elements=["dim", "value"], set_={
                    "first_day": sa.case((dims.excluded.first_day < ledger_dims.c.first_day, dims.excluded.first_day),
                                         else_=ledger_dims.c.first_day),
                    "last_day": sa.case((dims.excluded.last_day > ledger_dims.c.last_day, dims.excluded.last_day),
                                        else_=ledger_dims.c.last_day)}),
            }
        return self._stmts

    def write(self, row: dict) -> None:
        """One row and its roll-ups in one transaction."""
        with self._engine.begin() as conn:
            self.write_rows(conn, [row])

    def write_rows(self, conn: Connection, rows: list[dict]) -> None:
        """The rows and their roll-ups in the caller's transaction; the roll-ups are summed per key
        first, so a batch of a hundred answers to one question is one upsert per table. Keys are
        written in sorted order: concurrent writers take row locks in the same order."""
        if not rows:
            return
        st = self._statements(conn)
        conn.execute(st["row"], rows)
        daily: dict[tuple, dict] = {}
        latency: dict[tuple, dict] = {}
        questions: dict[tuple, dict] = {}
        keys: dict[tuple, dict] = {}
        dims: dict[tuple, dict] = {}
        texts: dict[str, str] = {}
        for row in rows:
            day = row["epoch"] // DAY_S
            variant = row["variant"] or ""
            values = {**{d: row[d] for d in DIMS}, "variant": variant}
            d = _sums(daily, (day, *(values[k] for k in DIMS)), {"day": day, **values}, DAILY_SUMS)
            d["calls"] += 1
            for col in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "saved_usd", "latency_ms"):
                d[col] += row[col]
            d["unpriced"] += 0 if row["price_known"] else 1
            shared = {"day": day, "policy": row["policy"], "model": row["model"], "variant": variant,
                      "index_version": row["index_version"], "source": row["source"]}
            stages = [(row["stage"], row["lat_bucket"])]
            if row["kind"] == "chat":
                stages += [("retrieve", row["retrieve_bucket"]), ("total", row["total_bucket"])]
            for stage, bucket in stages:
                if bucket is not None:
                    lat = {**shared, "stage": stage, "bucket": bucket}
                    _sums(latency, tuple(lat[k] for k in ("day", *LAT_DIMS, "bucket")), lat, ["n"])["n"] += 1
            for dim in FILTER_DIMS:
                value = variant if dim == "variant" else row[dim]
                seen = dims.setdefault((dim, value), {"dim": dim, "value": value, "first_day": day, "last_day": day})
                seen["first_day"], seen["last_day"] = min(seen["first_day"], day), max(seen["last_day"], day)
            if row["api_key"] is not None:
                k = _sums(keys, (row["api_key"], day), {"api_key": row["api_key"], "day": day},
                          ["requests", "calls", "cost_usd"])
                k["requests"] += int(row["kind"] == "chat")
                k["calls"] += 1
                k["cost_usd"] += row["cost_usd"]
            if row["kind"] == "chat":
                q = {**shared, "question_hash": row["question_hash"]}
                qs = _sums(questions, tuple(q[k] for k in ("day", *Q_DIMS)), q, ["requests", "cost_usd", "saved_usd"])
                qs["requests"] += 1
                qs["cost_usd"] += row["cost_usd"]
                qs["saved_usd"] += row["saved_usd"]
                texts.setdefault(row["question_hash"], row["question"])
        for name, groups in (("daily", daily), ("latency", latency), ("dims", dims), ("key", keys),
                             ("question", questions)):
            if groups:
                conn.execute(st[name], [groups[k] for k in sorted(groups, key=_sort_key)])
        if texts:
            conn.execute(st["question_text"], [{"question_hash": h, "question": texts[h]} for h in sorted(texts)])

    def exists(self, conn: Connection, row: dict) -> bool:
        """Whether this exact row is already written (replaying a journal after a crash)."""
        L = ledger
        return conn.execute(sa.select(L.c.id).where(
            L.c.request_id == row["request_id"], L.c.kind == row["kind"], L.c.stage == row["stage"],
            L.c.model == row["model"], L.c.epoch == row["epoch"], L.c.latency_ms == row["latency_ms"]).limit(1)).first() \
            is not None

    def rebuild_rollups(self, from_day: int | None = None) -> None:
        """Recompute the roll-ups from the raw rows (after a bulk load, or to repair them)."""
        L = ledger
        day = L.c.epoch // DAY_S
        variant = sa.func.coalesce(L.c.variant, "")
        with self._engine.begin() as conn:
            for t in (ledger_daily, ledger_latency_daily, ledger_question_daily, ledger_key_daily):
                conn.execute(t.delete().where(t.c.day >= from_day) if from_day is not None else t.delete())
            conn.execute(ledger_dims.delete())
            where = [L.c.epoch >= from_day * DAY_S] if from_day is not None else []
            dims = [L.c[d] if d != "variant" else variant for d in DIMS]
            conn.execute(ledger_daily.insert().from_select(
                ["day", *DIMS, "calls", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "saved_usd",
                 "latency_ms", "unpriced"],
                sa.select(day, *dims, sa.func.count(), sa.func.sum(L.c.prompt_tokens), sa.func.sum(L.c.completion_tokens),
                          sa.func.sum(L.c.cached_tokens), sa.func.sum(L.c.cost_usd), sa.func.sum(L.c.saved_usd),
                          sa.func.sum(L.c.latency_ms),
                          sa.func.sum(sa.case((L.c.price_known, 0), else_=1)))
                .where(*where).group_by(day, *dims)))
            ldims = [(variant if d == "variant" else L.c[d]).label(d) for d in LAT_DIMS if d != "stage"]
            parts = [sa.select(day.label("day"), L.c.stage.label("stage"), *ldims, L.c.lat_bucket.label("bucket"))
                     .where(*where)]
            for stage, col in (("retrieve", L.c.retrieve_bucket), ("total", L.c.total_bucket)):
                parts.append(sa.select(day.label("day"), sa.literal(stage).label("stage"), *ldims, col.label("bucket"))
                             .where(*where, L.c.kind == "chat", col.is_not(None)))
            u = sa.union_all(*parts).subquery()
            keys = [u.c.day, *[u.c[d] for d in LAT_DIMS], u.c.bucket]
            conn.execute(ledger_latency_daily.insert().from_select(
                ["day", *LAT_DIMS, "bucket", "n"], sa.select(*keys, sa.func.count()).group_by(*keys)))
            qdims = [variant if d == "variant" else L.c[d] for d in Q_DIMS]
            conn.execute(ledger_question_daily.insert().from_select(
                ["day", *Q_DIMS, "requests", "cost_usd", "saved_usd"],
                sa.select(day, *qdims, sa.func.count(), sa.func.sum(L.c.cost_usd), sa.func.sum(L.c.saved_usd))
                .where(*where, L.c.kind == "chat").group_by(day, *qdims)))
            conn.execute(ledger_key_daily.insert().from_select(
                ["api_key", "day", "requests", "calls", "cost_usd"],
                sa.select(L.c.api_key, day, sa.func.sum(sa.case((L.c.kind == "chat", 1), else_=0)), sa.func.count(),
                          sa.func.sum(L.c.cost_usd))
                .where(*where, L.c.api_key.is_not(None)).group_by(L.c.api_key, day)))
            D = ledger_daily
            for d in FILTER_DIMS:
                conn.execute(ledger_dims.insert().from_select(
                    ["dim", "value", "first_day", "last_day"],
                    sa.select(sa.literal(d), D.c[d], sa.func.min(D.c.day), sa.func.max(D.c.day)).group_by(D.c[d])))
            known = sa.select(ledger_questions.c.question_hash)
            conn.execute(ledger_questions.insert().from_select(
                ["question_hash", "question"],
                sa.select(L.c.question_hash, sa.func.max(L.c.question))
                .where(*where, L.c.kind == "chat", L.c.question_hash.not_in(known)).group_by(L.c.question_hash)))
