"""Background jobs: long operations (index rebuilds, evaluation gates, later evaluation runs)
run in a thread of the process that started them, while their state lives in the database.

Why the database: a page reload, a second browser tab or the CLI reads the same progress;
cancelling is a flag the job polls, so it also works from another session; and a job whose
process died (crash, kill, redeploy) is found at the next start and marked failed instead of
showing 'running' forever. The records such work writes (evaluation runs, versions being built
or restored: tables with `info["owned"]`) carry an owner and a heartbeat too and are checked at
the same start, also when a CLI command ran them without a job. A `lock_key` (unique while the
job is active) refuses a second job on the same target, also across processes that share the
database."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.access import SYSTEM, Action, Actor
from backend.access.audit import AuditLog
from backend.db import aware, metadata, process_owner, utcnow
from backend.errors import InputError, NotFoundError

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
HEARTBEAT_S = 10.0
STALE_AFTER_S = 300.0  # a job on another host whose heartbeat is older than this is considered dead
PROGRESS_EVERY_S = 0.3  # progress writes are throttled; the last one is always written

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(100), nullable=False, index=True),
    sa.Column("target", sa.String(500), nullable=False, server_default=""),
    sa.Column("lock_key", sa.String(600), nullable=True, unique=True),  # NULL once finished
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("progress", sa.JSON, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("owner", sa.String(300), nullable=False, server_default=""),  # host:pid:runner token
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
)

_LIVE_RUNNERS: set[str] = set()  # runner tokens alive in this process (tests build several)


class JobConflict(InputError):
    """A job with the same lock key is already queued or running."""


class JobCancelled(InputError):
    """Raised by a job function that noticed its cancel flag."""

    part = "job"


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    target: str
    status: str
    progress: dict
    detail: dict
    result: dict | None
    error: str
    actor: Actor
    owner: str
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def seconds(self) -> float:
        """Run time so far (or in total once finished)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at or utcnow()
        return max(0.0, (aware(end) - aware(self.started_at)).total_seconds())

    @classmethod
    def from_row(cls, row: Any) -> "Job":
        m = dict(row._mapping)
        m.pop("lock_key", None)
        return cls(**m)


@dataclass(frozen=True)
class RecoveredRecord:
    """An owned record marked failed at startup because its owner died."""
    table: str
    id: str
    owner: str
    error: str


def owned_tables() -> list[tuple[sa.Table, dict]]:
    """Tables of long-running records: `info={"owned": {"active", "failed", "action"}}` with `status`,
    `owner`, `heartbeat_at`, `created_at` and `error` columns (index builds and evaluation runs, in backend.db)."""
    return [(t, t.info["owned"]) for t in metadata.sorted_tables if "owned" in t.info]


def _detail(detail: dict | None) -> dict:
    """Job detail as audit detail; names the audit record uses itself get a prefix."""
    return {f"job_{k}" if k in ("actor", "action", "target", "result") else k: v for k, v in (detail or {}).items()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobContext:
    """What a running job gets: its id, a cancel event, and a progress writer."""

    def __init__(self, runner: "JobRunner", job_id: int, cancel: threading.Event):
        self.job_id, self.cancel, self._runner = job_id, cancel, runner
        self._state: dict = {}
        self._last = 0.0

    def progress(self, final: bool = False, **values: Any) -> None:
        """Merge `values` into the stored progress (throttled unless `final`) and pick up a
        cancel request made from another session or process."""
        self._state.update(values)
        now = time.monotonic()
        if not final and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        if self._runner._write_progress(self.job_id, dict(self._state)):
            self.cancel.set()

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise JobCancelled(f"job {self.job_id} cancelled")


JobFn = Callable[[JobContext], dict | None]


class JobRunner:
    """Runs jobs in daemon threads of this process; one instance per process and database."""

    def __init__(self, engine: Engine, audit: AuditLog, stale_after_s: float = STALE_AFTER_S):
        self._engine, self._audit = engine, audit
        self._stale_after = timedelta(seconds=stale_after_s)
        self.host, self.pid, self.token = socket.gethostname(), os.getpid(), uuid.uuid4().hex[:10]
        self.owner = f"{self.host}:{self.pid}:{self.token}"
        self._threads: dict[int, threading.Thread] = {}
        self._events: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        _LIVE_RUNNERS.add(self.token)
        self.recovered = self.recover_stale()
        self.recovered_records = self.recover_records()
        self._ensure_heartbeat()  # also beats for records a command runs without a job (CLI eval run, ingest)

    # --- reading ------------------------------------------------------------------------------
    def get(self, job_id: int) -> Job:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFoundError(f"no job {job_id}")
        return Job.from_row(row)

    def list(self, kind: str | None = None, target: str | None = None, limit: int = 50) -> list[Job]:
        q = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if kind:
            q = q.where(jobs.c.kind == kind)
        if target is not None:
            q = q.where(jobs.c.target == target)
        with self._engine.connect() as conn:
            return [Job.from_row(r) for r in conn.execute(q)]

    def active(self, kind: str, target: str) -> Job | None:
        rows = [j for j in self.list(kind, target, limit=5) if j.active]
        return rows[0] if rows else None

    def latest(self, kind: str, target: str) -> Job | None:
        rows = self.list(kind, target, limit=1)
        return rows[0] if rows else None

    # --- starting -----------------------------------------------------------------------------
    def submit(self, kind: str, actor: Actor, fn: JobFn, *, target: str = "", detail: dict | None = None,
               exclusive: bool = True, what: str | None = None) -> int:
        """Queue `fn` and start it in a thread; returns the job id. With `exclusive`, a second
        job of the same kind and target is refused while one is active."""
        lock_key = f"{kind}:{target}" if exclusive else None
        values = dict(kind=kind, target=target, lock_key=lock_key, status=QUEUED, progress={}, detail=detail or {},
                      actor=actor.id, owner=self.owner, created_at=utcnow(), heartbeat_at=utcnow())
        try:
            with self._engine.begin() as conn:
                job_id = int(conn.execute(jobs.insert().values(**values)).inserted_primary_key[0])
        except sa.exc.IntegrityError:
            holder = self.active(kind, target)
            who = f" (job {holder.id}, started by {holder.actor}, {holder.status})" if holder else ""
            label = what or f"a {kind} job for {target}"
            self._audit.record(actor, kind, target, result="refused", reason="already running", **_detail(detail))
            raise JobConflict(f"{label} is already running{who}; wait for it or cancel it first") from None
        self._audit.record(actor, kind, target, result="started", job=job_id, **_detail(detail))
        cancel = threading.Event()
        thread = threading.Thread(target=self._run, args=(job_id, fn, cancel, actor), name=f"job-{job_id}-{kind}", daemon=True)
        with self._lock:
            self._events[job_id], self._threads[job_id] = cancel, thread
        self._ensure_heartbeat()
        thread.start()
        return job_id

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Block until a job started by this runner ends (CLI, tests); returns its final record."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.get(job_id)

    def cancel(self, job_id: int, actor: Actor) -> Job:
        """Ask a job to stop; it stops at its next check (between embedding batches)."""
        job = self.get(job_id)
        with self._audit.action(actor, "job.cancel", str(job_id), need=Action.cancel_job, job_kind=job.kind,
                                job_target=job.target):
            if not job.active:
                raise InputError(f"job {job_id} already ended ({job.status})")
            with self._engine.begin() as conn:
                conn.execute(jobs.update().where(jobs.c.id == job_id).values(cancel_requested=True))
            event = self._events.get(job_id)
            if event is not None:
                event.set()
        return self.get(job_id)

    # --- running ------------------------------------------------------------------------------
    def _update(self, job_id: int, **values: Any) -> None:
        with self._engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))

    def _write_progress(self, job_id: int, progress: dict) -> bool:
        """Store progress and a heartbeat; returns whether a cancel was requested."""
        with self._engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(progress=progress, heartbeat_at=utcnow()))
            return bool(conn.execute(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar())

    def _run(self, job_id: int, fn: JobFn, cancel: threading.Event, actor: Actor) -> None:
        ctx = JobContext(self, job_id, cancel)
        status, result, error = DONE, None, ""
        try:
            self._update(job_id, status=RUNNING, started_at=utcnow(), heartbeat_at=utcnow())
            if self.get(job_id).cancel_requested:
                cancel.set()
            ctx.check_cancelled()
            result = fn(ctx)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes the job's status
            status = CANCELLED if cancel.is_set() else FAILED
            error = "cancelled by request" if status == CANCELLED and isinstance(exc, JobCancelled) else str(exc)
            if status == FAILED:
                log.warning("job %s failed: %s", job_id, exc, exc_info=not isinstance(exc, InputError))
        job = self.get(job_id)
        try:
            self._update(job_id, status=status, result=result, error=error[:4000], finished_at=utcnow(), lock_key=None,
                         progress={**job.progress, **ctx._state})
            audit_result = {DONE: "ok", FAILED: "error", CANCELLED: "cancelled"}[status]
            extra: dict[str, Any] = {"error": error} if error else {}
            if status == DONE and isinstance(result, dict) and "summary" in result:
                extra["summary"] = result["summary"]
            self._audit.record(actor, job.kind, job.target, result=audit_result, job=job_id, **extra)
        except Exception:  # the database is gone: the next start marks the job failed
            log.exception("could not record the end of job %s", job_id)
        finally:
            with self._lock:
                self._events.pop(job_id, None)

    # --- liveness -----------------------------------------------------------------------------
    def _ensure_heartbeat(self) -> None:
        with self._lock:
            if self._heartbeat is None or not self._heartbeat.is_alive():
                self._heartbeat = threading.Thread(target=self._beat, name="jobs-heartbeat", daemon=True)
                self._heartbeat.start()

    def _beat(self) -> None:
        """Every HEARTBEAT_S: this runner's active jobs, and the active owned records of this process
        (evaluation runs, versions being built or restored, also those a CLI command runs without a job)."""
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with self._engine.begin() as conn:
                    conn.execute(jobs.update().where(jobs.c.owner == self.owner, jobs.c.status.in_(ACTIVE))
                                 .values(heartbeat_at=utcnow()))
                    for table, spec in owned_tables():
                        conn.execute(table.update().where(table.c.owner == process_owner(),
                                                          table.c.status.in_(spec["active"]))
                                     .values(heartbeat_at=utcnow()))
            except Exception:  # a database hiccup: the next beat retries
                log.warning("job heartbeat failed", exc_info=True)

    def _is_dead(self, job: Job, now: datetime) -> str | None:
        """Why an active job of another runner is dead, or None while it may still run."""
        return self._owner_dead(job.owner, job.heartbeat_at or job.started_at or job.created_at, now)

    def _owner_dead(self, owner: str, beat: datetime, now: datetime) -> str | None:
        """Why the owner (host:pid[:runner token]) of an active record is dead, or None while it may
        still run: on this host the pid tells at once; another host's pids mean nothing here, so
        its heartbeat must be younger than the bound. A record without an owner (written before
        owners were recorded) has only its last heartbeat."""
        host, _, rest = owner.partition(":")
        pid_s, _, token = rest.partition(":")
        if host == self.host and pid_s.isdigit():
            pid = int(pid_s)
            if pid == self.pid:
                return None if not token or token in _LIVE_RUNNERS else f"its runner in this process ({owner}) is gone"
            if not _pid_alive(pid):
                return f"its process {pid} on {host} is no longer running"
            return None
        if now - aware(beat) > self._stale_after:
            return f"no heartbeat from {owner or 'its process'} since {aware(beat):%Y-%m-%d %H:%M:%S} UTC"
        return None

    def recover_records(self) -> list[RecoveredRecord]:
        """Mark the owned records (evaluation runs, versions being built or restored) of dead owners
        failed, with an audit record each; a failed job does not fail its run by itself, so every
        kind of record is checked on its own."""
        now, out = utcnow(), []
        for table, spec in owned_tables():
            key = table.primary_key.columns.values()[0]
            beat = sa.func.coalesce(table.c.heartbeat_at, table.c.created_at)
            with self._engine.connect() as conn:
                rows = conn.execute(sa.select(key, table.c.owner, beat).where(table.c.status.in_(spec["active"]))).all()
            for record_id, owner, last in rows:
                why = self._owner_dead(owner, last, now)
                if why is None:
                    continue
                error = f"interrupted: {why}; marked failed at startup"
                with self._engine.begin() as conn:
                    done = conn.execute(table.update().where(key == record_id, table.c.status.in_(spec["active"]))
                                        .values(status=spec["failed"], error=error)).rowcount
                if done:
                    self._audit.record(SYSTEM, spec["action"], str(record_id), result="error", error=error,
                                       record=table.name)
                    out.append(RecoveredRecord(table.name, str(record_id), owner, error))
        return out

    def recover_stale(self) -> list[Job]:
        """Mark queued/running jobs whose process died as failed (runs at every start)."""
        now, out = utcnow(), []
        with self._engine.connect() as conn:
            rows = [Job.from_row(r) for r in conn.execute(sa.select(jobs).where(jobs.c.status.in_(ACTIVE)))]
        for job in rows:
            if job.owner == self.owner:
                continue
            why = self._is_dead(job, now)
            if why is None:
                continue
            error = f"interrupted: {why}; marked failed at startup"
            with self._engine.begin() as conn:
                done = conn.execute(
                    jobs.update().where(jobs.c.id == job.id, jobs.c.status.in_(ACTIVE))
                    .values(status=FAILED, error=error, finished_at=now, lock_key=None)
                ).rowcount
            if done:
                self._audit.record(SYSTEM, job.kind, job.target, result="error", job=job.id, error=error)
                out.append(self.get(job.id))
        return out

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel this runner's jobs and give them a moment to stop (service close)."""
        self._stop.set()
        with self._lock:
            events, threads = list(self._events.values()), list(self._threads.values())
        for e in events:
            e.set()
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        _LIVE_RUNNERS.discard(self.token)
