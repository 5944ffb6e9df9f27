"""Helpers for the index and command-line tests (no tests here): a tiny corpus of short, distinct
documents with questions and gold ids, fresh Services on a private data folder, and an
embedder wrapper that can pause or fail between batches."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from backend.services import Services, build_services
from backend.settings import PROJECT_ROOT, Settings

TOPICS: dict[str, tuple[str, str]] = {  # doc id -> (text, a question it answers)
    "qdrant": ("Qdrant aliases swap atomically: a query in flight sees the old or the new collection, never an error.",
               "Is a Qdrant alias swap atomic?"),
    "redis": ("Redis keeps cached answers for one hour and evicts the least recently used keys first.",
              "How long does Redis keep cached answers?"),
    "bm25": ("BM25 ranks passages by term frequency, inverse document frequency and document length.",
             "How does BM25 rank passages?"),
    "e5": ("The multilingual e5 small model embeds Chinese and English sentences into 384 dimensions.",
           "How many dimensions does the e5 small model produce?"),
    "volcano": ("Mount Kilimanjaro is a dormant volcano in Tanzania with three volcanic cones.",
                "Which country is Kilimanjaro in?"),
    "coffee": ("Espresso is brewed by forcing hot water through finely ground coffee at about nine bars.",
               "At what pressure is espresso brewed?"),
    "penguin": ("Emperor penguins breed during the Antarctic winter and the males incubate the eggs on their feet.",
                "Who incubates emperor penguin eggs?"),
    "violin": ("A violin has four strings tuned in perfect fifths: G, D, A and E.",
               "How are violin strings tuned?"),
    "saturn": ("Saturn's rings are made mostly of water ice with a small amount of rocky debris.",
               "What are Saturn's rings made of?"),
    "bread": ("Sourdough bread rises thanks to wild yeast and lactic acid bacteria in the starter.",
              "What makes sourdough bread rise?"),
}


def write_folder(folder: Path, ids: list[str] | None = None, extra: dict[str, str] | None = None) -> Path:
    """One markdown file per topic (plus `extra` name -> text files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id in ids or list(TOPICS):
        (folder / f"{doc_id}.md").write_text(f"# {doc_id}\n\n{TOPICS[doc_id][0]}\n", encoding="utf-8")
    for name, text in (extra or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def write_dataset(folder: Path, ids: list[str] | None = None, query_ids: list[str] | None = None) -> Path:
    """corpus.jsonl (the `ids` topics) + queries.jsonl (questions of `query_ids`, gold = the topic)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for doc_id in ids or list(TOPICS):
            fh.write(json.dumps({"id": doc_id, "title": doc_id, "text": TOPICS[doc_id][0]}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for doc_id in query_ids or list(TOPICS):
            fh.write(json.dumps({"id": f"q-{doc_id}", "question": TOPICS[doc_id][1], "gold_ids": [doc_id]}) + "\n")
    return folder


def fresh_services(data_dir: Path, **overrides: Any) -> Services:
    """Services on their own data folder (local Qdrant admits one client per folder). The tests
    write their source folders next to the data folder, so INGEST_ROOTS is the folder around it:
    console users may rebuild from there (test_access.py covers folders outside the roots)."""
    settings = Settings(_env_file=None, data_dir=data_dir, openai_base_url=None, redis_url=None, database_url=None,
                        qdrant_url=None, embedding_base_url=None, rerank_url=None, demo_corpus=None,
                        **{"embedding_batch_size": 2, "ingest_roots": str(data_dir.parent), **overrides})
    return build_services(settings)


def cli_env(data: Path) -> dict[str, str]:
    """A `python -m backend` subprocess sees what fresh_services sets: its own data folder, no external service."""
    env = {**os.environ, "DATA_DIR": str(data), "EMBEDDING_BATCH_SIZE": "2", "INGEST_ROOTS": str(data.parent),
           "DEMO_CORPUS": "", "OPENBLAS_NUM_THREADS": "1"}
    for key in ("OPENAI_BASE_URL", "REDIS_URL", "DATABASE_URL", "QDRANT_URL", "EMBEDDING_BASE_URL", "RERANK_URL", "AUTH_SECRET"):
        env.pop(key, None)
    return env


def cli(data: Path, *args: str, stdin: str | None = None, **settings: str) -> subprocess.CompletedProcess:
    """`python -m backend ARGS` as fresh_services would run it (`cli_env`); `settings` add or replace
    environment settings, `stdin` is piped in."""
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=PROJECT_ROOT, env={**cli_env(data), **settings},
                          input=stdin, capture_output=True, text=True, timeout=600)


class ControlledEmbedder:
    """Wraps the real embedder's embed_passages: after `pause_after` batches it waits for
    `release`; after `fail_after` batches it raises. `started` is set when the pause begins."""

    def __init__(self, real: Any, pause_after: int | None = None, fail_after: int | None = None):
        self.real, self.pause_after, self.fail_after = real, pause_after, fail_after
        self.calls = 0
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("embedding model crashed (injected by the test)")
        if self.pause_after is not None and self.calls >= self.pause_after:
            self.started.set()
            assert self.release.wait(60), "the test never released the embedder"
        self.calls += 1
        return self.real(texts)
