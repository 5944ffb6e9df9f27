"""Document-level retrieval metrics (Recall@k, nDCG@k, MRR@k) and the one loop that scores a
retriever on questions with gold documents: evaluation of a data set, the index gate and
evaluation runs all use these."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from backend.engine.policy import Policy
from backend.errors import InputError

RANKING_DEPTH = 150  # chunks retrieved per query: enough distinct documents for Recall@100
METRICS = ("recall@5", "recall@10", "ndcg@10", "mrr@10", "recall@100")


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


def ranking_scores(ranked: list[str], gold: set[str]) -> dict[str, float]:
    """Every metric of `METRICS` for one question's document ranking."""
    return {"recall@5": recall_at(ranked, gold, 5), "recall@10": recall_at(ranked, gold, 10),
            "ndcg@10": ndcg_at(ranked, gold, 10), "mrr@10": mrr_at(ranked, gold, 10),
            "recall@100": recall_at(ranked, gold, 100)}


@dataclass(frozen=True)
class GoldQuery:
    """A question of a data set (queries.jsonl) and the ids of the documents that answer it."""
    id: str
    question: str
    gold: frozenset[str]


@dataclass(frozen=True)
class QuestionScores:
    """Mean metrics over the questions and the retrieval latency of each."""
    metrics: dict[str, float]
    latencies_ms: list[float]

    @property
    def n_queries(self) -> int:
        return len(self.latencies_ms)

    def latency_ms(self, percentile: float) -> float:
        return float(np.percentile(self.latencies_ms, percentile)) if self.latencies_ms else 0.0


def score_questions(retrieve: Callable[[str], list[str]], queries: list[GoldQuery],
                    progress: Callable[[int], None] | None = None) -> QuestionScores:
    """The evaluation loop: `retrieve(question)` returns the retrieved chunks' doc ids in rank order."""
    sums = dict.fromkeys(METRICS, 0.0)
    latencies = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        doc_ids = retrieve(q.question)
        latencies.append((time.perf_counter() - t) * 1000)
        for k, v in ranking_scores(doc_ranking(doc_ids), q.gold).items():
            sums[k] += v
        if progress:
            progress(i + 1)
    n = max(1, len(queries))
    return QuestionScores({k: v / n for k, v in sums.items()}, latencies)


def load_queries(path: Path) -> list[GoldQuery]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    out.append(GoldQuery(str(row["id"]), row["question"], frozenset(str(g) for g in row["gold_ids"])))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise InputError(f"{path} line {n}: needs 'id', 'question' and 'gold_ids' ({exc})") from exc
    return out
