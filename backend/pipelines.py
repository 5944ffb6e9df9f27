"""Bring your own LlamaIndex pipeline: a policy names a factory `package.module:function` (one of the
PIPELINE_FACTORIES setting), called once per (factory, index, policy) as `factory(ctx)` and returning
a `BaseQueryEngine` or a `BaseRetriever`. The engine keeps what it adds around it (validation,
cache, budgets, release routing, the ledger); this module builds, caches and runs the pipeline.

Stage timings, tokens and model calls come from LlamaIndex's own instrumentation (one event handler
on the root dispatcher, routed to the running request through a context variable), so a pipeline
made of third-party components is timed and metered without wrapping any of them.

Imported only when a policy names a pipeline: the console and the API do not load llama-index otherwise.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from contextvars import ContextVar
from datetime import datetime
from typing import Callable, Union

from cachetools import LRUCache
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent
from llama_index.core.instrumentation.events.llm import (LLMChatEndEvent, LLMChatStartEvent, LLMCompletionEndEvent,
                                                         LLMCompletionStartEvent)
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.instrumentation.events.synthesis import SynthesizeEndEvent, SynthesizeStartEvent
from llama_index.core.llms import LLM
from llama_index.core.schema import NodeWithScore, QueryBundle
from qdrant_client import QdrantClient

from backend.embeddings import Embedder
from backend.engine import SourceChunk
from backend.errors import DependencyError, RagError
from backend.generation import Generator
from backend.ledger.calls import ModelCall
from backend.llamaindex import GeneratorLLM, LlamaEmbedding
from backend.policy import Policy, check_pipeline
from backend.settings import Settings
from backend.tokens import count_tokens

Pipeline = Union[BaseQueryEngine, BaseRetriever]
PART = "pipeline"


@dataclass(frozen=True)
class PipelineContext:
    """What a factory gets. `client` is the engine's own open Qdrant client: Qdrant local mode admits
    one client per folder, so a factory must not open another. `alias` is the alias (or collection)
    the policy serves; a store built on the alias follows every promote and rollback."""

    client: QdrantClient
    alias: str
    embed_model: BaseEmbedding  # our embedder: query vectors match the index's
    llm: LLM | None  # OPENAI_BASE_URL as a LlamaIndex LLM; None = no LLM (extractive mode): return a retriever
    policy: Policy


@dataclass
class PipelineRun:
    nodes: list[NodeWithScore]
    text: str | None  # the query engine's answer; None when only retrieved


# --- instrumentation -----------------------------------------------------------------------------
_collector: ContextVar[_Collector | None] = ContextVar("rag_pipeline_collector", default=None)


class _Collector:
    """Stage latencies (added into the request's `latency`) and one ModelCall per embedding or LLM call,
    handed to `on_call` as each ends. The retrieve stage excludes the query embedding inside it, as
    the engine's own stages do."""

    def __init__(self, latency: dict[str, float], on_call: Callable[[ModelCall], None]):
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
            self._start("embed", event, event.model_dict)
        elif isinstance(event, EmbeddingEndEvent):
            ms, _, model = self._end("embed", event)
            self._add("embed", ms)
            tokens, method = count_tokens("\n".join(event.chunks))
            self.on_call(ModelCall(kind="embedding", model=str(model.get("model_name") or "embedding"),
                                   prompt_tokens=tokens, token_method=method, latency_ms=ms))
        elif isinstance(event, RetrievalStartEvent):
            self._start("retrieve", event)
        elif isinstance(event, RetrievalEndEvent):
            ms, embed_ms, _ = self._end("retrieve", event)
            self._add("retrieve", ms - embed_ms)
        elif isinstance(event, SynthesizeStartEvent):
            self._start("generate", event)
        elif isinstance(event, SynthesizeEndEvent):
            self._add("generate", self._end("generate", event)[0])
        elif isinstance(event, (LLMChatStartEvent, LLMCompletionStartEvent)):
            self._start("llm", event, event.model_dict)
        elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            ms, _, model = self._end("llm", event)
            self.on_call(_llm_call(event, model, ms))


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


class _Forward(BaseEventHandler):
    """The one handler on the root dispatcher: hands each event to the request running in this context."""

    @classmethod
    def class_name(cls) -> str:
        return "RagPipelineEvents"

    def handle(self, event: BaseEvent, **kwargs: object) -> None:
        collector = _collector.get()
        if collector is not None:
            collector.on(event)


_install_lock = threading.Lock()
_installed = False


def _install_handler() -> None:
    global _installed
    with _install_lock:
        if not _installed:
            get_dispatcher().add_event_handler(_Forward())
            _installed = True


# --- building and running --------------------------------------------------------------------------
def load_factory(ref: str) -> Callable[[PipelineContext], Pipeline]:
    module_name, _, func_name = ref.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise DependencyError(f"cannot load the pipeline factory '{ref}': {type(exc).__name__}: {exc}", part=PART) from exc
    if not callable(factory):
        raise DependencyError(f"the pipeline factory '{ref}' is not callable", part=PART)
    return factory


class Pipelines:
    """Built pipelines, cached per (factory, index, policy content): a factory runs once, not per
    question. The policy is part of the key because factories read its knobs (top_k, model)."""

    def __init__(self, settings: Settings, client: QdrantClient, embedder: Embedder, generator: Generator,
                 max_items: int = 32):
        self.settings, self.client, self.generator = settings, client, generator
        self.embed_model = LlamaEmbedding(embedder)
        self._built: LRUCache = LRUCache(max_items)
        self._lock = threading.Lock()
        _install_handler()

    def get(self, policy: Policy, alias: str) -> Pipeline:
        check_pipeline(policy, self.settings.pipeline_factory_list)
        assert policy.pipeline is not None
        key = (policy.pipeline, alias, policy.content_hash())
        with self._lock:  # one build per key even when the first questions arrive together
            if key not in self._built:
                self._built[key] = self._build(policy, alias)
            return self._built[key]

    def _build(self, policy: Policy, alias: str) -> Pipeline:
        llm = None
        if self.generator.kind == "llm":
            llm = GeneratorLLM(self.generator, policy.model or self.settings.llm_model, policy.temperature,
                               policy.max_tokens)
        ctx = PipelineContext(self.client, alias, self.embed_model, llm, policy)
        try:
            built = load_factory(policy.pipeline or "")(ctx)
        except RagError:
            raise
        except Exception as exc:
            raise DependencyError(f"the pipeline factory '{policy.pipeline}' failed: {type(exc).__name__}: {exc}",
                                  part=PART) from exc
        if not isinstance(built, (BaseQueryEngine, BaseRetriever)):
            raise DependencyError(f"the pipeline factory '{policy.pipeline}' returned {type(built).__name__}, "
                                  "not a BaseQueryEngine or BaseRetriever", part=PART)
        return built

    def run(self, pipeline: Pipeline, question: str, answer: bool, latency: dict[str, float],
            on_call: Callable[[ModelCall], None]) -> PipelineRun:
        """Retrieve (a retriever, or a query engine's own retrieve) or answer (a query engine), with
        the instrumentation's stage timings added into `latency` and each model call given to `on_call`."""
        token = _collector.set(_Collector(latency, on_call))
        try:
            if isinstance(pipeline, BaseRetriever):
                return PipelineRun(pipeline.retrieve(question), None)
            if not answer:
                return PipelineRun(pipeline.retrieve(QueryBundle(question)), None)
            response = pipeline.query(question)
            return PipelineRun(list(getattr(response, "source_nodes", None) or []), str(response))
        except RagError:
            raise
        except NotImplementedError as exc:
            raise DependencyError("this pipeline's query engine cannot retrieve without answering "
                                  "(it has no retrieve()); return a retriever or a RetrieverQueryEngine", part=PART) from exc
        except Exception as exc:
            raise DependencyError(f"the pipeline failed: {type(exc).__name__}: {exc}", part=PART) from exc
        finally:
            _collector.reset(token)


def sources_of(nodes: list[NodeWithScore], top_k: int) -> list[SourceChunk]:
    """The pipeline's nodes as the engine's sources, in its order. `doc_id` comes from the node's
    metadata (else its source document), which the metrics need; the node's score is the one that
    ranked it, kept as the `fused` score (the final ranking score in every view)."""
    out = []
    for rank, n in enumerate(nodes[:top_k], 1):
        meta = n.node.metadata or {}
        doc_id = meta.get("doc_id") or n.node.ref_doc_id or ""
        out.append(SourceChunk(
            rank=rank, point_id=n.node.node_id, chunk_id=str(meta.get("chunk_id") or n.node.node_id), doc_id=str(doc_id),
            title=str(meta.get("title", "")), section=str(meta.get("section", "")), source=str(meta.get("source", "")),
            start=int(meta.get("start") or getattr(n.node, "start_char_idx", None) or 0),
            end=int(meta.get("end") or getattr(n.node, "end_char_idx", None) or 0),
            text=n.node.get_content(), scores={"dense": None, "sparse": None, "fused": n.score, "rerank": None},
        ))
    return out
