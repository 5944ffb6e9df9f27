"""Periodic state changes out of page code (issue 16): a database lease on SQLite and the real
PostgreSQL (racing holders: one wins; the holder renews; another takes it after expiry or
release), two housekeeping runners on one database doing the work once per period, a failing task
or lease that leaves the thread running, the real budget and alert tasks, and a Costs page that
changes nothing when it renders while the console's own housekeeping does (and forgets unused
cached embeddings)."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from actors import ADMIN
from apptest_kit import APP
from apptest_kit import COSTS as PAGE
from apptest_kit import STACK_ENV
from ledger_fixtures import cost_stack, seed_console
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from backend.access.audit import audit_log
from backend.background.housekeeping import LEASE, Housekeeping
from backend.background.leases import leases, release, try_acquire
from backend.db import make_engine, migrate, utcnow
from backend.ingestion.embedding_cache import EmbeddingCache, embedding_cache, text_key
from backend.ledger.alerts import alerts
from backend.ledger.budgets import budget_events
from console import state

TICK_S = 0.25


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


def lease_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"  # the PostgreSQL database is shared by the session


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- the lease -----------------------------------------------------------------------------------

def test_one_holder_renews_another_takes_over_after_expiry_or_release(db: Engine) -> None:
    name = lease_name()
    assert try_acquire(db, name, "a", 30)
    assert not try_acquire(db, name, "b", 30)
    assert try_acquire(db, name, "a", 30)  # renewal
    assert not try_acquire(db, name, "b", 30)

    short = lease_name()
    assert try_acquire(db, short, "a", 0.3)
    assert not try_acquire(db, short, "b", 0.3)
    time.sleep(0.5)  # "a" died without renewing
    assert try_acquire(db, short, "b", 30)
    assert not try_acquire(db, short, "a", 30)

    release(db, short, "a")  # not the holder: nothing changes
    assert not try_acquire(db, short, "a", 30)
    release(db, short, "b")
    assert try_acquire(db, short, "a", 30)
    with db.connect() as conn:
        assert conn.execute(sa.select(leases.c.holder).where(leases.c.name == short)).scalar_one() == "a"


@pytest.mark.parametrize("expired", [False, True], ids=["new-lease", "expired-lease"])
def test_eight_holders_at_once_one_wins(db: Engine, expired: bool) -> None:
    """New lease: they race on the INSERT; expired lease: on the conditional UPDATE."""
    for _ in range(5):
        name = lease_name()
        if expired:
            assert try_acquire(db, name, "gone", 0.0)
        barrier = threading.Barrier(8)
        won: dict[str, bool] = {}

        def race(holder: str) -> None:
            barrier.wait()
            won[holder] = try_acquire(db, name, holder, 30)

        threads = [threading.Thread(target=race, args=(f"h{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(won) == 8 and sum(won.values()) == 1, won
        winner = next(h for h, ok in won.items() if ok)
        with db.connect() as conn:
            assert conn.execute(sa.select(leases.c.holder).where(leases.c.name == name)).scalar_one() == winner


# --- the runner ----------------------------------------------------------------------------------
# A recording callable stands in for the tasks here: what is under test is which process runs them
# and when; the real tasks are exercised below and in tests/test_alerts.py, tests/test_budgets.py.

def recorder(calls: list[tuple[str, float]], tag: str) -> Callable[[], None]:
    def task() -> None:
        calls.append((tag, time.monotonic()))
    return task


def test_two_runners_on_one_database_work_once_per_period(db: Engine) -> None:
    name, calls = lease_name(), []
    a = Housekeeping(db, [recorder(calls, "a")], TICK_S, lease=name)
    b = Housekeeping(db, [recorder(calls, "b")], TICK_S, lease=name)
    try:
        a.start()
        assert wait_for(lambda: a.held)
        b.start()
        time.sleep(8 * TICK_S)
        a.stop()  # it gives the lease up: "b" takes it at its next tick, not after the TTL
        assert not a._thread.is_alive()
        assert wait_for(lambda: any(tag == "b" for tag, _ in calls), 4 * TICK_S)
        assert b.held
        time.sleep(3 * TICK_S)
    finally:
        a.stop()
        b.stop()
    tags = "".join(tag for tag, _ in calls)
    assert tags.rstrip("b").count("b") == 0 and tags.count("a") >= 4, tags  # "a" while it held the lease, then "b"
    # Never twice in one period (a stopped holder's successor keeps its own phase: the handover may come sooner).
    gaps = [t2 - t1 for (x, t1), (y, t2) in zip(calls, calls[1:]) if x == y]
    assert min(gaps) >= 0.9 * TICK_S, gaps
    assert not b._thread.is_alive()
    with db.connect() as conn:  # stopped: the lease was given up
        assert conn.execute(sa.select(sa.func.count()).select_from(leases).where(leases.c.name == name)).scalar() == 0


def test_a_failing_task_or_lease_does_not_stop_the_thread(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(db)
    calls: list[tuple[str, float]] = []

    def boom() -> None:
        raise RuntimeError("task broke")

    hk = Housekeeping(db, [boom, recorder(calls, "after")], TICK_S, lease=lease_name())
    try:
        hk.start()
        assert wait_for(lambda: len(calls) >= 3)  # the task after the failing one runs every period
        assert "housekeeping task" in caplog.text and "task broke" in caplog.text
        leases.drop(db)  # the lease cannot be taken: periods are skipped, the thread lives on
        time.sleep(3 * TICK_S)
        assert hk._thread.is_alive() and "could not be taken" in caplog.text
        n = len(calls)
        leases.create(db)
        assert wait_for(lambda: len(calls) > n)
    finally:
        hk.stop()
        db.dispose()
    assert not hk._thread.is_alive()


def test_the_real_tasks_resolve_ended_budget_periods_and_stale_rule_alerts(db_url: str, tmp_path: Path) -> None:
    costs = cost_stack(tmp_path, url=db_url)
    try:
        tag = uuid.uuid4().hex[:8]
        bid = costs.budgets.create(ADMIN, f"monthly {tag}", 1000.0, period="month")
        ended = f"budget:{bid}:1999-01"
        costs.alerts.fire(ended, "budget", f"Budget 'monthly {tag}' at 90%", "", 900.0, 1000.0)
        rid = costs.alerts.create_rule(ADMIN, f"cost {tag}", "cost", 1e6, window_minutes=5)
        costs.alerts.fire(f"rule:{rid}", "rule", f"cost {tag}: stale", "", 2e6, 1e6, rule_id=rid)
        assert {ended, f"rule:{rid}"} <= {a.key for a in costs.alerts.firing()}

        hk = Housekeeping(costs.db, costs.housekeeping_tasks(), TICK_S, lease=lease_name())  # type: ignore[attr-defined]
        assert hk.tick()
        assert not {ended, f"rule:{rid}"} & {a.key for a in costs.alerts.firing()}
    finally:
        costs.close()
        costs.db.dispose()  # type: ignore[attr-defined]


# --- the Costs page ------------------------------------------------------------------------------

def _state(db: Engine) -> tuple:
    with db.connect() as conn:
        return tuple(conn.execute(sa.select(t).order_by(*t.primary_key.columns)).all()
                     for t in (alerts, audit_log, budget_events, leases, embedding_cache))


def test_the_costs_page_changes_no_state_the_consoles_housekeeping_does(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "console"
    seed_console(data_dir, rows=300, days=3)
    url = f"sqlite:///{data_dir / 'console.db'}"
    costs = cost_stack(tmp_path, url=url)
    db = costs.db  # type: ignore[attr-defined]
    try:
        # What the page used to change on every render: a firing alert of an ended budget period and
        # one of a rule that no longer holds.
        bid = costs.budgets.create(ADMIN, "old month", 1000.0, period="month")
        costs.alerts.fire(f"budget:{bid}:1999-01", "budget", "Budget 'old month' at 90%", "", 900.0, 1000.0)
        rid = costs.alerts.create_rule(ADMIN, "cost above a million", "cost", 1e6, window_minutes=5)
        costs.alerts.fire(f"rule:{rid}", "rule", "cost above a million: stale", "", 2e6, 1e6, rule_id=rid)
        stale = text_key("a chunk no build asked for since spring")  # past EMBEDDING_CACHE_DAYS (90)
        EmbeddingCache(db).store("some-model", {stale: np.ones(3, dtype=np.float32)})
        with db.begin() as conn:
            conn.execute(sa.update(embedding_cache).values(used_at=utcnow() - timedelta(days=200)))
        assert try_acquire(db, LEASE, "another-host:1", 3600)  # another process does the housekeeping
        before = _state(db)

        for name in STACK_ENV:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("DATA_DIR", str(data_dir))
        monkeypatch.setenv("HOUSEKEEPING_S", str(TICK_S))
        state.reset()
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        at.switch_page(PAGE)
        at.run()
        assert not at.exception, at.exception
        for tab in ("🎯 Budgets", "🚨 Alerts"):
            at.session_state["costs.tab"] = tab
            at.run()
            assert not at.exception, at.exception
        assert any("cost above a million: stale" in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
        time.sleep(2 * TICK_S)  # the console's housekeeping tries the lease meanwhile: not its turn
        assert _state(db) == before

        hk = state.get_services().housekeeping  # started with the console's services
        assert hk is not None and not hk.held
        release(db, LEASE, "another-host:1")  # that process stopped
        assert wait_for(lambda: not {f"budget:{bid}:1999-01", f"rule:{rid}"} & {a.key for a in costs.alerts.firing()})
        assert wait_for(lambda: EmbeddingCache(db).count() == 0)
        assert hk.held
    finally:
        state.reset()  # closes the console's services: their housekeeping stops
        costs.close()
        db.dispose()
