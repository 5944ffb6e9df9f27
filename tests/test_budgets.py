"""Budgets: a hard budget refuses the next paid call with a clear message and still serves
cached answers; soft thresholds fire once each (alert + webhook); periods and validation."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from backend.budgets import Budget, budget_events, period_of
from backend.errors import BudgetExceeded, InputError
from backend.generation import OpenAIGenerator
from backend.ledger.calls import ModelCall, RequestContext
from backend.policy import Policy
from backend.services import Services
from actors import ADMIN, user
from corpus import first_queries
from ledger_fixtures import cost_stack, ledger_rows, metered_engine, start_webhook

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
    costs.budgets.create(ADMIN, "alice daily", 0.05, scope="user", scope_value="alice", period="day", hard=True)
    policy = Policy(top_k=2)
    first = engine.query(QUESTIONS[0], policy, ALICE)  # spend 0 < limit: allowed
    assert first.cost_usd > 0.05  # one call overspends the limit (the budget cannot know a call's cost before)
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
    status = {b["name"]: b for b in costs.budgets.status()}["alice daily"]
    assert status["blocking"] and status["pct"] > 100 and status["fired"] == [80, 95, 100]
    assert 'rag_budget_spend_ratio{budget="alice daily",scope="user alice"}' in text

    costs.budgets.set_enabled(ADMIN, status["id"], False)  # lifting the budget lets calls through again
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
    alerts = [a for a in costs.alerts.firing() if a["source"] == "budget"]
    assert len(alerts) == 1 and "Budget 'team' at 105% (soft)" in alerts[0]["title"]
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
    actions = [r["action"] for r in costs.budgets._audit.recent(10)]
    assert "budget.create" in actions and "budget.delete" in actions
