"""Periodic housekeeping in the background: state changes that are due with time, not with a user
action (a budget period ended, an alert rule's window moved on), so no page view has to make them.

Every serving process (the console, each API worker) runs one `Housekeeping`; each period, only
the process that holds the database lease runs the tasks, so the work is done once per period
however many processes share the database. One-shot CLI commands run none."""
from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine

from backend.background.leases import release, try_acquire
from backend.db import process_owner

log = logging.getLogger(__name__)

LEASE = "housekeeping"
TTL_PERIODS = 3  # the lease outlives two missed renewals: a slow period does not hand the work over


class Housekeeping:
    def __init__(self, engine: Engine, tasks: Sequence[Callable[[], object]], interval_s: float, lease: str = LEASE):
        self.engine, self.tasks, self.interval_s, self.lease = engine, tuple(tasks), interval_s, lease
        # host:pid, plus a suffix: two instances in one process (tests) are two holders
        self.holder = f"{process_owner()}:{secrets.token_hex(4)}"
        self.held = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"housekeeping-{lease}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the thread after its current task (it gives the lease up on its way out)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def tick(self) -> bool:
        """One period: take or renew the lease; when held, run every task (one failing does not
        skip the others). True when the tasks ran."""
        held = try_acquire(self.engine, self.lease, self.holder, TTL_PERIODS * self.interval_s)
        if held != self.held:
            log.info("housekeeping lease %r %s by %s", self.lease, "taken" if held else "lost", self.holder)
        self.held = held
        if held:
            for task in self.tasks:
                try:
                    task()
                except Exception:  # retried next period; the thread must live on
                    log.exception("housekeeping task %s failed", getattr(task, "__qualname__", task))
        return held

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the database is unreachable: try again next period
                log.exception("housekeeping lease %r could not be taken", self.lease)
            self._stop.wait(self.interval_s)
        if self.held:
            try:
                release(self.engine, self.lease, self.holder)
            except Exception:  # it expires on its own after the TTL
                log.exception("housekeeping lease %r could not be released", self.lease)
