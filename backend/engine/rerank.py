"""Rerankers: re-score candidates with a rerank endpoint, or offline with the embedding model.

No cross-encoder ships in a pip package here, so the offline fallback scores every candidate
(including those only the sparse retriever found) by cosine with the query embedding. A real
cross-encoder is one setting away: RERANK_URL (Cohere/Jina/vLLM/llama.cpp '/v1/rerank' or TEI '/rerank')."""
from __future__ import annotations

from typing import Protocol

import httpx
import numpy as np

from backend.engine.vectorstore import VectorStore
from backend.errors import DependencyError
from backend.settings import Settings


class Reranker(Protocol):
    name: str
    model: str | None  # the model an endpoint is asked for (a ledger row per call); None: no model call

    def scores(self, question: str, query_vec: np.ndarray, collection: str, point_ids: list[str], texts: list[str]) -> list[float]: ...


class EmbeddingReranker:
    name = "embedding re-score"
    model = None

    def __init__(self, store: VectorStore):
        self._store = store

    def scores(self, question, query_vec, collection, point_ids, texts) -> list[float]:
        vecs = self._store.vectors(collection, point_ids)
        q = query_vec / (np.linalg.norm(query_vec) or 1.0)
        out = []
        for pid in point_ids:
            v = np.asarray(vecs.get(pid, np.zeros_like(q)), dtype=np.float32)
            out.append(float(v @ q / (np.linalg.norm(v) or 1.0)))
        return out


class HTTPReranker:
    """One POST with the query and candidate texts; accepts both common response shapes:
    {"results": [{"index", "relevance_score"}]} (Cohere/Jina/vLLM) and [{"index", "score"}] (TEI)."""

    def __init__(self, settings: Settings):
        self.name = f"endpoint {settings.rerank_model}"
        self._url = settings.rerank_url or ""
        self._tei = self._url.rstrip("/").endswith("/rerank") and "/v1/" not in self._url
        key = settings.rerank_api_key.get_secret_value() if settings.rerank_api_key else None
        self._client = httpx.Client(timeout=settings.llm_timeout_s, headers={"Authorization": f"Bearer {key}"} if key else {})
        self.model: str | None = settings.rerank_model

    def scores(self, question, query_vec, collection, point_ids, texts) -> list[float]:
        body = {"query": question, "texts": texts} if self._tei else {"model": self.model, "query": question, "documents": texts, "top_n": len(texts)}
        try:
            resp = self._client.post(self._url, json=body)
            resp.raise_for_status()
            data = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DependencyError(f"rerank endpoint failed: {type(exc).__name__}: {exc}", part="reranker") from exc
        rows = data["results"] if isinstance(data, dict) else data
        out = [0.0] * len(texts)
        for r in rows:
            out[int(r["index"])] = float(r.get("relevance_score", r.get("score", 0.0)))
        return out


def make_reranker(settings: Settings, store: VectorStore) -> Reranker:
    return HTTPReranker(settings) if settings.rerank_url else EmbeddingReranker(store)
