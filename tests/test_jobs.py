"""The background job runner on SQLite and a real PostgreSQL: progress kept in the database,
cancel by flag (also from another runner), failures as a status, one active job per lock,
and jobs of a dead process marked failed at the next start."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from actors import Role, user

import backend.background.jobs as jobs_module
from backend.access.audit import AuditLog
from backend.background.jobs import CANCELLED, DONE, FAILED, RUNNING, JobConflict, JobContext, JobRunner, jobs
from backend.db import aware, index_versions, make_engine, migrate, process_owner, utcnow
from backend.evaluation.runs import eval_runs

ANN, BOB, CAROL = (user(n, Role.operator) for n in ("ann", "bob", "carol"))  # cancelling needs an operator


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.engine.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'console.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(f"j_{abs(hash(request.node.name)) % 10**8}")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def runner(db: sa.engine.Engine) -> Iterator[JobRunner]:
    r = JobRunner(db, AuditLog(db))
    yield r
    r.shutdown()


def _steps(gate: threading.Event, n: int = 5):  # noqa: ANN202 - a job function
    def fn(ctx: JobContext) -> dict:
        for i in range(n):
            ctx.progress(step=i + 1, of=n, final=True)
            if i == 1:
                assert gate.wait(30)
            ctx.check_cancelled()
        return {"steps": n, "summary": {"steps": n}}
    return fn


def test_progress_is_stored_and_the_result_kept(runner: JobRunner, db: sa.engine.Engine) -> None:
    gate = threading.Event()
    job_id = runner.submit("demo.job", ANN, _steps(gate), target="t1", detail={"why": "test"})
    for _ in range(100):  # the job pauses after step 2: the database shows it mid-run
        job = runner.get(job_id)
        if job.progress.get("step") == 2:
            break
        threading.Event().wait(0.05)
    assert job.status == RUNNING and job.progress == {"step": 2, "of": 5} and job.actor == "ann"
    other = JobRunner(db, AuditLog(db))  # another session/process reading the same database
    assert other.get(job_id).progress["step"] == 2 and other.recovered == []  # a live job is not "stale"
    gate.set()
    done = runner.wait(job_id, timeout=30)
    assert done.status == DONE and done.result["steps"] == 5 and done.finished_at is not None and done.error == ""
    audit = [(a.action, a.result) for a in AuditLog(db).recent(10)]
    assert ("demo.job", "started") in audit and ("demo.job", "ok") in audit
    ok = next(a for a in AuditLog(db).recent(10) if a.result == "ok")
    assert ok.detail["summary"] == {"steps": 5}
    other.shutdown()


def test_a_failing_job_is_failed_and_frees_its_lock(runner: JobRunner) -> None:
    def boom(ctx: JobContext) -> dict:
        ctx.progress(phase="working", final=True)
        raise ValueError("disk on fire")

    job = runner.wait(runner.submit("demo.job", ANN, boom, target="t"), timeout=30)
    assert job.status == FAILED and "disk on fire" in job.error and job.progress["phase"] == "working"
    again = runner.wait(runner.submit("demo.job", ANN, lambda ctx: {"ok": True}, target="t"), timeout=30)
    assert again.status == DONE


def test_one_active_job_per_lock(runner: JobRunner) -> None:
    gate = threading.Event()
    first = runner.submit("demo.job", ANN, _steps(gate), target="fam")
    with pytest.raises(JobConflict, match=rf"already running \(job {first}, started by ann"):
        runner.submit("demo.job", BOB, _steps(gate), target="fam")
    other = runner.submit("demo.job", BOB, lambda ctx: None, target="other-fam")  # another target is fine
    assert runner.wait(other, timeout=30).status == DONE
    gate.set()
    assert runner.wait(first, timeout=30).status == DONE


def test_cancel_from_this_runner_and_from_another(runner: JobRunner, db: sa.engine.Engine) -> None:
    gate = threading.Event()
    job_id = runner.submit("demo.job", ANN, _steps(gate), target="a")
    runner.cancel(job_id, BOB)
    gate.set()
    job = runner.wait(job_id, timeout=30)
    assert job.status == CANCELLED and job.error == "cancelled by request"

    # Another process only sets the flag in the database; the job sees it at its next progress write.
    gate2 = threading.Event()
    job_id = runner.submit("demo.job", ANN, _steps(gate2), target="b")
    remote = JobRunner(db, AuditLog(db))
    remote.cancel(job_id, CAROL)
    gate2.set()
    assert runner.wait(job_id, timeout=30).status == CANCELLED
    with pytest.raises(Exception, match="already ended"):
        remote.cancel(job_id, CAROL)
    assert ("job.cancel", "ok") in [(a.action, a.result) for a in AuditLog(db).recent(20)]
    remote.shutdown()


def _insert(db: sa.engine.Engine, owner: str, heartbeat_age_s: float = 0, status: str = RUNNING) -> int:
    now = utcnow()
    with db.begin() as conn:
        return int(conn.execute(jobs.insert().values(
            kind="index.rebuild", target=f"fam-{owner}", lock_key=f"index.rebuild:fam-{owner}", status=status,
            progress={"phase": "embedding"}, detail={}, actor="ann", owner=owner, created_at=now, started_at=now,
            heartbeat_at=now - timedelta(seconds=heartbeat_age_s))).inserted_primary_key[0])


def test_jobs_of_a_dead_process_are_marked_failed_at_startup(db: sa.engine.Engine) -> None:
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited and been reaped
    crashed = _insert(db, f"{host}:{dead_pid}:abc")
    alive = _insert(db, f"{host}:1:def")  # pid 1 is alive (and not ours)
    far_stale = _insert(db, "other-host:42:x", heartbeat_age_s=3600)
    far_fresh = _insert(db, "other-host:43:y", heartbeat_age_s=5)
    runner = JobRunner(db, AuditLog(db))
    try:
        assert {j.id for j in runner.recovered} == {crashed, far_stale}
        job = runner.get(crashed)
        assert job.status == FAILED and f"process {dead_pid}" in job.error and "marked failed at startup" in job.error
        assert "no heartbeat" in runner.get(far_stale).error
        assert runner.get(alive).status == RUNNING and runner.get(far_fresh).status == RUNNING
        # The lock of the dead job is free again: a new job for that target starts.
        new = runner.submit("index.rebuild", ANN, lambda ctx: None, target=f"fam-{host}:{dead_pid}:abc")
        assert runner.wait(new, timeout=30).status == DONE
        assert any(a.actor == "system" and a.result == "error" for a in AuditLog(db).recent(20))
    finally:
        runner.shutdown()


# --- issue 14 #7: every long-running record has an owner and a heartbeat, like jobs ---------------------
def _record(db: sa.engine.Engine, table: sa.Table, owner: str, age_s: float, n: int) -> str:
    """An evaluation run 'running' or a version 'building', owned by `owner`, last heard of `age_s` ago."""
    now, seen = utcnow(), utcnow() - timedelta(seconds=age_s)
    if table is eval_runs:
        values = dict(golden_set="g", golden_version=1, policy="default", policy_spec={}, index="i", collection="c",
                      status="running", n_items=10, done_items=3, metrics={}, created_at=seen, created_by="ann")
    else:
        values = dict(collection=f"fam_v{n}", family="fam", version=n, status="building", fingerprint="", dim=3,
                      embedding_model="m", params={}, source="/docs", created_at=seen, created_by="ann")
    with db.begin() as conn:
        key = conn.execute(table.insert().values(owner=owner, heartbeat_at=seen if owner else None, **values))
        return str(key.inserted_primary_key[0]) if table is eval_runs else values["collection"]


@pytest.mark.parametrize("table", [eval_runs, index_versions], ids=["eval_runs", "index_versions"])
def test_records_of_dead_owners_are_marked_failed_at_startup(db: sa.engine.Engine, table: sa.Table) -> None:
    """Before: a crash left evaluation runs 'running' forever (only the job row was failed)."""
    host = socket.gethostname()
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True).stdout)
    crashed = _record(db, table, f"{host}:{dead_pid}", 1, 1)
    alive = _record(db, table, f"{host}:1", 3600, 2)  # pid 1 lives: its age does not matter on this host
    far_stale = _record(db, table, "other-host:42", 3600, 3)
    far_fresh = _record(db, table, "other-host:43", 5, 4)
    legacy = _record(db, table, "", 3600, 5)  # written before owners were recorded
    runner = JobRunner(db, AuditLog(db))
    try:
        assert {r.id for r in runner.recovered_records} == {crashed, far_stale, legacy}
        key = table.primary_key.columns.values()[0]
        with db.connect() as conn:
            rows = {str(r[0]): r for r in conn.execute(sa.select(key, table.c.status, table.c.error))}
        assert rows[crashed].status == "failed" and f"process {dead_pid}" in rows[crashed].error
        assert "no heartbeat from other-host:42" in rows[far_stale].error and "marked failed at startup" in rows[legacy].error
        assert rows[alive].status == rows[far_fresh].status == table.info["owned"]["active"][0]
        audit = [a for a in AuditLog(db).recent(20) if a.actor == "system" and a.result == "error"]
        assert {a.target for a in audit} >= {crashed, far_stale, legacy}
    finally:
        runner.shutdown()


def test_the_process_heartbeat_keeps_its_records_alive(db: sa.engine.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run of this process (also one a CLI command runs without a job) gets a fresh heartbeat, so
    another host does not take it for dead."""
    monkeypatch.setattr(jobs_module, "HEARTBEAT_S", 0.05)
    mine = _record(db, eval_runs, process_owner(), 3600, 1)
    runner = JobRunner(db, AuditLog(db))
    try:
        assert runner.recovered_records == []
        for _ in range(100):
            with db.connect() as conn:
                beat = conn.execute(sa.select(eval_runs.c.heartbeat_at).where(eval_runs.c.id == int(mine))).scalar()
            if utcnow() - aware(beat) < timedelta(seconds=60):
                break
            threading.Event().wait(0.05)
        assert utcnow() - aware(beat) < timedelta(seconds=60)
    finally:
        runner.shutdown()
