"""The ledger journal: no ledger row is lost when the database is down, refuses a row, or the
process is killed mid-burst; a replay never counts a row twice. Real PostgreSQL (a private
cluster, stopped and started again) and real SQLite files; real subprocesses killed with SIGKILL."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.db import make_engine, migrate
from backend.ledger.calls import ModelCall, RequestContext
from backend.ledger.journal import WriteJournal
from backend.ledger.store import LedgerStore, ledger, ledger_daily, row_values
from backend.settings import PROJECT_ROOT
from ledger_fixtures import cost_stack
from services import PostgresServer, _workdir


def ctx(i: int, question: str = "how much does it cost?") -> RequestContext:
    return RequestContext(request_id=f"req-{i}-{uuid.uuid4().hex[:6]}", user=f"user-{i % 3}", policy="default",
                          question=question, source="api", api_key="k1")


def call(cost: float = 0.01) -> ModelCall:
    return ModelCall(kind="chat", model="gpt-4o-mini", prompt_tokens=100, completion_tokens=20, latency_ms=12.5,
                     retrieve_ms=3.0, total_ms=20.0, token_method="api")


def counts(db: sa.Engine) -> tuple[int, int, int]:
    """Raw rows, distinct request ids, and the calls the daily roll-up says."""
    with db.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar()
        distinct = conn.execute(sa.select(sa.func.count(sa.distinct(ledger.c.request_id)))).scalar()
        rolled = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(ledger_daily.c.calls), 0))).scalar()
    return rows, distinct, rolled


@pytest.fixture
def private_postgres():
    srv = PostgresServer(_workdir("pg-outage"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)


def test_rows_written_during_a_database_outage_arrive_when_it_is_back(private_postgres, tmp_path: Path) -> None:
    costs = cost_stack(tmp_path, private_postgres.url)
    try:
        for i in range(5):
            costs.meter.record(ctx(i), call())
        assert counts(costs.db) == (5, 5, 5)

        private_postgres.stop("fast")  # the server's own durability is not what this test checks
        t = time.perf_counter()
        for i in range(5, 25):
            costs.meter.record(ctx(i), call())  # the answers go out; their rows wait on disk
        took = time.perf_counter() - t
        status = costs.journal.status()
        assert status.pending == 20 and status.failing_since is not None and status.last_error
        lines = costs.journal.path.read_text().splitlines()
        assert len(lines) == 20 and all(json.loads(line)["k"] == "ledger" for line in lines)
        assert took < 10, f"20 calls took {took:.1f} s while the database was down"

        private_postgres.resume()
        deadline = time.monotonic() + 30
        while costs.journal.status().pending and time.monotonic() < deadline:
            time.sleep(0.2)  # the journal's thread retries every RETRY_S
        assert costs.journal.status().pending == 0 and costs.journal.status().failing_since is None
        assert counts(costs.db) == (25, 25, 25)
        assert costs.journal.path.read_text() == ""  # emptied once everything is in
    finally:
        costs.close()


def test_a_row_the_database_refuses_is_set_aside_and_the_others_are_written(postgres_server, tmp_path: Path) -> None:
    url = postgres_server.create_database(f"journal_{uuid.uuid4().hex[:8]}")
    costs = cost_stack(tmp_path, url, ledger_flush_ms=60_000)  # batched: one flush below writes all six
    try:
        for i in range(5):
            costs.meter.record(ctx(i), call())
        # PostgreSQL cannot store a NUL character in text: the database refuses this row.
        costs.journal.submit("ledger", row_values(ctx(99, "nul \x00 inside"), call()))
        assert costs.journal.flush()
        assert counts(costs.db) == (5, 5, 5)
        status = costs.journal.status()
        assert status.pending == 0 and status.rejected == 1
        kept = [json.loads(line) for line in costs.journal.path.with_suffix(".rejected.jsonl").read_text().splitlines()]
        assert [k["v"]["question"] for k in kept] == ["nul \x00 inside"] and "NUL" in kept[0]["error"]
    finally:
        costs.close()


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys, uuid
    from backend.db import make_engine
    from backend.ledger.calls import ModelCall, RequestContext
    from backend.ledger.journal import WriteJournal
    from backend.ledger.store import LedgerStore, row_values

    url, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = make_engine(url)
    holder = {}

    class BusyStore(LedgerStore):
        # A request arrives while a batch is being written: the file cannot be emptied after it.
        def write_rows(self, conn, rows):
            super().write_rows(conn, rows)
            holder["j"].submit("ledger", row(n + len(rows)))

    def row(i):
        ctx = RequestContext(request_id=f"burst-{i}", user="u", policy="default", question=f"q{i % 7}")
        return row_values(ctx, ModelCall(kind="chat", model="m", latency_ms=float(i), retrieve_ms=1.0, total_ms=2.0))

    holder["j"] = j = WriteJournal(db, __import__("pathlib").Path(folder), {"ledger": BusyStore(db)}, flush_ms=600_000)
    for i in range(n):
        j.submit("ledger", row(i))
    j.flush()  # n rows written; one more arrived during the write, so the file keeps all n + 1
    for i in range(n + 1, 2 * n):
        j.submit("ledger", row(i + 1000))
    print(j.path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # mid-burst: n - 1 rows only in the journal
""")


def test_a_killed_process_loses_no_row_and_replay_counts_each_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db = make_engine(url)
    migrate(db)
    folder = tmp_path / "journal"
    n = 40
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, url, str(folder), str(n)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=PROJECT_ROOT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    orphan = Path(proc.stdout.strip())
    assert len(orphan.read_text().splitlines()) == 2 * n  # n written + 1 + (n - 1) never written
    assert counts(db)[0] == n

    survivor = WriteJournal(db, folder, {"ledger": LedgerStore(db)})  # any process that starts replays
    try:
        assert survivor.status().replayed == n
        assert not orphan.exists()
        assert counts(db) == (2 * n, 2 * n, 2 * n)
    finally:
        survivor.close()
    again = WriteJournal(db, folder, {"ledger": LedgerStore(db)})
    again.close()
    assert counts(db) == (2 * n, 2 * n, 2 * n) and not list(folder.glob("*.jsonl"))
