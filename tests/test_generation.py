"""Generation over HTTP: the real path against llama.cpp's OpenAI-compatible server, and
timeouts / 5xx / 429 retries against the fault-injection server (tests/services.py)."""
from __future__ import annotations

import time

import pytest
from actors import VIEWER
from corpus import first_queries

from backend.engine.answer_cache import MemoryCache
from backend.engine.generation import OpenAIGenerator
from backend.engine.policy import Policy
from backend.engine.query_engine import QueryEngine, Retrieved
from backend.errors import DependencyError
from backend.services import Services

QUESTION = first_queries("scifact", 1)[0]["question"]


def _engine(services: Services, **settings) -> QueryEngine:
    s = services.settings.model_copy(update=settings)
    return QueryEngine(s, services.store, services.embedder, OpenAIGenerator(s), services.engine.reranker, MemoryCache(60, 10))


@pytest.mark.slow
def test_real_llm_streams_tokens_with_usage_and_cost(services: Services, llm_server) -> None:
    engine = _engine(services, openai_base_url=llm_server.base_url, llm_model=llm_server.model, llm_timeout_s=120)
    events = list(engine.stream(QUESTION, Policy(top_k=2, max_tokens=24, temperature=0.0), VIEWER))
    assert isinstance(events[0], Retrieved)
    deltas = [e for e in events if isinstance(e, str)]
    answer = events[-1]
    assert len(deltas) >= 2, "the answer arrives in several streamed pieces"
    assert answer.answer == "".join(deltas) and answer.answer.strip()
    assert answer.answer_kind == "llm"
    # llama.cpp's server sends no usage chunk on streams (stream_options is ignored): counted with tiktoken.
    assert answer.usage.method in ("api", "tiktoken")
    assert answer.usage.prompt_tokens > 50 and 0 < answer.usage.completion_tokens <= 40
    assert answer.price_known and answer.cost_usd == 0.0  # local model priced at 0
    assert "generate" in answer.latency_ms


def test_5xx_is_retried_with_backoff_then_succeeds(services: Services, fault_llm) -> None:
    fault_llm.fail_next(2, status=500)
    engine = _engine(services, openai_base_url=fault_llm.base_url, llm_model=fault_llm.model, llm_max_retries=3)
    answer = engine.query(QUESTION, Policy(top_k=2), VIEWER)
    assert answer.answer == fault_llm.reply
    chat = [r for r in fault_llm.requests if r["path"].endswith("/chat/completions")]
    assert len(chat) == 3
    assert answer.usage.method == "api" and answer.usage.completion_tokens > 0


def test_429_is_retried(services: Services, fault_llm) -> None:
    fault_llm.fail_next(1, status=429, retry_after="0")
    engine = _engine(services, openai_base_url=fault_llm.base_url, llm_model=fault_llm.model, llm_max_retries=2)
    assert engine.query(QUESTION, Policy(top_k=2), VIEWER).answer == fault_llm.reply


def test_persistent_5xx_gives_a_clear_error_naming_the_llm(services: Services, fault_llm) -> None:
    fault_llm.fail_next(5, status=503)
    engine = _engine(services, openai_base_url=fault_llm.base_url, llm_model=fault_llm.model, llm_max_retries=2)
    with pytest.raises(DependencyError) as err:
        engine.query(QUESTION, Policy(top_k=2), VIEWER)
    assert err.value.part == "LLM"
    assert "HTTP 503" in str(err.value) and "3 attempts" in str(err.value)


def test_llm_timeout_fails_fast_with_a_clear_error(services: Services, fault_llm) -> None:
    fault_llm.delay_s = 10
    engine = _engine(services, openai_base_url=fault_llm.base_url, llm_model=fault_llm.model, llm_timeout_s=1, llm_max_retries=1)
    t = time.perf_counter()
    with pytest.raises(DependencyError, match="timed out after 1 s") as err:
        engine.query(QUESTION, Policy(top_k=2), VIEWER)
    assert err.value.part == "LLM"
    assert time.perf_counter() - t < 7  # two 1 s attempts plus backoff; the server would take 10 s


def test_unreachable_llm_is_named(services: Services) -> None:
    engine = _engine(services, openai_base_url="http://127.0.0.1:9/v1", llm_max_retries=0, llm_timeout_s=2)
    with pytest.raises(DependencyError, match="unreachable at http://127.0.0.1:9/v1"):
        engine.query(QUESTION, Policy(top_k=2), VIEWER)


def test_usage_is_counted_when_the_server_reports_none(services: Services, fault_llm) -> None:
    fault_llm.omit_usage = True
    engine = _engine(services, openai_base_url=fault_llm.base_url, llm_model=fault_llm.model)
    answer = engine.query(QUESTION, Policy(top_k=2), VIEWER)
    assert answer.usage.method == "tiktoken"
    assert answer.usage.prompt_tokens > 20 and answer.usage.completion_tokens > 3
