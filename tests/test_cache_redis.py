"""The answer cache on a real Redis server, and queries going on when Redis is down."""
from __future__ import annotations

import time

from actors import VIEWER
from corpus import first_queries

from backend.engine.answer_cache import RedisCache
from backend.engine.generation import ExtractiveGenerator
from backend.engine.policy import Policy
from backend.engine.query_engine import QueryEngine
from backend.services import Services


def _engine(services: Services, url: str) -> tuple[QueryEngine, RedisCache]:
    cache = RedisCache(url, ttl_s=60, retry_after_s=0.2)
    engine = QueryEngine(services.settings, services.store, services.embedder, ExtractiveGenerator(),
                         services.engine.reranker, cache)
    return engine, cache


def test_second_query_is_a_redis_hit(services: Services, redis_url: str) -> None:
    engine, cache = _engine(services, redis_url)
    q = first_queries("scifact", 2)[1]["question"]
    first = engine.query(q, Policy(top_k=3), VIEWER)
    second = engine.query(q.upper() + "  ", Policy(top_k=3), VIEWER)  # normalised: same key
    assert not first.cache_hit and second.cache_hit
    assert second.answer == first.answer and second.request_id != first.request_id
    assert second.cost_usd == 0 and "retrieve" not in second.latency_ms
    assert cache.ping() and cache.last_error is None


def test_queries_work_without_cache_while_redis_is_down(services: Services, redis_server) -> None:
    engine, cache = _engine(services, redis_server.url)
    q = first_queries("scifact", 3)[2]["question"]
    with redis_server.down():
        t = time.perf_counter()
        answer = engine.query(q, Policy(top_k=3), VIEWER)
        elapsed = time.perf_counter() - t
        assert answer.answer and not answer.cache_hit
        assert cache.last_error and "Error" in cache.last_error
        assert not cache.ping()
        assert elapsed < 3, f"a dead Redis must not stall queries ({elapsed:.1f}s)"
    time.sleep(0.3)  # past the back-off: Redis is tried again
    engine.query(q, Policy(top_k=3), VIEWER)
    assert engine.query(q, Policy(top_k=3), VIEWER).cache_hit  # back up: caching resumes
    assert cache.last_error is None
