"""Chunking and tokenisation on real English and Chinese documents."""
from __future__ import annotations

from corpus import SHARED

from backend.ingestion.chunking import ChunkingParams, Document, chunk_document
from backend.ingestion.sources import load_source
from backend.text import terms


def _docs(name: str, n: int) -> list[Document]:
    return load_source(SHARED / name / "corpus.jsonl", limit=n).documents


def test_english_chunks_respect_bounds_spans_and_overlap() -> None:
    params = ChunkingParams()
    long_docs = [d for d in _docs("scifact", 300) if len(d.text) > 2500][:20]
    assert long_docs, "SciFact has abstracts longer than 2,500 characters"
    overlaps = []
    for doc in long_docs:
        chunks = chunk_document(doc, params)
        assert len(chunks) >= 2
        for c in chunks:
            assert doc.text[c.start : c.end] == c.text  # the span points at the exact text
            assert len(c.text) <= params.max_chars
        for a, b in zip(chunks, chunks[1:]):
            assert b.start > a.start  # always moves forward
            overlaps.append(max(0, a.end - b.start) / (a.end - a.start))
        assert chunks[-1].end >= len(doc.text.rstrip()) - 1  # nothing dropped at the end
    mean_overlap = sum(overlaps) / len(overlaps)
    assert 0.05 <= mean_overlap <= 0.3, mean_overlap


def test_chunks_end_on_sentence_boundaries() -> None:
    doc = next(d for d in _docs("scifact", 300) if len(d.text) > 3000)
    for c in chunk_document(doc)[:-1]:
        assert c.text.rstrip()[-1] in ".!?;)]%\"'", c.text[-40:]


def test_chinese_chunks_split_at_full_stops() -> None:
    text = "".join(f"这是第{i}个句子，它讲述了一个关于检索增强生成的故事。" for i in range(120))
    chunks = chunk_document(Document("zh", text, "中文"), ChunkingParams(target_chars=600, max_chars=900))
    assert len(chunks) >= 4
    for c in chunks:
        assert len(c.text) <= 900
        assert c.text.endswith("。")
        assert text[c.start : c.end] == c.text
    assert all(len(c.text) >= 300 for c in chunks[:-1])


def test_ids_are_deterministic_and_title_is_prefixed() -> None:
    doc = _docs("cmrc2018", 1)[0]
    a, b = chunk_document(doc), chunk_document(doc)
    assert [c.point_id for c in a] == [c.point_id for c in b]
    assert a[0].chunk_id == f"{doc.id}:{a[0].start}-{a[0].end}"
    assert a[0].match_text.startswith(doc.title)


def test_empty_document_has_no_chunks() -> None:
    assert chunk_document(Document("e", "   \n ")) == []


def test_terms_stem_english_and_bigram_chinese() -> None:
    assert terms("The running runners ran") == ["run", "runner", "ran"]
    assert terms("检索增强") == ["检", "索", "增", "强", "检索", "索增", "增强"]
    assert "rag" in terms("RAG 检索")


def test_markdown_section_headings_are_kept_per_chunk() -> None:
    body = " ".join(f"Sentence {i} about installing the console." for i in range(40))
    text = f"# Guide\n\n## Install\n\n{body}\n\n## Operate\n\n{body.replace('installing', 'operating')}\n"
    chunks = chunk_document(Document("guide.md", text, "Guide"), ChunkingParams(target_chars=600, max_chars=900))
    sections = [c.section for c in chunks]
    assert "Install" in sections and sections[-1] == "Operate"
    assert chunks[-1].match_text.startswith("Guide / Operate\n")
