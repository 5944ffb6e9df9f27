"""Alert rules on error rate, p95 latency and cost over a window: stored with first-seen and
resolved times, shown as firing until resolved, POSTed to the webhook once per episode."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from actors import ADMIN, user
from corpus import first_queries
from ledger_fixtures import cost_stack, metered_engine, start_webhook

from backend.access.audit import AuditLog
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


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alerts.db'}"
    return request.getfixturevalue("postgres_server").create_database(f"alerts_{uuid.uuid4().hex[:12]}")


def test_one_episode_and_one_notification_when_replicas_fire_at_once(db_url, tmp_path, hook) -> None:
    """Two replicas (two services on one database), four threads each, crossing the same budget
    threshold at the same moment: one open episode, one audit record, one webhook call. Before the
    unique index each thread that saw no open episode opened its own, and each notified."""
    for i in range(2):
        (tmp_path / f"r{i}").mkdir()
    replicas = [cost_stack(tmp_path / f"r{i}", db_url, alert_webhook_url=hook.url) for i in range(2)]
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def fire(costs) -> None:  # noqa: ANN001
        try:
            start.wait(10)
            costs.alerts.fire("budget:7", "budget", "budget team: 80% used", "d", 80.0, 100.0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=fire, args=(replicas[i % 2],)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not failures, failures
    for costs in replicas:
        costs.alerts.flush()
    history = replicas[0].alerts.history(10)
    assert [(a.key, a.resolved_at) for a in history] == [("budget:7", None)]
    assert len(AuditLog(replicas[0].db).recent(20, action="alert.fire")) == 1
    assert [m["status"] for m in hook.received] == ["firing"]
    # a higher threshold is a new title: the same episode notifies again, once
    replicas[1].alerts.fire("budget:7", "budget", "budget team: 100% used", "d", 100.0, 100.0)
    replicas[1].alerts.flush()
    assert [m["status"] for m in hook.received] == ["firing", "firing"] and len(replicas[0].alerts.history(10)) == 1


def test_the_migration_closes_duplicate_open_episodes_left_by_the_race(tmp_path) -> None:
    from datetime import datetime, timezone

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    import backend.db
    from backend.db import make_engine, migrate
    from backend.ledger.alerts import alerts

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(backend.db.__file__).parent / "migrations"))
    with engine.begin() as conn:  # the schema before 0016_alert_episodes
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0011_key_reservations")
    t = [datetime(2026, 12, 1, h, tzinfo=timezone.utc) for h in range(4)]
    with engine.begin() as conn:
        for key, seen in (("budget:1", t[0]), ("budget:1", t[1]), ("rule:2", t[2]), ("budget:1", t[3])):
            conn.execute(alerts.insert().values(key=key, source="budget", severity="warning", title="x", detail="",
                                                first_seen=seen, last_seen=seen))
    migrate(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alerts.c.id, alerts.c.key, alerts.c.resolved_at).order_by(alerts.c.id)).all()
    assert [(r.key, r.resolved_at is None) for r in rows] == [("budget:1", False), ("budget:1", False),
                                                              ("rule:2", True), ("budget:1", True)]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # the index now holds
        conn.execute(alerts.insert().values(key="rule:2", source="rule", severity="warning", title="y", detail="",
                                            first_seen=t[0], last_seen=t[0]))
    engine.dispose()
