"""BM25 as Qdrant sparse vectors: term-frequency saturation on the document side, and
Qdrant's IDF modifier (computed by Qdrant over the collection) at query time."""
from __future__ import annotations

from collections import Counter

from qdrant_client import models

from backend.text import term_counts, term_id

K1 = 1.2
B = 0.75


def _to_sparse(weights: Counter[int] | dict[int, float]) -> models.SparseVector:
    items = sorted(weights.items())
    return models.SparseVector(indices=[i for i, _ in items], values=[float(v) for _, v in items])


def doc_length(text: str) -> int:
    return sum(term_counts(text).values())


def doc_vector(text: str, avgdl: float) -> models.SparseVector:
    """BM25 document weights: tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))."""
    counts = term_counts(text)
    dl = sum(counts.values())
    norm = K1 * (1 - B + B * dl / max(avgdl, 1.0))
    weights: dict[int, float] = {}
    for term, tf in counts.items():
        tid = term_id(term)
        weights[tid] = weights.get(tid, 0.0) + tf * (K1 + 1) / (tf + norm)
    return _to_sparse(weights)


def query_vector(text: str) -> models.SparseVector:
    """Each distinct query term once; Qdrant multiplies by its IDF."""
    return _to_sparse({term_id(t): 1.0 for t in term_counts(text)})
