"""Scale benchmark of the cost dashboard: generate a synthetic ledger (1,000,000 rows by default,
all inside the last 30 days), then time every query the dashboard, the budgets and the alert
rules run for a 30-day range, on SQLite and on PostgreSQL. Target: each <= 500 ms.

    .venv/bin/python -m bench.ledger_queries                       # 1M rows, SQLite + a throwaway PostgreSQL
    .venv/bin/python -m bench.ledger_queries --rows 200000 --no-postgres
    .venv/bin/python -m bench.ledger_queries --postgres postgresql+psycopg://u:p@host/db

The synthetic traffic is shaped like a team's RAG service, not uniform noise (the roll-ups'
size depends on it, and the benchmark prints them): 200 users, each with a home policy and
sometimes a second one, a sticky A/B variant per user; each policy uses one chat model; an index
promotion two thirds of the way through; 3,000 distinct questions drawn Zipf-like; per request
one embedding call, a rerank call for the 'deep' policy, and one chat call (about 25% cache
hits, 1.5% errors, a few budget refusals); diurnal load. Costs come from the seeded price table.
`--shape uniform` draws every dimension independently instead (the worst case for roll-ups).
"""
from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.db import make_engine, migrate  # noqa: E402
from backend.ledger.buckets import bucket_of  # noqa: E402
from backend.ledger.pricing import _SEED, resolve  # noqa: E402
from backend.ledger.queries import Filters, LedgerQueries, TimeRange  # noqa: E402
from backend.ledger.store import (LedgerStore, ledger, ledger_daily, ledger_latency_daily,  # noqa: E402
                                  ledger_question_daily, question_hash)

POLICIES = {"default": "gpt-4o-mini", "fast": "gpt-4.1-nano", "deep": "gpt-4.1", "claude": "claude-sonnet-4"}
EMBEDDING = "text-embedding-3-small"
RERANK = "rerank-v3.5"
KEYS = ["support-bot", "intranet-search", "mobile-app"]  # API keys some users come through
COLUMNS = [c.name for c in ledger.columns if c.name != "id"]
TOPICS = ["aspirin and heart attacks", "BMP signalling in embryos", "low birth weight", "statins in the elderly",
          "vitamin D and fractures", "大莱龙铁路的投资", "主教的任命", "insulin resistance", "gut microbiome",
          "CRISPR off-target effects", "sleep and memory", "air pollution and asthma"]


def _questions(n: int, rng: random.Random) -> list[str]:
    forms = ["What is known about {}?", "Does the evidence support {}?", "Summarise the findings on {}.",
             "Which studies discuss {}?", "How strong is the link in {}?"]
    return [rng.choice(forms).format(f"{rng.choice(TOPICS)} (case {i})") for i in range(n)]


def synthetic(n_rows: int, days: int = 30, end: datetime | None = None, seed: int = 7,
              shape: str = "realistic", users: int = 200, n_questions: int = 3000) -> Iterator[tuple]:
    """Ledger rows (tuples in COLUMNS order), oldest first, all within [end - days, end)."""
    rng = random.Random(seed)
    end = end or datetime.now(timezone.utc)
    start = end - timedelta(days=days)
    span = (end - start).total_seconds()
    names = [f"user{i:03d}" for i in range(1, users + 1)]
    pols = list(POLICIES)
    home = {u: rng.choices(pols, weights=[50, 25, 15, 10])[0] for u in names}
    second = {u: rng.choice(pols) for u in names}
    variant = {u: rng.choices(["A", "B", None], weights=[40, 40, 20])[0] for u in names}
    # where each user's requests come from: the console, or an application's API key (a third of them)
    via = {u: ("api", rng.choice(KEYS)) if rng.random() < 0.35 else ("console", None) for u in names}
    weight = {u: rng.paretovariate(1.3) for u in names}  # a few heavy users
    user_list, user_cw = list(weight), list(itertools.accumulate(weight.values()))
    questions = _questions(n_questions, rng)
    q_cw = list(itertools.accumulate(1 / (i + 1) ** 1.1 for i in range(n_questions)))
    q_range = range(n_questions)
    qhash = [question_hash(q) for q in questions]
    promote_at = start + timedelta(seconds=span * 2 / 3)
    seed_prices = _SEED

    def price(model: str, p: int, c: int, cached: int = 0) -> float:
        pr = resolve(seed_prices, model, end)
        return pr.cost(p, c, cached) if pr else 0.0

    # plan the requests first (who asks what, hit or miss) so the row count is exact
    plans = []
    planned = 0
    user_via = dict(via)
    while planned < n_rows:
        if shape == "realistic":
            user = rng.choices(user_list, cum_weights=user_cw)[0]
            policy = home[user] if rng.random() < 0.85 else second[user]
            var = variant[user]
            qi = rng.choices(q_range, cum_weights=q_cw)[0]
        else:
            user, policy = rng.choice(names), rng.choice(pols)
            var, qi = rng.choice(["A", "B", None]), rng.randrange(n_questions)
            user_via[user] = rng.choice([("console", None), *[("api", k) for k in KEYS]])
        cache_hit = rng.random() < (0.45 if qi < 50 else 0.15)
        rerank = not cache_hit and policy == "deep" and rng.random() < 0.8
        plans.append((user, policy, var, qi, cache_hit, rerank, user_via[user]))
        planned += 1 + (not cache_hit) + rerank
    # request times: diurnal (busier around 13:00 UTC), sorted
    times = []
    for _ in plans:
        while True:
            t = rng.random() * span
            hour = ((start.timestamp() + t) % 86400) / 3600
            if rng.random() < 0.35 + 0.65 * math.exp(-((hour - 13) / 4.5) ** 2):
                break
        times.append(t)
    times.sort()
    emitted = 0
    for i, (t, (user, policy, var, qi, cache_hit, rerank, src)) in enumerate(zip(times, plans)):
        ts = start + timedelta(seconds=t)
        if shape == "realistic":
            index = "rag_chunks_v3" if ts < promote_at else "rag_chunks_v4"
        else:
            index = rng.choice(["rag_chunks_v3", "rag_chunks_v4"])
        model = POLICIES[policy]
        question, qh = questions[qi], qhash[qi]
        rid = f"{i:012x}"
        epoch = int(ts.timestamp())
        common = (ts, epoch, rid, user, policy, 1, var, index)
        if not cache_hit:
            emb_ms = rng.lognormvariate(math.log(45), 0.35)
            pt = 12 + rng.randrange(30)
            yield common + ("embedding", "embed", EMBEDDING, pt, 0, 0, "tiktoken", price(EMBEDDING, pt, 0), True, None,
                            emb_ms, None, None, bucket_of(emb_ms), None, None, False, 0.0, "ok", None, qh, question) + src
            emitted += 1
            if emitted >= n_rows:
                return
            if rerank:
                rr_ms = rng.lognormvariate(math.log(180), 0.4)
                yield common + ("rerank", "rerank", RERANK, 4000, 0, 0, "estimate", price(RERANK, 4000, 0), True, None,
                                rr_ms, None, None, bucket_of(rr_ms), None, None, False, 0.0, "ok", None, qh, question) + src
                emitted += 1
                if emitted >= n_rows:
                    return
        retrieve_ms = rng.lognormvariate(math.log(35), 0.5)
        prompt = max(200, int(rng.gauss(1900, 450)))
        completion = max(5, int(rng.gauss(170, 70)))
        cached = int(prompt * 0.6) if model.startswith("gpt") and rng.random() < 0.3 else 0
        roll = rng.random()
        if cache_hit:
            lat = rng.lognormvariate(math.log(1.5), 0.5)
            total = lat + rng.uniform(0.5, 3)
            row = ("chat", "cache", model, 0, 0, 0, "none", 0.0, True, None, lat, None, total, bucket_of(lat), None,
                   bucket_of(total), True, price(model, prompt, completion), "ok", None)
        elif roll < 0.015:
            lat = rng.uniform(500, 30000)
            total = lat + retrieve_ms + 50
            row = ("chat", "generate", model, 0, 0, 0, "none", 0.0, True, None, lat, retrieve_ms, total, bucket_of(lat),
                   bucket_of(retrieve_ms), bucket_of(total), False, 0.0, "error",
                   rng.choice(["APITimeoutError", "InternalServerError", "RateLimitError"]))
        elif roll < 0.018:
            row = ("chat", "generate", model, 0, 0, 0, "none", 0.0, True, None, 0.0, None, 2.0, 0, None, bucket_of(2.0),
                   False, 0.0, "refused", "BudgetExceeded")
        else:
            speed = {"gpt-4.1-nano": 0.5, "gpt-4o-mini": 0.8, "gpt-4.1": 1.4, "claude-sonnet-4": 1.6}[model]
            lat = rng.lognormvariate(math.log(900 * speed), 0.45) + completion * 8 * speed
            total = lat + retrieve_ms + 60
            row = ("chat", "generate", model, prompt, completion, cached, "api", price(model, prompt, completion, cached),
                   True, None, lat, retrieve_ms, total, bucket_of(lat), bucket_of(retrieve_ms), bucket_of(total), False,
                   0.0, "ok", None)
        yield common + row + (qh, question) + src
        emitted += 1
        if emitted >= n_rows:
            return


def _sqlite_ts(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f")


def load(engine: sa.Engine, rows: Iterator[tuple], batch: int = 20000) -> int:
    """Bulk insert raw rows (DB-API executemany on SQLite, COPY on PostgreSQL), then build the roll-ups."""
    n = 0
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cols = ", ".join(f'"{c}"' for c in COLUMNS)
        if engine.dialect.name == "postgresql":
            with cur.copy(f"COPY ledger ({cols}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
                    n += 1
        else:
            sql = f"INSERT INTO ledger ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})"
            buf = []
            for r in rows:
                buf.append((_sqlite_ts(r[0]),) + r[1:])
                if len(buf) >= batch:
                    cur.executemany(sql, buf)
                    n += len(buf)
                    buf.clear()
            if buf:
                cur.executemany(sql, buf)
                n += len(buf)
        raw.commit()
    finally:
        raw.close()
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE ledger"))
    LedgerStore(engine).rebuild_rollups()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("ANALYZE"))
        else:
            conn.execute(sa.text("ANALYZE"))
    return n


def dashboard_queries(q: LedgerQueries, end: datetime) -> list[tuple[str, Callable[[], object]]]:
    """Every query a first render of the dashboard (all tabs), the budgets and the alert rules run
    for a 30-day range, plus the filtered variants that take another path."""
    r = TimeRange.last_days(30, end)
    day = int((end - timedelta(days=3)).timestamp()) // 86400 * 86400
    user = Filters(user=("user001",))
    pol = Filters(policy=("deep",), variant=("A",))
    api = Filters(source=("api",))
    e = int(end.timestamp())
    return [
        ("options (filter values)", lambda: q.options(r)),
        ("unpriced models", lambda: q.unpriced_models(r)),
        ("summary tiles + p50/p95/p99", lambda: q.summary(r)),
        ("summary, previous 30 days", lambda: q.summary(r.previous())),
        ("month forecast", lambda: q.month_forecast(end)),
        ("cost per day by model", lambda: q.cost_series(r, by="model")),
        ("cost per day by user", lambda: q.cost_series(r, by="user")),
        ("tokens per day", lambda: q.token_series(r)),
        ("requests per day by outcome", lambda: q.request_series(r)),
        ("latency p95 per day and stage", lambda: q.latency_series(r, qs=(0.95,))),
        ("top 10 users", lambda: q.top_users(r)),
        ("top 10 questions", lambda: q.top_questions(r)),
        ("drill-down: a day x model", lambda: q.rows(r, bucket=day, dim="model", value="gpt-4o-mini")),
        ("drill-down: slowest 'total' of a day", lambda: q.rows(r, bucket=day, stage="total")),
        ("ledger rows, newest 500", lambda: q.rows(r, order="time")),
        ("filtered policy+variant: tiles", lambda: q.summary(r, pol)),
        ("filtered policy+variant: cost by user", lambda: q.cost_series(r, pol, by="user")),
        ("filtered policy+variant: top questions", lambda: q.top_questions(r, pol)),
        ("filtered user: tiles (raw latency)", lambda: q.summary(r, user)),
        ("filtered user: latency per day (raw)", lambda: q.latency_series(r, user)),
        ("filtered user: top questions (raw)", lambda: q.top_questions(r, user)),
        ("last 24 h by hour: tiles (raw)", lambda: q.summary(TimeRange.last_hours(24, end))),
        ("last 24 h by hour: cost by model (raw)", lambda: q.cost_series(TimeRange.last_hours(24, end), by="model")),
        ("last 24 h by hour: latency (raw)", lambda: q.latency_series(TimeRange.last_hours(24, end))),
        ("budget spend: month, global", lambda: q.spend(r.start_day, r.end_day)),
        ("budget spend: month, one user", lambda: q.spend(r.start_day, r.end_day, "user", "user001")),
        ("alert rule window: 15 min", lambda: q.window(e - 900, e + 1)),
        ("filtered source=api: tiles", lambda: q.summary(r, api)),
        ("filtered source=api: top questions", lambda: q.top_questions(r, api)),
        ("API: latest 50 requests", lambda: q.recent_requests("api", 50)),
        ("API: latest 50 requests of one key", lambda: q.recent_requests("api", 50, api_key="support-bot")),
        ("API key month-to-date spend", lambda: q.key_spend("support-bot", r.start_day)),
        ("API keys: spend per key", lambda: q.key_totals(r)),
    ]


def time_queries(engine: sa.Engine, end: datetime, repeat: int) -> dict[str, float]:
    q = LedgerQueries(engine)
    out = {}
    for name, fn in dashboard_queries(q, end):
        fn()  # warm
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        out[name] = statistics.median(times)
    return out


def sizes(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                for t in (ledger, ledger_daily, ledger_latency_daily, ledger_question_daily)}


def run(url: str, rows: int, days: int, end: datetime, shape: str, repeat: int) -> tuple[dict, dict, float]:
    engine = make_engine(url)
    migrate(engine)
    t = time.perf_counter()
    n = load(engine, synthetic(rows, days, end, shape=shape))
    load_s = time.perf_counter() - t
    assert n == rows, (n, rows)
    result = time_queries(engine, end, repeat)
    counts = sizes(engine)
    engine.dispose()
    return result, counts, load_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30, help="the rows span this many days ending now")
    ap.add_argument("--shape", choices=["realistic", "uniform"], default="realistic")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per query (median reported)")
    ap.add_argument("--sqlite", help="SQLite file (default: a temporary one)")
    ap.add_argument("--postgres", help="SQLAlchemy URL of an empty PostgreSQL database")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--budget-ms", type=float, default=500.0)
    args = ap.parse_args(argv)
    end = datetime.now(timezone.utc)
    results: dict[str, dict[str, float]] = {}
    info: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    sqlite_url = f"sqlite:///{args.sqlite or tmp / 'ledger.db'}"
    print(f"generating and loading {args.rows:,} rows ({args.shape}, {args.days} days) into SQLite…", flush=True)
    results["SQLite"], counts, load_s = run(sqlite_url, args.rows, args.days, end, args.shape, args.repeat)
    info.append(f"SQLite: load + roll-ups {load_s:.0f} s; rows " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if not args.no_postgres:
        pg, server = args.postgres, None
        if pg is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from services import PostgresServer  # the suite's throwaway cluster

            server = PostgresServer(Path(tempfile.mkdtemp(prefix="bench-pg-")))
            server.start()
            pg = server.create_database("bench_ledger")
        try:
            print("loading the same rows into PostgreSQL…", flush=True)
            results["PostgreSQL"], counts, load_s = run(pg, args.rows, args.days, end, args.shape, args.repeat)
            info.append(f"PostgreSQL: load + roll-ups {load_s:.0f} s; rows "
                        + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        finally:
            if server is not None:
                server.stop()
    engines = list(results)
    names = list(results[engines[0]])
    width = max(len(n) for n in names)
    print(f"\n30-day range over {args.rows:,} ledger rows ({args.shape} traffic); median of {args.repeat} runs, ms")
    print(f"| {'query':<{width}} | " + " | ".join(f"{e:>10}" for e in engines) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * 12 for _ in engines) + "|")
    worst = 0.0
    for n in names:
        vals = [results[e][n] for e in engines]
        worst = max(worst, *vals)
        print(f"| {n:<{width}} | " + " | ".join(f"{v:>10.1f}" for v in vals) + " |")
    first = {e: sum(results[e][n] for n in names[:12]) for e in engines}
    print("| " + f"{'sum of the 12 overview queries above':<{width}}" + " | "
          + " | ".join(f"{first[e]:>10.1f}" for e in engines) + " |")
    for line in info:
        print(line)
    ok = worst <= args.budget_ms
    print(f"slowest single query: {worst:.1f} ms — {'within' if ok else 'OVER'} the {args.budget_ms:.0f} ms budget")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
