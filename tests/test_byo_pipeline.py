"""Bring your own LlamaIndex pipeline (issue 15): the plain LlamaIndex pipeline of bench/retrieval.py
registered through PIPELINE_FACTORIES, named by a saved policy and run by the engine on a real local
Qdrant store with the real embedding model (10 short documents): sources with doc_id, stage timings
from LlamaIndex's instrumentation, ledger rows, one build per pipeline, refusal of unlisted factories,
an LLM-backed query engine (the fault-injection server as endpoint) and an offline A/B against the
default policy on a golden set."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from actors import system_actor
from index_support import TOPICS, fresh_services, write_dataset
from team_factories import BUILDS

from backend.engine.answer_cache import MemoryCache
from backend.engine.generation import OpenAIGenerator
from backend.engine.policy import Policy, parse_policy
from backend.engine.query_engine import SOURCE_TOKENS_EST, QueryEngine, Retrieved
from backend.errors import InputError
from backend.evaluation.golden import parse_items
from backend.ingestion.sources import load_source
from backend.ledger.store import ledger
from backend.releases.online import offline_diff, start_offline
from backend.services import Services

PLAIN = "bench.retrieval:plain_pipeline"
COUNTING = "team_factories:counting_pipeline"
LLM_RERANK = "team_factories:llm_rerank"
CUTOFF = "team_factories:fused_score_cutoff"
OPS = system_actor("byo-test")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("byo")


@pytest.fixture(scope="module")
def svc(root: Path) -> Iterator[Services]:
    services = fresh_services(root / "data", pipeline_factories=f"{PLAIN}, {COUNTING}, {LLM_RERANK}, {CUTOFF}")
    docs = load_source(write_dataset(root / "set") / "corpus.jsonl").documents
    services.ingestor.ingest(docs, actor=OPS, family=services.settings.index_alias, source="tests")
    yield services
    services.close()


def test_unlisted_or_malformed_factories_are_refused_at_save_and_at_use(svc: Services) -> None:
    rogue = Policy(name="rogue", pipeline="os.path:join")
    with pytest.raises(InputError, match=r"not an allowed factory \(PIPELINE_FACTORIES lists: bench.retrieval"):
        svc.policies.save(rogue, actor=OPS)
    with pytest.raises(InputError, match="not an allowed factory"):
        svc.engine.query(TOPICS["penguin"][1], rogue, OPS)
    with pytest.raises(InputError, match="not a factory reference"):
        parse_policy('{"pipeline": "import os; os.system"}')


def test_a_policy_naming_the_plain_pipeline_answers_through_the_engine(svc: Services) -> None:
    policy = svc.policies.save(Policy(name="plain", pipeline=PLAIN, top_k=3), actor=OPS)
    assert svc.policies.get("plain").pipeline == PLAIN
    answer = svc.engine.query(TOPICS["penguin"][1], policy, OPS)
    assert [s.doc_id for s in answer.sources][0] == "penguin" and len(answer.sources) == 3
    assert all(s.doc_id in TOPICS and s.text and s.scores["fused"] is not None for s in answer.sources)
    assert "incubate" in answer.sources[0].text and answer.fusion == "pipeline"
    assert answer.answer_kind == "extractive" and "[1]" in answer.answer  # a retriever: our generation answers
    assert {"embed", "retrieve", "generate", "total"} <= set(answer.latency_ms)  # from the instrumentation
    assert 0 < answer.latency_ms["embed"] < answer.latency_ms["total"]
    with svc.db.connect() as conn:
        rows = conn.execute(sa.select(ledger.c.kind, ledger.c.model, ledger.c.prompt_tokens)
                            .where(ledger.c.request_id == answer.request_id)).all()
    assert ("embedding", svc.embedder.name) in {(r.kind, r.model) for r in rows}  # metered without a wrapper
    assert all(r.prompt_tokens > 0 for r in rows if r.kind == "embedding")
    again = svc.engine.query(TOPICS["penguin"][1], policy, OPS)
    assert again.cache_hit and again.sources == answer.sources  # the engine's cache applies


def test_a_pipeline_is_built_once_per_policy_and_index(svc: Services) -> None:
    policy = Policy(name="counted", pipeline=COUNTING, top_k=2)
    BUILDS.clear()
    for topic in ("violin", "saturn", "bread"):
        retrieval = svc.engine.retrieve(TOPICS[topic][1], policy)
        assert retrieval.sources[0].doc_id == topic
    assert BUILDS == [svc.settings.index_alias]
    svc.engine.retrieve(TOPICS["violin"][1], policy.model_copy(update={"top_k": 4}))
    assert len(BUILDS) == 2  # other knobs: another pipeline
    with pytest.raises(InputError, match="takes no filters"):
        svc.engine.retrieve(TOPICS["violin"][1], policy, {"doc_id": "violin"})


def test_a_query_engine_answers_with_our_llm_and_its_tokens_are_counted(svc: Services, fault_llm) -> None:  # noqa: ANN001
    """With OPENAI_BASE_URL the plain pipeline is a LlamaIndex query engine on our generator."""
    s = svc.settings.model_copy(update={"openai_base_url": fault_llm.base_url, "llm_model": fault_llm.model})
    engine = QueryEngine(s, svc.store, svc.embedder, OpenAIGenerator(s), svc.engine.reranker, MemoryCache(60, 10))
    events = list(engine.stream(TOPICS["coffee"][1], Policy(name="plain-llm", pipeline=PLAIN, top_k=2), OPS))
    assert isinstance(events[0], Retrieved) and events[0].retrieval.sources[0].doc_id == "coffee"
    answer = events[-1]
    assert answer.answer == fault_llm.reply and answer.answer_kind == "llm" and answer.model == fault_llm.model
    assert answer.usage.method == "api" and answer.usage.prompt_tokens > 10 and answer.usage.completion_tokens > 0
    assert {"embed", "retrieve", "generate"} <= set(answer.latency_ms)
    chat = [r for r in fault_llm.requests if r["path"].endswith("/chat/completions")]
    assert len(chat) == 1 and "nine bars" in str(chat[0]["body"]["messages"])  # LlamaIndex's prompt, our chunk


def test_offline_ab_of_the_plain_pipeline_against_the_default_policy(svc: Services, root: Path) -> None:
    svc.golden.create("topics", actor=OPS)
    svc.golden.import_items("topics", parse_items((root / "set" / "queries.jsonl").read_bytes(), "queries.jsonl"),
                            actor=OPS)
    svc.golden.freeze("topics", actor=OPS)
    plain = svc.policies.save(Policy(name="plain-ab", pipeline=PLAIN, top_k=5), actor=OPS)
    job_id = start_offline(svc.jobs, svc.evals, svc.golden, "topics", Policy(), plain, OPS, generate=False)
    job = svc.jobs.wait(job_id, timeout=300)
    assert job.status == "done", job.error
    run_a, run_b = svc.evals.get(job.result["run_a"]), svc.evals.get(job.result["run_b"])
    assert (run_a.policy, run_b.policy) == ("default", "plain-ab v1")
    diff = offline_diff(svc.evals, run_a.id, run_b.id)
    items = svc.evals.items(run_b.id)
    assert len(items) == len(TOPICS) and all(i.retrieved[0].doc_id in TOPICS for i in items)
    assert run_b.metrics["recall@10"]["mean"] >= 0.9  # ten distinct topics: the dense pipeline finds them
    assert "ndcg@10" in diff.quality.metrics and diff.costs[0].name == "retrieval latency (ms)" and diff.costs[0].b > 0


def _ledger(svc: Services, request_id: str) -> list[tuple[str, str]]:
    with svc.db.connect() as conn:
        return [(r.kind, r.model) for r in conn.execute(
            sa.select(ledger.c.kind, ledger.c.model).where(ledger.c.request_id == request_id).order_by(ledger.c.id))]


def test_a_policy_naming_a_third_party_reranker_reorders_our_retrieval_and_meters_it(svc: Services, fault_llm) -> None:  # noqa: ANN001
    """LlamaIndex's LLMRerank in place of our rerank stage: our hybrid retrieval, its order and
    relevance scores, its LLM call a ledger row and the stage timed, with no wrapper around it."""
    s = svc.settings.model_copy(update={"openai_base_url": fault_llm.base_url, "llm_model": fault_llm.model})
    engine = QueryEngine(s, svc.store, svc.embedder, OpenAIGenerator(s), svc.engine.reranker, MemoryCache(60, 10),
                         meter=svc.engine.meter)
    question = TOPICS["penguin"][1]
    ours = engine.retrieve(question, Policy(top_k=3)).sources
    fault_llm.replies.append((("Relevance:",), "Doc: 2, Relevance: 9\nDoc: 1, Relevance: 4"))
    policy = svc.policies.save(Policy(name="llm-rerank", postprocessor=LLM_RERANK, top_k=3, rerank_candidates=3), actor=OPS)
    answer = engine.query(question, policy, OPS)
    chat = [r for r in fault_llm.requests if r["path"].endswith("/chat/completions")]
    fault_llm.reset()
    assert [x.chunk_id for x in answer.sources] == [ours[1].chunk_id, ours[0].chunk_id]  # its choice, its order
    assert [x.scores["rerank"] for x in answer.sources] == [9.0, 4.0]
    assert [x.scores["fused"] for x in answer.sources] == [ours[1].scores["fused"], ours[0].scores["fused"]]
    assert answer.latency_ms["rerank"] > 0 and answer.fusion == policy.fusion
    assert len(chat) == 2 and ours[1].text[:40] in str(chat[0]["body"]["messages"])  # the rerank call saw our chunks
    assert _ledger(svc, answer.request_id) == [("embedding", svc.embedder.name), ("chat", fault_llm.model),
                                               ("chat", fault_llm.model)]
    # a hard budget holds the postprocessor's LLM call too, before the request makes any
    planned = engine._planned(policy, True, question)
    held = [p for p in planned if p.kind == "chat"]
    assert len(held) == 2 and held[0].prompt_tokens > 3 * SOURCE_TOKENS_EST and held[0].completion_tokens > 0
    assert [p.kind for p in engine._planned(Policy(top_k=3), True, question)] == ["embedding", "chat"]


def test_a_postprocessor_that_calls_no_model_is_timed_and_filters(svc: Services) -> None:
    question = TOPICS["saturn"][1]
    ours = svc.engine.retrieve(question, Policy(top_k=10)).sources
    kept = svc.engine.query(question, Policy(name="cutoff", postprocessor=CUTOFF, top_k=10), OPS)
    assert [x.chunk_id for x in kept.sources] == [x.chunk_id for x in ours if x.scores["fused"] >= 0.025]
    assert 0 < len(kept.sources) < len(ours) and kept.sources[0].doc_id == "saturn"
    assert kept.latency_ms["rerank"] > 0
    assert _ledger(svc, kept.request_id) == [("embedding", svc.embedder.name), ("chat", "extractive")]


def test_postprocessors_are_refused_unlisted_and_beside_a_pipeline(svc: Services) -> None:
    rogue = Policy(name="rogue-post", postprocessor="os.path:join")
    with pytest.raises(InputError, match=r"postprocessor 'os.path:join' is not an allowed factory"):
        svc.policies.save(rogue, actor=OPS)
    with pytest.raises(InputError, match="not an allowed factory"):
        svc.engine.retrieve(TOPICS["penguin"][1], rogue)
    with pytest.raises(InputError, match="a pipeline or a postprocessor, not both"):
        parse_policy(f'{{"pipeline": "{PLAIN}", "postprocessor": "{CUTOFF}"}}')
    assert Policy().content_hash() == Policy(postprocessor=None).content_hash()
    assert "postprocessor" not in Policy().content()  # hashes of saved policies stay as they were
