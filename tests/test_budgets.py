"""Budgets: a hard budget refuses the next paid call with a clear message and still serves
cached answers; soft thresholds fire once each (alert + webhook); periods and validation."""
from __future__ import annotations

import math
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from actors import ADMIN, user
from corpus import first_queries
from ledger_fixtures import cost_stack, ledger_rows, metered_engine, start_webhook

from backend.engine.generation import OpenAIGenerator
from backend.engine.policy import Policy
from backend.errors import BudgetExceeded, InputError, RagError
from backend.ledger.budgets import RESERVATION_TTL_S, Budget, budget_events, period_of
from backend.ledger.calls import ModelCall, Planned, RequestContext
from backend.ledger.pricing import Price, prices
from backend.services import Services

QUESTIONS = [q["question"] for q in first_queries("scifact", 4)]
ALICE, BOB = user("alice"), user("bob")  # ask questions (viewers); ADMIN manages prices and budgets


@pytest.fixture
def paid(services: Services, fault_llm, tmp_path):
    """An engine on the fault server whose model costs $1,000 / $2,000 per million tokens."""
    hook = start_webhook()
    costs = cost_stack(tmp_path, alert_webhook_url=hook.url)
    costs.prices.add(ADMIN, fault_llm.model, "exact", 1000.0, 2000.0, effective_from="2024-01-01")
    s = services.settings.model_copy(update=dict(openai_base_url=fault_llm.base_url, llm_model=fault_llm.model,
                                                 llm_max_retries=0))
    engine = metered_engine(services, costs, OpenAIGenerator(s), openai_base_url=fault_llm.base_url,
                            llm_model=fault_llm.model)
    yield costs, engine, hook
    hook.close()


def test_hard_budget_blocks_next_paid_call_and_serves_cached_answers(paid, fault_llm) -> None:
    costs, engine, hook = paid
    costs.budgets.create(ADMIN, "alice daily", 2.5, scope="user", scope_value="alice", period="day", hard=True)
    policy = Policy(top_k=2)
    first = engine.query(QUESTIONS[0], policy, ALICE)  # its estimate (answer at max_tokens) fits the limit
    assert 0 < first.cost_usd < 2.5
    costs.meter.record(RequestContext("x", "alice", "default", None, None, "v", "q"),  # another call spends the rest
                       ModelCall("chat", fault_llm.model, prompt_tokens=2500, latency_ms=1))
    calls_before = len(fault_llm.requests)

    with pytest.raises(BudgetExceeded) as err:
        engine.query(QUESTIONS[1], policy, ALICE)
    msg = str(err.value)
    assert msg.startswith("budget: hard budget 'alice daily' (user alice, this day) is spent")
    assert "New paid model calls are refused until" in msg and "cached answers are still served" in msg
    assert len(fault_llm.requests) == calls_before  # refused before any model call

    again = engine.query(QUESTIONS[0], policy, ALICE)  # cached: served despite the spent budget
    assert again.cache_hit and again.answer == first.answer and again.cost_usd == 0
    assert engine.query(QUESTIONS[1], policy, BOB).cost_usd > 0  # other users are not covered

    refused = ledger_rows(costs, status="refused")
    assert len(refused) == 1 and refused[0]["user"] == "alice" and refused[0]["error_class"] == "BudgetExceeded"
    assert refused[0]["cost_usd"] == 0 and refused[0]["model"] == fault_llm.model
    text = costs.metrics.exposition().decode()
    assert 'rag_requests_total{policy="default",status="refused"} 1.0' in text
    assert 'rag_requests_total{policy="default",status="cache_hit"} 1.0' in text
    status = {s.budget.name: s for s in costs.budgets.status()}["alice daily"]
    assert status.blocking and status.pct > 100 and status.fired == (80, 95, 100)
    assert 'rag_budget_spend_ratio{budget="alice daily",scope="user alice"}' in text

    costs.budgets.set_enabled(ADMIN, status.budget.id, False)  # lifting the budget lets calls through again
    assert engine.query(QUESTIONS[2], policy, ALICE).cost_usd > 0


def test_hard_model_budget_only_blocks_that_model(paid, fault_llm) -> None:
    costs, engine, _ = paid
    costs.budgets.create(ADMIN, "other model", 0.01, scope="model", scope_value="gpt-4.1", hard=True)
    costs.meter.record(RequestContext("x", "u", "default", None, None, "v", "q"),
                       ModelCall("chat", "gpt-4.1", prompt_tokens=100_000, completion_tokens=1000, latency_ms=1))
    assert engine.query(QUESTIONS[0], Policy(top_k=2), ALICE).cost_usd > 0  # fault-llm is not covered
    costs.budgets.create(ADMIN, "everything", 0.01, scope="global", hard=True)
    with pytest.raises(BudgetExceeded, match="'everything' \\(all spend, this month\\)"):
        engine.query(QUESTIONS[1], Policy(top_k=2), ALICE)


def test_soft_thresholds_fire_once_each(paid) -> None:
    costs, engine, hook = paid
    bid = costs.budgets.create(ADMIN, "team", 1.0, scope="policy", scope_value="default", period="month",
                               thresholds=[20, 50, 100])
    ctx = RequestContext("r", "alice", "default", None, None, "v", "q")
    for _ in range(12):  # $0.15 each: crosses 20% on the 2nd, 50% on the 4th, 100% on the 7th
        call = costs.meter.record(ctx, ModelCall("chat", "fault-llm", prompt_tokens=150, completion_tokens=0,
                                                 latency_ms=1))
        assert call.cost_usd == pytest.approx(0.15)
    costs.alerts.flush()
    with costs.db.connect() as conn:
        events = conn.execute(sa.select(budget_events.c.threshold, budget_events.c.spend_usd)
                              .where(budget_events.c.budget_id == bid).order_by(budget_events.c.id)).all()
    fired = [t for t, _ in events]
    assert fired == [20, 50, 100]  # once each, in order
    assert [round(s, 2) for _, s in events] == [0.30, 0.60, 1.05]
    assert costs.budgets.evaluate() == []  # evaluating again fires nothing new
    alerts = [a for a in costs.alerts.firing() if a.source == "budget"]
    assert len(alerts) == 1 and "Budget 'team' at 105% (soft)" in alerts[0].title
    assert [m["status"] for m in hook.received] == ["firing"] * 3  # one notification per threshold
    texts = sorted(m["text"] for m in hook.received)  # delivered by background threads: any order
    assert any("'team' at 30%" in t for t in texts) and any("'team' at 60%" in t for t in texts)
    # a soft budget never blocks
    costs.budgets.check("alice", "default", ["fault-llm"])


def test_rolling_budget_rearms_when_the_window_slides(tmp_path) -> None:
    costs = cost_stack(tmp_path)
    bid = costs.budgets.create(ADMIN, "rolling", 1.0, period="rolling", rolling_days=3, thresholds=[50])
    b = next(x for x in costs.budgets.list() if x.id == bid)
    now = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
    assert [f.threshold for f in costs.budgets._thresholds(b, 0.6, now)] == [50]
    assert costs.budgets._thresholds(b, 0.7, now) == []  # still above: nothing new
    assert costs.budgets._thresholds(b, 0.1, now) == []  # fell below: re-armed
    assert [f.threshold for f in costs.budgets._thresholds(b, 0.9, now)] == [50]  # fires again


def test_periods_are_utc_calendar_windows() -> None:
    def b(period, n=None):
        return Budget(1, "b", "global", None, period, n, 1.0, False, (80,))
    now = datetime(2026, 11, 19, 15, 30, tzinfo=timezone.utc)  # a Thursday
    day0 = (now.date() - datetime(1970, 1, 1).date()).days
    assert period_of(b("day"), now).first_day == day0 and period_of(b("day"), now).end_day == day0 + 1
    week = period_of(b("week"), now)
    assert (week.first_day, week.end_day, week.key) == (day0 - 3, day0 + 4, "week-2026-11-16")
    month = period_of(b("month"), now)
    assert month.end_day - month.first_day == 30 and month.resets == datetime(2026, 12, 1, tzinfo=timezone.utc)
    rolling = period_of(b("rolling", 7), now)
    assert (rolling.first_day, rolling.end_day, rolling.resets) == (day0 - 6, day0 + 1, None)


def test_budget_validation_and_audit(tmp_path) -> None:
    costs = cost_stack(tmp_path)
    with pytest.raises(InputError, match="needs the user"):
        costs.budgets.create(ADMIN, "x", 5, scope="user")
    with pytest.raises(InputError, match="more than \\$0"):
        costs.budgets.create(ADMIN, "x", 0)
    with pytest.raises(InputError, match="number of days"):
        costs.budgets.create(ADMIN, "x", 5, period="rolling")
    bid = costs.budgets.create(ADMIN, "x", 5)
    with pytest.raises(InputError, match="exists"):
        costs.budgets.create(ADMIN, "x", 5)
    costs.budgets.delete(ADMIN, bid)
    actions = [r.action for r in costs.budgets._audit.recent(10)]
    assert "budget.create" in actions and "budget.delete" in actions


# --- issue 14 #2 and #4: non-finite numbers, concurrent calls against a hard cap ---------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh database of each kind: the reservation's atomicity and NaN storage differ between them."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'costs.db'}"
    return request.getfixturevalue("postgres_server").create_database(f"budgets_{uuid.uuid4().hex[:12]}")


def _ctx(request_id: str, user: str = "alice") -> RequestContext:
    return RequestContext(request_id=request_id, user=user, policy="default", index_version="v", question="q")


def _ten_at_once(costs, ctx_of, before=lambda: None) -> tuple[list[int], list[str]]:  # noqa: ANN001
    """10 threads, released together, each authorizing then making a $0.03 call (1,000 paid tokens)
    that takes 0.2 s: every thread is past its check before any spend is written. (passed, refusals)"""
    passed: list[int] = []
    refused: list[str] = []
    start = threading.Barrier(10)

    def request(i: int) -> None:
        ctx = ctx_of(i)
        start.wait()
        try:
            before()
            costs.meter.authorize(ctx, [Planned("chat", "paid-model", 1000, 0)])
        except BudgetExceeded as exc:
            refused.append(str(exc))
            return
        try:
            time.sleep(0.2)
            costs.meter.record(ctx, ModelCall("chat", "paid-model", prompt_tokens=1000, latency_ms=200))
            passed.append(i)
        finally:
            costs.meter.request_done(ctx, "ok", {})

    threads = [threading.Thread(target=request, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return passed, refused


def test_concurrent_calls_cannot_overrun_a_hard_budget(db_url, tmp_path) -> None:
    """10 threads, each a $0.03 call, against a $0.10 hard cap: floor(0.10 / 0.03) = 3 pass.
    (Checking before the call and adding the spend after let all 10 through: $0.30.)"""
    costs = cost_stack(tmp_path, db_url)
    costs.prices.add(ADMIN, "paid-model", "exact", 30.0, 0.0, effective_from="2024-01-01")  # 1,000 tokens: $0.03
    bid = costs.budgets.create(ADMIN, "cap", 0.10, period="day", hard=True)
    passed, refused = _ten_at_once(costs, lambda i: _ctx(f"r{i}"))
    assert len(passed) == math.floor(0.10 / 0.03) == 3 and len(refused) == 7
    assert "cannot cover this request" in refused[0] and "held by calls in progress" in refused[0]
    b = next(x for x in costs.budgets.list() if x.id == bid)
    assert costs.budgets.spend(b, fresh=True) == pytest.approx(0.09)
    assert costs.budgets.held(bid) == 0  # every reservation settled
    with pytest.raises(BudgetExceeded, match="cannot cover"):  # $0.01 left: the next $0.03 call is refused
        costs.meter.authorize(_ctx("late"), [Planned("chat", "paid-model", 1000, 0)])
    costs.meter.authorize(_ctx("small"), [Planned("chat", "paid-model", 300, 0)])  # $0.009 fits
    assert costs.budgets.held(bid) == pytest.approx(0.009)


def test_a_failed_call_releases_and_a_crashed_one_expires(tmp_path) -> None:
    costs = cost_stack(tmp_path)
    costs.prices.add(ADMIN, "paid-model", "exact", 30.0, 0.0, effective_from="2024-01-01")
    bid = costs.budgets.create(ADMIN, "cap", 0.05, period="day", hard=True)
    ctx = _ctx("failed")
    costs.meter.authorize(ctx, [Planned("chat", "paid-model", 1000, 0)])
    assert costs.budgets.held(bid) == pytest.approx(0.03)
    costs.meter.request_done(ctx, "error", {})  # the call failed: nothing spent, nothing held
    assert costs.budgets.held(bid) == 0
    t0 = datetime.now(timezone.utc)
    assert costs.budgets.reserve("crashed", "alice", "default", {"paid-model": 0.04}, now=t0)  # never settled
    with pytest.raises(BudgetExceeded, match=r"\$0.0400 held"):
        costs.budgets.reserve("next", "alice", "default", {"paid-model": 0.03}, now=t0 + timedelta(minutes=1))
    later = t0 + timedelta(seconds=RESERVATION_TTL_S + 1)  # the crashed process's hold has lapsed
    assert costs.budgets.reserve("next", "alice", "default", {"paid-model": 0.03}, now=later)


def test_non_finite_and_absurd_numbers_are_refused_at_every_entry(db_url, tmp_path) -> None:
    costs = cost_stack(tmp_path, db_url)
    for bad, reason in [("inf", "finite"), ("1e999", "finite"), (float("nan"), "finite"), ("-1", "zero or more"),
                        (1e10, "ceiling"), ("ten", "not a number")]:
        with pytest.raises(InputError, match=f"input_per_m.*{reason}"):
            costs.prices.add(ADMIN, "m", "exact", bad, 1.0, effective_from="2024-01-01")
        with pytest.raises(InputError, match=f"CSV line 3: output_per_m.*{reason}"):
            costs.prices.import_csv(ADMIN, "pattern,match,input_per_m,output_per_m,effective_from\n"
                                           f"ok,exact,1,1,2024-01-01\nm,exact,1,{bad},2024-01-01\n")
        with pytest.raises(InputError, match=f"the limit.*{reason}"):
            costs.budgets.create(ADMIN, "b", bad, hard=True)
        with pytest.raises(InputError, match=f"the threshold.*{reason}"):
            costs.alerts.create_rule(ADMIN, "r", "cost", bad)
    with pytest.raises(InputError, match="per_call_usd.*ceiling"):
        costs.prices.add(ADMIN, "m", "exact", 1, 1, per_call_usd=5000, effective_from="2024-01-01")
    with pytest.raises(InputError, match="a threshold 'x' is not a whole number"):
        costs.budgets.create(ADMIN, "b", 5, thresholds=["x"])
    # VARCHAR(200) columns: refused before any write on both databases (PostgreSQL would raise mid-write)
    with pytest.raises(InputError, match="the budget name has 201 characters; the limit is 200"):
        costs.budgets.create(ADMIN, "b" * 201, 5)
    with pytest.raises(InputError, match="the user has 201 characters"):
        costs.budgets.create(ADMIN, "b", 5, scope="user", scope_value="u" * 201)
    with pytest.raises(InputError, match="the pattern has 201 characters; the limit is 200"):
        costs.prices.add(ADMIN, "p" * 201, "prefix", 1, 1, effective_from="2024-01-01")
    with pytest.raises(InputError, match="control character"):
        costs.prices.add(ADMIN, "gpt\x00", "prefix", 1, 1, effective_from="2024-01-01")
    assert costs.budgets.list() == [] and all(r["created_by"] == "seed" for r in _price_rows(costs))
    assert costs.prices.add(ADMIN, "p" * 200, "prefix", 1, 1, effective_from="2024-01-01")  # the limit itself fits


def _price_rows(costs) -> list[dict]:
    with costs.db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(prices))]


def test_a_stored_infinite_price_cannot_disable_cost_tracking_or_budgets(db_url, tmp_path) -> None:
    """A row saved before validation refused inf: its cost was NaN, SQLite dropped the ledger row,
    PostgreSQL stored NaN, the spend became NaN and a $0.01 hard budget let paid calls through."""
    costs = cost_stack(tmp_path, db_url)
    with costs.db.begin() as conn:
        conn.execute(prices.insert().values(pattern="legacy-model", match="exact", input_per_m=float("inf"),
                                            output_per_m=1.0, per_call_usd=0.0, effective_from=datetime(2024, 1, 1),
                                            checked_at=datetime(2024, 1, 1), note="", created_at=datetime(2024, 1, 1),
                                            created_by="old import"))
    with pytest.raises(RagError, match="gives the cost nan"):
        Price(1, "legacy-model", "exact", float("inf"), 1.0, None, 0.0, datetime(2024, 1, 1), datetime(2024, 1, 1)) \
            .cost(0, 10)
    costs.budgets.create(ADMIN, "tiny", 0.01, hard=True)
    ctx = _ctx("legacy")
    costs.meter.authorize(ctx, [Planned("chat", "legacy-model", 100, 10)])  # nothing spent yet
    call = costs.meter.record(ctx, ModelCall("chat", "legacy-model", prompt_tokens=100, completion_tokens=10,
                                             latency_ms=1))
    costs.meter.request_done(ctx, "ok", {})
    assert call.cost_usd == 0 and not call.price_known  # unpriced, not NaN
    rows = ledger_rows(costs, model="legacy-model")
    assert len(rows) == 1 and rows[0]["cost_usd"] == 0 and not rows[0]["price_known"]  # kept on SQLite too
    costs.meter.record(_ctx("paid"), ModelCall("chat", "gpt-4.1", prompt_tokens=10_000, latency_ms=1))  # $0.02
    b = costs.budgets.list()[0]
    assert math.isfinite(costs.budgets.spend(b, fresh=True))
    with pytest.raises(BudgetExceeded, match="'tiny' .* is spent"):  # an unpriced model counts as paid
        costs.meter.authorize(_ctx("next"), [Planned("chat", "legacy-model", 100, 10)])


# --- issue 14: an API key's monthly budget holds its paid calls like a hard budget -------------------

def _key_ctx(request_id: str, key: str) -> RequestContext:
    return RequestContext(request_id=request_id, user="eve", policy="default", index_version="v", question="q",
                          source="api", api_key=key)


def _budgeted_key(costs, name: str, budget_usd: float | None):
    from actors import Role

    from backend.access.audit import AuditLog
    from backend.access.service import AccessStore

    access = AccessStore(costs.db, AuditLog(costs.db), "secret-for-tests-0123456789abcdef")
    return access.key_actor(access.create_key(ADMIN, name, Role.viewer, budget_usd=budget_usd).key)


def test_concurrent_calls_of_one_key_cannot_overrun_its_budget(db_url, tmp_path) -> None:
    """10 threads of one API key, each a $0.03 call, against the key's $0.10 monthly budget (no hard
    budget): floor(0.10 / 0.03) = 3 pass. (`check_key` before the request and the spend added after
    let all 10 through: $0.30.)"""
    costs = cost_stack(tmp_path, db_url)
    costs.prices.add(ADMIN, "paid-model", "exact", 30.0, 0.0, effective_from="2024-01-01")  # 1,000 tokens: $0.03
    key = _budgeted_key(costs, "mobile", 0.10)
    other = _budgeted_key(costs, "batch", None)  # no budget: never held
    # the API's check_key when the key is known: all 10 pass it
    passed, refused = _ten_at_once(costs, lambda i: _key_ctx(f"k{i}", key.name), before=lambda: costs.budgets.check_key(key))
    assert len(passed) == math.floor(0.10 / 0.03) == 3 and len(refused) == 7
    assert all("API key 'mobile' cannot cover this request" in r and "held by calls in progress" in r
               for r in refused), refused[0]
    first_day = int(datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
                    .timestamp()) // 86400
    assert costs.queries.key_spend("mobile", first_day) == pytest.approx(0.09)
    assert costs.budgets.held(0, api_key="mobile") == 0  # every reservation settled
    with pytest.raises(BudgetExceeded, match="API key 'mobile' cannot cover"):  # $0.01 left
        costs.meter.authorize(_key_ctx("late", "mobile"), [Planned("chat", "paid-model", 1000, 0)])
    small = _key_ctx("small", "mobile")
    costs.meter.authorize(small, [Planned("chat", "paid-model", 300, 0)])  # $0.009 fits
    assert small.reserved and costs.budgets.held(0, api_key="mobile") == pytest.approx(0.009)
    costs.meter.request_done(small, "error", {})  # failed: nothing spent, nothing held
    assert costs.budgets.held(0, api_key="mobile") == 0
    free = _key_ctx("free", other.name)
    costs.meter.authorize(free, [Planned("chat", "paid-model", 100_000, 0)])  # $3 on a key without a budget
    assert not free.reserved and costs.budgets.held(0, api_key="batch") == 0


def test_a_key_budget_and_a_hard_budget_hold_all_or_none(tmp_path) -> None:
    costs = cost_stack(tmp_path)
    costs.prices.add(ADMIN, "paid-model", "exact", 30.0, 0.0, effective_from="2024-01-01")
    _budgeted_key(costs, "mobile", 0.05)
    bid = costs.budgets.create(ADMIN, "cap", 1.0, period="day", hard=True)
    assert costs.budgets.reserve("a", "eve", "default", {"paid-model": 0.04}, api_key="mobile")
    assert costs.budgets.held(bid) == pytest.approx(0.04) and costs.budgets.held(0, api_key="mobile") == pytest.approx(0.04)
    with pytest.raises(BudgetExceeded, match="API key 'mobile'"):  # the hard budget fits, the key's does not
        costs.budgets.reserve("b", "eve", "default", {"paid-model": 0.03}, api_key="mobile")
    assert costs.budgets.held(bid) == pytest.approx(0.04)  # nothing of "b" is left on the hard budget
    costs.budgets.settle("a")
    assert costs.budgets.held(bid) == 0 and costs.budgets.held(0, api_key="mobile") == 0


def test_key_budget_during_a_database_outage_goes_on_for_a_recent_key(tmp_path, monkeypatch) -> None:
    """The API's stale-on-database-error rule, now in the service for the check and the hold alike:
    a key whose budget passed within KEY_STALE_S goes on (no hold); one never seen gets the error."""
    import backend.ledger.budgets as budgets_mod

    costs = cost_stack(tmp_path)
    seen = _budgeted_key(costs, "seen", 1.0)
    unseen = _budgeted_key(costs, "unseen", 1.0)
    costs.budgets.check_key(seen)

    def down(*_a, **_k):
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(budgets_mod, "key_budget", down)
    monkeypatch.setattr(budgets_mod, "check_key_budget", down)
    costs.budgets.check_key(seen)
    assert costs.budgets.reserve("r", "eve", "default", {"paid-model": 0.5}, api_key="seen") is False
    with pytest.raises(sa.exc.OperationalError):
        costs.budgets.check_key(unseen)
    with pytest.raises(sa.exc.OperationalError):
        costs.budgets.reserve("r2", "eve", "default", {"paid-model": 0.5}, api_key="unseen")
