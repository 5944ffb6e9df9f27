"""Evaluation gate: score a candidate index version against the live one on the same
queries before promotion, with backend.evaluation.metrics's document-level metrics.

Both versions are queried as they are (nothing is re-ingested). Queries whose gold
documents are in neither version are left out and counted, so a data set that only partly
overlaps the corpus still gives a fair comparison."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from backend.engine.policy import Policy
from backend.engine.query_engine import QueryEngine
from backend.engine.vectorstore import VectorStore
from backend.errors import InputError
from backend.evaluation.metrics import GoldQuery, load_queries, score_questions

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


def load_gate_queries(dataset: Path, limit: int | None) -> list[GoldQuery]:
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


def answerable(store: VectorStore, collections: list[str], queries: list[GoldQuery]) -> list[GoldQuery]:
    """The queries with at least one gold document in at least one of the collections."""
    present = set().union(*(doc_ids(store, c) for c in collections))
    return [q for q in queries if q.gold & present]


def evaluate_collection(engine: QueryEngine, collection: str, queries: list[GoldQuery], policy: Policy,
                        progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Metrics of one collection (queried by its own name, not through an alias)."""
    run = policy.model_copy(update={"index": collection, "top_k": 100, "candidates": max(policy.candidates, 100)})
    scores = score_questions(lambda q: [s.doc_id for s in engine.retrieve(q, run).sources], queries, progress)
    return {**{k: round(v, 4) for k, v in scores.metrics.items()}, "p50_ms": round(scores.latency_ms(50), 2)}


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
