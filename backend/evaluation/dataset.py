"""A data set in the shared format (corpus.jsonl + queries.jsonl) evaluated end to end: index its
corpus (an identical index is reused) and score retrieval on its queries (`python -m backend
evaluate`, bench/retrieval.py). Used by the command line and the benchmark."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from backend.access import SYSTEM, Actor
from backend.engine.policy import Policy
from backend.engine.query_engine import QueryEngine
from backend.errors import InputError
from backend.evaluation.metrics import load_queries, ranking_policy, score_questions
from backend.ingestion.ingestor import Ingestor, IngestProgress
from backend.ingestion.sources import load_source


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


def evaluate_dataset(ingestor: Ingestor, engine: QueryEngine, dataset: str | Path, policy: Policy, actor: Actor = SYSTEM,
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

    def on_query(done: int) -> None:
        if progress:
            progress(f"query {done}/{len(queries)}", 0.8 + 0.2 * done / len(queries))

    corpus = load_source(root / "corpus.jsonl")
    result = ingestor.ingest(corpus.documents, actor=actor, family=family, source=str(root), progress=on_ingest)
    run_policy = ranking_policy(policy, family)
    scores = score_questions(lambda q: [s.doc_id for s in engine.retrieve(q, run_policy).sources],
                             queries, on_query)
    return EvalReport(str(root), result.collection, policy.label(), scores.n_queries, scores.metrics,
                      scores.latency_ms(50), scores.latency_ms(95), result.seconds, result.unchanged)
