"""Answer cache: in-process TTL+LRU by default, Redis when REDIS_URL is set.

A Redis failure never fails a query: the cache reports itself degraded and the engine
answers without it."""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import unicodedata
from typing import Protocol

from cachetools import TTLCache

log = logging.getLogger(__name__)


def cache_key(question: str, policy_content: dict, collection: str, embedder: str) -> str:
    """Normalised question + policy content + the physical collection the alias resolved to:
    after an alias swap the key changes, so an old version's answer can never be served."""
    norm = " ".join(unicodedata.normalize("NFKC", question).casefold().split())
    blob = json.dumps({"q": norm, "p": policy_content, "c": collection, "e": embedder}, sort_keys=True, ensure_ascii=False)
    return "rag:answer:" + hashlib.sha256(blob.encode()).hexdigest()


class Cache(Protocol):
    name: str
    last_error: str | None

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


class MemoryCache:
    name = "in-process"

    def __init__(self, ttl_s: int, max_items: int):
        self._data: TTLCache = TTLCache(maxsize=max_items, ttl=ttl_s)
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._data.get(key)

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self._data[key] = value


class RedisCache:
    """Short socket timeouts, and after a failure Redis is skipped for `retry_after_s`, so a dead
    Redis costs one query at most ~0.5 s and the next ones nothing; answers go on uncached."""

    name = "redis"

    def __init__(self, url: str, ttl_s: int, retry_after_s: float = 5.0):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._ttl = ttl_s
        self._retry_after_s = retry_after_s
        self._failed_at = 0.0
        self.last_error: str | None = None

    def _fail(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._failed_at = time.monotonic()
        log.warning("redis cache unavailable: %s", self.last_error)

    def _skipping(self) -> bool:
        return self.last_error is not None and time.monotonic() - self._failed_at < self._retry_after_s

    def get(self, key: str) -> str | None:
        if self._skipping():
            return None
        try:
            value = self._redis.get(key)
        except Exception as exc:  # redis-py raises ConnectionError/TimeoutError subclasses
            self._fail(exc)
            return None
        self.last_error = None
        return value.decode() if value is not None else None

    def set(self, key: str, value: str) -> None:
        if self._skipping():
            return
        try:
            self._redis.set(key, value, ex=self._ttl)
            self.last_error = None
        except Exception as exc:
            self._fail(exc)

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception as exc:
            self._fail(exc)
            return False
