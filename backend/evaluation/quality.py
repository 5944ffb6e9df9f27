"""Answer and context quality metrics from ragas that need no LLM: context recall and precision
against the reference passages, string similarity, ROUGE-L and exact match against the
reference answer, and whether the answer contains it. ragas sends telemetry unless told not to; we tell it not to."""
from __future__ import annotations

import os
import warnings
from functools import lru_cache

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")


@lru_cache(maxsize=1)
def _metrics():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.dataset_schema import SingleTurnSample
        from ragas.metrics import NonLLMContextPrecisionWithReference, NonLLMContextRecall
        from ragas.metrics.collections import ExactMatch, NonLLMStringSimilarity, RougeScore, StringPresence

    return SingleTurnSample, NonLLMContextRecall(), NonLLMContextPrecisionWithReference(), \
        NonLLMStringSimilarity(), RougeScore(), ExactMatch(), StringPresence()


def preload() -> None:
    """Import ragas in the calling thread before a background job needs it. Its first import builds
    pydantic models, which parse signatures with `ast`; on CPython 3.11 the ast module's recursion
    counter is shared by threads, so that import in a job thread while the console's script thread
    parses a page (Streamlit's magic) failed the job with "AST constructor recursion depth mismatch"."""
    _metrics()


def answer_metrics(question: str, answer: str, reference_answer: str, contexts: list[str],
                   reference_contexts: list[str]) -> dict[str, float]:
    """Only the metrics whose inputs exist: no reference answer, no answer metrics."""
    sample_cls, ctx_recall, ctx_precision, similarity, rouge, exact, presence = _metrics()
    out: dict[str, float] = {}
    if contexts and reference_contexts:
        sample = sample_cls(user_input=question, retrieved_contexts=contexts, reference_contexts=reference_contexts)
        out["context_recall"] = float(ctx_recall.single_turn_score(sample))
        out["context_precision"] = float(ctx_precision.single_turn_score(sample))
    if answer and reference_answer:
        out["string_similarity"] = float(similarity.score(reference=reference_answer, response=answer).value)
        out["rouge_l"] = float(rouge.score(reference=reference_answer, response=answer).value)
        out["exact_match"] = float(exact.score(reference=reference_answer, response=answer).value)
        out["string_presence"] = float(presence.score(reference=reference_answer, response=answer).value)
    return out
