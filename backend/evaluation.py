"""Retrieval evaluation on a data set in the shared format (corpus.jsonl + queries.jsonl):
document-level Recall@k, nDCG@k, MRR@k, and retrieval latency percentiles."""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from backend.access import SYSTEM, Actor
from backend.errors import InputError
from backend.ingest import IngestProgress
from backend.policy import Policy
from backend.sources import load_source

if TYPE_CHECKING:  # services imports this module's users; avoid the cycle at run time
    from backend.services import Services


RANKING_DEPTH = 150  # chunks retrieved per query: enough distinct documents for Recall@100


def ranking_policy(policy: Policy, index: str) -> Policy:
    """The policy as evaluation runs it: same knobs, deep enough for Recall@100, on `index`."""
    return policy.model_copy(update={"index": index, "top_k": RANKING_DEPTH, "candidates": max(policy.candidates, RANKING_DEPTH)})


def doc_ranking(doc_ids: list[str]) -> list[str]:
    """Chunk-level ranking -> document ranking (first occurrence wins)."""
    return list(dict.fromkeys(doc_ids))


def recall_at(ranked: list[str], gold: set[str], k: int) -> float:
    return len(gold.intersection(ranked[:k])) / len(gold) if gold else 0.0


def ndcg_at(ranked: list[str], gold: set[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in gold)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(gold), k)))
    return dcg / idcg if idcg else 0.0


def mrr_at(ranked: list[str], gold: set[str], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if d in gold:
            return 1.0 / (i + 1)
    return 0.0


@dataclass
class EvalReport:
    dataset: str
    collection: str
    policy: str
    n_queries: int
    metrics: dict[str, float]
    p50_ms: float
    p95_ms: float
    ingest_seconds: float
    reused_index: bool

    def as_json(self) -> dict:
        return {**{k: round(v, 4) for k, v in self.metrics.items()}, "p50_ms": round(self.p50_ms, 2),
                "p95_ms": round(self.p95_ms, 2), "n_queries": self.n_queries}


def load_queries(path: Path) -> list[dict]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    out.append({"id": str(row["id"]), "question": row["question"], "gold": {str(g) for g in row["gold_ids"]}})
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise InputError(f"{path} line {n}: needs 'id', 'question' and 'gold_ids' ({exc})") from exc
    return out


def evaluate_dataset(services: Services, dataset: str | Path, policy: Policy, actor: Actor = SYSTEM,
                     limit: int | None = None, progress: Callable[[str, float], None] | None = None) -> EvalReport:
    """Index the corpus (reusing an identical index), run every query through retrieval, score."""
    root = Path(dataset)
    if not (root / "corpus.jsonl").is_file() or not (root / "queries.jsonl").is_file():
        raise InputError(f"{root} must hold corpus.jsonl and queries.jsonl")
    queries = load_queries(root / "queries.jsonl")[:limit]
    family = "eval_" + re.sub(r"[^a-z0-9]+", "_", root.resolve().name.lower()).strip("_")

    def on_ingest(p: IngestProgress) -> None:
        if progress:
            progress(f"indexing {p.chunks_done}/{p.chunks_total} chunks", 0.8 * p.fraction)

    corpus = load_source(root / "corpus.jsonl")
    result = services.ingestor.ingest(corpus.documents, actor=actor, family=family, source=str(root), progress=on_ingest)
    run_policy = ranking_policy(policy, family)
    sums = {"recall@5": 0.0, "recall@10": 0.0, "ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    latencies = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        retrieval = services.engine.retrieve(q["question"], run_policy)
        latencies.append((time.perf_counter() - t) * 1000)
        ranked = doc_ranking([s.doc_id for s in retrieval.sources])
        sums["recall@5"] += recall_at(ranked, q["gold"], 5)
        sums["recall@10"] += recall_at(ranked, q["gold"], 10)
        sums["ndcg@10"] += ndcg_at(ranked, q["gold"], 10)
        sums["mrr@10"] += mrr_at(ranked, q["gold"], 10)
        sums["recall@100"] += recall_at(ranked, q["gold"], 100)
        if progress:
            progress(f"query {i + 1}/{len(queries)}", 0.8 + 0.2 * (i + 1) / len(queries))
    n = len(queries)
    metrics = {k: v / n for k, v in sums.items()} if n else sums
    lat = np.array(latencies) if latencies else np.zeros(1)
    return EvalReport(str(root), result.collection, policy.label(), n, metrics, float(np.percentile(lat, 50)),
                      float(np.percentile(lat, 95)), result.seconds, result.unchanged)
