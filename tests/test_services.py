"""Each real-service fixture gives a working server (so a failure elsewhere is not the harness)."""
from __future__ import annotations

import openai
import pytest
import redis
import sqlalchemy as sa
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam
from services import FaultLLM, LlmServer, RedisServer

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello in one word."}]


def test_redis_ping_and_outage(redis_server: RedisServer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    assert client.ping()
    with redis_server.down(), pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_url, socket_timeout=2).ping()
    assert redis.Redis.from_url(redis_url, socket_timeout=2).ping()


def test_postgres_select_1(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.slow
def test_llama_cpp_chat(llm_server: LlmServer) -> None:
    client = OpenAI(base_url=llm_server.base_url, api_key=llm_server.api_key, timeout=120)
    r = client.chat.completions.create(model=llm_server.model, messages=HELLO, max_tokens=8, temperature=0)
    assert r.choices[0].message.content
    assert r.usage is not None and r.usage.completion_tokens > 0

    stream = client.chat.completions.create(model=llm_server.model, messages=HELLO, max_tokens=8,
                                            temperature=0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip()


def test_fault_llm_500_then_ok(fault_llm: FaultLLM) -> None:
    client = OpenAI(base_url=fault_llm.base_url, api_key=fault_llm.api_key, max_retries=0, timeout=5)
    fault_llm.fail_next(1, status=500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=fault_llm.model, messages=HELLO)
    r = client.chat.completions.create(model=fault_llm.model, messages=HELLO)
    assert r.choices[0].message.content == fault_llm.reply and r.usage is not None

    chunks = list(client.chat.completions.create(model=fault_llm.model, messages=HELLO, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fault_llm.reply
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0

    fault_llm.omit_usage = True
    assert client.chat.completions.create(model=fault_llm.model, messages=HELLO).usage is None

    fault_llm.fail_next(1, status=429)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=fault_llm.model, messages=HELLO)
    fault_llm.delay_s = 1.0
    with pytest.raises(openai.APITimeoutError):
        OpenAI(base_url=fault_llm.base_url, api_key="x", max_retries=0, timeout=0.3).models.list()
    assert len(fault_llm.requests) == 6


def test_embedding_server_384(embedding_server: str) -> None:
    client = OpenAI(base_url=embedding_server, api_key="sk-test-no-key", timeout=60)
    r = client.embeddings.create(model="e5-passage", input=["passage one", "二号段落"])
    assert [len(d.embedding) for d in r.data] == [384, 384]
