"""Every ledger row and chat trace passes through an append-only journal file before the database,
so a write that fails, or a process that dies, loses nothing.

    submit(kind, values)  -> one JSON line appended to DATA_DIR/journal/<host>-<pid>-<id>.jsonl
    flush()               -> the pending entries written in one transaction; the file is emptied
                             once nothing is pending

`LEDGER_FLUSH_MS=0` (the default) flushes inside the request, so a dashboard read right after an
answer sees its rows; a positive value flushes from a background thread every that many ms, one
transaction per batch with the roll-ups summed per key (API replicas under load). Either way:

- database down: the entries stay pending in memory and in the file; the thread retries every
  few seconds and `status()` reports the backlog (the status page shows it);
- a row the database refuses while it is up (a value it cannot store): that row alone moves to
  `<journal>.rejected.jsonl` and is counted, the others are written;
- process killed: its file stays behind with the entries it had not written; the next process
  that opens the journal folder replays orphaned files (a file is orphaned when no process holds
  its lock). An entry that did reach the database before the crash (written, file not yet
  emptied) is recognised by its sink's `exists` and skipped, so replay never counts twice."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

RETRY_S = 2.0  # how often a failing database is tried again


class Sink(Protocol):
    """Where one kind of entry goes: `write_rows` in the caller's transaction; `exists` for replay."""

    def write_rows(self, conn: Connection, rows: list[dict]) -> None: ...

    def exists(self, conn: Connection, row: dict) -> bool: ...


@dataclass(frozen=True)
class JournalStatus:
    pending: int  # entries not yet in the database (this process)
    rejected: int  # entries the database refused, kept in *.rejected.jsonl (all files in the folder)
    replayed: int  # entries of dead processes written by this process since it started
    failing_since: float | None  # epoch seconds of the first failed flush of the current outage
    last_error: str


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    raise TypeError(f"cannot journal {type(value).__name__}")


def _decode(obj: dict) -> Any:
    return datetime.fromisoformat(obj["$dt"]) if obj.keys() == {"$dt"} else obj


class WriteJournal:
    def __init__(self, db: Engine, directory: Path, sinks: dict[str, Sink], flush_ms: int = 0):
        self._db, self._dir, self._sinks, self.flush_ms = db, directory, sinks, flush_ms
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the process's life
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "alive": replay skips locked files
        self._pending: list[tuple[str, dict]] = []
        self._lock = threading.Lock()  # the pending list and the file
        self._flush_lock = threading.Lock()  # one flush at a time
        self._failing_since: float | None = None
        self._last_error = ""
        self._replayed = 0
        self._closed = threading.Event()
        self._wake = threading.Event()
        self.replay_orphans()
        self._thread = threading.Thread(target=self._run, name="ledger-journal", daemon=True)
        self._thread.start()

    # --- writing ----------------------------------------------------------------------------------
    def submit(self, kind: str, values: dict) -> None:
        """Journal one entry (never raises for a database problem); flushed now or by the thread."""
        if kind not in self._sinks:
            raise ValueError(f"no sink for journal entries of kind {kind!r}")
        line = json.dumps({"k": kind, "v": values}, default=_encode, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()  # in the OS's hands: survives the process being killed
            self._pending.append((kind, values))
        if self.flush_ms <= 0 and self._failing_since is None:  # during an outage the thread retries
            self.flush()
        elif len(self._pending) >= 1000:
            self._wake.set()

    def flush(self) -> bool:
        """Write what is pending; True when nothing is left pending."""
        with self._flush_lock:
            with self._lock:
                batch = list(self._pending)
            if not batch:
                return True
            try:
                with self._db.begin() as conn:
                    self._write(conn, batch)
            except Exception as exc:  # noqa: BLE001 - down, or one row it cannot store: find out which
                if not self._isolate(batch, exc):
                    return False
            with self._lock:
                del self._pending[:len(batch)]
                if not self._pending:
                    self._file.truncate(0)
            if self._failing_since is not None:
                log.warning("ledger journal: database back, backlog written")
            self._failing_since, self._last_error = None, ""
            return not self._pending

    def _write(self, conn: Connection, batch: list[tuple[str, dict]]) -> None:
        by_kind: dict[str, list[dict]] = {}
        for kind, values in batch:
            by_kind.setdefault(kind, []).append(values)
        for kind, rows in by_kind.items():
            self._sinks[kind].write_rows(conn, rows)

    def _isolate(self, batch: list[tuple[str, dict]], exc: Exception) -> bool:
        """After a failed batch: False when the database is unreachable (keep everything); else
        write the entries one by one and set aside the ones it refuses. True when done."""
        try:
            with self._db.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as down:  # noqa: BLE001
            if self._failing_since is None:
                self._failing_since = time.time()
                log.error("ledger journal: database unreachable, %d entries kept in %s: %s", len(batch), self.path, down)
            self._last_error = f"{type(down).__name__}: {str(down).splitlines()[0][:300]}"
            return False
        for entry in batch:
            try:
                with self._db.begin() as conn:
                    self._write(conn, [entry])
            except Exception as refused:  # noqa: BLE001 - kept aside, counted, never dropped
                log.error("ledger journal: %s entry refused by the database, kept in %s: %s (batch error: %s)",
                          entry[0], self._rejected_path(self.path), refused, exc)
                with open(self._rejected_path(self.path), "a", encoding="utf-8") as f:
                    f.write(json.dumps({"k": entry[0], "v": entry[1], "error": str(refused)[:500]},
                                       default=_encode, ensure_ascii=False) + "\n")
        return True

    @staticmethod
    def _rejected_path(path: Path) -> Path:
        return path.with_suffix(".rejected.jsonl")

    def _run(self) -> None:
        while not self._closed.is_set():
            wait = self.flush_ms / 1000 if self.flush_ms > 0 else RETRY_S
            if self._failing_since is not None:
                wait = max(wait, RETRY_S)
            self._wake.wait(wait)
            self._wake.clear()
            if self._pending:
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - the thread must outlive any surprise
                    log.exception("ledger journal flush failed")

    # --- replay -----------------------------------------------------------------------------------
    def replay_orphans(self) -> int:
        """Write the entries of journals no live process holds (a crash), skipping those already
        written, then delete each file. Returns the number of entries written."""
        written = 0
        for path in sorted(self._dir.glob("*.jsonl")):
            if path == self.path or path.name.endswith(".rejected.jsonl"):
                continue
            try:
                with open(path, "r+", encoding="utf-8") as f:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # its process is alive
                    entries = _read_entries(f)
                    with self._db.begin() as conn:
                        todo = [(k, v) for k, v in entries if k in self._sinks and not self._sinks[k].exists(conn, v)]
                        self._write(conn, todo)
                    path.unlink()
                written += len(todo)
                if todo:
                    log.warning("ledger journal: replayed %d entries of %s", len(todo), path.name)
            except FileNotFoundError:
                continue  # another process replayed it first
            except Exception:  # noqa: BLE001 - left in place for the next start
                log.exception("ledger journal: could not replay %s", path)
        self._replayed += written
        return written

    # --- status -----------------------------------------------------------------------------------
    def status(self) -> JournalStatus:
        rejected = 0
        for path in self._dir.glob("*.rejected.jsonl"):
            with open(path, encoding="utf-8") as f:
                rejected += sum(1 for _ in f)
        with self._lock:
            pending = len(self._pending)
        return JournalStatus(pending, rejected, self._replayed, self._failing_since, self._last_error)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread after a last flush; what is still pending stays in the file for replay."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout_s)
        try:
            self.flush()
        except Exception:  # noqa: BLE001
            log.exception("ledger journal: last flush failed; entries kept in %s", self.path)
        with self._lock:
            empty = not self._pending
            self._file.close()
        if empty:
            self.path.unlink(missing_ok=True)


def _read_entries(f: IO[str]) -> list[tuple[str, dict]]:
    """The journal's entries; a torn last line (the process died while writing it) is skipped."""
    out = []
    for line in f:
        try:
            entry = json.loads(line, object_hook=_decode)
        except json.JSONDecodeError:
            continue
        out.append((entry["k"], entry["v"]))
    return out

