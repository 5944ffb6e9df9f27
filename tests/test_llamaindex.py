"""Our engine as LlamaIndex components (issue 15, "take ours"): RagRetriever and RagQueryEngine on
a real local Qdrant store and the real embedding model, inside a plain LlamaIndex pipeline, with
the ledger's traces recording their requests. No LLM endpoint: answers are extractive."""
from __future__ import annotations

from typing import Iterator

import pytest
from actors import system_actor
from index_support import TOPICS, fresh_services, write_folder
from llama_index.core.postprocessor import SimilarityPostprocessor

from backend.engine.policy import Policy
from backend.errors import NotFoundError
from backend.ingestion.sources import load_source
from backend.llamaindex import RagQueryEngine, RagRetriever
from backend.services import Services

APP = system_actor("my-app")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("llamaindex")
    services = fresh_services(root / "data")
    docs = load_source(write_folder(root / "docs")).documents
    services.ingestor.ingest(docs, actor=APP, family=services.settings.index_alias, source="tests")
    yield services
    services.close()


def test_retriever_returns_the_engines_sources_with_every_score(svc: Services) -> None:
    retriever = RagRetriever(svc, Policy(top_k=3), actor=APP)
    nodes = retriever.retrieve(TOPICS["penguin"][1])
    assert [n.node.metadata["doc_id"] for n in nodes][0] == "penguin.md" and len(nodes) == 3
    top = nodes[0]
    meta = top.node.metadata
    assert meta["rank"] == 1 and meta["chunk_id"].startswith("penguin.md:") and top.node.node_id == meta["chunk_id"]
    assert top.score == meta["score_fused"] and meta["score_dense"] is not None  # hybrid: the fused score ranked it
    assert "Emperor penguins" in top.node.get_content()
    assert "score_dense" not in top.node.get_content(metadata_mode="llm")  # scores stay out of prompts
    assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)


def test_query_engine_answers_through_the_live_release_and_is_traced(svc: Services) -> None:
    engine = RagQueryEngine(svc, actor=APP)  # no policy: the live release (here the default policy)
    response = engine.query(TOPICS["violin"][1])
    assert "fifths" in str(response) and response.metadata["answer_kind"] == "extractive"
    assert response.source_nodes[0].node.metadata["doc_id"] == "violin.md"
    trace = svc.traces.get(response.metadata["request_id"])
    assert trace is not None and trace.user == "my-app"  # the ledger's user is the app


def test_streaming_sends_sources_first_then_the_same_text(svc: Services) -> None:
    question = TOPICS["coffee"][1]
    whole = RagQueryEngine(svc, Policy(name="p", top_k=2), actor=APP).query(question)
    streamed = RagQueryEngine(svc, Policy(name="p", top_k=2, temperature=0.1), actor=APP, streaming=True).query(question)
    assert streamed.source_nodes and streamed.metadata is None  # sources known before any text
    text = "".join(streamed.response_gen)
    assert text == str(whole) and streamed.metadata["request_id"] != whole.metadata["request_id"]


def test_saved_policies_by_name_or_version_and_bad_refs(svc: Services) -> None:
    svc.policies.save(Policy(name="narrow", top_k=1), actor=APP)
    svc.policies.save(Policy(name="narrow", top_k=2), actor=APP)
    assert len(RagRetriever(svc, "narrow@1", actor=APP).retrieve(TOPICS["saturn"][1])) == 1
    assert len(RagRetriever(svc, "narrow", actor=APP).retrieve(TOPICS["saturn"][1])) == 2
    for bad in ("narrow@x", "narrow@9", "nope"):
        with pytest.raises(NotFoundError):
            RagRetriever(svc, bad, actor=APP)


def test_composes_with_llamaindex_postprocessors(svc: Services) -> None:
    """Our retriever's nodes through LlamaIndex's own postprocessor (its query engines need an LLM
    class: llama-index-llms-openai is not installed, so generation stays ours here)."""
    retriever = RagRetriever(svc, Policy(top_k=5, retrieval_mode="dense"), actor=APP)
    question = TOPICS["bread"][1]
    everything = retriever.retrieve(question)
    kept = SimilarityPostprocessor(similarity_cutoff=0.8).postprocess_nodes(everything, query_str=question)
    assert kept and kept[0].node.metadata["doc_id"] == "bread.md" and all(n.score >= 0.8 for n in kept)
    assert len(kept) == sum(n.score >= 0.8 for n in everything) < len(everything)  # the cutoff really cut
