"""The engine's retrieval stages as LlamaIndex components, composed by `engine.QueryEngine`.

- `HybridRetriever` (a `BaseRetriever`): dense and/or BM25 search through the vector store, fused by
  RRF or DBSF. Each node keeps every per-retriever score and rank in its metadata (`score_dense`,
  `score_sparse`, `score_fused`, `dense_rank`, `sparse_rank`, the names `llamaindex.source_node`
  uses too); the node's own score is the one that ranked it.
- `Rerank` (a `BaseNodePostprocessor`): re-scores the first candidates with a `Reranker` (an
  endpoint, or the embedding model offline), keeps the score as `score_rerank` and sends
  LlamaIndex's rerank events, as LlamaIndex's own rerankers do.

Being LlamaIndex components, both run under LlamaIndex's instrumentation (a span and start/end
events per call), which times them (backend/engine/instrumentation.py), and fit a team's own LlamaIndex
pipeline as they are. `LlamaEmbedding` is our embedder as a LlamaIndex `BaseEmbedding`: the engine
embeds questions through it, so the query embedding is timed and metered by the same events."""
from __future__ import annotations

import asyncio
from typing import Any, Literal

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import ConfigDict, PrivateAttr
from qdrant_client import models

from backend.engine.embeddings import Embedder
from backend.engine.rerank import Reranker
from backend.engine.sparse import query_vector
from backend.engine.vectorstore import DENSE, SPARSE, Hit, VectorStore, chunk_payload

RRF_K = 60
dispatcher = get_dispatcher(__name__)
SHOWN_METADATA = ("title", "section", "source")  # the only metadata a prompt or an embedding sees


def rrf(rankings: list[list[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the lists a point appears in."""
    out: dict[str, float] = {}
    for ranking in rankings:
        for r, pid in enumerate(ranking, 1):
            out[pid] = out.get(pid, 0.0) + 1.0 / (k + r)
    return out


def dbsf(score_lists: list[dict[str, float]]) -> dict[str, float]:
    """Distribution-based score fusion: each list scaled by mean +/- 3 std to [0, 1], then summed."""
    out: dict[str, float] = {}
    for scores in score_lists:
        if not scores:
            continue
        vals = np.array(list(scores.values()), dtype=np.float64)
        lo, hi = vals.mean() - 3 * vals.std(), vals.mean() + 3 * vals.std()
        span = (hi - lo) or 1.0
        for pid, s in scores.items():
            out[pid] = out.get(pid, 0.0) + float(np.clip((s - lo) / span, 0.0, 1.0))
    return out


def hit_node(hit: Hit, score: float, meta: dict[str, Any]) -> NodeWithScore:
    """A search hit as a node: the point id as node id, the chunk text, the payload and `meta`
    (scores, ranks) as metadata, of which only the title, section and source reach prompts."""
    payload = chunk_payload(hit.payload)
    metadata = {k: v for k, v in payload.items() if k != "text"} | {"score_rerank": None} | meta  # set by a reranker
    hidden = [k for k in metadata if k not in SHOWN_METADATA]
    node = TextNode(id_=hit.point_id, text=str(payload.get("text", "")), metadata=metadata,
                    excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=hidden)
    return NodeWithScore(node=node, score=score)


class HybridRetriever(BaseRetriever):
    """Search `candidates` hits per retriever, fuse, return the best `keep` as nodes.

    The query's embedding comes in the `QueryBundle` (the engine embeds and meters it first); a
    dense or hybrid search without one is a programming error."""

    def __init__(self, store: VectorStore, collection: str, mode: Literal["dense", "sparse", "hybrid"],
                 fusion: Literal["rrf", "dbsf"], candidates: int, keep: int,
                 query_filter: models.Filter | None = None) -> None:
        super().__init__()
        self.store, self.collection, self.mode, self.fusion = store, collection, mode, fusion
        self.candidates, self.keep, self.query_filter = candidates, keep, query_filter

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        dense_hits: list[Hit] = []
        sparse_hits: list[Hit] = []
        if self.mode in ("dense", "hybrid"):
            if query_bundle.embedding is None:
                raise ValueError("a dense search needs the query's embedding in the QueryBundle")
            dense_hits = self.store.search(self.collection, list(query_bundle.embedding), DENSE, self.candidates,
                                           self.query_filter)
        if self.mode in ("sparse", "hybrid"):
            sv = query_vector(query_bundle.query_str)
            if sv.indices:
                sparse_hits = self.store.search(self.collection, sv, SPARSE, self.candidates, self.query_filter)
        by_id: dict[str, Hit] = {h.point_id: h for h in sparse_hits + dense_hits}
        dense = {h.point_id: h.score for h in dense_hits}
        sparse = {h.point_id: h.score for h in sparse_hits}
        if self.mode == "hybrid":
            fused = rrf([list(dense), list(sparse)]) if self.fusion == "rrf" else dbsf([dense, sparse])
        else:
            fused = dense if self.mode == "dense" else sparse
        dense_rank = {pid: r for r, pid in enumerate(dense, 1)}
        sparse_rank = {pid: r for r, pid in enumerate(sparse, 1)}
        order = sorted(fused, key=lambda pid: -fused[pid])[: self.keep]
        return [hit_node(by_id[pid], fused[pid], {
            "score_dense": dense.get(pid), "score_sparse": sparse.get(pid),
            "score_fused": fused[pid] if self.mode == "hybrid" else None,
            "dense_rank": dense_rank.get(pid), "sparse_rank": sparse_rank.get(pid)}) for pid in order]


class Rerank(BaseNodePostprocessor):
    """Re-score the first `top_n` nodes with `reranker`; they come back best first, the rest dropped."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    reranker: Any  # a backend.engine.rerank.Reranker (a Protocol: pydantic cannot check it)
    collection: str
    query_vec: Any = None  # np.ndarray: the offline reranker compares stored vectors with it
    top_n: int = 20

    @classmethod
    def class_name(cls) -> str:
        return "RagOpsRerank"

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        pool = nodes[: self.top_n]
        if not pool:
            return []
        reranker: Reranker = self.reranker
        question = query_bundle.query_str if query_bundle else ""
        # LlamaIndex's rerank events, as its own rerankers send them: the engine's instrumentation
        # times the stage from them, and meters a reranker that names a model (an endpoint)
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=pool, top_n=self.top_n,
                                          model_name=reranker.model or ""))
        scores = reranker.scores(question, self.query_vec, self.collection, [n.node.node_id for n in pool],
                                 [n.node.get_content() for n in pool])
        for n, s in zip(pool, scores):
            n.node.metadata["score_rerank"] = s
            n.score = s
        ranked = sorted(pool, key=lambda n: -(n.score or 0.0))
        dispatcher.event(ReRankEndEvent(nodes=ranked))
        return ranked


class LlamaEmbedding(BaseEmbedding):
    """Our embedder as a LlamaIndex `BaseEmbedding`: queries and passages go through different calls
    because e5 needs its 'query: ' vs 'passage: ' prefixes (the local model adds them; a remote
    endpoint gets EMBEDDING_QUERY_PREFIX / EMBEDDING_PASSAGE_PREFIX), so vectors match the index."""

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.name, **kwargs)
        self._embedder = embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed_queries([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed_passages(texts).tolist()
