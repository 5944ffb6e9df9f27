"""Small real corpora cut from ../shared/datasets for tests: the gold passages of the first
questions plus some distractors, written in the same corpus.jsonl / queries.jsonl format."""
from __future__ import annotations

import json
from pathlib import Path

from backend.settings import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared" / "datasets"  # shared/ sits beside the checkout


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def cut_dataset(name: str, n_queries: int, n_distractors: int, dest: Path) -> Path:
    """dest/corpus.jsonl holds the gold docs of the first n_queries plus n_distractors others."""
    corpus = _rows(SHARED / name / "corpus.jsonl")
    queries = _rows(SHARED / name / "queries.jsonl")[:n_queries]
    gold = {str(g) for q in queries for g in q["gold_ids"]}
    keep = [d for d in corpus if str(d["id"]) in gold]
    keep += [d for d in corpus if str(d["id"]) not in gold][:n_distractors]
    dest.mkdir(parents=True, exist_ok=True)
    with (dest / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in keep)
    with (dest / "queries.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in queries)
    return dest


def small_demo(root: Path) -> Path:
    """root/demo: a demo corpus of six documents (two SciFact questions' gold abstracts and two others,
    one CMRC 2018 question's passage and one other) that the console builds in seconds."""
    demo = root / "demo"
    cut_dataset("scifact", 2, 2, demo / "scifact")
    cut_dataset("cmrc2018", 1, 1, demo / "cmrc2018")
    return demo


def first_queries(name: str, n: int) -> list[dict]:
    return _rows(SHARED / name / "queries.jsonl")[:n]
