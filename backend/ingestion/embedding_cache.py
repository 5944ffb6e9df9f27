"""Per-chunk embedding cache: a rebuild embeds only the chunk texts no earlier build of the same
model embedded; the others take their vectors from here. Keyed by (model key, sha256 of the text
that is embedded), so a changed document misses only its own chunks (LlamaIndex's IngestionCache
keys whole node batches, where one changed document misses everything). It lives in the console
database: SQLite on the embedded stack, PostgreSQL shared by every replica in production."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.db import dialect_insert, metadata, utcnow

embedding_cache = sa.Table(  # migration 0012_embedding_cache
    "embedding_cache",
    metadata,
    sa.Column("model", sa.String(300), primary_key=True),
    sa.Column("text_sha256", sa.String(64), primary_key=True),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),  # float32, little-endian
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

_LOOKUP_BATCH = 500  # hashes per SELECT ... IN (...): well under SQLite's bound-parameter limit


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    def __init__(self, engine: Engine):
        self.engine = engine

    def lookup(self, model: str, dim: int, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among `keys` (text_key values); rows of another dimension are ignored."""
        wanted = sorted(set(keys))
        found: dict[str, np.ndarray] = {}
        t = embedding_cache.c
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), _LOOKUP_BATCH):
                rows = conn.execute(sa.select(t.text_sha256, t.vector).where(
                    t.model == model, t.dim == dim, t.text_sha256.in_(wanted[i:i + _LOOKUP_BATCH])))
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype="<f4")
        return found

    def store(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        """Adds new vectors; a key another build stored meanwhile keeps its first vector."""
        if not vectors:
            return
        now = utcnow()
        rows = [{"model": model, "text_sha256": k, "dim": int(v.shape[0]), "created_at": now,
                 "vector": np.asarray(v, dtype="<f4").tobytes()} for k, v in vectors.items()]
        with self.engine.begin() as conn:
            conn.execute(dialect_insert(conn, embedding_cache).on_conflict_do_nothing(), rows)

    def count(self, model: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(embedding_cache)
        if model is not None:
            q = q.where(embedding_cache.c.model == model)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def clear(self, model: str | None = None) -> int:
        """Forgets cached vectors (all, or one model's); the next build embeds everything again."""
        q = sa.delete(embedding_cache)
        if model is not None:
            q = q.where(embedding_cache.c.model == model)
        with self.engine.begin() as conn:
            return int(conn.execute(q).rowcount)
