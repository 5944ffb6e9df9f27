"""The token ledger: one row per model call written by the engine itself, tokens equal to what
the server reported, cost fixed at write time from the dated price table (including a price
change in the middle of a run), roll-ups equal to the raw rows, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterator

import httpx
import pytest
import sqlalchemy as sa
from actors import ADMIN, Role, user
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from corpus import first_queries
from ledger_fixtures import cost_stack, ledger_rows, metered_engine

from backend.access.audit import AuditLog
from backend.db import make_engine, metadata, migrate
from backend.engine.generation import ExtractiveGenerator, OpenAIGenerator, Usage
from backend.engine.policy import Policy
from backend.engine.rerank import make_reranker
from backend.errors import DependencyError, InputError
from backend.ledger.calls import ModelCall, RequestContext
from backend.ledger.pricing import ImportResult, Price, PriceTable, resolve
from backend.ledger.queries import Filters, TimeRange
from backend.ledger.store import ledger
from backend.services import Services

OURS = {"prices", "ledger", "ledger_daily", "ledger_dims", "ledger_latency_daily", "ledger_question_daily", "ledger_questions",
        "budgets", "budget_events", "alert_rules", "alerts"}


class NonStreamingGenerator(OpenAIGenerator):
    """One non-streamed completion per answer (llama.cpp reports usage only there). The raw usage
    the server sent is captured from the HTTP response itself, independently of the client's parsing."""

    def __init__(self, settings, server_usage: list[dict]):
        super().__init__(settings)
        from openai import OpenAI

        self.server_usage = server_usage
        http = httpx.Client(timeout=settings.llm_timeout_s, event_hooks={"response": [self._capture]})
        self._client = OpenAI(base_url=settings.openai_base_url, api_key="none", http_client=http, max_retries=0)

    def _capture(self, response: httpx.Response) -> None:
        if response.url.path.endswith("/chat/completions") and response.status_code == 200:
            response.read()
            self.server_usage.append(response.json()["usage"])

    def stream(self, messages, sources, question, model, temperature, max_tokens):
        resp = self._open(model=model, messages=messages, temperature=temperature, max_tokens=max_tokens)
        yield resp.choices[0].message.content or ""
        yield Usage(resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.model or model)


def _hand_cost(prompt: int, completion: int, pin: float, pout: float) -> float:
    return (prompt * pin + completion * pout) / 1_000_000


# --- schema ----------------------------------------------------------------------------------

def _table_of(diff) -> str | None:
    if isinstance(diff, list):  # modify_* diffs come grouped: (op, schema, table, column, ...)
        return diff[0][2]
    op, *rest = diff
    if op in ("add_table", "remove_table"):
        return rest[0].name
    if op in ("add_column", "remove_column"):
        return rest[1]
    return getattr(getattr(rest[0], "table", None), "name", None)  # indexes, constraints


def _schema_diffs(engine) -> list:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    return [d for d in diffs if _table_of(d) in OURS]


def test_migration_creates_the_tables_the_code_defines(tmp_path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    migrate(db)
    assert _schema_diffs(db) == []
    with db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from prices")).scalar() >= 20  # seeded


# --- price table -----------------------------------------------------------------------------

def test_price_resolution_specificity_and_dates() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    t1 = datetime(2025, 6, 1, tzinfo=timezone.utc)
    rows = [
        Price(1, "gpt-4o", "prefix", 2.5, 10, 1.25, 0, t0, t0),
        Price(2, "gpt-4o-mini", "prefix", 0.15, 0.6, None, 0, t0, t0),
        Price(3, "gpt-4o-mini", "prefix", 0.10, 0.4, None, 0, t1, t1),  # price cut on t1
        Price(4, "gpt-4o-mini-special", "exact", 9, 9, None, 0, t1, t1),
        Price(5, r"^gpt-", "regex", 1, 1, None, 0, t0, t0),
    ]
    assert resolve(rows, "gpt-4o-mini-2024", t0 + timedelta(days=1)).id == 2
    assert resolve(rows, "gpt-4o-mini-2024", t1 + timedelta(days=1)).id == 3  # history keeps 2
    assert resolve(rows, "gpt-4o-2024", t1).id == 1
    assert resolve(rows, "gpt-4o-mini-special", t1).id == 4  # exact beats prefix
    assert resolve(rows, "gpt-4o-mini-special", t0).id == 2  # exact not yet in effect
    assert resolve(rows, "gpt-3.5", t1).id == 5  # regex last
    assert resolve(rows, "claude", t1) is None
    assert resolve(rows, "gpt-4o", t0 - timedelta(days=1)) is None  # before any price
    # cached input billed at its own rate (or as input when none is set)
    assert rows[0].cost(1_000_000, 0, 400_000) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25)
    assert rows[1].cost(1_000_000, 1_000_000, 500_000) == pytest.approx(0.15 + 0.6)


def test_price_table_edit_csv_round_trip_and_staleness(tmp_path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    migrate(db)
    audit = AuditLog(db)
    prices = PriceTable(db, audit)
    seeded = len(prices.rows())
    assert prices.cost("smollm2", 1000, 1000).usd == 0 and prices.cost("smollm2", 1, 1).known
    assert prices.cost("multilingual-e5-small", 50, 0).known
    assert not prices.cost("some-new-model", 10, 10).known
    assert prices.age_days() > 90  # seeded with list prices checked on 2025-08-07

    pid = prices.add(ADMIN, "acme-llm", "exact", 1.0, 2.0, 0.5, effective_from="2025-01-01", note="test")
    assert prices.cost("acme-llm", 1_000_000, 1_000_000).usd == pytest.approx(3.0)
    assert prices.age_days() < 0.01  # a new row counts as checked now
    assert audit.recent(1, action="prices.add")[0].actor == "alice"
    with pytest.raises(InputError, match="exact, prefix or regex"):
        prices.add(ADMIN, "x", "glob", 1, 1, effective_from="2025-01-01")
    with pytest.raises(InputError, match="does not compile"):
        prices.add(ADMIN, "(", "regex", 1, 1, effective_from="2025-01-01")
    with pytest.raises(InputError, match="not a date"):
        prices.add(ADMIN, "x", "exact", 1, 1, effective_from="yesterday")

    exported = prices.export_csv()
    assert exported.splitlines()[0].startswith("pattern,match,input_per_m")
    db2 = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    migrate(db2)
    other = PriceTable(db2, AuditLog(db2))
    result = other.import_csv(user("bob", Role.admin), exported)
    assert result == ImportResult(rows=seeded + 1, added=1, skipped=seeded)  # the seed is already there
    assert other.cost("acme-llm", 1_000_000, 1_000_000).usd == pytest.approx(3.0)
    assert other.import_csv(user("bob", Role.admin), exported).added == 0  # idempotent
    with pytest.raises(InputError, match="CSV line 3: input_per_m 'abc' is not a number"):
        other.import_csv(user("bob", Role.admin), "pattern,match,input_per_m,output_per_m,effective_from\n"
                                "a,exact,1,1,2025-01-01\nb,exact,abc,1,2025-01-01\n")
    assert not other.cost("a", 1, 1).known  # all or nothing

    prices.delete(ADMIN, pid)
    assert not prices.cost("acme-llm", 1, 1).known
    prices.mark_checked(ADMIN)
    assert prices.age_days() < 0.01


# --- the engine writes the rows ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(900)  # llama.cpp on 2 shared cores: a few seconds a call when idle, much more under load
def test_ledger_matches_real_server_usage_and_hand_costs(services: Services, llm_server, tmp_path) -> None:
    """A run against llama.cpp's OpenAI-compatible server; a price change in the middle."""
    costs = cost_stack(tmp_path)
    t_start = datetime.now(timezone.utc)
    p1, p2 = (3.0, 15.0), (5.0, 20.0)
    costs.prices.add(ADMIN, "smollm2", "prefix", *p1, effective_from=t_start - timedelta(days=1))
    usage: list[dict] = []
    s = services.settings.model_copy(update=dict(openai_base_url=llm_server.base_url, llm_model=llm_server.model,
                                                 llm_timeout_s=120, llm_max_retries=0))
    engine = metered_engine(services, costs, NonStreamingGenerator(s, usage), openai_base_url=llm_server.base_url,
                            llm_model=llm_server.model)
    policy = Policy(top_k=1, max_tokens=8, temperature=0.0)
    questions = [q["question"] for q in first_queries("scifact", 3)]

    answers = [engine.query(q, policy, user("alice")) for q in questions[:2]]
    costs.prices.add(ADMIN, "smollm2", "prefix", *p2, effective_from=datetime.now(timezone.utc))  # price change
    answers += [engine.query(questions[2], policy, user("bob"), variant="B")]
    hit = engine.query(questions[0], policy, user("carol"))  # cached: costs 0, saves at today's price
    assert hit.cache_hit and hit.cost_usd == 0

    chat = [r for r in ledger_rows(costs, kind="chat") if not r["cache_hit"]]
    assert len(chat) == len(usage) == 3
    assert sum(r["prompt_tokens"] for r in chat) == sum(u["prompt_tokens"] for u in usage)
    assert sum(r["completion_tokens"] for r in chat) == sum(u["completion_tokens"] for u in usage)
    expected = []
    for row, u, price in zip(chat, usage, [p1, p1, p2]):
        assert (row["prompt_tokens"], row["completion_tokens"]) == (u["prompt_tokens"], u["completion_tokens"])
        assert row["token_method"] == "api" and row["status"] == "ok" and row["price_known"]
        expected.append(_hand_cost(u["prompt_tokens"], u["completion_tokens"], *price))
        assert row["cost_usd"] == pytest.approx(expected[-1], rel=1e-12)
    assert [a.cost_usd for a in answers] == pytest.approx(expected, rel=1e-12)  # local embeddings cost 0
    assert [r["user"] for r in chat] == ["alice", "alice", "bob"]
    assert [r["variant"] for r in chat] == [None, None, "B"]
    assert {r["index_version"] for r in chat} == {answers[0].collection}
    assert all(r["total_ms"] >= r["latency_ms"] > 0 and r["retrieve_ms"] > 0 for r in chat)
    assert [r["request_id"] for r in chat] == [a.request_id for a in answers]

    cached = [r for r in ledger_rows(costs, kind="chat") if r["cache_hit"]]
    assert len(cached) == 1 and cached[0]["cost_usd"] == 0 and cached[0]["user"] == "carol"
    assert cached[0]["saved_usd"] == pytest.approx(_hand_cost(usage[0]["prompt_tokens"], usage[0]["completion_tokens"], *p2))

    emb = ledger_rows(costs, kind="embedding")
    assert len(emb) == 3 and all(r["model"] == services.embedder.name and r["cost_usd"] == 0 for r in emb)

    summary = costs.queries.summary(TimeRange.last_days(2))
    assert summary.cost_usd == pytest.approx(sum(expected), rel=1e-9)
    assert summary.prompt_tokens - sum(r["prompt_tokens"] for r in emb) == sum(u["prompt_tokens"] for u in usage)
    assert (summary.requests, summary.cache_hits, summary.errors) == (4, 1, 0)
    assert summary.saved_usd == pytest.approx(cached[0]["saved_usd"])
    by_user = {r.user: r.cost_usd for r in costs.queries.top_users(TimeRange.last_days(2))}
    assert by_user["alice"] == pytest.approx(sum(expected[:2])) and by_user["carol"] == 0
    # the price change does not rewrite history: the first rows keep the old price
    assert chat[0]["cost_usd"] == pytest.approx(_hand_cost(usage[0]["prompt_tokens"], usage[0]["completion_tokens"], *p1))


def test_streamed_usage_errors_and_prometheus_counters(services: Services, fault_llm, tmp_path) -> None:
    """Streaming path (usage in the last chunk), a failed call, and the exporter's counters."""
    costs = cost_stack(tmp_path)
    costs.prices.add(ADMIN, fault_llm.model, "exact", 1000.0, 2000.0, cached_input_per_m=100.0, effective_from="2024-01-01")
    s = services.settings.model_copy(update=dict(openai_base_url=fault_llm.base_url, llm_model=fault_llm.model,
                                                 llm_max_retries=0))
    engine = metered_engine(services, costs, OpenAIGenerator(s), openai_base_url=fault_llm.base_url,
                            llm_model=fault_llm.model)
    q = first_queries("scifact", 2)
    fault_llm.cached_tokens = 5  # usage.prompt_tokens_details.cached_tokens, billed at the cached rate
    answer = engine.query(q[0]["question"], Policy(top_k=2), user("alice"))
    body = next(r["body"] for r in fault_llm.requests if r["path"].endswith("/chat/completions"))
    prompt = sum(len(m["content"].split()) for m in body["messages"])  # what the fault server reports
    row = ledger_rows(costs, kind="chat")[-1]
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (prompt, len(fault_llm.reply.split()), 5)
    assert row["cost_usd"] == pytest.approx(_hand_cost(prompt - 5, len(fault_llm.reply.split()), 1000, 2000) + 5 * 100 / 1e6)
    assert answer.cost_usd == pytest.approx(row["cost_usd"]) and answer.usage.method == "api"

    fault_llm.fail_next(1, status=500)
    with pytest.raises(Exception):
        engine.query(q[1]["question"], Policy(top_k=2), user("alice"))
    err = ledger_rows(costs, kind="chat")[-1]
    assert (err["status"], err["error_class"], err["cost_usd"], err["prompt_tokens"]) == ("error", "InternalServerError", 0, 0)

    text = costs.metrics.exposition().decode()
    assert 'rag_requests_total{policy="default",status="ok"} 1.0' in text
    assert 'rag_requests_total{policy="default",status="error"} 1.0' in text
    assert f'rag_tokens_total{{kind="chat",model="{fault_llm.model}",policy="default",type="prompt"}} {float(prompt)}' in text
    assert 'rag_stage_latency_seconds_count{policy="default",stage="generate"} 2.0' in text
    assert 'rag_cache_misses_total{policy="default"} 2.0' in text
    s2 = costs.queries.summary(TimeRange.last_hours(2))  # 2: an hour may turn mid-test
    assert (s2.requests, s2.errors) == (2, 1) and s2.error_rate == 0.5


def test_extractive_and_retrieval_only_rows(services: Services, tmp_path) -> None:
    costs = cost_stack(tmp_path)
    engine = metered_engine(services, costs, ExtractiveGenerator())
    q = first_queries("cmrc2018", 1)[0]["question"]
    a = engine.query(q, Policy(top_k=3, retrieval_mode="sparse"), user("u1"))  # sparse: no embedding call
    assert [r["kind"] for r in ledger_rows(costs)] == ["chat"]
    row = ledger_rows(costs)[0]
    assert row["model"] == "extractive" and row["cost_usd"] == 0 and row["price_known"]
    assert row["question"] == q and row["request_id"] == a.request_id
    engine.query(q, Policy(top_k=3), user("u1"), retrieval_only=True)
    assert [r["kind"] for r in ledger_rows(costs)] == ["chat", "embedding"]
    engine.retrieve(q, Policy(top_k=3, retrieval_mode="dense"))  # the evaluation path is metered too
    assert ledger_rows(costs)[-1]["user"] == "system"



def test_endpoint_rerank_orders_by_its_scores_and_is_metered(services: Services, fault_llm, tmp_path) -> None:
    """RERANK_URL (the fault server's Cohere-style /v1/rerank: its score is the share of the
    question's words in the chunk): the order and scores are the endpoint's, every call is a ledger
    row of kind rerank with counted tokens, and a failing endpoint is an error row and a DependencyError."""
    costs = cost_stack(tmp_path)
    engine = metered_engine(services, costs, ExtractiveGenerator(), rerank_url=f"{fault_llm.base_url}/rerank",
                            rerank_model="fault-rerank")
    engine.reranker = make_reranker(engine.settings, services.store)
    q = first_queries("scifact", 1)[0]["question"]
    sources = engine.retrieve(q, Policy(top_k=4, rerank=True, rerank_candidates=8), actor=user("u1")).sources
    [call] = [r for r in fault_llm.requests if r["path"] == "/v1/rerank"]
    assert call["body"]["query"] == q and len(call["body"]["documents"]) == 8
    assert [s.scores["rerank"] for s in sources] == [fault_llm.relevance(q, s.text) for s in sources]
    assert [s.scores["rerank"] for s in sources] == sorted((s.scores["rerank"] for s in sources), reverse=True)
    [row] = ledger_rows(costs, kind="rerank")
    assert (row["model"], row["status"], row["user"]) == ("fault-rerank", "ok", "u1")
    assert row["prompt_tokens"] > len(q.split()) and row["latency_ms"] > 0

    fault_llm.fail_next(1)
    with pytest.raises(DependencyError, match="rerank"):
        engine.retrieve(q, Policy(top_k=4, rerank=True, rerank_candidates=8), actor=user("u1"))
    failed = ledger_rows(costs, kind="rerank")[-1]
    assert (failed["status"], failed["error_class"]) == ("error", "HTTPStatusError")

# --- queries: roll-ups agree with the raw rows ------------------------------------------------------

def _synthetic(costs, now: datetime, n: int = 60) -> None:
    for i in range(n):
        ctx = RequestContext(f"r{i}", f"user{i % 3}", ["default", "fast"][i % 2], 1, ["A", None][i % 2], "rag_v1",
                             f"question {i % 7}")
        ts = now - timedelta(hours=i % 20, minutes=i)
        costs.meter.record(ctx, ModelCall("embedding", "text-embedding-3-small", prompt_tokens=10 + i,
                                          latency_ms=5 + i, ts=None))
        call = ModelCall("chat", ["gpt-4o-mini", "gpt-4.1"][i % 2], prompt_tokens=500 + i, completion_tokens=50 + i,
                         cached_tokens=100 if i % 5 == 0 else 0, latency_ms=300 + 10 * i, retrieve_ms=20 + i,
                         total_ms=400 + 10 * i, status="error" if i % 11 == 0 else "ok",
                         cache_hit=i % 4 == 0, saved_prompt_tokens=500, saved_completion_tokens=50)
        costs.meter.record(ctx, call)
        with costs.db.begin() as conn:  # spread over the last day
            conn.execute(ledger.update().where(ledger.c.request_id == f"r{i}").values(ts=ts, epoch=int(ts.timestamp())))
    costs.ledger.rebuild_rollups()


def _compare_sources(costs, now) -> None:
    day = TimeRange.last_days(2, now)
    hours = TimeRange(day.start, day.end, "hour")  # same span, read from the raw rows
    for f in (Filters(), Filters(policy=("fast",)), Filters(variant=("",)), Filters(user=("user1",), model=("gpt-4.1",))):
        a, b = costs.queries.summary(day, f), costs.queries.summary(hours, f)
        assert a.cost_usd == pytest.approx(b.cost_usd) and a.requests == b.requests and a.errors == b.errors
        assert a.prompt_tokens == b.prompt_tokens and a.cache_hits == b.cache_hits
        assert a.latency_ms == pytest.approx(b.latency_ms)
        qa = {r.question_hash: r.cost_usd for r in costs.queries.top_questions(day, f, 20)}
        qb = {r.question_hash: r.cost_usd for r in costs.queries.top_questions(hours, f, 20)}
        assert qa == pytest.approx(qb)
        assert {r.user: r.cost_usd for r in costs.queries.top_users(day, f)} == \
            pytest.approx({r.user: r.cost_usd for r in costs.queries.top_users(hours, f)})
    by_model = costs.queries.cost_series(day, by="model")
    assert sum(r.cost_usd for r in by_model) == pytest.approx(costs.queries.summary(day).cost_usd)
    assert costs.queries.summary(day).requests == 60
    lat = costs.queries.latency_series(hours)
    assert {r.stage for r in lat} >= {"embed", "generate", "cache", "retrieve", "total"}
    drill = costs.queries.rows(day, dim="model", value="gpt-4.1")
    assert drill and all(r["model"] == "gpt-4.1" for r in drill)
    assert drill == sorted(drill, key=lambda r: -r["cost_usd"])


def test_rollups_equal_raw_rows_on_sqlite(tmp_path) -> None:
    costs = cost_stack(tmp_path)
    now = datetime.now(timezone.utc)
    _synthetic(costs, now)
    _compare_sources(costs, now)
    opts = costs.queries.options(TimeRange.last_days(2, now))
    assert opts["policy"] == ["default", "fast"] and opts["variant"] == ["", "A"]


@pytest.fixture(scope="module")
def pg_url(postgres_server) -> Iterator[str]:
    yield postgres_server.create_database("ledger_test")


def test_ledger_on_postgresql(pg_url: str, tmp_path) -> None:
    costs = cost_stack(tmp_path, url=pg_url)
    assert _schema_diffs(costs.db) == []
    now = datetime.now(timezone.utc)
    _synthetic(costs, now)
    _compare_sources(costs, now)
    costs.meter.record(RequestContext("x", "u", "default", None, None, "v", "q"),
                       ModelCall("chat", "gpt-4o-mini", prompt_tokens=1, completion_tokens=1, latency_ms=1, total_ms=2))
    assert costs.queries.summary(TimeRange.last_days(1)).requests >= 1  # the upsert path on PostgreSQL
    costs.db.dispose()


def test_a_reader_that_stops_mid_stream_leaves_an_aborted_row_counting_the_text_so_far(
        services: Services, fault_llm, tmp_path) -> None:
    """The engine generates through LlamaIndex's `stream_chat`, whose events meter the call; a reader
    that stops after the first words (a closed tab, a dropped API client) never sees its end event. The
    row is still written, as "aborted", with the prompt and the words generated so far counted, and the
    request's retrieval and total times."""
    from backend.engine.tokens import count_tokens

    costs = cost_stack(tmp_path)
    costs.prices.add(ADMIN, fault_llm.model, "exact", 1000.0, 2000.0, effective_from="2024-01-01")
    engine = metered_engine(services, costs, OpenAIGenerator(services.settings.model_copy(update=dict(
        openai_base_url=fault_llm.base_url, llm_model=fault_llm.model, llm_max_retries=0))),
        openai_base_url=fault_llm.base_url, llm_model=fault_llm.model)
    stream = engine.stream(first_queries("scifact", 1)[0]["question"], Policy(top_k=2), user("alice"))
    words = []
    for event in stream:
        if isinstance(event, str):
            words.append(event)
            if len(words) == 2:
                break
    stream.close()
    row = ledger_rows(costs, kind="chat")[-1]
    assert (row["status"], row["error_class"], row["model"]) == ("aborted", "GeneratorExit", fault_llm.model)
    assert row["completion_tokens"] == count_tokens("".join(words))[0] > 0
    assert row["prompt_tokens"] > 50 and row["token_method"] in ("tiktoken", "estimate")
    assert row["cost_usd"] > 0 and row["total_ms"] >= row["retrieve_ms"] > 0
    assert len(fault_llm.reply.split()) > 2  # it did stop before the end


def test_the_engine_answers_through_a_llamaindex_llm_whose_events_carry_the_usage(
        services: Services, fault_llm, tmp_path) -> None:
    """A handler of a team's own on LlamaIndex's root dispatcher (Langfuse, Phoenix...) sees the engine's
    generation as one LLM chat call: start, the streamed pieces, and an end whose raw usage is what the
    endpoint reported, the cached prompt tokens included."""
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.llm import (LLMChatEndEvent, LLMChatInProgressEvent,
                                                             LLMChatStartEvent)

    class Seen(BaseEventHandler):
        events: list = []

        def handle(self, event, **kwargs) -> None:
            if isinstance(event, (LLMChatStartEvent, LLMChatInProgressEvent, LLMChatEndEvent)):
                self.events.append(event)

    seen = Seen()
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(seen)
    try:
        costs = cost_stack(tmp_path)
        engine = metered_engine(services, costs, OpenAIGenerator(services.settings.model_copy(update=dict(
            openai_base_url=fault_llm.base_url, llm_model=fault_llm.model, llm_max_retries=0))),
            openai_base_url=fault_llm.base_url, llm_model=fault_llm.model)
        fault_llm.cached_tokens = 3
        answer = engine.query(first_queries("scifact", 1)[0]["question"], Policy(top_k=2), user("alice"))
    finally:
        dispatcher.event_handlers.remove(seen)
    kinds = [type(e).__name__ for e in seen.events]
    assert kinds[0] == "LLMChatStartEvent" and kinds[-1] == "LLMChatEndEvent"
    assert kinds.count("LLMChatInProgressEvent") == len(fault_llm.reply.split(" ")) + 1  # the words, then the usage
    start, end = seen.events[0], seen.events[-1]
    assert start.model_dict["model_name"] == fault_llm.model and start.messages[-1].content.endswith(answer.question)
    assert end.response.message.content == answer.answer == fault_llm.reply
    usage = end.response.raw["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (answer.usage.prompt_tokens,
                                                                    answer.usage.completion_tokens)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 3}
    assert ledger_rows(costs, kind="chat")[-1]["cached_tokens"] == 3
