"""API traffic beside console traffic: every ledger row says where its request came from
(`source`) and which API key sent it; the roll-ups and the dashboard filters know the source; the
console's API section reads the latest requests; an API key's own monthly budget refuses its
requests once spent; migration 0008 upgrades a database that already has ledger rows. On SQLite
and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
import sqlalchemy as sa
from actors import ADMIN, Role, api_key, user
from alembic import command
from alembic.config import Config
from corpus import first_queries
from ledger_fixtures import cost_stack, ledger_rows, metered_engine

from backend.access.audit import AuditLog
from backend.access.service import AccessStore
from backend.db import make_engine, migrate
from backend.engine.generation import ExtractiveGenerator
from backend.engine.policy import Policy
from backend.errors import BudgetExceeded, InputError
from backend.ledger.budgets import check_key_budget, month_start
from backend.ledger.calls import ModelCall, RequestContext
from backend.ledger.queries import Filters, LedgerQueries, RecentRequest, TimeRange
from backend.ledger.store import (LedgerStore, ledger, ledger_daily, ledger_dims, ledger_key_daily,
                                  ledger_latency_daily, ledger_question_daily)
from backend.releases.online import variant_numbers
from backend.services import Services

MIGRATIONS = Path(__file__).resolve().parent.parent / "backend" / "migrations"
ROLLUPS = (ledger_daily, ledger_latency_daily, ledger_question_daily, ledger_key_daily)


# --- the engine writes source and key --------------------------------------------------------------

def test_engine_rows_say_where_the_request_came_from(services: Services, tmp_path) -> None:
    costs = cost_stack(tmp_path)
    engine = metered_engine(services, costs, ExtractiveGenerator())
    q = first_queries("cmrc2018", 1)[0]["question"]
    policy = Policy(top_k=3, retrieval_mode="sparse")  # sparse: one chat row per request

    a = engine.query(q, policy, api_key("support-bot", end_user="eve"))
    b = engine.query(q + "?", policy, api_key("intranet"))  # no end user: the ledger user is the key's id
    c = engine.query(q + "!", policy, user("ann"))
    engine.retrieve(q, Policy(top_k=3, retrieval_mode="dense"))  # the system (evaluation path)

    by_request = {r["request_id"]: r for r in ledger_rows(costs)}
    assert (by_request[a.request_id]["source"], by_request[a.request_id]["api_key"],
            by_request[a.request_id]["user"]) == ("api", "support-bot", "eve")
    assert (by_request[b.request_id]["source"], by_request[b.request_id]["api_key"],
            by_request[b.request_id]["user"]) == ("api", "intranet", "key:intranet")
    assert (by_request[c.request_id]["source"], by_request[c.request_id]["api_key"],
            by_request[c.request_id]["user"]) == ("console", None, "ann")
    last = ledger_rows(costs)[-1]
    assert (last["kind"], last["source"], last["api_key"], last["user"]) == ("embedding", "system", None, "system")

    day = TimeRange.last_days(2)  # 2: the rows stay in it when midnight passes mid-test
    api = costs.queries.summary(day, Filters(source=("api",)))
    assert api.requests == 2 and costs.queries.summary(day, Filters(source=("console",))).requests == 1
    assert costs.queries.summary(day, Filters(api_key=("support-bot",))).requests == 1
    assert costs.queries.options(day)["source"] == ["api", "console", "system"]
    recent = costs.queries.recent_requests("api")
    assert [r.request_id for r in recent] == [b.request_id, a.request_id]
    assert (recent[1].api_key, recent[1].user, recent[1].status) == ("support-bot", "eve", "ok")


# --- filters: roll-ups and raw rows agree ------------------------------------------------------------

KEYS = ("support-bot", "intranet")


def _write(costs, n: int = 48) -> None:
    """Requests from the API (two keys, some with an end user), the console and the system, written
    through the meter (the roll-ups' upsert path)."""
    for i in range(n):
        src = ("api", "console", "system")[i % 3]
        key = KEYS[i % 2] if src == "api" else None
        who = f"user{i % 4}" if src != "system" else "system"
        ctx = RequestContext(f"r{i}", who, ["default", "fast"][i % 2], 1, ["current", "candidate", None][i // 3 % 3],
                             "rag_v1", f"question {i % 5}", source=src, api_key=key)
        costs.meter.record(ctx, ModelCall("embedding", "text-embedding-3-small", prompt_tokens=10 + i, latency_ms=5 + i))
        costs.meter.record(ctx, ModelCall("chat", ["gpt-4o-mini", "gpt-4.1"][i % 2], prompt_tokens=400 + 7 * i,
                                          completion_tokens=40 + i, latency_ms=200 + 9 * i, retrieve_ms=10 + i,
                                          total_ms=250 + 11 * i, status="error" if i % 7 == 0 else "ok",
                                          cache_hit=i % 6 == 0, saved_prompt_tokens=300, saved_completion_tokens=30))


def _raw_totals(costs, **where) -> tuple[float, int]:
    L = ledger
    q = sa.select(sa.func.sum(L.c.cost_usd), sa.func.sum(sa.case((L.c.kind == "chat", 1), else_=0)))
    for k, v in where.items():
        q = q.where(L.c[k] == v)
    with costs.db.connect() as conn:
        cost, requests = conn.execute(q).one()
    return float(cost or 0), int(requests or 0)


def _histogram(q, r: TimeRange, f: Filters) -> dict[tuple[str, int], int]:
    return {(h.stage, h.le): h.n for h in q.latency_histogram(r, f, per_bucket=False)}


def _check_filters(costs) -> None:
    day = TimeRange.last_days(1)
    hours = TimeRange(day.start, day.end, "hour")  # the same span from the raw rows
    q = costs.queries
    total = q.summary(day)
    parts = []
    for f in (Filters(source=("api",)), Filters(source=("console",)), Filters(source=("system",)),
              Filters(source=("api",), policy=("fast",)), Filters(source=("api", "console"), variant=("",)),
              Filters(source=("console",), user=("user1",))):
        a, b = q.summary(day, f), q.summary(hours, f)
        assert a.cost_usd == pytest.approx(b.cost_usd) and a.requests == b.requests and a.errors == b.errors
        assert a.prompt_tokens == b.prompt_tokens and a.cache_hits == b.cache_hits and a.calls == b.calls
        assert a.latency_ms == pytest.approx(b.latency_ms)
        assert {r.question_hash: r.cost_usd for r in q.top_questions(day, f, 20)} == \
            pytest.approx({r.question_hash: r.cost_usd for r in q.top_questions(hours, f, 20)})
        assert _histogram(q, day, f) == _histogram(q, hours, f)
        if len(f.active()) == 1 and len(f.source) == 1:
            parts.append(a)
    api = q.summary(day, Filters(source=("api",)))
    assert (api.cost_usd, api.requests) == pytest.approx(_raw_totals(costs, source="api"))
    assert api.requests == 16 and q.summary(day, Filters(source=("console",))).requests == 16
    assert sum(p.cost_usd for p in parts) == pytest.approx(total.cost_usd)
    assert sum(p.requests for p in parts) == total.requests == 48
    by_source = {r.key: r.cost_usd for r in q.cost_series(day, by="source")}
    assert by_source == pytest.approx({"api": parts[0].cost_usd, "console": parts[1].cost_usd,
                                       "system": parts[2].cost_usd})
    # api_key: raw rows only, on either grain
    for key in KEYS:
        f = Filters(api_key=(key,))
        a, b = q.summary(day, f), q.summary(hours, f)
        assert (a.cost_usd, a.requests) == pytest.approx((b.cost_usd, b.requests))
        assert (a.cost_usd, a.requests) == pytest.approx(_raw_totals(costs, api_key=key))
        assert a.requests == 8
        [k] = q.key_totals(day, key)
        assert (k.cost_usd, k.requests) == pytest.approx(_raw_totals(costs, api_key=key)) and k.calls == 16
        assert q.top_questions(day, f, 20) and all(r["api_key"] == key for r in q.rows(day, f))
    assert q.options(day)["source"] == ["api", "console", "system"]


def _rollup_contents(db) -> dict[str, list[tuple]]:
    with db.connect() as conn:
        return {t.name: sorted(tuple(round(v, 9) if isinstance(v, float) else v for v in r)
                               for r in conn.execute(sa.select(t))) for t in (*ROLLUPS, ledger_dims)}


def _source_filters(costs) -> None:
    _write(costs)
    _check_filters(costs)
    written = _rollup_contents(costs.db)
    costs.ledger.rebuild_rollups()  # the rebuild path gives the same roll-ups as the upserts
    assert _rollup_contents(costs.db) == written
    _check_filters(costs)


def test_source_filters_on_sqlite(tmp_path) -> None:
    _source_filters(cost_stack(tmp_path))


@pytest.fixture(scope="module")
def pg(postgres_server) -> Iterator:
    class Dbs:
        n = 0

        def new(self) -> str:
            self.n += 1
            return postgres_server.create_database(f"ledger_source_{self.n}")

    yield Dbs()


def test_source_filters_on_postgresql(pg, tmp_path) -> None:
    costs = cost_stack(tmp_path, url=pg.new())
    try:
        _source_filters(costs)
        _recent_requests(costs)
        _key_budgets(costs)
    finally:
        costs.db.dispose()


# --- the API section: latest requests ------------------------------------------------------------

def _recent_requests(costs) -> None:
    now = datetime.now(timezone.utc)
    for i in range(5):
        ctx = RequestContext(f"recent{i}", f"end{i}", "default", 2, "candidate" if i % 2 else None, "rag_v2",
                             f"recent question {i}", source="api" if i != 2 else "console",
                             api_key="mobile" if i != 2 else None)
        costs.meter.record(ctx, ModelCall("embedding", "text-embedding-3-small", prompt_tokens=1000, latency_ms=3))
        costs.meter.record(ctx, ModelCall("chat", "gpt-4o-mini", prompt_tokens=500, completion_tokens=50,
                                          latency_ms=100, total_ms=120.5 + i, status="error" if i == 3 else "ok"))
        with costs.db.begin() as conn:  # one second apart, newest last
            ts = now + timedelta(seconds=i)
            conn.execute(ledger.update().where(ledger.c.request_id == f"recent{i}")
                         .values(ts=ts, epoch=int(ts.timestamp())))
    q = costs.queries
    rows = q.recent_requests("api", limit=3)
    assert all(isinstance(r, RecentRequest) for r in rows)
    assert [r.request_id for r in rows] == ["recent4", "recent3", "recent1"]
    r3 = rows[1]
    assert (r3.api_key, r3.user, r3.variant, r3.status, r3.total_ms, r3.policy, r3.source) == \
        ("mobile", "end3", "candidate", "error", 123.5, "default", "api")
    with costs.db.connect() as conn:  # the request's cost: its chat and embedding rows
        want = conn.execute(sa.select(sa.func.sum(ledger.c.cost_usd)).where(ledger.c.request_id == "recent3")).scalar()
    assert r3.cost_usd == pytest.approx(want) and r3.cost_usd > 0
    assert r3.ts.tzinfo is not None and abs((r3.ts - (now + timedelta(seconds=3))).total_seconds()) < 1
    console = q.recent_requests("console", 2)
    assert len(console) == 2 and console[0].request_id == "recent2" and console[0].api_key is None
    assert [r.request_id for r in q.recent_requests(None, 2)] == ["recent4", "recent3"]
    assert [r.request_id for r in q.recent_requests("all", 5, api_key="mobile")][:2] == ["recent4", "recent3"]
    assert all(r.api_key == "mobile" for r in q.recent_requests("api", 50, api_key="mobile"))
    assert q.recent_requests("api", 50, api_key="nobody") == []
    in_range = TimeRange.last_hours(2, now=now + timedelta(seconds=5))  # holds the rows when now is xx:59:57
    assert q.rows(in_range, Filters(api_key=("mobile",)), order="time")[0]["request_id"] == "recent4"


def test_recent_requests_on_sqlite(tmp_path) -> None:
    costs = cost_stack(tmp_path)
    _write(costs)
    _recent_requests(costs)


# --- API key budgets ---------------------------------------------------------------------------

def _key_budgets(costs) -> None:
    access = AccessStore(costs.db, AuditLog(costs.db), "secret-for-tests-0123456789abcdef")
    zero = access.create_key(ADMIN, "zero-budget", Role.viewer, budget_usd=0.0)
    small = access.create_key(ADMIN, "small-budget", Role.viewer, budget_usd=0.01)
    free = access.create_key(ADMIN, "no-budget", Role.viewer)
    q, db = costs.queries, costs.db

    with pytest.raises(BudgetExceeded, match=r"API key 'zero-budget'.*\$0\.00"):
        costs.budgets.check_key(access.key_actor(zero.key, "eve"))
    small_actor = access.key_actor(small.key)
    costs.budgets.check_key(small_actor)  # nothing spent yet
    costs.budgets.check_key(access.key_actor(free.key))
    costs.budgets.check_key(user("ann"))  # not a key: never refused here

    def spend(name: str, usd: float, ts: datetime | None = None) -> None:
        rid = f"spend-{name}-{usd}-{ts}"
        costs.meter.record(RequestContext(rid, "eve", "default", None, None, "v", "q", source="api", api_key=name),
                           ModelCall("chat", "gpt-4o-mini", prompt_tokens=1, completion_tokens=1, latency_ms=1, total_ms=1))
        with db.begin() as conn:  # the cost (and time) the test needs, whatever the price table says
            values = {"cost_usd": usd, **({"ts": ts, "epoch": int(ts.timestamp())} if ts else {})}
            conn.execute(ledger.update().where(ledger.c.request_id == rid).values(**values))
        costs.ledger.rebuild_rollups()

    now = datetime.now(timezone.utc)
    spend("small-budget", 0.004)
    spend("small-budget", 5.0, month_start(now) - timedelta(seconds=1))  # last month: does not count
    spend("no-budget", 5.0)  # another key's spend does not count either
    costs.budgets.check_key(small_actor)  # $0.004 of $0.01
    first_day = int(month_start(now).timestamp()) // 86400
    assert q.key_spend("small-budget", first_day) == pytest.approx(0.004)
    totals = {r.api_key: r.cost_usd for r in q.key_totals(TimeRange.last_days(1, now))}
    assert {k: totals[k] for k in ("small-budget", "no-budget")} == pytest.approx({"small-budget": 0.004, "no-budget": 5.0})
    spend("small-budget", 0.007)
    with pytest.raises(BudgetExceeded) as info:  # $0.011 of $0.01: spent
        check_key_budget(db, small_actor)
    assert "small-budget" in str(info.value) and "$0.01" in str(info.value)
    # next month it passes again
    check_key_budget(db, small_actor, now=(month_start(now) + timedelta(days=32)).replace(day=2))
    costs.budgets.check_key(access.key_actor(free.key))


def test_key_budgets_on_sqlite(tmp_path) -> None:
    _key_budgets(cost_stack(tmp_path))


def test_key_budget_refuses_with_402(tmp_path, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from backend.api.app import create_api

    monkeypatch.delenv("REDIS_URL", raising=False)
    costs = cost_stack(tmp_path)
    access = AccessStore(costs.db, AuditLog(costs.db), "secret-for-tests-0123456789abcdef")
    spent = access.create_key(ADMIN, "spent-key", Role.viewer, budget_usd=0.0)
    fine = access.create_key(ADMIN, "fine-key", Role.viewer, budget_usd=5.0)
    svc = SimpleNamespace(access=access, costs=costs, policies=SimpleNamespace(list=lambda: []))
    client = TestClient(create_api(lambda: svc))
    r = client.get("/models", headers={"Authorization": f"Bearer {spent.key}"})
    assert r.status_code == 402, r.text
    err = r.json()["error"]
    assert err["type"] == "budget_exceeded" and "spent-key" in err["message"] and "$0.00" in err["message"]
    r = client.get("/models", headers={"Authorization": f"Bearer {fine.key}"})
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "rag"


# --- online A/B by source ----------------------------------------------------------------------

def test_online_ab_numbers_by_source(tmp_path) -> None:
    costs = cost_stack(tmp_path)
    _write(costs)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    every, api, console = (variant_numbers(costs.db, since, source=s) for s in ("all", "api", "console"))
    assert variant_numbers(costs.db, since)["current"].requests == every["current"].requests
    for v in ("current", "candidate"):
        assert every[v].requests > 0
        system = variant_numbers(costs.db, since, source="system")[v]
        assert api[v].requests + console[v].requests + system.requests == every[v].requests
        assert api[v].cost_usd + console[v].cost_usd + system.cost_usd == pytest.approx(every[v].cost_usd)
    with pytest.raises(InputError):
        variant_numbers(costs.db, since, source="mobile")


# --- migration 0008 on a database that has ledger rows ------------------------------------------

OLD = sa.table("ledger", *[sa.column(c.name, c.type) for c in ledger.columns if c.name not in ("id", "source", "api_key")])


LEDGER_TABLES = {"ledger", "ledger_daily", "ledger_latency_daily", "ledger_question_daily", "ledger_key_daily",
                 "ledger_dims", "ledger_questions"}


def _schema_diffs(db) -> list:
    """What differs between the migrated ledger tables and the tables the code defines."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from backend.db import metadata

    def table(d) -> str | None:
        if isinstance(d, list):
            return d[0][2]
        op, *rest = d
        if op in ("add_table", "remove_table"):
            return rest[0].name
        if op in ("add_column", "remove_column"):
            return rest[1]
        return getattr(getattr(rest[0], "table", None), "name", None)

    with db.connect() as conn:
        return [d for d in compare_metadata(MigrationContext.configure(conn), metadata) if table(d) in LEDGER_TABLES]


def _alembic(db, fn, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.begin() as conn:
        cfg.attributes["connection"] = conn
        fn(cfg, target)


def _old_rows(now: datetime) -> list[dict]:
    rows = []
    for i in range(30):
        ts = now - timedelta(days=i % 4, minutes=i)
        who = ["key:support-bot", "system", "ann", "bob", "key:intranet"][i % 5]
        for kind, stage, cost in (("embedding", "embed", 0.0001 * i), ("chat", "generate", 0.001 * i)):
            rows.append(dict(
                ts=ts, epoch=int(ts.timestamp()), request_id=f"old{i}", user=who, policy=["default", "fast"][i % 2],
                policy_version=1, variant=[None, "current", "candidate"][i % 3], index_version="rag_v1", kind=kind,
                stage=stage, model="gpt-4o-mini" if kind == "chat" else "e5", prompt_tokens=100 + i,
                completion_tokens=10 if kind == "chat" else 0, cached_tokens=0, token_method="api", cost_usd=cost,
                price_known=i % 9 != 0, price_id=None, latency_ms=50.0 + i, retrieve_ms=5.0 if kind == "chat" else None,
                total_ms=80.0 + i if kind == "chat" else None, lat_bucket=3 + i % 4,
                retrieve_bucket=1 if kind == "chat" else None, total_bucket=4 + i % 3 if kind == "chat" else None,
                cache_hit=kind == "chat" and i % 4 == 0, saved_usd=0.0, status="error" if i % 8 == 0 else "ok",
                error_class=None, question_hash=f"{i % 6:016x}", question=f"old question {i % 6}"))
    return rows


def _migration_upgrades_rows(url: str, tmp_path) -> None:
    db = make_engine(url)
    _alembic(db, command.upgrade, "0003_ledger")  # the ledger before this change, with rows
    now = datetime.now(timezone.utc)
    with db.begin() as conn:
        conn.execute(OLD.insert(), _old_rows(now))
        conn.execute(sa.text("INSERT INTO ledger_daily VALUES (1, 'chat', 'p', 'm', 'u', '', 'i', 'ok', false, "
                             "1, 1, 1, 1, 1.0, 0.0, 1.0, 0)"))  # an old roll-up row: replaced by the refill
    migrate(db)  # every head, 0008 included
    assert _schema_diffs(db) == []
    with db.connect() as conn:
        rows = {(r.request_id, r.kind): r for r in conn.execute(sa.select(ledger)).all()}
    assert (rows["old0", "chat"].source, rows["old0", "chat"].api_key) == ("api", "support-bot")
    assert (rows["old1", "chat"].source, rows["old1", "chat"].api_key) == ("system", None)
    assert (rows["old2", "chat"].source, rows["old2", "chat"].api_key) == ("console", None)
    assert (rows["old4", "embedding"].source, rows["old4", "embedding"].api_key) == ("api", "intranet")

    def sources(contents: dict) -> list[tuple]:  # the old rows came without dims: compare the new ones
        return [d for d in contents.pop("ledger_dims") if d[0] == "source"]

    refilled = _rollup_contents(db)
    refilled_sources = sources(refilled)
    assert len(refilled["ledger_daily"]) > 0 and [d[1] for d in refilled_sources] == ["api", "console", "system"]
    LedgerStore(db).rebuild_rollups()  # the application's own aggregation of the raw rows
    rebuilt = _rollup_contents(db)
    assert sources(rebuilt) == refilled_sources and rebuilt == refilled

    q = LedgerQueries(db)
    day = TimeRange.last_days(5, now)
    hours = TimeRange(day.start, day.end, "hour")
    for f in (Filters(), Filters(source=("api",)), Filters(source=("console",), policy=("default",))):
        a, b = q.summary(day, f), q.summary(hours, f)
        assert (a.cost_usd, a.requests, a.errors, a.unpriced_calls) == pytest.approx(
            (b.cost_usd, b.requests, b.errors, b.unpriced_calls))
        assert a.latency_ms == pytest.approx(b.latency_ms)
    assert q.summary(day, Filters(source=("api",))).requests == 12
    assert q.summary(day, Filters(api_key=("intranet",))).requests == 6

    # and back: the roll-ups lose the column and still equal the raw rows; then up again
    _alembic(db, command.downgrade, "0003_ledger")  # 0008 and what was built on it (0009-0011)
    with db.connect() as conn:
        assert "source" not in {c["name"] for c in sa.inspect(conn).get_columns("ledger_daily")}
        assert "api_key" not in {c["name"] for c in sa.inspect(conn).get_columns("ledger")}
        assert conn.execute(sa.text("SELECT count(*) FROM ledger_dims WHERE dim = 'source'")).scalar() == 0
        old_calls = conn.execute(sa.text("SELECT sum(calls) FROM ledger_daily")).scalar()
    assert old_calls == 60
    migrate(db)
    assert _schema_diffs(db) == []
    again = _rollup_contents(db)
    assert sources(again) == refilled_sources and again == refilled
    db.dispose()


def test_migration_upgrades_a_ledger_with_rows_on_sqlite(tmp_path) -> None:
    _migration_upgrades_rows(f"sqlite:///{tmp_path / 'old.db'}", tmp_path)


def test_migration_upgrades_a_ledger_with_rows_on_postgresql(pg, tmp_path) -> None:
    _migration_upgrades_rows(pg.new(), tmp_path)
