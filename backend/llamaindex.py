"""Our engine as LlamaIndex components, for a team's own LlamaIndex application: `RagRetriever` (a
`BaseRetriever`) and `RagQueryEngine` (a `BaseQueryEngine`). Both go through the same QueryEngine as
the console and the HTTP API, so validation, cache, budgets, release routing, the ledger and traces
apply to their calls too; every score the engine keeps travels in each node's metadata.

    from backend.llamaindex import RagQueryEngine

    engine = RagQueryEngine.open(app="my-app")   # services from the settings; the live release answers
    response = engine.query("Does aspirin reduce heart attack risk?")
    print(response, [n.metadata["doc_id"] for n in response.source_nodes])

The engine's own stages are LlamaIndex components as well (backend/engine/stages.py).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Iterator

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import RESPONSE_TYPE, Response, StreamingResponse
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from backend.access import Actor, system_actor
from backend.engine.llm import GeneratorLLM  # noqa: F401 - exported here too, beside the engine's classes
from backend.engine.policy import Policy
from backend.engine.query_engine import Answer, Retrieved, SourceChunk
from backend.engine.stages import LlamaEmbedding  # noqa: F401 - exported here too
from backend.live import route, stream_live

if TYPE_CHECKING:
    from backend.services import Services

SCORE_ORDER = ("rerank", "fused", "dense", "sparse")  # the score that ranked the chunk comes first


def source_node(source: SourceChunk) -> NodeWithScore:
    """A source as LlamaIndex sees it: the chunk text, its ids, place and every score in metadata;
    the node's score is the one that ranked it (rerank, else fused, else the single retriever's)."""
    score = next((source.scores[k] for k in SCORE_ORDER if source.scores.get(k) is not None), None)
    meta = {"doc_id": source.doc_id, "chunk_id": source.chunk_id, "point_id": source.point_id, "rank": source.rank,
            "title": source.title, "section": source.section, "source": source.source, "start": source.start,
            "end": source.end, "dense_rank": source.dense_rank, "sparse_rank": source.sparse_rank,
            **{f"score_{k}": v for k, v in source.scores.items()}}
    hidden = [k for k in meta if k not in ("title", "section", "source")]  # kept out of prompts and embeddings
    node = TextNode(id_=source.chunk_id, text=source.text, metadata=meta,
                    excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=hidden)
    return NodeWithScore(node=node, score=score)


def answer_metadata(answer: Answer) -> dict:
    return {"request_id": answer.request_id, "answer_kind": answer.answer_kind, "citations": answer.citations,
            "latency_ms": answer.latency_ms, "usage": answer.usage.model_dump(), "cost_usd": answer.cost_usd,
            "cache_hit": answer.cache_hit, "policy": answer.policy, "collection": answer.collection,
            "model": answer.model}


class _OnEngine:
    """What both components share: the services, who asks (the ledger's user) and which policy."""

    def _setup(self, services: Services, policy: Policy | str | None, actor: Actor | None,
               filters: dict | None) -> None:
        self.services, self.filters = services, filters
        self.actor = actor or system_actor("llamaindex")
        self.policy = services.policies.by_ref(policy) if isinstance(policy, str) else policy

    def _events(self, question: str, retrieval_only: bool) -> Iterator[Retrieved | str | Answer]:
        """The named policy's events, else the live release's (the release the actor is routed to)."""
        svc = self.services
        if self.policy is not None:
            return svc.engine.stream(question, self.policy, self.actor, self.filters, retrieval_only)
        routed = route(svc, self.actor)
        if retrieval_only:  # the routed release's retrieval, recorded under its variant
            policy, variant, _ = routed
            return svc.engine.stream(question, policy, self.actor, self.filters, True, variant=variant)
        return stream_live(svc, question, self.actor, self.filters, routed=routed)


class RagRetriever(_OnEngine, BaseRetriever):
    """Retrieval only (no generation): the engine's hybrid search, fusion and rerank for `policy`
    (a Policy, a saved `name` / `name@version`, or None for the live release's)."""

    def __init__(self, services: Services, policy: Policy | str | None = None, actor: Actor | None = None,
                 filters: dict | None = None) -> None:
        self._setup(services, policy, actor, filters)
        super().__init__()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        answer = _last(self._events(query_bundle.query_str, retrieval_only=True))
        return [source_node(s) for s in answer.sources]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


class RagQueryEngine(_OnEngine, BaseQueryEngine):
    """The whole answer: sources, text, usage and cost, as a LlamaIndex Response (`streaming=True`:
    a StreamingResponse whose source nodes are known before the first text delta)."""

    def __init__(self, services: Services, policy: Policy | str | None = None, actor: Actor | None = None,
                 filters: dict | None = None, streaming: bool = False) -> None:
        self._setup(services, policy, actor, filters)
        self.streaming = streaming
        super().__init__(callback_manager=None)

    @classmethod
    def open(cls, app: str = "llamaindex", policy: Policy | str | None = None, **kwargs: object) -> RagQueryEngine:
        """Builds the services from the settings (env / .env) in this process; `app` names the ledger's user."""
        from backend.services import build_services

        return cls(build_services(), policy, system_actor(app), **kwargs)  # type: ignore[arg-type]

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        events = self._events(query_bundle.query_str, retrieval_only=False)
        if not self.streaming:
            answer = _last(events)
            return Response(answer.answer, [source_node(s) for s in answer.sources], answer_metadata(answer))
        first = next(events)
        assert isinstance(first, Retrieved)
        response = StreamingResponse(response_gen=iter(()), source_nodes=[source_node(s) for s in first.retrieval.sources])

        def deltas() -> Iterator[str]:
            for event in events:
                if isinstance(event, Answer):
                    response.metadata = answer_metadata(event)
                elif isinstance(event, str):
                    yield event

        response.response_gen = deltas()
        return response

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return await asyncio.to_thread(self._query, query_bundle)

    def _get_prompt_modules(self) -> dict:
        return {}


def _last(events: Iterator[Retrieved | str | Answer]) -> Answer:
    answer = None
    for event in events:
        if isinstance(event, Answer):
            answer = event
    assert answer is not None, "the engine ended without an answer"
    return answer
