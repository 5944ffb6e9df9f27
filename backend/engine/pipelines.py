"""Bring your own LlamaIndex pipeline: a policy names a factory `package.module:function` (one of the
PIPELINE_FACTORIES setting), called once per (factory, index, policy) as `factory(ctx)` and returning
a `BaseQueryEngine` or a `BaseRetriever`; or a factory of a `BaseNodePostprocessor` that the engine
runs on its own retrieval in place of its rerank stage. The engine keeps what it adds around it (validation,
cache, budgets, release routing, the ledger); this module builds, caches and runs the pipeline.

Stage timings, tokens and model calls come from LlamaIndex's own instrumentation
(backend/engine/instrumentation.py), so a pipeline made of third-party components is timed and metered
without wrapping any of them.
"""
from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Union

from cachetools import LRUCache
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import LLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from qdrant_client import QdrantClient

from backend.engine.generation import Generator
from backend.engine.instrumentation import collecting
from backend.engine.llm import GeneratorLLM
from backend.engine.policy import Policy, check_factories
from backend.errors import DependencyError, RagError
from backend.ledger.calls import ModelCall
from backend.settings import Settings

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

    def __init__(self, settings: Settings, client: QdrantClient, embed_model: BaseEmbedding, generator: Generator,
                 max_items: int = 32):
        """`embed_model`: the engine's embedder as a `BaseEmbedding` (query vectors match the index)."""
        self.settings, self.client, self.embed_model, self.generator = settings, client, embed_model, generator
        self._built: LRUCache = LRUCache(max_items)
        self._lock = threading.Lock()

    def get(self, policy: Policy, alias: str) -> Pipeline:
        """The policy's pipeline on `alias` (a `BaseQueryEngine` or a `BaseRetriever`)."""
        assert policy.pipeline is not None
        return self._cached(policy.pipeline, policy, alias, (BaseQueryEngine, BaseRetriever))

    def postprocessor(self, policy: Policy, alias: str) -> BaseNodePostprocessor:
        """The policy's node postprocessor, run by the engine on its own retrieval instead of rerank."""
        assert policy.postprocessor is not None
        return self._cached(policy.postprocessor, policy, alias, (BaseNodePostprocessor,))

    def _cached(self, ref: str, policy: Policy, alias: str, types: tuple[type, ...]) -> Any:
        check_factories(policy, self.settings.pipeline_factory_list)
        key = (ref, alias, policy.content_hash())
        with self._lock:  # one build per key even when the first questions arrive together
            if key not in self._built:
                self._built[key] = self._build(ref, policy, alias, types)
            return self._built[key]

    def _build(self, ref: str, policy: Policy, alias: str, types: tuple[type, ...]) -> Any:
        llm = None
        if self.generator.kind == "llm":
            llm = GeneratorLLM(self.generator, policy.model or self.settings.llm_model, policy.temperature,
                               policy.max_tokens)
        ctx = PipelineContext(self.client, alias, self.embed_model, llm, policy)
        try:
            built = load_factory(ref)(ctx)
        except RagError:
            raise
        except Exception as exc:
            raise DependencyError(f"the factory '{ref}' failed: {type(exc).__name__}: {exc}", part=PART) from exc
        if not isinstance(built, types):
            raise DependencyError(f"the factory '{ref}' returned {type(built).__name__}, not a "
                                  f"{' or '.join(t.__name__ for t in types)}", part=PART)
        return built

    def postprocess(self, policy: Policy, alias: str, nodes: list[NodeWithScore], query: QueryBundle,
                    latency: dict[str, float]) -> list[NodeWithScore]:
        """The policy's postprocessor on the engine's nodes, in the engine's `collecting` block (its model
        calls are ledger rows). Its score becomes each node's rerank score; one that sends no rerank
        events (a filter, a reorder, an LLM reranker) is timed here as the rerank stage."""
        post = self.postprocessor(policy, alias)
        before, t = latency.get("rerank"), time.perf_counter()
        try:
            out = post.postprocess_nodes(nodes, query)
        except RagError:
            raise
        except Exception as exc:
            raise DependencyError(f"the postprocessor '{policy.postprocessor}' failed: {type(exc).__name__}: {exc}",
                                  part=PART) from exc
        if latency.get("rerank") == before:
            latency["rerank"] = (before or 0.0) + (time.perf_counter() - t) * 1000
        for n in out:
            n.node.metadata["score_rerank"] = n.score
        return out

    def run(self, pipeline: Pipeline, question: str, answer: bool, latency: dict[str, float],
            on_call: Callable[[ModelCall], None]) -> PipelineRun:
        """Retrieve (a retriever, or a query engine's own retrieve) or answer (a query engine), with
        the instrumentation's stage timings added into `latency` and each model call given to `on_call`."""
        try:
            with collecting(latency, on_call):
                return self._run(pipeline, question, answer)
        except RagError:
            raise
        except NotImplementedError as exc:
            raise DependencyError("this pipeline's query engine cannot retrieve without answering "
                                  "(it has no retrieve()); return a retriever or a RetrieverQueryEngine", part=PART) from exc
        except Exception as exc:
            raise DependencyError(f"the pipeline failed: {type(exc).__name__}: {exc}", part=PART) from exc

    @staticmethod
    def _run(pipeline: Pipeline, question: str, answer: bool) -> PipelineRun:
        if isinstance(pipeline, BaseRetriever):
            return PipelineRun(pipeline.retrieve(question), None)
        if not answer:
            return PipelineRun(pipeline.retrieve(QueryBundle(question)), None)
        response = pipeline.query(question)
        return PipelineRun(list(getattr(response, "source_nodes", None) or []), str(response))
