"""The engine's retrieval stages (backend/engine/stages.py) one at a time, with small fakes in place of the
vector store and the reranker (the end-to-end tests in test_engine.py run them on a real index and
the real model): what each stage returns, every score it keeps, and LlamaIndex's instrumentation
seeing it with no wrapper."""
from __future__ import annotations

import numpy as np
import pytest
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from backend.engine.instrumentation import collecting
from backend.engine.query_engine import sources_of
from backend.engine.stages import RRF_K, HybridRetriever, LlamaEmbedding, Rerank, dbsf
from backend.engine.vectorstore import DENSE, SPARSE, Hit
from backend.errors import DependencyError


class FakeStore:
    """Fixed hits per vector name; records each search's arguments."""

    def __init__(self, dense: list[tuple[str, float]], sparse: list[tuple[str, float]]):
        self.hits = {DENSE: dense, SPARSE: sparse}
        self.calls: list[tuple[str, str, int]] = []

    def search(self, collection, query, using, limit, query_filter=None) -> list[Hit]:
        self.calls.append((collection, using, limit))
        return [Hit(pid, score, {"text": f"text of {pid}", "doc_id": f"doc-{pid}", "chunk_id": f"{pid}#0",
                                 "title": f"Title {pid}", "start": 0, "end": 11})
                for pid, score in self.hits[using][:limit]]


STORE = dict(dense=[("a", 0.9), ("b", 0.8), ("c", 0.7)], sparse=[("c", 12.0), ("d", 9.0)])


def retrieve(mode: str, fusion: str = "rrf", keep: int = 10, embedding: list[float] | None = (1.0, 0.0)) -> list:
    store = FakeStore(**STORE)
    retriever = HybridRetriever(store, "col_v1", mode, fusion, candidates=50, keep=keep)  # type: ignore[arg-type]
    return retriever.retrieve(QueryBundle("which protein binds", embedding=list(embedding) if embedding else None))


def test_hybrid_rrf_keeps_every_score_and_rank_per_node() -> None:
    nodes = retrieve("hybrid")
    ids = [n.node.node_id for n in nodes]
    assert ids == ["c", "a", "b", "d"]  # c is in both lists (dense 3rd, sparse 1st)
    c = nodes[0]
    assert c.score == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert {k: c.node.metadata[k] for k in ("score_dense", "score_sparse", "dense_rank", "sparse_rank")} == {
        "score_dense": 0.7, "score_sparse": 12.0, "dense_rank": 3, "sparse_rank": 1}
    assert c.node.metadata["score_fused"] == c.score
    d = nodes[-1]
    assert d.node.metadata["score_dense"] is None and d.node.metadata["dense_rank"] is None
    assert d.node.metadata["sparse_rank"] == 2 and d.node.get_content() == "text of d"


def test_dbsf_and_single_retriever_modes_rank_by_their_own_score() -> None:
    fused = dbsf([{"a": 0.9, "b": 0.8, "c": 0.7}, {"c": 12.0, "d": 9.0}])
    assert [n.node.node_id for n in retrieve("hybrid", "dbsf")] == sorted(fused, key=lambda p: -fused[p])
    dense = retrieve("dense")
    assert [(n.node.node_id, n.score) for n in dense] == [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    assert all(n.node.metadata["score_fused"] is None for n in dense)  # no fusion happened
    sparse = retrieve("sparse", embedding=None)  # BM25 alone needs no embedding
    assert [n.node.node_id for n in sparse] == ["c", "d"]


def test_keep_bounds_the_nodes_and_dense_needs_the_embedding() -> None:
    assert [n.node.node_id for n in retrieve("hybrid", keep=2)] == ["c", "a"]
    with pytest.raises(ValueError, match="embedding"):
        retrieve("dense", embedding=None)


def test_only_title_section_source_reach_prompts() -> None:
    node = retrieve("hybrid")[0].node
    shown = node.get_content(metadata_mode=MetadataMode.LLM)
    assert "Title c" in shown and "text of c" in shown
    assert "score_" not in shown and "doc-c" not in shown and "rank" not in shown


class FakeReranker:
    name = "fake"

    def __init__(self, model: str | None = None, fail: bool = False) -> None:
        self.model, self.fail = model, fail
        self.seen: tuple | None = None

    def scores(self, question, query_vec, collection, point_ids, texts) -> list[float]:
        self.seen = (question, query_vec, collection, point_ids, texts)
        if self.fail:
            raise DependencyError("rerank endpoint failed") from TimeoutError("read timed out")
        return [float(len(pid)) + (0.5 if pid == "b" else 0.0) for pid in point_ids]  # b wins


def test_rerank_rescores_the_first_candidates_and_drops_the_rest() -> None:
    nodes = retrieve("hybrid")
    reranker = FakeReranker()
    qvec = np.array([1.0, 0.0])
    out = Rerank(reranker=reranker, collection="col_v1", query_vec=qvec, top_n=3).postprocess_nodes(
        nodes, QueryBundle("which protein binds"))
    assert [n.node.node_id for n in out] == ["b", "c", "a"]  # d was 4th: past top_n
    assert out[0].score == 1.5 and out[0].node.metadata["score_rerank"] == 1.5
    question, vec, collection, ids, texts = reranker.seen
    assert (question, collection, ids) == ("which protein binds", "col_v1", ["c", "a", "b"])
    assert vec is qvec and texts == ["text of c", "text of a", "text of b"]
    assert out[0].node.metadata["score_fused"] is not None  # the earlier scores stay


def test_sources_keep_our_scores_and_a_foreign_nodes_ranking_score() -> None:
    ours = sources_of(retrieve("hybrid"), top_k=2)
    assert [(s.rank, s.point_id, s.chunk_id, s.doc_id) for s in ours] == [(1, "c", "c#0", "doc-c"), (2, "a", "a#0", "doc-a")]
    assert ours[0].scores == {"dense": 0.7, "sparse": 12.0, "fused": pytest.approx(1 / 63 + 1 / 61), "rerank": None}
    assert (ours[0].dense_rank, ours[0].sparse_rank, ours[0].title, ours[0].text) == (3, 1, "Title c", "text of c")
    foreign = NodeWithScore(node=TextNode(id_="n1", text="t", metadata={"doc_id": "7"}), score=0.42)
    [s] = sources_of([foreign], top_k=5)
    assert (s.doc_id, s.chunk_id, s.scores["fused"], s.scores["dense"]) == ("7", "n1", 0.42, None)


class _Seen(BaseEventHandler):
    events: list = []

    @classmethod
    def class_name(cls) -> str:
        return "SeenByTest"

    def handle(self, event: BaseEvent, **kwargs) -> None:
        self.events.append(event)


def test_instrumentation_sees_the_retriever_without_a_wrapper() -> None:
    dispatcher = get_dispatcher()
    handler = _Seen(events=[])
    dispatcher.add_event_handler(handler)
    try:
        retrieve("hybrid")
    finally:
        dispatcher.event_handlers.remove(handler)
    kinds = [type(e) for e in handler.events]
    assert RetrievalStartEvent in kinds and RetrievalEndEvent in kinds
    end = next(e for e in handler.events if isinstance(e, RetrievalEndEvent))
    assert [n.node.node_id for n in end.nodes] == ["c", "a", "b", "d"]


def test_collector_times_the_stages_and_meters_a_reranker_that_names_a_model() -> None:
    """backend/engine/instrumentation.py: the retrieve and rerank stages timed from LlamaIndex's events; a
    reranker naming a model is a ledger call with the question and candidate texts counted; one
    naming none (the offline re-score) is timed only; one that fails is an error call."""
    def run(reranker: FakeReranker) -> tuple[dict, list]:
        latency: dict[str, float] = {}
        calls: list = []
        with collecting(latency, calls.append):
            nodes = retrieve("hybrid")
            Rerank(reranker=reranker, collection="c", top_n=2).postprocess_nodes(nodes, QueryBundle("which protein"))
        return latency, calls

    latency, calls = run(FakeReranker(model="rerank-v3"))
    assert set(latency) == {"retrieve", "rerank"} and all(v >= 0 for v in latency.values())
    [call] = calls
    assert (call.kind, call.model, call.status) == ("rerank", "rerank-v3", "ok")
    assert call.prompt_tokens >= len("which protein text of c text of a".split())
    latency, calls = run(FakeReranker(model=None))
    assert "rerank" in latency and calls == []

    latency, calls = {}, []
    with pytest.raises(DependencyError):
        with collecting(latency, calls.append):
            Rerank(reranker=FakeReranker(model="rerank-v3", fail=True), collection="c").postprocess_nodes(
                retrieve("hybrid"), QueryBundle("q"))
    [failed] = calls
    assert (failed.kind, failed.model, failed.status, failed.error_class) == ("rerank", "rerank-v3", "error", "TimeoutError")


class FakeEmbedder:
    """The Embedder protocol's query side: a fixed vector, or a failure with a root cause."""

    name, cache_key, dim = "fake-e5", "fake-e5|1", 2

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        if self.fail:
            raise DependencyError("embedding endpoint down", part="embedding") from ConnectionRefusedError()
        return np.ones((len(texts), 2), dtype=np.float32)


def test_the_query_embedding_is_timed_and_metered_by_its_llamaindex_events() -> None:
    """The engine embeds a question through `LlamaEmbedding` (a `BaseEmbedding`), inside `collecting`:
    the embed stage time and the ledger call (model, tokens) come from LlamaIndex's events, and a
    failing embedder is an error call naming its root cause."""
    latency: dict[str, float] = {}
    calls: list = []
    with collecting(latency, calls.append):
        vec = LlamaEmbedding(FakeEmbedder()).get_query_embedding("which protein binds the receptor")
    assert vec == [1.0, 1.0] and latency["embed"] >= 0
    [call] = calls
    assert (call.kind, call.model, call.status) == ("embedding", "fake-e5", "ok") and call.prompt_tokens >= 5

    latency, calls = {}, []
    with pytest.raises(DependencyError):
        with collecting(latency, calls.append):
            LlamaEmbedding(FakeEmbedder(fail=True)).get_query_embedding("q")
    [failed] = calls
    assert (failed.kind, failed.model, failed.status, failed.error_class) == (
        "embedding", "fake-e5", "error", "ConnectionRefusedError")
