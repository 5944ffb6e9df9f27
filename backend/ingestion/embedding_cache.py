"""Per-chunk embedding cache: a rebuild embeds only the chunk texts no earlier build of the same
model embedded; the others take their vectors from here. Keyed by (model key, sha256 of the text
that is embedded), so a changed document misses only its own chunks (LlamaIndex's IngestionCache
keys whole node batches, where one changed document misses everything). It lives in the console
database: SQLite on the embedded stack, PostgreSQL shared by every replica in production.
Housekeeping forgets vectors no build has used in EMBEDDING_CACHE_DAYS: those of edited or deleted
chunks and of models no longer used would otherwise stay forever."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from backend.db import aware, dialect_insert, metadata, utcnow

embedding_cache = sa.Table(  # migration 0012_embedding_cache
    "embedding_cache",
    metadata,
    sa.Column("model", sa.String(300), primary_key=True),
    sa.Column("text_sha256", sa.String(64), primary_key=True),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),  # float32, little-endian
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True, index=True),  # 0017_embedding_cache_used_at
)

_LOOKUP_BATCH = 500  # hashes per SELECT ... IN (...): well under SQLite's bound-parameter limit
TOUCH_AFTER = timedelta(days=1)  # a hit rewrites used_at at most once a day: lookups stay reads
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedModel:
    """What the cache holds for one embedding model."""

    model: str
    vectors: int
    bytes: int  # the float32 vectors alone, without the database's overhead
    last_used: datetime | None
    unused: int  # vectors the next housekeeping forgets (unused for keep_days; 0 when kept forever)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    def __init__(self, engine: Engine, keep_days: int = 0):
        """`keep_days`: `prune` forgets vectors unused for this many days; 0 keeps them forever."""
        self.engine = engine
        self.keep_days = keep_days

    def lookup(self, model: str, dim: int, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among `keys` (text_key values); rows of another dimension are ignored.
        The hits are marked used (at most once a day per row)."""
        wanted = sorted(set(keys))
        found: dict[str, np.ndarray] = {}
        stale: list[str] = []
        t = embedding_cache.c
        now = utcnow()
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), _LOOKUP_BATCH):
                rows = conn.execute(sa.select(t.text_sha256, t.vector, t.used_at).where(
                    t.model == model, t.dim == dim, t.text_sha256.in_(wanted[i:i + _LOOKUP_BATCH])))
                for key, blob, used_at in rows:
                    found[key] = np.frombuffer(blob, dtype="<f4")
                    if used_at is None or aware(used_at) < now - TOUCH_AFTER:
                        stale.append(key)
        if stale:
            with self.engine.begin() as conn:
                for i in range(0, len(stale), _LOOKUP_BATCH):
                    conn.execute(sa.update(embedding_cache).where(
                        t.model == model, t.text_sha256.in_(stale[i:i + _LOOKUP_BATCH])).values(used_at=now))
        return found

    def store(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        """Adds new vectors; a key another build stored meanwhile keeps its first vector."""
        if not vectors:
            return
        now = utcnow()
        rows = [{"model": model, "text_sha256": k, "dim": int(v.shape[0]), "created_at": now, "used_at": now,
                 "vector": np.asarray(v, dtype="<f4").tobytes()} for k, v in vectors.items()]
        with self.engine.begin() as conn:
            conn.execute(dialect_insert(conn, embedding_cache).on_conflict_do_nothing(), rows)

    def count(self, model: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(embedding_cache)
        if model is not None:
            q = q.where(embedding_cache.c.model == model)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def stats(self) -> list[CachedModel]:
        """One row per model, the most vectors first (`python -m backend index cache`)."""
        t = embedding_cache.c
        unused = sa.literal(0)
        if self.keep_days > 0:
            cutoff = utcnow() - timedelta(days=self.keep_days)
            unused = sa.func.sum(sa.case((t.used_at < cutoff, 1), else_=0))
        q = (sa.select(t.model, sa.func.count(), sa.func.sum(t.dim), sa.func.max(t.used_at), unused)
             .group_by(t.model).order_by(sa.func.count().desc(), t.model))
        with self.engine.connect() as conn:
            return [CachedModel(m, int(n), 4 * int(dims or 0), aware(last) if last else None, int(old or 0))
                    for m, n, dims, last, old in conn.execute(q)]

    def clear(self, model: str | None = None) -> int:
        """Forgets cached vectors (all, or one model's); the next build embeds everything again."""
        q = sa.delete(embedding_cache)
        if model is not None:
            q = q.where(embedding_cache.c.model == model)
        with self.engine.begin() as conn:
            return int(conn.execute(q).rowcount)

    def prune(self) -> int:
        """Forgets the vectors no build used in `keep_days` (none when it is 0); housekeeping calls it."""
        if self.keep_days <= 0:
            return 0
        cutoff = utcnow() - timedelta(days=self.keep_days)
        with self.engine.begin() as conn:
            n = int(conn.execute(sa.delete(embedding_cache).where(embedding_cache.c.used_at < cutoff)).rowcount)
        if n:
            log.info("embedding cache: forgot %d vectors unused for %d days", n, self.keep_days)
        return n