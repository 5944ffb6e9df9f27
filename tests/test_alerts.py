"""Alert rules on error rate, p95 latency and cost over a window: stored with first-seen and
resolved times, shown as firing until resolved, POSTed to the webhook once per episode."""
from __future__ import annotations

import pytest
from actors import ADMIN, user
from corpus import first_queries
from ledger_fixtures import cost_stack, metered_engine, start_webhook

from backend.engine.generation import OpenAIGenerator
from backend.engine.policy import Policy
from backend.errors import DependencyError, InputError
from backend.ledger.calls import ModelCall, RequestContext
from backend.services import Services

ALICE = user("alice")  # asks questions (viewer); ADMIN manages the rules


@pytest.fixture
def hook():
    h = start_webhook()
    yield h
    h.close()


def test_error_rate_rule_fires_then_resolves_with_webhook(services: Services, fault_llm, tmp_path, hook) -> None:
    costs = cost_stack(tmp_path, alert_webhook_url=hook.url)
    s = services.settings.model_copy(update=dict(openai_base_url=fault_llm.base_url, llm_model=fault_llm.model,
                                                 llm_max_retries=0))
    engine = metered_engine(services, costs, OpenAIGenerator(s), openai_base_url=fault_llm.base_url,
                            llm_model=fault_llm.model)
    rid = costs.alerts.create_rule(ADMIN, "errors", "error_rate", 0.25, window_minutes=10, min_requests=4)
    q = [x["question"] for x in first_queries("scifact", 6)]
    fault_llm.fail_next(2, status=503)
    for question in q[:4]:
        try:
            engine.query(question, Policy(top_k=1), ALICE)
        except DependencyError:
            pass
    result = costs.alerts.evaluate()
    errors = next(r for r in result if r.rule == "errors")
    assert errors.firing and errors.value == 0.5 and errors.requests == 4
    firing = costs.alerts.firing()
    assert len(firing) == 1 and firing[0].key == f"rule:{rid}" and firing[0].title.startswith("errors: 50.0% > 25.0%")
    first_seen = firing[0].first_seen
    costs.alerts.evaluate()  # still firing: same episode, no second notification
    assert costs.alerts.firing()[0].first_seen == first_seen

    for question in q[:4]:  # cached now, and successful: 2 errors in 8 requests = 25%, not above
        engine.query(question, Policy(top_k=1), ALICE)
    costs.alerts.evaluate()
    assert costs.alerts.firing() == []
    episode = costs.alerts.history(1)[0]
    assert episode.resolved_at is not None and episode.resolved_at >= episode.first_seen
    costs.alerts.flush()
    assert [m["status"] for m in hook.received] == ["firing", "resolved"]
    assert hook.received[0]["key"] == f"rule:{rid}" and "🔥" in hook.received[0]["text"]
    assert episode.notified_at is not None and episode.notify_error is None


def _rows(costs, totals_ms: list[float], cost: float = 0.0) -> None:
    """Chat rows with these end-to-end latencies (gpt-4o-mini input tokens worth `cost` each)."""
    ctx = RequestContext("r", "u", "default", None, None, "v", "q")
    for ms in totals_ms:
        costs.meter.record(ctx, ModelCall("chat", "gpt-4o-mini", prompt_tokens=round(cost * 1e6 / 0.15),
                                          latency_ms=ms * 0.8, total_ms=ms, retrieve_ms=5))


def test_p95_latency_and_cost_rules(tmp_path) -> None:
    costs = cost_stack(tmp_path)
    costs.alerts.create_rule(ADMIN, "slow", "p95_latency", 2000, window_minutes=5, min_requests=10)
    costs.alerts.create_rule(ADMIN, "spend", "cost", 1.0, window_minutes=60, webhook=False)
    _rows(costs, [100.0] * 19 + [5000.0])  # one slow request: p95 still fast
    out = {r.rule: r for r in costs.alerts.evaluate()}
    assert not out["slow"].firing and out["slow"].value < 2000
    _rows(costs, [6000.0] * 5)
    out = {r.rule: r for r in costs.alerts.evaluate()}
    assert out["slow"].firing and out["slow"].value > 5000
    assert not out["spend"].firing
    _rows(costs, [10.0], cost=1.5)
    out = {r.rule: r for r in costs.alerts.evaluate()}
    assert out["spend"].firing and out["spend"].value == pytest.approx(1.5, rel=1e-6)
    titles = sorted(a.title for a in costs.alerts.firing())
    assert titles[0].startswith("slow: ") and titles[1].startswith("spend: $1.5000 > $1.0000")


def test_rules_validate_are_audited_and_disable_resolves(tmp_path) -> None:
    costs = cost_stack(tmp_path)
    with pytest.raises(InputError, match="metric must be"):
        costs.alerts.create_rule(ADMIN, "x", "qps", 1)
    seeded = {r.name for r in costs.alerts.rules()}
    assert "Error rate above 5% (15 min)" in seeded  # sensible defaults ship with the migration
    rid = costs.alerts.create_rule(ADMIN, "spend", "cost", 0.0, window_minutes=60)
    _rows(costs, [10.0], cost=0.5)
    costs.alerts.evaluate()
    assert [a.rule_id for a in costs.alerts.firing()] == [rid]
    costs.alerts.set_rule_enabled(ADMIN, rid, False)
    assert costs.alerts.firing() == []
    actions = [r.action for r in costs.alerts._audit.recent(20)]
    assert {"alert_rule.create", "alert_rule.disable", "alert.fire", "alert.resolve"} <= set(actions)


def test_webhook_failure_is_recorded_not_raised(tmp_path) -> None:
    costs = cost_stack(tmp_path, alert_webhook_url="http://127.0.0.1:9/unreachable")
    costs.alerts.fire("manual:1", "rule", "t", "d", 1.0, 0.5)
    costs.alerts.flush()
    a = costs.alerts.firing()[0]
    assert a.notify_error and "ConnectError" in a.notify_error
