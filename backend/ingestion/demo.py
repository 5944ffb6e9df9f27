"""First-start demo index: a small sample of SciFact (English) and CMRC 2018 (Chinese) with
the passages that answer their first questions, small enough to build in about a minute
with the in-process embedding model, so a new user can ask at once."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from backend.access import SYSTEM, Actor
from backend.errors import InputError
from backend.ingestion.chunking import Document
from backend.ingestion.ingestor import Ingestor, IngestProgress, IngestResult
from backend.ingestion.sources import load_corpus_jsonl
from backend.settings import Settings


def _sample(folder: Path, n_docs: int) -> list[Document]:
    """Gold passages of the first questions first, then the corpus in order, up to n_docs."""
    docs = load_corpus_jsonl(folder / "corpus.jsonl").documents
    by_id = {d.id: d for d in docs}
    wanted: list[str] = []
    with (folder / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            for g in json.loads(line)["gold_ids"]:
                if str(g) in by_id and str(g) not in wanted:
                    wanted.append(str(g))
            if len(wanted) >= n_docs // 2:
                break
    for d in docs:
        if len(wanted) >= n_docs:
            break
        if d.id not in wanted:
            wanted.append(d.id)
    return [by_id[i] for i in wanted[:n_docs]]


def demo_documents(root: Path, n_docs: int) -> list[Document]:
    docs: list[Document] = []
    for name, share in (("scifact", 0.6), ("cmrc2018", 0.4)):
        folder = root / name
        if (folder / "corpus.jsonl").is_file() and (folder / "queries.jsonl").is_file():
            docs.extend(_sample(folder, max(1, int(n_docs * share))))
    if not docs:
        raise InputError(f"no demo corpus under {root}: set DEMO_CORPUS to a folder holding scifact/ and cmrc2018/")
    return docs


def demo_questions(root: Path, per_set: int = 3) -> list[str]:
    """A few real questions the demo index can answer (shown as examples in the chat page)."""
    out: list[str] = []
    for name in ("scifact", "cmrc2018"):
        path = root / name / "queries.jsonl"
        if path.is_file():
            with path.open(encoding="utf-8") as fh:
                out.extend(json.loads(line)["question"] for _, line in zip(range(per_set), fh))
    return out


def ensure_demo_index(ingestor: Ingestor, s: Settings, actor: Actor = SYSTEM,
                      progress: Callable[[IngestProgress], None] | None = None) -> IngestResult:
    if s.demo_corpus is None:
        raise InputError("DEMO_CORPUS is not set")
    docs = demo_documents(Path(s.demo_corpus), s.demo_docs)
    return ingestor.ingest(docs, actor=actor, family=s.index_alias, source=f"demo sample of {s.demo_corpus}",
                           progress=progress)
