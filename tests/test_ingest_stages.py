"""Ingestion through LlamaIndex (issue 15): the chunker and the cached embedding as `TransformComponent`s,
the points written by `QdrantVectorStore` in its own payload format, and versions in the older
(native) format serving beside them. Real model, real local Qdrant store, SQLite."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from actors import system_actor
from corpus import SHARED
from index_support import fresh_services, write_folder
from llama_index.core.schema import Document as LlamaDocument
from llama_index.core.schema import MetadataMode

from backend.engine.policy import Policy
from backend.engine.vectorstore import LLAMAINDEX, NATIVE, NODE_CONTENT
from backend.evaluation.golden import neighbour_chunks
from backend.ingestion.chunking import ChunkingParams, Document, chunk_document
from backend.ingestion.sources import load_source
from backend.ingestion.stages import SpanChunker
from bench.stages import write_native_copy

TESTER = system_actor("test")


def sample_documents(name: str, n: int) -> list[Document]:
    with (SHARED / name / "corpus.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for _, line in zip(range(n), fh)]
    return [Document(str(r["id"]), r["text"], r.get("title") or "", name) for r in rows]


@pytest.mark.parametrize("dataset", ["scifact", "cmrc2018"])
def test_a_node_embeds_exactly_what_a_native_chunk_embedded(dataset: str) -> None:
    """Same text for the model and for BM25 in both formats: the embedding cache and the sparse
    weights carry over, and nDCG cannot move because of the format."""
    docs = sample_documents(dataset, 150) + [Document("no-head", "Only a body. " * 30),
                                             Document("section-only", "Body text here. " * 30, section="Intro")]
    params = ChunkingParams(target_chars=400, max_chars=600)
    chunks = [c for d in docs for c in chunk_document(d, params)]
    nodes = SpanChunker(params=params)(docs)
    assert [n.node_id for n in nodes] == [c.point_id for c in chunks]
    assert [n.get_content(MetadataMode.EMBED) for n in nodes] == [c.match_text for c in chunks]
    assert all(n.get_content(MetadataMode.NONE) == c.text and n.metadata["chunk_id"] == c.chunk_id
               and n.ref_doc_id == c.doc_id for n, c in zip(nodes, chunks))


def test_the_chunker_takes_llamaindex_documents_too() -> None:
    ours = Document("guide.md", "Qdrant swaps aliases atomically. " * 60, "Guide", "docs", "Ops")
    theirs = LlamaDocument(id_="guide.md", text=ours.text, metadata={"title": "Guide", "source": "docs", "section": "Ops"})
    a, b = SpanChunker(params=ChunkingParams())([ours]), SpanChunker(params=ChunkingParams())([theirs])
    assert len(a) > 1 and [n.node_id for n in a] == [n.node_id for n in b]
    assert [n.get_content(MetadataMode.EMBED) for n in a] == [n.get_content(MetadataMode.EMBED) for n in b]


def test_native_versions_keep_serving_beside_llamaindex_ones(tmp_path: Path) -> None:
    docs = write_folder(tmp_path / "docs")
    svc = fresh_services(tmp_path / "data")
    try:
        built = svc.ingestor.ingest(load_source(docs).documents, actor=TESTER, family="fam", source="t")
        assert svc.registry.get(built.collection).format == LLAMAINDEX
        [raw] = svc.store.client.scroll(built.collection, limit=1, with_payload=True)[0]
        assert NODE_CONTENT in raw.payload and "text" not in raw.payload  # LlamaIndex's format, written by its store
        assert json.loads(raw.payload[NODE_CONTENT])["text"] and raw.payload["doc_id"] == raw.payload["chunk_id"].split(":")[0]

        write_native_copy(svc.store, svc.registry, built.collection, "fam_native")
        assert svc.registry.get("fam_native").format == NATIVE
        new, old = dict(svc.store.scroll(built.collection)), dict(svc.store.scroll("fam_native"))
        assert new == old and all(p["text"] for p in new.values())  # one shape whatever the format

        for question in ("Is a Qdrant alias swap atomic?", "How is bread baked?"):
            a = svc.engine.retrieve(question, Policy(index=built.collection)).sources
            b = svc.engine.retrieve(question, Policy(index="fam_native")).sources
            assert [(s.chunk_id, s.text, s.title) for s in a] == [(s.chunk_id, s.text, s.title) for s in b]
            for x, y in zip(a, b):
                assert x.scores == pytest.approx(y.scores) and (x.dense_rank, x.sparse_rank) == (y.dense_rank, y.sparse_rank)

        some = next(iter(new.values()))
        assert neighbour_chunks(svc.store, built.collection, some["doc_id"], some["start"]) == \
            neighbour_chunks(svc.store, "fam_native", some["doc_id"], some["start"])
    finally:
        svc.close()


def test_a_restored_snapshot_keeps_the_llamaindex_format(tmp_path: Path) -> None:
    svc = fresh_services(tmp_path / "data")
    try:
        built = svc.ingestor.ingest(load_source(write_folder(tmp_path / "docs")).documents, actor=TESTER,
                                    family="fam", source="t")
        snap = svc.snapshots.create(TESTER, built.collection)
        restored = svc.snapshots.restore(TESTER, path=Path(snap.path))
        assert svc.registry.get(restored.collection).format == LLAMAINDEX
        question = "Is a Qdrant alias swap atomic?"
        assert [s.text for s in svc.engine.retrieve(question, Policy(index=restored.collection)).sources] == \
            [s.text for s in svc.engine.retrieve(question, Policy(index=built.collection)).sources]
    finally:
        svc.close()
