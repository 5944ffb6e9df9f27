"""Evaluation gate: score a candidate index version against the live one on the same
queries before promotion, with backend.evaluation's document-level metrics.

Both versions are queried as they are (nothing is re-ingested). Queries whose gold
documents are in neither version are left out and counted, so a data set that only partly
overlaps the corpus still gives a fair comparison."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from backend.engine import QueryEngine
from backend.errors import InputError
from backend.policy import Policy
from backend.vectorstore import VectorStore

METRICS = ("recall@5", "recall@10", "ndcg@10", "mrr@10", "recall@100")
GATED = ("ndcg@10", "recall@10")  # the candidate may not lose more than `max_drop` on these
MAX_DROP = 0.02


@dataclass
class GateResult:
    candidate: str
    baseline: str | None
    dataset: str
    n_queries: int
    skipped: int
    metrics: dict[str, dict[str, float] | None]  # "candidate" / "baseline" -> metric -> value
    passed: bool
    reasons: list[str] = field(default_factory=list)
    max_drop: float = MAX_DROP

    def as_json(self) -> dict:
        return asdict(self)

    def rows(self) -> list[dict]:
        """One row per metric: live, candidate, delta (for tables)."""
        cand, base = self.metrics["candidate"] or {}, self.metrics.get("baseline") or {}
        out = []
        for k in (*METRICS, "p50_ms"):
            c, b = cand.get(k), base.get(k) if base else None
            out.append({"metric": k, "live": b, "candidate": c,
                        "delta": (c - b) if c is not None and b is not None else None})
        return out


def load_gate_queries(dataset: Path, limit: int | None) -> list[dict]:
    from backend.evaluation import load_queries  # lazy: backend.evaluation imports backend.services

    path = dataset / "queries.jsonl" if dataset.is_dir() else dataset
    if not path.is_file():
        raise InputError(f"no queries.jsonl in {dataset} (a gate data set holds queries.jsonl with gold_ids)")
    queries = load_queries(path)
    if not queries:
        raise InputError(f"{path} holds no queries")
    return queries[:limit] if limit else queries


def doc_ids(store: VectorStore, collection: str) -> set[str]:
    """Every document id in a collection (one paged scroll of one payload field)."""
    return {str(payload.get("doc_id", "")) for _, payload in store.scroll(collection, fields=["doc_id"], batch=2048)}


def answerable(store: VectorStore, collections: list[str], queries: list[dict]) -> list[dict]:
    """The queries with at least one gold document in at least one of the collections."""
    present = set().union(*(doc_ids(store, c) for c in collections))
    return [q for q in queries if q["gold"] & present]


def evaluate_collection(engine: QueryEngine, collection: str, queries: list[dict], policy: Policy,
                        progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Metrics of one collection (queried by its own name, not through an alias)."""
    from backend.evaluation import doc_ranking, mrr_at, ndcg_at, recall_at

    run = policy.model_copy(update={"index": collection, "top_k": 100, "candidates": max(policy.candidates, 100)})
    sums = dict.fromkeys(METRICS, 0.0)
    latencies = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        retrieval = engine.retrieve(q["question"], run)
        latencies.append((time.perf_counter() - t) * 1000)
        ranked = doc_ranking([s.doc_id for s in retrieval.sources])
        sums["recall@5"] += recall_at(ranked, q["gold"], 5)
        sums["recall@10"] += recall_at(ranked, q["gold"], 10)
        sums["ndcg@10"] += ndcg_at(ranked, q["gold"], 10)
        sums["mrr@10"] += mrr_at(ranked, q["gold"], 10)
        sums["recall@100"] += recall_at(ranked, q["gold"], 100)
        if progress:
            progress(i + 1)
    n = max(1, len(queries))
    out = {k: round(v / n, 4) for k, v in sums.items()}
    out["p50_ms"] = round(float(np.percentile(latencies, 50)), 2) if latencies else 0.0
    return out


def verdict(candidate: dict[str, float], baseline: dict[str, float] | None, max_drop: float) -> tuple[bool, list[str]]:
    if baseline is None:
        return True, ["no live version to compare with"]
    reasons, ok = [], True
    for k in GATED:
        drop = baseline[k] - candidate[k]
        if drop > max_drop:
            ok = False
            reasons.append(f"{k} drops {drop:.3f} ({baseline[k]:.3f} → {candidate[k]:.3f}), more than {max_drop:.3f}")
        else:
            reasons.append(f"{k} {baseline[k]:.3f} → {candidate[k]:.3f}")
    return ok, reasons
