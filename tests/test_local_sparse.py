"""The in-process sparse scorer of local mode against Qdrant local mode's own sparse search, on
the real session index (English and Chinese), and its invalidation on writes."""
from __future__ import annotations

import uuid

import pytest
from qdrant_client import models

from backend.engine.sparse import doc_vector, query_vector
from backend.engine.vectorstore import DENSE, SPARSE, chunk_payload, payload_filter
from backend.services import Services

QUESTIONS = [
    "What increases the risk of breast cancer?",
    "Vitamin D deficiency and bone density in elderly patients",
    "gene expression of T cells",
    "大莱龙铁路一共投资多少亿元？",
    "赵鹏的职业是什么？",
    "zzzzqqqx",
]


def qdrant_ranking(services: Services, collection: str, question: str, limit: int) -> list[tuple[str, float]]:
    """Local mode's own scorer (the Python loop this module replaces)."""
    res = services.store.client.query_points(collection, query=query_vector(question), using=SPARSE, limit=limit)
    return [(str(p.id), float(p.score)) for p in res.points]


@pytest.mark.parametrize("question", QUESTIONS)
def test_same_ranking_and_scores_as_qdrant_local_mode(services: Services, question: str) -> None:
    collection = services.store.resolve("rag_chunks")
    ours = services.store.search(collection, query_vector(question), SPARSE, 20)
    theirs = qdrant_ranking(services, collection, question, 20)
    assert [h.point_id for h in ours] == [pid for pid, _ in theirs]
    for hit, (_, score) in zip(ours, theirs):
        assert hit.score == pytest.approx(score, rel=1e-5)  # Qdrant local sums in float32
        assert chunk_payload(hit.payload)["text"]  # payloads come along as with query_points
    if question.startswith("zzzz"):
        assert ours == []


def test_index_follows_writes_and_filters_fall_back(services: Services) -> None:
    store = services.store
    name = f"sparse_probe_{uuid.uuid4().hex[:8]}"
    store.create_collection(name, dim=2)

    def point(text: str, doc: str) -> models.PointStruct:
        return models.PointStruct(id=str(uuid.uuid4()), payload={"text": text, "doc_id": doc},
                                  vector={DENSE: [1.0, 0.0], SPARSE: doc_vector(text, avgdl=4)})

    try:
        store.upsert(name, [point("alpha beta gamma", "a"), point("beta delta", "b")])
        assert [h.payload["doc_id"] for h in store.search(name, query_vector("alpha"), SPARSE, 5)] == ["a"]
        store.upsert(name, [point("alpha alpha alpha epsilon", "c")])  # a write drops the cached index
        hits = store.search(name, query_vector("alpha"), SPARSE, 5)
        assert {h.payload["doc_id"] for h in hits} == {"a", "c"}
        assert [(h.point_id, pytest.approx(h.score, rel=1e-5)) for h in hits] == qdrant_ranking(services, name, "alpha", 5)
        filtered = store.search(name, query_vector("alpha"), SPARSE, 5, payload_filter({"doc_id": "c"}))
        assert [h.payload["doc_id"] for h in filtered] == ["c"]  # filters go through Qdrant's own scorer
    finally:
        store.delete_collection(name)
