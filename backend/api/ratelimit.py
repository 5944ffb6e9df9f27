"""Requests per API key, shared by every process through Redis (the `limits` library), in process
without Redis. When Redis is down the limiter lets requests through (fails open) and says so in a
counter and on the status page: a cache outage must not become an API outage."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)
ACTIVE: list["RateLimiter"] = []  # the limiters of this process's API apps, for the status page


class RateLimiter:
    def __init__(self, spec: str, redis_url: str | None, on_fail_open: Callable[[], None] | None = None):
        self.item = parse(spec)
        uri = redis_url if redis_url else "memory://"
        self.backend = "redis" if redis_url else "memory"
        self._limiter = MovingWindowRateLimiter(storage_from_string(uri, socket_timeout=0.5) if redis_url
                                                else storage_from_string(uri))
        self._lock = threading.Lock()
        self.fail_open_total = 0
        self.last_failure: float | None = None
        self.last_error = ""
        self._on_fail_open = on_fail_open
        ACTIVE.append(self)

    def hit(self, key: str) -> tuple[bool, float]:
        """(allowed, seconds until a request is allowed again)."""
        try:
            if self._limiter.hit(self.item, "api", key):
                return True, 0.0
            reset = self._limiter.get_window_stats(self.item, "api", key).reset_time
            return False, max(1.0, reset - time.time())
        except Exception as exc:  # Redis down: fail open, counted and shown
            with self._lock:
                self.fail_open_total += 1
                self.last_failure, self.last_error = time.time(), f"{type(exc).__name__}: {exc}"[:300]
            log.warning("rate limiter failing open: %s", exc)
            if self._on_fail_open is not None:
                try:
                    self._on_fail_open()
                except Exception:  # the metric is a report, never a reason to fail the request
                    log.debug("fail-open metric not updated", exc_info=True)
            return True, 0.0

    @property
    def degraded(self) -> bool:
        """Failed open within the last minute."""
        return self.last_failure is not None and time.time() - self.last_failure < 60


@dataclass(frozen=True)
class LimiterStatus:
    """A limiter as the status page shows it: `limit` requests per `per` `unit`s (600 per 1 minute), where it
    counts, whether it failed open in the last minute, and why."""

    backend: str  # redis | memory
    limit: int
    per: int
    unit: str  # second | minute | hour | day | month | year
    failing_open: bool
    fail_open_total: int
    last_failure: datetime | None
    last_error: str


def limiter_status() -> list[LimiterStatus]:
    """The limiters of this process's API apps."""
    return [LimiterStatus(r.backend, r.item.amount, r.item.multiples, r.item.GRANULARITY.name, r.degraded,
                          r.fail_open_total,
                          None if r.last_failure is None else datetime.fromtimestamp(r.last_failure, timezone.utc),
                          r.last_error) for r in ACTIVE]
