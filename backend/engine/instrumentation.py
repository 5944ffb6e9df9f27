"""Stage timings and model calls from LlamaIndex's instrumentation, for the engine's own stages and
for a team's pipeline alike: a stage swapped for a third-party LlamaIndex component is still timed,
metered and priced, with no wrapper around it.

One event handler on the root dispatcher hands each event to the request running in this context
(a context variable set by `collecting`), which adds stage latencies into the request's `latency`
and turns each finished embedding, LLM or rerank call into a `ModelCall` for the ledger:

    with collecting(latency, on_call):
        nodes = retriever.retrieve(query)      # latency["retrieve"]
        nodes = reranker.postprocess_nodes(nodes, query)   # latency["rerank"]; a ledger row if it names a model

A call still open when the block raises becomes an error row (its root cause's class named)."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Callable, Iterator

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent
from llama_index.core.instrumentation.events.llm import (LLMChatEndEvent, LLMChatStartEvent, LLMCompletionEndEvent,
                                                         LLMCompletionStartEvent)
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.instrumentation.events.synthesis import SynthesizeEndEvent, SynthesizeStartEvent
from llama_index.core.schema import QueryBundle

from backend.engine.tokens import count_tokens
from backend.errors import root_cause_name
from backend.ledger.calls import ModelCall

OnCall = Callable[[ModelCall], None]
MODEL_CALLS = {"embed": "embedding", "llm": "chat", "rerank": "rerank"}  # open starts that are model calls


class StageCollector:
    """One request's stage latencies and model calls. The retrieve stage excludes any query
    embedding made inside it, as the engine's own stages do."""

    def __init__(self, latency: dict[str, float], on_call: OnCall):
        self.latency, self.on_call = latency, on_call
        self.open: dict[tuple[str, str | None], tuple[datetime, float, dict]] = {}

    def _start(self, what: str, event: BaseEvent, model: dict | None = None) -> None:
        self.open[(what, event.span_id)] = (event.timestamp, self.latency.get("embed", 0.0), model or {})

    def _end(self, what: str, event: BaseEvent) -> tuple[float, float, dict]:
        """ms since the start event, embedding ms spent meanwhile, the start's model dict."""
        start, embed_before, model = self.open.pop((what, event.span_id), (event.timestamp, 0.0, {}))
        ms = (event.timestamp - start).total_seconds() * 1000
        return ms, self.latency.get("embed", 0.0) - embed_before, model

    def _add(self, stage: str, ms: float) -> None:
        self.latency[stage] = self.latency.get(stage, 0.0) + max(ms, 0.0)

    def on(self, event: BaseEvent) -> None:
        if isinstance(event, EmbeddingStartEvent):
            self._start("embed", event, {"model": event.model_dict.get("model_name") or "embedding"})
        elif isinstance(event, EmbeddingEndEvent):
            ms, _, model = self._end("embed", event)
            self._add("embed", ms)
            tokens, method = count_tokens("\n".join(event.chunks))
            self.on_call(ModelCall(kind="embedding", model=str(model.get("model")), prompt_tokens=tokens,
                                   token_method=method, latency_ms=ms))
        elif isinstance(event, RetrievalStartEvent):
            self._start("retrieve", event)
        elif isinstance(event, RetrievalEndEvent):
            ms, embed_ms, _ = self._end("retrieve", event)
            self._add("retrieve", ms - embed_ms)
        elif isinstance(event, ReRankStartEvent):
            query = event.query.query_str if isinstance(event.query, QueryBundle) else str(event.query or "")
            self._start("rerank", event, {"model": event.model_name,
                                          "text": "\n".join([query, *(n.node.get_content() for n in event.nodes)])})
        elif isinstance(event, ReRankEndEvent):
            ms, _, model = self._end("rerank", event)
            self._add("rerank", ms)
            if model.get("model"):  # a reranker that names no model (an offline re-score) makes no model call
                tokens, method = count_tokens(model["text"])
                self.on_call(ModelCall(kind="rerank", model=model["model"], prompt_tokens=tokens,
                                       token_method=method, latency_ms=ms))
        elif isinstance(event, SynthesizeStartEvent):
            self._start("generate", event)
        elif isinstance(event, SynthesizeEndEvent):
            self._add("generate", self._end("generate", event)[0])
        elif isinstance(event, (LLMChatStartEvent, LLMCompletionStartEvent)):
            self._start("llm", event, event.model_dict)
        elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            ms, _, model = self._end("llm", event)
            self.on_call(_llm_call(event, model, ms))

    def failed(self, exc: BaseException) -> None:
        """The block raised: each model call started and not ended is an error row."""
        now = datetime.now()
        for (what, _span), (start, _, model) in list(self.open.items()):
            if what not in MODEL_CALLS or (what == "rerank" and not model.get("model")):
                continue
            ms = max((now - start).total_seconds() * 1000, 0.0)
            if what == "rerank":
                self._add("rerank", ms)
            name = str(model.get("model") or model.get("model_name") or MODEL_CALLS[what])
            self.on_call(ModelCall(kind=MODEL_CALLS[what], model=name, latency_ms=ms, status="error",
                                   error_class=root_cause_name(exc)))
        self.open.clear()


def _llm_call(event: LLMChatEndEvent | LLMCompletionEndEvent, model: dict, ms: float) -> ModelCall:
    """Tokens as the endpoint reported them (OpenAI-style `usage` in raw, or LlamaIndex's
    additional_kwargs), else counted with tiktoken on the prompt and the answer."""
    response = event.response
    raw = getattr(response, "raw", None) or {}
    usage = raw.get("usage") if isinstance(raw, dict) else getattr(raw, "usage", None)
    extra = getattr(response, "additional_kwargs", None) or {}

    def field(name: str) -> int | None:
        value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        return value if value is not None else extra.get(name)

    name = str((raw.get("model") if isinstance(raw, dict) else None) or model.get("model")
               or model.get("model_name") or "llm")
    call = ModelCall(kind="chat", model=name, latency_ms=ms)
    prompt, completion = field("prompt_tokens"), field("completion_tokens")
    if prompt is not None and completion is not None:
        call.prompt_tokens, call.completion_tokens, call.token_method = int(prompt), int(completion), "api"
        return call
    if isinstance(event, LLMChatEndEvent):
        prompt_text = "\n".join(str(m.content or "") for m in event.messages)
        answer = str(response.message.content or "") if response is not None else ""
    else:
        prompt_text, answer = event.prompt, getattr(response, "text", "") or ""
    call.prompt_tokens, call.token_method = count_tokens(prompt_text)
    call.completion_tokens = count_tokens(answer)[0]
    return call


_collector: ContextVar[StageCollector | None] = ContextVar("rag_stage_collector", default=None)


class _Forward(BaseEventHandler):
    """The one handler on the root dispatcher: hands each event to the request running in this context."""

    @classmethod
    def class_name(cls) -> str:
        return "RagStageEvents"

    def handle(self, event: BaseEvent, **kwargs: object) -> None:
        collector = _collector.get()
        if collector is not None:
            collector.on(event)


get_dispatcher().add_event_handler(_Forward())  # once per process: this module is imported once


@contextmanager
def collecting(latency: dict[str, float], on_call: OnCall) -> Iterator[StageCollector]:
    """Route the instrumentation of the LlamaIndex components run in this block to this request."""
    collector = StageCollector(latency, on_call)
    token = _collector.set(collector)
    try:
        yield collector
    except BaseException as exc:
        collector.failed(exc)
        raise
    finally:
        _collector.reset(token)
